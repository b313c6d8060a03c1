"""Step Functions' input constraints, read from botocore's service model.

`extract(operations)` walks the input shape of each served operation in
botocore's ``stepfunctions`` model and returns every shape it reaches as
`engine.http.shapes.Shape` objects: the same thing `engine.http.shapes`
holds as data, so a test can compare the two and the server's copy cannot
drift from the model; `relied_on_but_missing` checks only that what the
server uses is still in a model (any botocore release). botocore is a
test dependency; the server never loads it. When the model or the served
operations change, regenerate (this records the installed botocore's
version as `engine.http.shapes.BOTOCORE_VERSION`):

    .venv/bin/python -m tests.http.aws_model > engine/http/shapes.py
    .venv/bin/ruff format engine/http/shapes.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import botocore
import botocore.session

from engine.http.shapes import Shape

__all__ = ["extract", "model", "relied_on_but_missing", "render"]

_KEPT = ("min", "max", "pattern")


def model() -> dict[str, Any]:
    """The installed botocore's ``stepfunctions`` service model."""
    loader = botocore.session.get_session().get_component("data_loader")
    model: dict[str, Any] = loader.load_service_model("stepfunctions", "service-2")
    return model


def extract(operations: Iterable[str]) -> tuple[dict[str, str], dict[str, Shape]]:
    """(operation -> input shape name, shape name -> Shape) for `operations`."""
    service = model()
    inputs = {op: service["operations"][op]["input"]["shape"] for op in sorted(operations)}
    shapes: dict[str, Shape] = {}
    pending = list(inputs.values())
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        raw = service["shapes"][name]
        members = tuple((m, ref["shape"]) for m, ref in raw.get("members", {}).items())
        member = raw["member"]["shape"] if "member" in raw else None
        shapes[name] = Shape(
            raw["type"],
            **{key: raw[key] for key in _KEPT if key in raw},
            enum=tuple(raw.get("enum", ())),
            members=members,
            required=tuple(raw.get("required", ())),
            member=member,
            sensitive=bool(raw.get("sensitive", False)),
        )
        pending.extend(shape for _m, shape in members)
        if member is not None:
            pending.append(member)
    return inputs, dict(sorted(shapes.items()))


def relied_on_but_missing(
    inputs: dict[str, str], shapes: dict[str, Shape], service: dict[str, Any]
) -> list[str]:
    """What `inputs`/`shapes` use that the model `service` lacks or types differently.

    Walks each operation's input from the top, by member name, so a shape
    renamed in a newer model is no drift; a member gone, or one of another
    type, is.
    """
    problems: list[str] = []
    pending = []
    for operation, ours in inputs.items():
        found = service["operations"].get(operation)
        if found is None:
            problems.append(f"{operation}: no such operation")
        else:
            pending.append((operation, ours, found["input"]["shape"]))
    seen = set()
    while pending:
        where, ours, theirs = pending.pop()
        if (ours, theirs) in seen:
            continue
        seen.add((ours, theirs))
        shape, raw = shapes[ours], service["shapes"][theirs]
        if shape.type != raw["type"]:
            problems.append(f"{where}: {raw['type']}, not {shape.type}")
            continue
        for member, member_shape in shape.members:
            ref = raw.get("members", {}).get(member)
            if ref is None:
                problems.append(f"{where}.{member}: missing")
            else:
                pending.append((f"{where}.{member}", member_shape, ref["shape"]))
        if shape.member is not None:
            pending.append((f"{where}.member", shape.member, raw["member"]["shape"]))
    return sorted(problems)


def _header() -> str:
    """`engine.http.shapes` up to its version and data: docstring and `Shape`, kept as written."""
    import engine.http.shapes

    source = Path(engine.http.shapes.__file__).read_text()
    return source[: source.index("\nBOTOCORE_VERSION")]


def _source(shape: Shape) -> str:
    """`shape` as a constructor call naming only what differs from the defaults."""
    defaults = Shape(shape.type)
    given = [
        f"{field}={getattr(shape, field)!r}"
        for field in Shape.__dataclass_fields__
        if field != "type" and getattr(shape, field) != getattr(defaults, field)
    ]
    return f"Shape({', '.join([repr(shape.type), *given])})"


def render(inputs: dict[str, str], shapes: dict[str, Shape]) -> str:
    """The source of `engine.http.shapes` for `inputs` and `shapes`."""
    lines = [_header(), f"BOTOCORE_VERSION = {botocore.__version__!r}", ""]
    lines += ["INPUTS: dict[str, str] = {"]
    lines += [f"    {op!r}: {shape!r}," for op, shape in inputs.items()]
    lines += ["}", "", "SHAPES: dict[str, Shape] = {"]
    lines += [f"    {name!r}: {_source(shape)}," for name, shape in shapes.items()]
    lines += ["}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from engine.http.app import OPERATIONS

    sys.stdout.write(render(*extract(OPERATIONS)))
