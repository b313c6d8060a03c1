"""`Runtime.reads_context`: whether a definition may read `$$`, judged once per definition.

The judgement is kept by the definition's content hash, so one Engine
running machines that do and do not read the context object (in either
order, again and again) gives each its own: a machine reading `$$` after
a plain one still reads the real context object.
"""

from __future__ import annotations

import json

from engine import Engine

PLAIN = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
READS = {
    "StartAt": "P",
    "States": {"P": {"Type": "Pass", "Parameters": {"name.$": "$$.Execution.Name"}, "End": True}},
}


def test_each_definition_gets_its_own_judgement_in_one_engine(sqlite_url: str) -> None:
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("Plain", PLAIN)
        engine.create_state_machine_sync("Reads", READS)
        for round_ in range(2):
            plain = engine.wait_sync(engine.start_sync("Plain", {"v": round_}), timeout=30)
            assert json.loads(plain.output or "null") == {"v": round_}
            name = f"reads-{round_}"
            reads = engine.wait_sync(engine.start_sync("Reads", {}, name=name), timeout=30)
            assert reads.status == "SUCCEEDED", reads.cause
            assert json.loads(reads.output or "null") == {"name": name}
        versions = [engine.store.get_state_machine(name) for name in ("Plain", "Reads")]
        runtime = engine.runtime
        assert [runtime.reads_context(v) for v in versions] == [False, True]


def test_a_new_revision_that_reads_the_context_is_judged_again(sqlite_url: str) -> None:
    # The judgement is the definition's, not the machine name's.
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("M", PLAIN)
        first = engine.wait_sync(engine.start_sync("M", {"v": 1}), timeout=30)
        assert json.loads(first.output or "null") == {"v": 1}
        engine.update_state_machine_sync("M", READS)
        second = engine.wait_sync(engine.start_sync("M", {}, name="n1"), timeout=30)
        assert second.status == "SUCCEEDED", second.cause
        assert json.loads(second.output or "null") == {"name": "n1"}
