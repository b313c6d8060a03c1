"""Encryption at rest on both stores: what reaches the disk, key rotation, missing and wrong keys.

A secret placed in an execution's input must never reach the database in
clear — not the SQLite file (nor its -wal/-shm), not a `pg_dump` — while
every command still shows it to an operator holding the keys. Rotation
moves every payload to the newest key with workers' writes still landing;
a missing or wrong key is one line and exit 3. New SQLite files are 0600.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from engine.cli import cli
from engine.store import Checkpoint, CommitResult, Event, Finish, Store, TokenRecord
from engine.store.codec import (
    ENCRYPTED_PREFIX,
    EncryptionKeyError,
    PayloadCodec,
    codec_from_environment,
)
from engine.store.records import ActivityTaskRecord
from engine.store.rotation import PAYLOAD_COLUMNS
from engine.store.schema import history_blocks
from tests.engine import pg

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-Zq9xV7"  # distinctive: any occurrence in a file is a leak
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

PASS_MACHINE = {
    "StartAt": "Copy",
    "States": {
        "Copy": {"Type": "Pass", "Parameters": {"kept.$": "$.password"}, "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}
FAIL_MACHINE = {
    "StartAt": "Boom",
    "States": {"Boom": {"Type": "Fail", "Error": "Leak", "CausePath": "$.password"}},
}
WAIT_MACHINE = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": True}},
}


def key_id(key: str) -> str:
    return PayloadCodec([base64.b64decode(key)]).key_ids[0]


def keys_env(*keys: str) -> dict[str, str]:
    return {"STEPWISE_ENCRYPTION_KEYS": ",".join(keys), "STEPWISE_ENCRYPTION_KEY_FILE": ""}


NO_KEYS = {"STEPWISE_ENCRYPTION_KEYS": "", "STEPWISE_ENCRYPTION_KEY_FILE": ""}


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def stored_payloads(url: str) -> list[str]:
    """Every non-NULL payload value in the database, read raw (no codec).

    A history block's events are payloads each (their details, sealed one by one).
    """
    engine = sa.create_engine(url)
    values: list[str] = []
    try:
        with engine.connect() as conn:
            for table, (_keys, columns) in PAYLOAD_COLUMNS.items():
                for row in conn.execute(sa.select(*(table.c[c] for c in columns))):
                    values.extend(v for v in row if v is not None)
            for text in conn.execute(sa.select(history_blocks.c.events)).scalars():
                values.extend(event[4] for event in json.loads(text))
    finally:
        engine.dispose()
    return values


def database_bytes(url: str) -> bytes:
    """What the database holds on disk: the SQLite file and its -wal/-shm, or a pg_dump."""
    if url.startswith("sqlite"):
        path = Path(sa.make_url(url).database or "")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        [pg._bin("pg_dump"), "--data-only", libpq], capture_output=True, check=True, timeout=120
    )
    return dump.stdout


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, machine in (("pass", PASS_MACHINE), ("fail", FAIL_MACHINE), ("wait", WAIT_MACHINE)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(machine))
        paths[name] = str(path)
    return paths


def test_codec_round_trips_and_refuses_unknown_or_altered_ciphertext() -> None:
    a, b = base64.b64decode(KEY_A), base64.b64decode(KEY_B)
    codec = PayloadCodec([a])
    sealed = codec.seal('{"password": "x"}')
    assert sealed.startswith(f"{ENCRYPTED_PREFIX}{key_id(KEY_A)}:") and "password" not in sealed
    assert codec.open(sealed) == '{"password": "x"}'
    assert codec.open('{"plain": "row from before"}') == '{"plain": "row from before"}'
    assert PayloadCodec([b, a]).open(sealed) == '{"password": "x"}'
    with pytest.raises(EncryptionKeyError, match=f"key {key_id(KEY_A)}, which is not among"):
        PayloadCodec([b]).open(sealed)
    with pytest.raises(EncryptionKeyError, match="no encryption key is configured"):
        PayloadCodec().open(sealed)
    altered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(EncryptionKeyError, match="failed authentication"):
        codec.open(altered)
    # Without keys, free text that looks like ciphertext stays text.
    plain = PayloadCodec()
    lookalike = f"{ENCRYPTED_PREFIX}{key_id(KEY_A)}:not really"
    assert plain.seal("a cause") == "a cause"
    assert plain.open(plain.seal(lookalike)) == lookalike


def test_key_configuration_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(EncryptionKeyError, match="not base64"):
        codec_from_environment({"STEPWISE_ENCRYPTION_KEYS": "not a key!"})
    with pytest.raises(EncryptionKeyError, match="decodes to 16 bytes"):
        codec_from_environment({"STEPWISE_ENCRYPTION_KEYS": base64.b64encode(b"x" * 16).decode()})
    with pytest.raises(EncryptionKeyError, match="cannot read"):
        codec_from_environment({"STEPWISE_ENCRYPTION_KEY_FILE": str(tmp_path / "missing")})
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY_B}\n{KEY_A}\n")
    codec = codec_from_environment({"STEPWISE_ENCRYPTION_KEY_FILE": str(key_file)})
    assert codec.key_ids == [key_id(KEY_B), key_id(KEY_A)]
    assert not codec_from_environment({}).encrypting


def test_new_sqlite_files_are_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'private.db'}"
    store = Store(url, codec=PayloadCodec())
    try:
        store.put_state_machine("M", json.dumps(PASS_MACHINE))
        for path in tmp_path.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        store.close()


def test_every_command_works_with_keys_and_nothing_reaches_the_disk_in_clear(
    db_url: str, files: dict[str, str]
) -> None:
    env = {**keys_env(KEY_A), "STEPWISE_DATABASE_URL": db_url}
    secret_input = json.dumps({"password": SECRET, "n": 1})
    ran = invoke(["-o", "json", "run", files["pass"], "--name", "ok", "--input", secret_input], env)
    assert ran.exit_code == 0, ran.output
    assert SECRET in ran.output
    failed = invoke(["run", files["fail"], "--name", "bad", "--input", secret_input], env)
    assert failed.exit_code == 1, failed.output
    assert invoke(["machines", "create", "Hold", files["wait"]], env).exit_code == 0
    started = invoke(["start", "Hold", "--name", "held", "--input", secret_input], env)
    assert started.exit_code == 0, started.output
    stopped = invoke(["stop", "held", "--cause", f"operator saw {SECRET}"], env)
    assert stopped.exit_code == 0, stopped.output

    values = stored_payloads(db_url)
    assert values and all(v.startswith(f"{ENCRYPTED_PREFIX}{key_id(KEY_A)}:") for v in values)
    assert SECRET.encode() not in database_bytes(db_url)

    # An operator holding the key sees everything as before.
    described = invoke(["-o", "json", "describe", "bad"], env)
    assert described.exit_code == 0, described.output
    assert json.loads(described.output)["cause"] == SECRET
    history = invoke(["-o", "json", "history", "ok"], env)
    assert history.exit_code == 0 and SECRET in history.output
    listed = invoke(["-o", "json", "list"], env)
    assert listed.exit_code == 0 and len(json.loads(listed.output)["executions"]) == 3
    traced = invoke(["trace", "ok", "--format", "json"], env)
    assert traced.exit_code == 0, traced.output

    # Rotation: the new key first, the old one still listed.
    rotated_env = {**env, **keys_env(KEY_B, KEY_A)}
    rotated = invoke(["-o", "json", "db", "rotate-keys", "--batch-size", "3"], rotated_env)
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.output)
    assert report["keyId"] == key_id(KEY_B) and report["reencrypted"] == len(values)
    assert report["tables"]["executions"] > 0 and report["tables"]["history_events"] > 0
    again = json.loads(invoke(["-o", "json", "db", "rotate-keys"], rotated_env).output)
    assert again["reencrypted"] == 0
    assert all(v.startswith(f"{ENCRYPTED_PREFIX}{key_id(KEY_B)}:") for v in stored_payloads(db_url))
    assert SECRET.encode() not in database_bytes(db_url)

    # The old key can go: the new one alone reads everything and runs new work.
    only_b = {**env, **keys_env(KEY_B)}
    assert json.loads(invoke(["-o", "json", "describe", "bad"], only_b).output)["cause"] == SECRET
    assert SECRET in invoke(["-o", "json", "history", "held"], only_b).output
    again_ran = invoke(["run", files["pass"], "--name", "ok2", "--input", secret_input], only_b)
    assert again_ran.exit_code == 0, again_ran.output


def cli_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
    )


def test_a_missing_or_wrong_key_is_one_line_and_exit_3(
    sqlite_url: str, files: dict[str, str]
) -> None:
    env = {**keys_env(KEY_A), "STEPWISE_DATABASE_URL": sqlite_url}
    secret_input = json.dumps({"password": SECRET})
    assert (
        invoke(["run", files["pass"], "--name", "ok", "--input", secret_input], env).exit_code == 0
    )
    for bad_env, says in (
        (keys_env(KEY_B), f"key {key_id(KEY_A)}, which is not among"),
        (NO_KEYS, "no encryption key is configured"),
        ({"STEPWISE_ENCRYPTION_KEYS": "nonsense!"}, "not base64"),
    ):
        for command in (["describe", "ok"], ["history", "ok"]):
            done = cli_process([*command, "--db", sqlite_url], bad_env)
            assert done.returncode == 3, done.stderr
            assert says in done.stderr and SECRET not in done.stderr + done.stdout
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "Traceback" not in done.stderr
    rotate = cli_process(["db", "rotate-keys", "--db", sqlite_url], NO_KEYS)
    assert rotate.returncode == 3 and "no encryption key is configured" in rotate.stderr


@pytest.fixture
def sealed_store(db_url: str) -> Iterator[Store]:
    store = Store(db_url, codec=PayloadCodec([base64.b64decode(KEY_A)]))
    yield store
    store.close()


def test_tokens_activity_tasks_and_sql_effects_are_sealed(sealed_store: Store, db_url: str) -> None:
    store = sealed_store
    machine = store.put_state_machine("M", json.dumps(PASS_MACHINE))
    secret = json.dumps({"password": SECRET})
    store.create_execution(
        execution_id="e1",
        name="e1",
        machine=machine,
        input=secret,
        start_date=T0,
        trace_id="0" * 32,
        first_event=Event(1, 0, "ExecutionStarted", T0, {"input": secret}),
    )
    assert store.claim_due("w", limit=1, lease_seconds=600, now=T0)
    token = TokenRecord("tok", "e1", "Task#0/result", "Task", created_at=T0)
    assert store.commit(
        [Checkpoint("e1", journal=[("Task#0/in", secret)], tokens=[token], last_event_id=1)],
        worker_id="w",
        now=T0,
    ) == [CommitResult.OK]
    store.queue_activity_task(ActivityTaskRecord("tok", "act", "e1", "Task#0", secret), now=T0)
    claimed = store.claim_activity_task(
        "act", "poller", journal_key=lambda k: f"{k}/started", journal_value=secret, now=T0
    )
    assert claimed is not None and claimed.input == secret

    class Statement:
        sql = "SELECT :p AS p"
        parameters: dict[str, Any] = {"p": SECRET}

    later = T0 + timedelta(seconds=1)
    outcome = store.run_sql_effect(
        execution_id="e1", key="Sql#0", worker_id="w", statements=[Statement()], now=later
    )
    assert outcome == {"ok": {"Results": [{"Rows": [{"p": SECRET}], "RowCount": 1}]}}
    assert (
        store.run_sql_effect(
            execution_id="e1", key="Sql#0", worker_id="w", statements=[], now=later
        )
        == outcome
    )
    store.complete_token(
        "tok", journal_key="Task#0/result", value=secret, status="SUCCEEDED", now=later
    )
    assert store.commit(
        [
            Checkpoint(
                "e1",
                events=[Event(2, 1, "ExecutionSucceeded", later, {"output": secret})],
                finish=Finish("SUCCEEDED", later, output=secret),
            )
        ],
        worker_id="w",
        now=later,
    ) == [CommitResult.OK]

    loaded = store.load("e1")
    assert set(loaded.journal.values()) == {secret}
    assert loaded.record.input == loaded.record.output == secret
    assert [e.details for e in store.history("e1")][-1] == {"output": secret}
    values = stored_payloads(db_url)
    assert len(values) >= 8
    assert all(v.startswith(ENCRYPTED_PREFIX) for v in values)
    assert SECRET.encode() not in database_bytes(db_url)


def test_rotation_encrypts_rows_written_before_keys_and_is_idempotent(db_url: str) -> None:
    plain = Store(db_url, codec=PayloadCodec())
    try:
        machine = plain.put_state_machine("M", json.dumps(PASS_MACHINE))
        for n in range(7):
            payload = json.dumps({"password": SECRET, "n": n})
            plain.create_execution(
                execution_id=f"e{n}",
                name=f"e{n}",
                machine=machine,
                input=payload,
                start_date=T0,
                trace_id="0" * 32,
                first_event=Event(1, 0, "ExecutionStarted", T0, {"input": payload}),
            )
    finally:
        plain.close()
    sealed = Store(db_url, codec=PayloadCodec([base64.b64decode(KEY_A)]))
    try:
        seen: list[tuple[str, int]] = []
        counts = sealed.rotate_keys(batch_size=2, progress=lambda t, n: seen.append((t, n)))
        assert counts["executions"] == 7 and counts["history_events"] == 7
        assert ("executions", 7) in seen
        assert sealed.rotate_keys() == {name: 0 for name in counts}
        assert json.loads(sealed.get_execution("e3").input) == {"password": SECRET, "n": 3}
    finally:
        sealed.close()
    assert all(v.startswith(ENCRYPTED_PREFIX) for v in stored_payloads(db_url))


def test_rotation_while_a_worker_commits_loses_nothing(db_url: str) -> None:
    a, b = base64.b64decode(KEY_A), base64.b64decode(KEY_B)
    old = Store(db_url, codec=PayloadCodec([a]))
    ids = [f"e{n:02d}" for n in range(24)]
    try:
        machine = old.put_state_machine("M", json.dumps(PASS_MACHINE))
        for execution_id in ids:
            payload = json.dumps({"password": SECRET, "id": execution_id})
            old.create_execution(
                execution_id=execution_id,
                name=execution_id,
                machine=machine,
                input=payload,
                start_date=T0,
                trace_id="0" * 32,
                first_event=Event(1, 0, "ExecutionStarted", T0, {"input": payload}),
            )
        assert len(old.claim_due("w", limit=100, lease_seconds=3600, now=T0)) == len(ids)
        first = [Checkpoint(e, journal=[("A#0", json.dumps(e))], last_event_id=1) for e in ids]
        assert old.commit(first, worker_id="w", now=T0) == [CommitResult.OK] * len(ids)
    finally:
        old.close()

    # The worker already runs with the new key first; rotation runs beside it.
    worker = Store(db_url, codec=PayloadCodec([b, a]))
    rotator = Store(db_url, codec=PayloadCodec([b, a]))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n, execution_id in enumerate(ids):
                when = T0 + timedelta(seconds=n + 1)
                done = Checkpoint(
                    execution_id,
                    journal=[("B#0", json.dumps({"token": SECRET}))],
                    events=[Event(2, 1, "ExecutionSucceeded", when, {"output": execution_id})],
                    finish=Finish("SUCCEEDED", when, output=json.dumps(execution_id)),
                )
                assert worker.commit([done], worker_id="w", now=when) == [CommitResult.OK]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        first_pass = rotator.rotate_keys(batch_size=4)
    finally:
        thread.join(timeout=300)
        worker.close()
    assert not errors and not thread.is_alive()
    rotator.rotate_keys(batch_size=4)  # whatever the first pass raced past
    assert rotator.rotate_keys()["executions"] == 0
    rotator.close()
    assert first_pass["executions"] >= 1

    new_only = Store(db_url, codec=PayloadCodec([b]))
    try:
        for execution_id in ids:
            loaded = new_only.load(execution_id)
            assert loaded.record.status == "SUCCEEDED"
            assert loaded.record.output == json.dumps(execution_id)
            assert json.loads(loaded.record.input)["password"] == SECRET
            assert set(loaded.journal) == {"A#0", "B#0"}
            assert [e.type for e in new_only.history(execution_id)] == [
                "ExecutionStarted",
                "ExecutionSucceeded",
            ]
    finally:
        new_only.close()
    assert all(v.startswith(f"{ENCRYPTED_PREFIX}{key_id(KEY_B)}:") for v in stored_payloads(db_url))
