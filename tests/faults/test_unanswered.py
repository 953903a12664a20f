"""Fault 5: requests the server never answers, or answers after we gave up.

What must happen: the call raises `CodexTimeoutError` when its timeout (the call's, else the
client's `request_timeout`) runs out, and not before; other requests and turns on the
connection go on meanwhile (the liveness probe the client sends after a timeout is answered:
the server is slow, not hung); the late answer, when it comes, is dropped quietly (logged, not
counted as garbage, no error anywhere); the client keeps nothing of the abandoned call.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing
import trio
import trio.testing

from orchestrator.client import CodexClient, CodexTimeoutError
from orchestrator.transport.memory import memory_transport_pair
from tests.faults.harness import bystander, open_endpoint
from tests.faults.hostile_server import HostileAppServer
from tests.reliability import Figures

AREA = "client: unanswered request"
SLOW = "hostile/slow"


def late_answers(logs: list[dict[str, Any]]) -> int:
    """How many answers to no pending request the client logged (warnings naming an id)."""
    return sum(1 for event in logs if event["log_level"] == "warning" and "id" in event)


@pytest.mark.parametrize(
    ("answer", "call_timeout", "client_timeout", "fires_at"),
    [
        pytest.param(
            "late",
            5.0,
            120.0,
            5.0,
            id="call-timeout-late-answer",
            marks=pytest.mark.fault(
                AREA,
                "a request answered 20 s late; request(timeout=5)",
                "CodexTimeoutError at 5 s; other calls proceed; the late answer dropped quietly",
            ),
        ),
        pytest.param(
            "never",
            None,
            3.0,
            3.0,
            id="client-timeout-never-answered",
            marks=pytest.mark.fault(
                AREA,
                "a request never answered; request_timeout=3",
                "CodexTimeoutError at 3 s; other calls proceed; nothing kept",
            ),
        ),
    ],
)
async def test_unanswered_request_times_out_while_the_rest_goes_on(
    autojump_clock: trio.testing.MockClock,
    answer: str,
    call_timeout: float | None,
    client_timeout: float,
    fires_at: float,
    figures: Figures,
) -> None:
    """An unanswered request times out exactly on time while a turn and other requests on
    the connection complete; a late answer changes nothing."""
    plan = {"late": {SLOW: 20}} if answer == "late" else {"silent": [SLOW]}
    client_end, server_end = memory_transport_pair()
    server = HostileAppServer(server_end, plan)
    timed_out: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end, request_timeout=client_timeout) as client:
            await client.initialize()
            started = trio.current_time()

            async def slow_call() -> None:
                with pytest.raises(CodexTimeoutError):
                    await client.request(SLOW, timeout=call_timeout)
                timed_out.append(trio.current_time() - started)

            with structlog.testing.capture_logs() as logs:
                async with trio.open_nursery() as calls:
                    calls.start_soon(slow_call)
                    await trio.sleep(1)
                    meanwhile = await client.chat_once("meanwhile")
                    assert trio.current_time() - started == 1  # nothing waited on the slow call
                await trio.sleep(30)  # past the late answer
                after = await client.chat_once("after")
            stats = client.statistics()
            assert not client.closed
        nursery.cancel_scope.cancel()
    assert timed_out == [fires_at]
    assert meanwhile.status == after.status == "completed"
    assert stats.pending_requests == 0 and stats.turns == 0
    assert client.bad_messages == 0
    assert late_answers(logs) == (1 if answer == "late" else 0)
    figures.record("timeout fired after", timed_out[0], "s (virtual)")


@pytest.mark.fault(
    AREA,
    "turn/start never answered; request_timeout=10",
    "chat raises CodexTimeoutError at 10 s; the thread is no longer watched; nothing kept",
)
async def test_unanswered_turn_start_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A `turn/start` that is never answered times out, and the client forgets the thread."""
    client_end, server_end = memory_transport_pair()
    server = HostileAppServer(server_end, {"silent": ["turn/start"]})
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end, request_timeout=10) as client:
            thread_id = await client.start_thread()
            started = trio.current_time()
            with pytest.raises(CodexTimeoutError, match="turn/start"):
                await client.chat_once("lost", thread_id=thread_id)
            assert trio.current_time() - started == 10
            stats = client.statistics()
        nursery.cancel_scope.cancel()
    assert stats.watched_threads == 0 and stats.turns == 0
    assert stats.pending_requests == 0 and stats.parking_lots == 0


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(
            transport,
            marks=pytest.mark.fault(
                AREA,
                f"{transport}: a request answered 1 s late; request(timeout=0.3)",
                "CodexTimeoutError after 0.3 s; turns go on; the late answer dropped; "
                "another connection unaffected",
            ),
        )
        for transport in ("stdio", "websocket")
    ],
)
async def test_late_answer_over_a_real_transport(transport: str, figures: Figures) -> None:
    """Over a real transport too, a late answer times out its request on time, and the
    answer arriving afterwards disturbs nothing."""
    plan = {"late": {SLOW: 1.0}}
    with trio.fail_after(20):
        async with open_endpoint(transport, plan) as endpoint, bystander(endpoint) as other:
            async with endpoint.connect() as client:
                await client.initialize()
                started = trio.current_time()
                with structlog.testing.capture_logs() as logs:
                    with pytest.raises(CodexTimeoutError):
                        await client.request(SLOW, timeout=0.3)
                    waited = trio.current_time() - started
                    meanwhile = await client.chat_once("meanwhile")
                    while not late_answers(logs):
                        await trio.sleep(0.01)  # until the late answer has come and gone
                after = await client.chat_once("after")
                assert not client.closed and client.bad_messages == 0
                assert client.statistics().pending_requests == 0
            await other.finish()
    assert 0.3 <= waited < 0.3 + 1.0
    assert meanwhile.status == after.status == "completed"
    figures.record("timeout fired after", round(waited, 3), "s")
