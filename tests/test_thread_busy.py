"""A thread another app-server process still holds: `thread/resume` is refused with "already
has an active writer" until that process exits. The runner waits (bounded, backing off) and
resumes, or fails the turn saying who holds the thread. The real-server half is in
tests/test_thread_busy_real.py."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
import trio
import trio.testing

from orchestrator.client import CodexClient, CodexThreadBusyError
from orchestrator.runtime.runner import THREAD_BUSY_WAIT
from orchestrator.transport.memory import MemoryTransport, memory_transport_pair
from tests.fake_app_server import FakeAppServer
from tests.test_scheduler import (
    FakeFleet,
    jobs_from,
    kill_first_server_mid_turn,
    records,
    result,
    run,
)

BUSY = {"code": -32600, "message": "thread t already has an active writer"}


class BusyAfterRestart(FakeFleet):
    """Every server after the first refuses `thread/resume` `refusals` times."""

    def __init__(self, nursery: trio.Nursery, refusals: int) -> None:
        super().__init__(nursery)
        self.refusals = refusals

    def new_server(self, name: str, transport: MemoryTransport) -> FakeAppServer:
        """A directed fake; after the first, one refusing `thread/resume` `refusals` times."""
        server = super().new_server(name, transport)
        if self.servers.get(name):
            server.refusals["thread/resume"] = deque([BUSY] * self.refusals)
        return server


async def run_with_a_restart(
    tmp_path: Path, nursery: trio.Nursery, refusals: int
) -> BusyAfterRestart:
    """Run job `r` (a slow turn, two retries) on connection `a`, its first server closed
    mid-turn and the next refusing `thread/resume` `refusals` times; return the fleet."""
    fleet = BusyAfterRestart(nursery, refusals=refusals)
    jobs = jobs_from(tmp_path, '[[jobs]]\nid = "r"\nprompt = "slow 10: x"\nretries = 2\n')
    await run(
        tmp_path, jobs, fleet.actors(["a"], 1), during=kill_first_server_mid_turn(fleet, tmp_path)
    )
    return fleet


async def test_the_error_is_typed(nursery: trio.Nursery) -> None:
    """The client raises `CodexThreadBusyError` (a `CodexProtocolError`) for the refusal."""
    client_end, server_end = memory_transport_pair()
    server = FakeAppServer(server_end)
    server.refusals["thread/resume"] = deque([BUSY])
    await nursery.start(server.serve)
    async with CodexClient.over(client_end) as client:
        with pytest.raises(CodexThreadBusyError, match="already has an active writer"):
            await client.request("thread/resume", {"threadId": "t"})
        assert await client.request("thread/resume", {"threadId": "t"})


@pytest.mark.fault(
    "orchestrator",
    'thread/resume refused: "already has an active writer" (the old app-server is exiting)',
    "the runner waits with backoff until the thread is released, resumes it and completes "
    "the job; the wait is in the step log",
)
async def test_a_busy_thread_is_waited_for_then_resumed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A refused resume is retried with backoff until the thread is released; the job
    completes and the wait is in its step log."""
    fleet = await run_with_a_restart(tmp_path, nursery, refusals=3)
    assert result(tmp_path, "r")["status"] == "completed"
    kinds = [r["kind"] for r in records(tmp_path, "r")]
    assert kinds.count("thread_busy") == 1
    assert (
        kinds.index("thread_busy") < kinds.index("thread_released") < kinds.index("thread_resumed")
    )
    assert fleet.servers["a"][1].method_counts["thread/resume"] == 4
    released = next(r for r in records(tmp_path, "r") if r["kind"] == "thread_released")
    assert 0 < released["waited"] < THREAD_BUSY_WAIT


@pytest.mark.fault(
    "orchestrator",
    'thread/resume refused "already has an active writer" for good (another process holds it)',
    "the job fails after a bounded wait with an error naming the thread and why",
)
async def test_a_thread_held_for_good_fails_the_job_clearly(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A resume refused for good fails the job after a bounded wait, naming the thread and
    why."""
    start = trio.current_time()
    fleet = await run_with_a_restart(tmp_path, nursery, refusals=1000)
    outcome = result(tmp_path, "r")
    assert outcome["status"] == "failed"
    assert "already has an active writer" in outcome["error"]
    assert "another app-server process still holds thread" in outcome["error"]
    assert trio.current_time() - start < THREAD_BUSY_WAIT + 30
    attempts = fleet.servers["a"][1].method_counts["thread/resume"]
    assert 5 <= attempts <= 15  # backed off, not a busy loop
