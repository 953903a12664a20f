"""Fault 6: -32001 (server overloaded) storms, on a virtual clock.

What must happen: each overloaded request is retried with exponential backoff and jitter (a
delay of 0.2 s * 2**attempt, capped at 8 s, times 0.5 to 1.5) and succeeds once the storm
passes; a storm that never ends raises `CodexOverloadedError` after exactly the configured
retries, in bounded time; concurrent requests each retry on their own schedule while calls the
storm does not touch go straight through; no attempt is ever made early (no busy loop).
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from orchestrator.client import (
    CodexClient,
    CodexOverloadedError,
    ThreadOptions,
)
from orchestrator.protocol.rpc import (
    OVERLOAD_BASE_DELAY,
    OVERLOAD_MAX_DELAY,
    OVERLOAD_RETRIES,
)
from orchestrator.transport.memory import memory_transport_pair
from tests.faults.hostile_server import HostileAppServer
from tests.reliability import Figures

AREA = "client: overload (-32001)"


def nominal_delays(retries: int) -> list[float]:
    """The backoff before each retry, before jitter."""
    return [min(OVERLOAD_MAX_DELAY, OVERLOAD_BASE_DELAY * 2**k) for k in range(retries)]


def attempt_times(server: HostileAppServer, method: str) -> list[float]:
    return [at for at, name in server.arrivals if name == method]


def assert_backed_off(times: list[float]) -> None:
    """Each retry came after its backoff, jittered by 0.5 to 1.5, never sooner."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, nominal in zip(gaps, nominal_delays(len(gaps)), strict=True):
        assert 0.5 * nominal <= gap <= 1.5 * nominal


@pytest.mark.parametrize(
    "storm",
    [
        pytest.param(
            n,
            marks=pytest.mark.fault(
                AREA,
                f"every request answered -32001 {n} time{'s' if n > 1 else ''} first",
                "retried with backoff; the turn completes",
            ),
        )
        for n in (1, 3, OVERLOAD_RETRIES)
    ],
)
async def test_storm_that_passes_is_ridden_out(
    autojump_clock: trio.testing.MockClock, storm: int, figures: Figures
) -> None:
    """initialize, thread/start and turn/start each refused `storm` times all go through, each
    after exactly `storm` backed-off retries."""
    client_end, server_end = memory_transport_pair()
    server = HostileAppServer(server_end, {"storm": {"*": storm}})
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end) as client:
            started = trio.current_time()
            result = await client.chat_once("through the storm")
            elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert result.status == "completed" and result.final_text == "ECHO: through the storm"
    for method in ("initialize", "thread/start", "turn/start"):
        times = attempt_times(server, method)
        assert len(times) == storm + 1
        assert_backed_off(times)
    worst = 3 * 1.5 * sum(nominal_delays(storm))
    assert elapsed <= worst
    figures.record("attempts per request", storm + 1)
    figures.record("turn took", round(elapsed, 2), "s (virtual)")


@pytest.mark.parametrize(
    "retries",
    [
        pytest.param(
            n,
            marks=pytest.mark.fault(
                AREA,
                f"a storm that never ends; overload_retries={n}",
                f"CodexOverloadedError after {n + 1} attempts, in bounded time; the "
                "connection stays usable",
            ),
        )
        for n in (0, 2, OVERLOAD_RETRIES)
    ],
)
async def test_endless_storm_gives_up_after_the_configured_retries(
    autojump_clock: trio.testing.MockClock, retries: int, figures: Figures
) -> None:
    """An endless storm costs exactly `retries + 1` attempts, spaced by the backoff, then
    raises `CodexOverloadedError`; other methods still work."""
    client_end, server_end = memory_transport_pair()
    server = HostileAppServer(server_end, {"storm": {"thread/start": 10**9}})
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end, overload_retries=retries) as client:
            await client.initialize()
            started = trio.current_time()
            with pytest.raises(CodexOverloadedError) as caught:
                await client.start_thread()
            elapsed = trio.current_time() - started
            assert (await client.request("thread/read", {"threadId": "t"}))["thread"]
            assert not client.closed
        nursery.cancel_scope.cancel()
    assert caught.value.code == -32001
    assert f"after {retries + 1} attempts" in str(caught.value)
    times = attempt_times(server, "thread/start")
    assert len(times) == retries + 1
    assert_backed_off(times)
    assert elapsed <= 1.5 * sum(nominal_delays(retries))
    figures.record("attempts", len(times))
    figures.record("gave up after", round(elapsed, 2), "s (virtual)")


@pytest.mark.fault(
    AREA,
    "20 concurrent thread/starts during a storm of 3 refusals each, and a turn alongside",
    "all 20 succeed, 80 attempts in all, retries not in lockstep; the turn is not delayed",
)
async def test_concurrent_requests_ride_out_a_storm_independently(
    autojump_clock: trio.testing.MockClock, figures: Figures
) -> None:
    """Concurrent requests in a storm each retry on their own jittered schedule and all
    succeed, while a turn the storm does not touch completes at once."""
    client_end, server_end = memory_transport_pair()
    server = HostileAppServer(server_end, {"storm": {"thread/start": 3}})
    server.storm["thread/start"] = 0  # calm while the bystanding thread starts
    thread_ids: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end) as client:
            await client.initialize()
            calm_thread = await client.start_thread()
            server.storm["thread/start"] = 3
            started = trio.current_time()

            async def start(n: int) -> None:
                thread_ids.append(await client.start_thread(ThreadOptions(cwd=f"/w/{n}")))

            async with trio.open_nursery() as calls:
                for n in range(20):
                    calls.start_soon(start, n)
                turn = await client.chat_once("unaffected", thread_id=calm_thread)
                turn_took = trio.current_time() - started
            elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert len(set(thread_ids)) == 20
    assert turn.status == "completed" and turn_took == 0
    times = attempt_times(server, "thread/start")[1:]  # without the calm one
    assert len(times) == 20 * 4
    second_attempts = sorted(times)[20:40]
    assert len(set(second_attempts)) == 20  # jitter: no two retries at the same instant
    assert elapsed <= 1.5 * sum(nominal_delays(3))
    figures.record("attempts", len(times))
    figures.record("all done after", round(elapsed, 2), "s (virtual)")
