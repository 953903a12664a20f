"""Fault 7: the websocket server closes the connection with each close code, or the TCP
connection is reset or dropped without a close frame, mid-turn and while idle.

What must happen: a `CodexTransportError` whose message and `close_reason` name the code and
the server's reason (1006, abnormal closure, when no close frame came); every waiting call
fails at once; later calls fail the same way at once; another connection to the same server,
with a turn in flight, completes it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from orchestrator.client import CodexTransportError
from tests.faults.harness import (
    PROMPTLY,
    bystander,
    dying_plan,
    open_endpoint,
    user_sees,
    witness_death,
)
from tests.reliability import Figures

CLOSES = {
    1000: "normal closure: bye",
    1001: "going away: server shutting down",
    1008: "policy violation: token revoked",
    1011: "internal error: the agent crashed",
    1012: "service restart: back soon",
    4000: "app: session expired",
}
PHASES = {"mid-turn": "mid-turn", "idle": "while idle, after turn/completed"}


def _cases() -> list[Any]:
    cases = []
    for phase, when in PHASES.items():
        for code, reason in CLOSES.items():
            cases.append(
                pytest.param(
                    ["close", code, reason],
                    str(code),
                    reason,
                    phase,
                    id=f"{code}-{phase}",
                    marks=pytest.mark.fault(
                        "client: websocket close",
                        f"the server closes with {code} ({reason.split(':')[0]}) {when}",
                        "CodexTransportError naming the code and reason; pending calls fail "
                        "at once; another connection unaffected",
                    ),
                )
            )
        for how, what in (("reset", "TCP reset (RST)"), ("drop", "TCP close without a frame")):
            cases.append(
                pytest.param(
                    [how],
                    "1006",
                    "",
                    phase,
                    id=f"{how}-{phase}",
                    marks=pytest.mark.fault(
                        "client: websocket close",
                        f"{what} {when}",
                        "CodexTransportError naming 1006 (abnormal closure); pending calls "
                        "fail at once; another connection unaffected",
                    ),
                )
            )
    return cases


@pytest.mark.parametrize(("death", "code", "reason", "phase"), _cases())
async def test_websocket_closed_by_the_server(
    death: list[Any], code: str, reason: str, phase: str, figures: Figures
) -> None:
    """A close (or a dropped TCP connection) fails everything waiting at once with an error
    naming the close code and reason; another connection to the server is unaffected."""
    plan = dying_plan(phase, [["die", *death]])
    with trio.fail_after(20):
        async with open_endpoint("websocket", plan) as endpoint, bystander(endpoint) as other:
            async with endpoint.connect() as client:
                seen = await witness_death(client, phase)
                later_started = trio.current_time()
                with pytest.raises(CodexTransportError) as later:
                    await client.request("thread/start", {})
                assert trio.current_time() - later_started < PROMPTLY
            await other.finish()
    assert len(seen.failures) == (1 if phase == "idle" else 2)
    for error in [*(error for _, error in seen.failures), later.value]:
        assert error.close_reason is not None
        assert f"code {code}" in error.close_reason and reason in error.close_reason
        assert error.close_reason in str(error)
    assert seen.latency < PROMPTLY
    figures.record("failure latency", round(seen.latency * 1000), "ms")
    figures.record("user sees", user_sees(later.value))
