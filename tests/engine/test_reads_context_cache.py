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
