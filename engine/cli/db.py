"""`stepwise db upgrade`: apply the store's missing schema migrations."""

from __future__ import annotations

import click

from engine.cli.core import StepwiseGroup, database_url, global_options, json_output
from engine.cli.output import emit_json

__all__ = ["db_group"]


@click.group("db", cls=StepwiseGroup)
@global_options
def db_group() -> None:
    """Database administration."""


@db_group.command("upgrade")
@global_options
def db_upgrade() -> None:
    """Apply missing schema migrations; print the schema version."""
    from engine.store import Store

    store = Store(database_url(), auto_migrate=False)
    try:
        version = store.migrate()
    finally:
        store.close()
    if json_output():
        emit_json({"schemaVersion": version})
    else:
        click.echo(f"schema version {version}")
