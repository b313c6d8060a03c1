"""`stepwise db`: database administration — `upgrade` applies missing schema migrations,
`rotate-keys` re-encrypts stored payloads under the newest encryption key."""

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


@db_group.command("rotate-keys")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Rows per transaction; workers keep running between batches.",
)
@global_options
def db_rotate_keys(batch_size: int) -> None:
    """Re-encrypt every stored payload under the newest key of $STEPWISE_ENCRYPTION_KEYS.

    Keys are listed newest first; keep the old keys listed until this has
    run. Idempotent: a second run rewrites nothing. Prints counts per table.
    """
    from engine.store import Store

    store = Store(database_url())
    try:
        counts = store.rotate_keys(batch_size=batch_size)
        key_id = store.encryption_key_ids[0]
    finally:
        store.close()
    total = sum(counts.values())
    if json_output():
        emit_json({"keyId": key_id, "reencrypted": total, "tables": counts})
    else:
        detail = ", ".join(f"{table} {count}" for table, count in counts.items())
        click.echo(f"re-encrypted {total} values under key {key_id} ({detail})")
