"""`stepwise test-state FILE --state NAME --input JSON`: run one state, answer as AWS's TestState.

A thin face over `Engine.test_state` (engine/teststate.py): no database is
needed (it runs in a throwaway SQLite file). ``--mock-result`` or
``--mock-error``/``--mock-cause`` stand in for a Task's Resource;
``--inspection-level DEBUG`` adds the value after each data-flow step,
TRACE also an HTTP Task's request and response (``--allow-http-to`` as
for ``serve``).
The answer is printed as JSON (TestState's response shape) whatever
``-o`` says; the exit code is 0 whatever the state's status, as AWS's API
answers a failed state as a successful call.
"""

from __future__ import annotations

import click

from engine.cli.core import StepwiseCommand, global_options, run_async
from engine.cli.output import emit_json, parse_json_text

__all__ = ["test_state_command"]


@click.command("test-state", cls=StepwiseCommand)
@click.argument("file")
@click.option("--state", "state_name", metavar="NAME", default=None, help="The state to run.")
@click.option("--input", "input_text", metavar="JSON", default="{}", show_default=True)
@click.option(
    "--inspection-level",
    type=click.Choice(("INFO", "DEBUG", "TRACE"), case_sensitive=False),
    default="INFO",
    show_default=True,
)
@click.option("--mock-result", metavar="JSON", default=None, help="A Task's result, mocked.")
@click.option("--mock-error", metavar="E", default=None, help="A Task's error, mocked.")
@click.option("--mock-cause", metavar="C", default=None, help="The mocked error's cause.")
@click.option("--variables", metavar="JSON", default=None, help="Variables in scope.")
@click.option(
    "--allow-http-to",
    "allow_http_to",
    metavar="CIDR|HOST",
    multiple=True,
    help="Let an HTTP Task reach this private/loopback network, address or host (repeatable).",
)
@global_options
def test_state_command(
    file: str,
    state_name: str | None,
    input_text: str,
    inspection_level: str,
    mock_result: str | None,
    mock_error: str | None,
    mock_cause: str | None,
    variables: str | None,
    allow_http_to: tuple[str, ...],
) -> None:
    """Run state NAME of the definition in FILE with --input, as AWS's TestState does."""
    from activities.netpolicy import PolicyError
    from activities.registry import Registry
    from engine.api import Engine
    from engine.teststate import TestStateRequest

    if mock_result is not None and mock_error is not None:
        raise click.UsageError("give --mock-result or --mock-error, not both")
    if mock_result is not None:
        parse_json_text(mock_result, what="--mock-result")
    with open(file, encoding="utf-8") as handle:
        definition = handle.read()
    request = TestStateRequest(
        definition=definition,
        input=input_text,
        state_name=state_name,
        inspection_level=inspection_level.upper(),
        variables=variables,
        mock_result=mock_result,
        mock_error=mock_error,
        mock_cause=mock_cause,
    )
    registry = Registry()
    try:
        registry.allow_http_to(*allow_http_to)
    except PolicyError as exc:
        raise click.UsageError(f"--allow-http-to: {exc}") from None
    engine = Engine(worker=False, registry=registry)
    emit_json(run_async(lambda: engine.test_state_request(request)))
