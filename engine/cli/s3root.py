"""``--s3-root``: the local folder that stands for S3 in Distributed Map's ItemReader/ResultWriter.

One option, shared by ``run``, ``worker`` and ``serve``: ``--s3-root DIR``
makes ``s3://BUCKET/KEY`` the file ``DIR/BUCKET/KEY`` for the executions this
process walks (it sets ``STEPWISE_S3_ROOT``, which `engine.s3local` reads,
so it also reaches worker threads). Without it the environment variable, if
set, decides.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["S3_ROOT_ENV", "s3_root_option"]

F = TypeVar("F", bound=Callable[..., Any])
# engine.s3local.S3_ROOT_ENV, restated so `--help` imports no engine module (a test pins both).
S3_ROOT_ENV = "STEPWISE_S3_ROOT"


def _set_root(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        os.environ[S3_ROOT_ENV] = str(value.resolve())


def s3_root_option(command: F) -> F:
    """Add ``--s3-root DIR`` to `command` (applied before the command runs)."""
    return click.option(
        "--s3-root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_root,
        help=f"Folder standing for S3: s3://BUCKET/KEY is DIR/BUCKET/KEY (else ${S3_ROOT_ENV}).",
    )(command)
