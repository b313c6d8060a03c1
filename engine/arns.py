"""ARNs of state machines, executions and activities, for a configurable region and account.

AWS names every Step Functions resource by an ARN
(``arn:aws:states:us-east-1:000000000000:stateMachine:orders``). `Arns`
formats them for one region and account — by default ``us-east-1`` and
``000000000000``, as AWS Step Functions Local and LocalStack do — and
`parse_arn` reads one back into a `ParsedArn` whatever its region and
account, so ARNs in the engine's older ``local`` form and ARNs in the
configured form name the same resource. Names cannot contain ``:`` (see
`engine.names`), which keeps every form unambiguous. This module owns the
formats and nothing else: no store, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "ArnKind",
    "Arns",
    "InvalidArnText",
    "ParsedArn",
    "parse_arn",
]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"

# The resource kinds Step Functions puts in the sixth field of its ARNs.
ArnKind = str
_KINDS = ("stateMachine", "execution", "express", "activity", "mapRun")

_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_MAX_ARN = 2000


class InvalidArnText(ValueError):
    """Text that is not a Step Functions ARN of the expected kind (AWS: InvalidArn)."""

    aws_code = "InvalidArn"


@dataclass(frozen=True)
class ParsedArn:
    """The parts of a Step Functions ARN.

    `kind` is ``stateMachine``, ``execution``, ``express``, ``activity`` or
    ``mapRun``; `resource` is the state machine's (or activity's) name,
    with ``/label`` for a Distributed Map's labelled machine; `qualifier`
    is what follows it: a version number or alias name for a state machine,
    the execution name for an execution, the run id for a Map Run.
    """

    partition: str
    region: str
    account: str
    kind: ArnKind
    resource: str
    qualifier: str | None = None

    @property
    def version(self) -> int | None:
        """The version number of a version ARN (``…:stateMachine:M:3``), else None."""
        if self.kind == "stateMachine" and self.qualifier and self.qualifier.isdigit():
            return int(self.qualifier)
        return None

    @property
    def alias(self) -> str | None:
        """The alias name of an alias ARN (``…:stateMachine:M:prod``), else None."""
        if self.kind == "stateMachine" and self.qualifier and not self.qualifier.isdigit():
            return self.qualifier
        return None


def parse_arn(text: str, *, kinds: tuple[ArnKind, ...] = _KINDS) -> ParsedArn:
    """Read a Step Functions ARN of one of `kinds`, in any region and account.

    Raises InvalidArnText (with AWS's wording) when `text` is not one.
    """
    if not isinstance(text, str) or not text or len(text) > _MAX_ARN:
        raise InvalidArnText(f"Invalid Arn: 'Resource type not valid in this context: {text!r}'")
    parts = text.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "states":
        raise InvalidArnText(f"Invalid Arn: '{text}'")
    partition, region, account, kind = parts[1], parts[3], parts[4], parts[5]
    rest = parts[6:]
    if (
        not partition.startswith("aws")
        or not _REGION.match(region)
        or not _ACCOUNT.match(account)
        or kind not in _KINDS
    ):
        raise InvalidArnText(f"Invalid Arn: '{text}'")
    if kind not in kinds:
        raise InvalidArnText(f"Invalid Arn: 'Resource type not valid in this context: {kind}'")
    shapes = {
        "stateMachine": (1, 2),
        "activity": (1, 1),
        "execution": (2, 2),
        "express": (3, 3),
        "mapRun": (2, 2),
    }
    low, high = shapes[kind]
    if not low <= len(rest) <= high or any(not piece for piece in rest):
        raise InvalidArnText(f"Invalid Arn: '{text}'")
    qualifier = ":".join(rest[1:]) if len(rest) > 1 else None
    return ParsedArn(partition, region, account, kind, rest[0], qualifier)


@dataclass(frozen=True)
class Arns:
    """Formats ARNs for one region and account (default us-east-1 / 000000000000)."""

    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    partition: str = "aws"

    def __post_init__(self) -> None:
        if not _REGION.match(self.region):
            raise ValueError(f"not an AWS region name: {self.region!r}")
        if not _ACCOUNT.match(self.account):
            raise ValueError(f"not a 12-digit AWS account id: {self.account!r}")

    @property
    def prefix(self) -> str:
        """``arn:aws:states:REGION:ACCOUNT``, what every ARN here starts with."""
        return f"arn:{self.partition}:states:{self.region}:{self.account}"

    def state_machine(self, name: str, qualifier: int | str | None = None) -> str:
        """A state machine's ARN; with `qualifier`, its version's or alias's."""
        arn = f"{self.prefix}:stateMachine:{name}"
        return arn if qualifier is None else f"{arn}:{qualifier}"

    def execution(self, machine: str, name: str) -> str:
        """A STANDARD execution's ARN (the base machine name, even when run by version)."""
        return f"{self.prefix}:execution:{machine}:{name}"

    @property
    def role(self) -> str:
        """The IAM role ARN Stepwise reports as every state machine's ``roleArn``."""
        return f"arn:{self.partition}:iam::{self.account}:role/stepwise"

    def activity(self, name: str) -> str:
        """An activity's ARN."""
        return f"{self.prefix}:activity:{name}"

    def reformat(self, arn: str) -> str:
        """`arn` (any region and account) in this region and account; unchanged if not an ARN."""
        try:
            parsed = parse_arn(arn)
        except InvalidArnText:
            return arn
        tail = (
            parsed.resource
            if parsed.qualifier is None
            else (f"{parsed.resource}:{parsed.qualifier}")
        )
        return f"{self.prefix}:{parsed.kind}:{tail}"
