"""A connection that cannot be (re)established holds its jobs for at most `max_down_time`:
then they fail, naming the connection and its last error, instead of hanging the run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from orchestrator.client import ApprovalHandler, CodexClient, CodexTransportError
from orchestrator.config import ConnectionSpec
from orchestrator.runtime.actor import ConnectionActor
from tests.test_scheduler import FakeFleet, jobs_from, records, result, run

JOBS = "".join(f'[[jobs]]\nid = "j{n}"\nprompt = "hello"\n' for n in range(6))


class FlakyFleet(FakeFleet):
    """The first `failures` connection attempts fail as a dead app-server would."""

    def __init__(self, nursery: trio.Nursery, failures: int) -> None:
        super().__init__(nursery)
        self.failures = failures
        self.attempts = 0

    def connector(
        self, name: str
    ) -> Callable[[ApprovalHandler], AbstractAsyncContextManager[CodexClient]]:
        working = super().connector(name)

        @asynccontextmanager
        async def connect(handler: ApprovalHandler) -> AsyncIterator[CodexClient]:
            self.attempts += 1
            if self.attempts <= self.failures:
                await trio.sleep(0.1)
                raise CodexTransportError("app-server (pid 1) exited with status 1")
            async with working(handler) as client:
                yield client

        return connect

    def actors_with(self, name: str, max_down_time: float) -> list[ConnectionActor]:
        spec = ConnectionSpec(name=name, max_threads=2, max_down_time=max_down_time)
        return [ConnectionActor(spec, connector=self.connector(name))]


@pytest.mark.fault(
    "orchestrator",
    "a connection that never comes up (broken command, unreachable server)",
    "its jobs fail after max_down_time with 'connection ... has been down' and the last "
    "error; the run ends instead of waiting forever",
)
async def test_jobs_fail_when_their_connection_stays_down(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    fleet = FlakyFleet(nursery, failures=10**6)
    start = trio.current_time()
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors_with("dead", 60))
    assert summary["totals"]["failed"] == 6
    assert trio.current_time() - start < 60 + 5  # all at once, not one after another
    error = result(tmp_path, "j0")["error"]
    assert "connection 'dead' has been down for more than 60 s" in error
    assert "exited with status 1" in error
    assert any(r["kind"] == "error" for r in records(tmp_path, "j5"))


async def test_a_connection_back_in_time_runs_the_jobs(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Four failed attempts (backoff about 7 s in all) are well within max_down_time."""
    fleet = FlakyFleet(nursery, failures=4)
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors_with("slow", 60))
    assert summary["totals"]["completed"] == 6


@pytest.mark.fault(
    "orchestrator (real CLI)",
    'a stdio connection whose command exits at once (command = ["false"])',
    "`orchestrator run` exits 1 after max_down_time, the job failed with the exit status",
)
def test_cli_run_with_a_broken_command_ends(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[orchestrator]\n"
        f'results_dir = "{tmp_path / "results"}"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        "[[connections]]\n"
        'name = "broken"\n'
        'command = ["false"]\n'
        "max_down_time = 2\n"
    )
    tasks = tmp_path / "t.toml"
    tasks.write_text('[[jobs]]\nid = "one"\nprompt = "hi"\n')
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "-c", str(config), str(tasks)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    assert "has been down for more than 2 s" in (tmp_path / "results/one/result.json").read_text()


@pytest.mark.fault(
    "orchestrator",
    "a connection down for a very long time (thousands of failed reconnections)",
    "the actor keeps retrying at the capped backoff; it never crashes (the backoff exponent "
    "used to overflow after ~1,000 failures)",
)
async def test_the_backoff_survives_thousands_of_failures(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fleet = FlakyFleet(nursery, failures=10**6)
    spec = ConnectionSpec(name="dead", max_threads=1)
    actor = ConnectionActor(spec, connector=fleet.connector("dead"), backoff_max=0.01)
    async with trio.open_nursery() as inner:
        await inner.start(actor.run)
        while fleet.attempts < 1_500:
            await trio.sleep(1)
        inner.cancel_scope.cancel()
    assert actor.restarts >= 1_499  # the last attempt may still be failing
    assert actor.state == "down"
