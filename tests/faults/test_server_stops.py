"""Fault 4: the app-server stops at every phase of a connection's life.

Phases: before the `initialize` response; mid-turn (after `turn/start` was acknowledged);
while our approval handler is running on one of its requests; idle after `turn/completed`.
Ways: over stdio the process exits 3 (after a last stderr line) or is killed by SIGKILL; over
websocket the server closes with 1011 or its process is killed.

What must happen: every waiting call (the turn or `initialize`, and one more request the server
never answers) fails at once with a `CodexTransportError` that says how the server ended (exit
status and stderr tail, or close code and reason); later calls fail the same way at once;
leaving the client's block is prompt, cancelling a handler still deliberating; a bystander
connection with a turn in flight completes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import orchestrator.transport.stdio as stdio
from orchestrator.client import CodexTransportError
from tests.faults.harness import (
    PROMPTLY,
    Bystander,
    Deliberation,
    Endpoint,
    bystander,
    dying_plan,
    open_endpoint,
    user_sees,
    witness_death,
)
from tests.reliability import Figures

LAST_WORDS = "FATAL: hostile app-server: stopping now\n"

DEATHS: dict[tuple[str, str], list[list[Any]]] = {
    ("stdio", "exit"): [["stderr_text", LAST_WORDS], ["die", "exit", 3]],
    ("stdio", "kill"): [["stderr_text", LAST_WORDS], ["die", "kill"]],
    ("websocket", "close"): [["die", "close", 1011, "hostile: internal error"]],
    ("websocket", "kill"): [["die", "kill"]],
}
HOW = {
    "exit": "the process exits 3",
    "kill": "the process is killed (SIGKILL)",
    "close": "the server closes (1011)",
}
PHASES = {
    "initialize": "before the initialize response",
    "mid-turn": "mid-turn, after turn/start was acknowledged",
    "approval": "while our approval handler runs",
    "idle": "idle, after turn/completed",
}


def _check_error(transport: str, how: str, error: CodexTransportError) -> None:
    """The error says how the server ended."""
    text = str(error)
    if how == "exit":
        assert error.exit_status == 3 and "exited with status 3" in text
    elif how == "kill" and transport == "stdio":
        assert error.exit_status == -9 and "killed by signal SIGKILL" in text
    elif how == "close":
        assert error.close_reason is not None
        assert "1011" in error.close_reason and "hostile: internal error" in error.close_reason
    else:  # a websocket whose server process died: no close frame ever came
        assert error.close_reason is not None and "1006" in error.close_reason
    if transport == "stdio":
        assert error.stderr_tail.endswith(LAST_WORDS) and LAST_WORDS.strip() in text


def _case(transport: str, how: str, phase: str) -> Any:
    fault = f"{transport}: {HOW[how]} {PHASES[phase]}"
    says = "exit status and stderr tail" if transport == "stdio" else "close code and reason"
    if (transport, how) == ("websocket", "kill"):
        says = "abnormal closure (1006)"
    expected = (
        f"CodexTransportError with {says}; every pending call fails at once; "
        "another connection unaffected"
    )
    return pytest.param(
        transport,
        how,
        phase,
        id=f"{transport}-{how}-{phase}",
        marks=pytest.mark.fault("client: server stops", fault, expected),
    )


@asynccontextmanager
async def _bystander_beside(endpoint: Endpoint, *, separate: bool) -> AsyncIterator[Bystander]:
    """A bystander on the same websocket server, or on a server of its own when the test
    kills the whole server process."""
    if separate:
        async with open_endpoint(endpoint.transport) as own, bystander(own) as other:
            yield other
    else:
        async with bystander(endpoint) as other:
            yield other


@pytest.mark.parametrize(
    ("transport", "how", "phase"),
    [_case(t, h, p) for (t, h) in DEATHS for p in PHASES],
)
async def test_server_stops(transport: str, how: str, phase: str, figures: Figures) -> None:
    """The server stopping at this phase fails every waiting call at once with an error saying
    how it ended; nothing hangs and another connection is unaffected."""
    deliberate = Deliberation()
    separate = (transport, how) == ("websocket", "kill")
    with trio.fail_after(30):
        async with (
            open_endpoint(transport, dying_plan(phase, DEATHS[transport, how])) as endpoint,
            _bystander_beside(endpoint, separate=separate) as other,
        ):
            async with endpoint.connect(approval_handler=deliberate) as client:
                death = await witness_death(client, phase, deliberate.asked)
                later_started = trio.current_time()
                with pytest.raises(CodexTransportError) as later:
                    await client.request("thread/start", {})
                assert trio.current_time() - later_started < PROMPTLY
                leaving = trio.current_time()
            left_after = trio.current_time() - leaving
            await other.finish()
    assert len(death.failures) == (1 if phase == "idle" else 2)
    for _, error in death.failures:
        _check_error(transport, how, error)
    _check_error(transport, how, later.value)
    assert death.latency < PROMPTLY
    assert left_after < PROMPTLY
    if phase == "approval":
        assert deliberate.ended.is_set()  # cancelled when the block was left
    figures.record("failure latency", round(death.latency * 1000), "ms")
    figures.record("user sees", user_sees(later.value))


@pytest.mark.fault(
    "client: server stops",
    "stdio: the server closes its stdout mid-turn but keeps running",
    "pending calls fail after the bounded wait for an exit status (EXIT_WAIT_SECONDS) with "
    "'closed its stdout but is still running'",
)
async def test_server_closing_stdout_but_living_on(
    monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    """A server that closes stdout and lives on fails the waiting calls once the bounded wait
    for its exit status is over, saying so; nothing hangs."""
    grace = 1.0
    monkeypatch.setattr(stdio, "EXIT_WAIT_SECONDS", grace)
    with trio.fail_after(30):
        async with open_endpoint("stdio", dying_plan("mid-turn", [["die", "close_stdout"]])) as ep:
            async with ep.connect() as client:
                death = await witness_death(client, "mid-turn")
    assert len(death.failures) == 2
    for _, error in death.failures:
        assert "closed its stdout but is still running" in str(error)
        assert error.exit_status is None
    assert grace <= death.latency < grace + PROMPTLY
    figures.record("failure latency", round(death.latency, 2), "s")
