"""The scheduler, job runner and connection actors over fake app-servers, on a virtual clock."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from orchestrator.app.batch import Progress
from orchestrator.client import ApprovalHandler, CodexClient
from orchestrator.config import ConnectionSpec
from orchestrator.jobs.load import load_task_files
from orchestrator.jobs.model import JobSpec
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.store.layout import ResultsLayout
from orchestrator.transport.memory import MemoryTransport, memory_transport_pair
from tests.fake_app_server import FakeAppServer, FakeTurn


async def directed_turn(turn: FakeTurn) -> None:
    """A fake model that obeys the prompt: `slow N: x`, `fail: x`, `run: CMD`, else echo."""
    await turn.accept()
    text = turn.text
    if text.startswith("slow "):
        seconds, _, rest = text[5:].partition(":")
        await trio.sleep(float(seconds))
        await turn.item("agentMessage", f"SLOW:{rest}")
    elif text.startswith("fail:"):
        await turn.complete("failed", error={"message": text[5:].strip()})
        return
    elif text.startswith("run: "):
        command = text[5:]
        answer = await turn.request(
            "item/commandExecution/requestApproval", itemId="c1", command=command
        )
        status = "completed" if answer.get("decision") == "accept" else "declined"
        await turn.item("commandExecution", "ran\n", command=command, status=status, id="c1")
        await turn.item("agentMessage", f"command {status}")
    else:
        await turn.item("agentMessage", f"ECHO: {text}")
    await turn.usage(10)
    await turn.complete()


class FakeFleet:
    """Fake app-servers behind connection actors; each (re)connection gets a new server."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.servers: dict[str, list[FakeAppServer]] = {}

    def new_server(self, name: str, transport: MemoryTransport) -> FakeAppServer:
        """The fake app-server of connection `name`'s next (re)connection."""
        server = FakeAppServer(transport)
        server.turn_script = directed_turn
        return server

    def connector(
        self, name: str
    ) -> Callable[[ApprovalHandler], AbstractAsyncContextManager[CodexClient]]:
        @asynccontextmanager
        async def connect(handler: ApprovalHandler) -> AsyncIterator[CodexClient]:
            client_end, server_end = memory_transport_pair()
            server = self.new_server(name, server_end)
            self.servers.setdefault(name, []).append(server)
            await self.nursery.start(server.serve)
            async with CodexClient.over(client_end, approval_handler=handler) as client:
                yield client

        return connect

    def actors(self, names: list[str], max_threads: int) -> list[ConnectionActor]:
        return [
            ConnectionActor(
                ConnectionSpec(name=name, max_threads=max_threads),
                connector=self.connector(name),
            )
            for name in names
        ]


@pytest.fixture
def fleet(nursery: trio.Nursery) -> FakeFleet:
    return FakeFleet(nursery)


def jobs_from(tmp_path: Path, text: str) -> tuple[JobSpec, ...]:
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return load_task_files([path])


async def run(
    tmp_path: Path,
    jobs: tuple[JobSpec, ...],
    actors: list[ConnectionActor],
    *,
    max_jobs: int = 8,
    force: bool = False,
    during: Callable[[Scheduler], Any] | None = None,
) -> dict[str, Any]:
    layout = ResultsLayout(tmp_path / "results")
    scheduler = Scheduler(
        jobs, ActorPool(actors), layout, max_concurrent_jobs=max_jobs, force=force
    )
    async with trio.open_nursery() as nursery:
        for actor in actors:
            await nursery.start(actor.run)
        if during is not None:
            nursery.start_soon(during, scheduler)
        summary = await scheduler.run()
        nursery.cancel_scope.cancel()
    return summary


def kill_first_server_mid_turn(
    fleet: FakeFleet, tmp_path: Path, job_id: str = "r"
) -> Callable[[Scheduler], Awaitable[None]]:
    """A `during` callback: once `job_id`'s turn has started, close connection `a`'s first
    server."""

    async def kill(scheduler: Scheduler) -> None:
        while not any(r["kind"] == "turn_started" for r in records(tmp_path, job_id)):
            await trio.sleep(0.5)
        await fleet.servers["a"][0].close()

    return kill


def result(tmp_path: Path, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "results" / job_id / "result.json").read_text())
    return data


def records(tmp_path: Path, job_id: str) -> list[dict[str, Any]]:
    path = tmp_path / "results" / job_id / "steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_jobs_complete_with_results_steps_and_summary(
    tmp_path: Path, fleet: FakeFleet
) -> None:
    """Every job runs its turns on one thread; result, steps and summary are written."""
    jobs = jobs_from(
        tmp_path,
        '[[jobs]]\nid = "one"\nprompt = "hello"\n'
        '[[jobs]]\nid = "two"\nturns = ["first", "second"]\n',
    )
    summary = await run(tmp_path, jobs, fleet.actors(["a"], 4))
    assert summary["totals"]["completed"] == 2
    two = result(tmp_path, "two")
    assert two["status"] == "completed"
    assert [t["final_text"] for t in two["turns"]] == ["ECHO: first", "ECHO: second"]
    assert two["final_text"] == "ECHO: second"
    assert two["usage"]["total_tokens"] == 20
    kinds = [r["kind"] for r in records(tmp_path, "two")]
    assert kinds == [
        "thread_started",
        "turn_started",
        "step",
        "turn_completed",
        "turn_started",
        "step",
        "turn_completed",
    ]
    step = next(r for r in records(tmp_path, "one") if r["kind"] == "step")
    assert {
        "ts",
        "job_id",
        "thread_id",
        "turn_id",
        "kind",
        "step_type",
        "item_type",
        "item_id",
        "text",
    } <= set(step)
    assert (tmp_path / "results" / "summary.json").exists()


async def test_max_threads_per_connection_is_honoured(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """Six slow jobs over two connections of two threads each never exceed two per server."""
    text = "".join(f'[[jobs]]\nid = "j{n}"\nprompt = "slow 10: {n}"\n' for n in range(6))
    start = trio.current_time()
    summary = await run(tmp_path, jobs_from(tmp_path, text), fleet.actors(["a", "b"], 2))
    assert summary["totals"]["completed"] == 6
    for servers in fleet.servers.values():
        assert max(s.max_active_turns for s in servers) == 2
    assert 20 <= trio.current_time() - start < 30  # two rounds of four


async def test_pinned_jobs_wait_for_their_connection(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """A job pinned to a connection runs there, even when another one is idle."""
    text = "".join(
        f'[[jobs]]\nid = "p{n}"\nprompt = "slow 5: x"\nconnection = "b"\n' for n in range(3)
    )
    await run(tmp_path, jobs_from(tmp_path, text), fleet.actors(["a", "b"], 1))
    assert {result(tmp_path, f"p{n}")["connection"] for n in range(3)} == {"b"}
    assert "a" not in fleet.servers or all(s.max_active_turns == 0 for s in fleet.servers["a"])


async def test_dependents_of_a_failed_job_are_not_run(tmp_path: Path, fleet: FakeFleet) -> None:
    """In a -> b -> c with b failing, c is recorded cancelled and never started."""
    jobs = jobs_from(
        tmp_path,
        '[[jobs]]\nid = "a"\nprompt = "ok"\n'
        '[[jobs]]\nid = "b"\nprompt = "fail: boom"\ndepends_on = ["a"]\n'
        '[[jobs]]\nid = "c"\nprompt = "never"\ndepends_on = ["b"]\n',
    )
    summary = await run(tmp_path, jobs, fleet.actors(["a"], 4))
    assert [result(tmp_path, j)["status"] for j in "abc"] == ["completed", "failed", "cancelled"]
    assert result(tmp_path, "b")["error"] == "boom"
    assert "dependency b (failed)" in result(tmp_path, "c")["error"]
    assert records(tmp_path, "c") == []
    assert summary["totals"] == {
        "jobs": 3,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "reused": 0,
        "total_tokens": 10,
    }


@pytest.mark.parametrize(
    ("policy", "status", "continuations"),
    [("continue", "completed", 3), ("cancel", "cancelled", 0), ("fail", "failed", 0)],
)
@pytest.mark.fault(
    "orchestrator",
    "a turn silent for longer than inactivity_timeout",
    "continue: resumed until it completes; cancel / fail: interrupted, the job cancelled / failed",
)
async def test_inactivity_policies(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    fleet: FakeFleet,
    policy: str,
    status: str,
    continuations: int,
) -> None:
    """A quiet turn is waited for (continue), interrupted (cancel) or failed (fail)."""
    jobs = jobs_from(
        tmp_path,
        f'[[jobs]]\nid = "q"\nprompt = "slow 35: done"\ninactivity_timeout = 10\n'
        f'on_inactivity = "{policy}"\nmax_continuations = 5\n',
    )
    await run(tmp_path, jobs, fleet.actors(["a"], 1))
    outcome = result(tmp_path, "q")
    assert outcome["status"] == status
    assert outcome["continuations"] == continuations
    kinds = [r["kind"] for r in records(tmp_path, "q")]
    assert kinds.count("continuation") == continuations
    if policy != "continue":
        assert "cancel" in kinds
        assert fleet.servers["a"][0].method_counts["turn/interrupt"] == 1


@pytest.mark.fault(
    "orchestrator",
    "a turn that stays silent through every continuation",
    "cancelled after max_continuations",
)
async def test_continuations_are_bounded_then_cancelled(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """After max_continuations, a still-quiet turn is cancelled."""
    jobs = jobs_from(
        tmp_path,
        '[[jobs]]\nid = "q"\nprompt = "slow 100: done"\ninactivity_timeout = 10\n'
        "max_continuations = 2\n",
    )
    await run(tmp_path, jobs, fleet.actors(["a"], 1))
    outcome = result(tmp_path, "q")
    assert outcome["status"] == "cancelled" and outcome["continuations"] == 2


async def test_approval_rules_are_applied_and_recorded(tmp_path: Path, fleet: FakeFleet) -> None:
    """An allowed command is accepted, others declined; every decision is a step record."""
    jobs = jobs_from(
        tmp_path,
        '[defaults]\napprovals = { commands = "decline", allow_commands = [["git", "status"]] }\n'
        '[[jobs]]\nid = "ok"\nprompt = "run: git status --short"\n'
        '[[jobs]]\nid = "no"\nprompt = "run: git status && rm -rf /"\n',
    )
    await run(tmp_path, jobs, fleet.actors(["a"], 4))
    decisions = {
        job: [r for r in records(tmp_path, job) if r["kind"] == "approval"] for job in ("ok", "no")
    }
    assert decisions["ok"][0]["decision"] == "accept"
    assert decisions["no"][0]["decision"] == "decline"
    assert result(tmp_path, "ok")["final_text"] == "command completed"
    assert result(tmp_path, "no")["final_text"] == "command declined"


@pytest.mark.fault(
    "orchestrator",
    "the app-server connection dies mid-turn and the new server does not know the turn",
    "the actor reconnects, the thread is resumed, the lost turn sent again; the job completes with "
    "2 attempts",
)
async def test_turn_lost_with_its_connection_is_run_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """The connection dies mid-turn: the actor reconnects, the thread is resumed and the
    lost turn started again; the job completes with two attempts."""
    jobs = jobs_from(tmp_path, '[[jobs]]\nid = "r"\nprompt = "slow 10: x"\nretries = 2\n')

    async def kill_first_server(scheduler: Scheduler) -> None:
        while not records(tmp_path, "r") or records(tmp_path, "r")[-1]["kind"] != "turn_started":
            await trio.sleep(0.5)
        await fleet.servers["a"][0].close()

    await run(tmp_path, jobs, fleet.actors(["a"], 1), during=kill_first_server)
    outcome = result(tmp_path, "r")
    assert outcome["status"] == "completed" and outcome["attempts"] == 2
    kinds = [r["kind"] for r in records(tmp_path, "r")]
    assert kinds.count("turn_started") == 2
    assert {"retry", "thread_resumed", "turn_lost"} <= set(kinds)
    assert fleet.servers["a"][1].method_counts["thread/resume"] == 1


@pytest.mark.fault(
    "orchestrator",
    "the connection dies mid-turn with retries = 0",
    "the job fails saying the connection was lost",
)
async def test_retries_are_bounded(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """With retries = 0, a lost connection fails the job and says why."""
    jobs = jobs_from(tmp_path, '[[jobs]]\nid = "r"\nprompt = "slow 10: x"\nretries = 0\n')
    await run(
        tmp_path, jobs, fleet.actors(["a"], 1), during=kill_first_server_mid_turn(fleet, tmp_path)
    )
    outcome = result(tmp_path, "r")
    assert outcome["status"] == "failed"
    assert "connection lost" in outcome["error"]


async def test_completed_jobs_are_not_rerun_unless_forced(tmp_path: Path, fleet: FakeFleet) -> None:
    """A second run reuses completed results; --force runs them again."""
    jobs = jobs_from(tmp_path, '[[jobs]]\nid = "once"\nprompt = "hi"\n')
    await run(tmp_path, jobs, fleet.actors(["a"], 1))
    first = result(tmp_path, "once")
    again = await run(tmp_path, jobs, fleet.actors(["a"], 1))
    assert again["jobs"][0]["reused"] and result(tmp_path, "once") == first
    assert sum(s.method_counts["turn/start"] for s in fleet.servers["a"]) == 1
    forced = await run(tmp_path, jobs, fleet.actors(["a"], 1), force=True)
    assert not forced["jobs"][0]["reused"]
    assert sum(s.method_counts["turn/start"] for s in fleet.servers["a"]) == 2
    assert (tmp_path / "results" / "once" / "steps.jsonl.previous").exists()


async def test_stop_interrupts_running_turns_and_records_them(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    """stop() interrupts running turns (turn/interrupt), records them cancelled, and
    records jobs that never started as not run."""
    jobs = jobs_from(
        tmp_path,
        '[[jobs]]\nid = "running"\nprompt = "slow 100: x"\n'
        '[[jobs]]\nid = "later"\nprompt = "hi"\ndepends_on = ["running"]\n',
    )

    async def stop_soon(scheduler: Scheduler) -> None:
        while not any(r["kind"] == "turn_started" for r in records(tmp_path, "running")):
            await trio.sleep(0.5)
        scheduler.stop()

    summary = await run(tmp_path, jobs, fleet.actors(["a"], 1), during=stop_soon)
    assert result(tmp_path, "running")["status"] == "cancelled"
    assert result(tmp_path, "later")["status"] == "cancelled"
    assert fleet.servers["a"][0].method_counts["turn/interrupt"] == 1
    assert summary["totals"]["cancelled"] == 2


def test_progress_line_counts_jobs_by_state(tmp_path: Path) -> None:
    """The live line shows running, waiting, done, failed, cancelled and continuations."""
    jobs = jobs_from(tmp_path, "".join(f'[[jobs]]\nid = "j{n}"\nprompt = "x"\n' for n in range(5)))
    scheduler = Scheduler(jobs, ActorPool([]), ResultsLayout(tmp_path), max_concurrent_jobs=1)
    for job_id, status in [("j0", "running"), ("j1", "completed"), ("j2", "failed")]:
        scheduler.states[job_id].status = status
    line = Progress(scheduler, io.StringIO()).line()
    assert line.startswith("running 1 · waiting 2 · done 1 · failed 1 · cancelled 0 · ")
    assert "continuations 0" in line


@pytest.mark.fault(
    "secrets",
    "API keys and tokens in the orchestrator's environment",
    "a stdio app-server inherits only the allowlist, env_passthrough and env: never the secrets",
)
def test_stdio_app_servers_get_only_the_allowed_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child inherits the default allowlist and `env_passthrough`, never other secrets."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("CODEX_APP_SERVER_TOKEN", "do-not-leak-either")
    monkeypatch.setenv("MY_TOOL_HOME", "/opt/tool")
    monkeypatch.setenv("PATH", "/usr/bin")
    spec = ConnectionSpec(name="c", env={"EXTRA": "1"}, env_passthrough=("MY_TOOL_HOME",))
    env = ConnectionActor(spec, extra_env={"CODEX_HOME": "/scripted"}).child_env()
    assert env["PATH"] == "/usr/bin" and env["MY_TOOL_HOME"] == "/opt/tool"
    assert env["EXTRA"] == "1" and env["CODEX_HOME"] == "/scripted"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "CODEX_APP_SERVER_TOKEN" not in env


async def test_a_serving_scheduler_stays_flat_over_thousands_of_jobs(
    tmp_path: Path, fleet: FakeFleet
) -> None:
    """In daemon mode, 2,000 jobs leave no state in memory, one small file per journal,
    and no open file behind."""
    from orchestrator.store.journal import Journals

    jobs = jobs_from(
        tmp_path, "".join(f'[[jobs]]\nid = "j{n}"\nprompt = "hi {n}"\n' for n in range(2000))
    )
    journals = Journals(tmp_path / "state")
    actors = fleet.actors(["a"], 8)
    scheduler = Scheduler(
        [],
        ActorPool(actors),
        ResultsLayout(tmp_path / "results"),
        max_concurrent_jobs=16,
        journals=journals,
    )
    fds_before = len(os.listdir("/proc/self/fd"))
    async with trio.open_nursery() as nursery:
        for actor in actors:
            await nursery.start(actor.run)
        await nursery.start(scheduler.serve)
        for job in jobs:
            scheduler.submit(job)
        with trio.fail_after(120):
            # Finished jobs leave `states`; one still there would keep this waiting.
            await scheduler.wait_until(lambda: not scheduler.states)
        nursery.cancel_scope.cancel()
    journal_files = [Path(name) for name in os.listdir(tmp_path / "state" / "journal")]
    assert len(journal_files) == 2000
    assert all(p.name.endswith(".done.json") for p in journal_files)
    assert all(journals.progress(f"j{n}").status == "completed" for n in (0, 999, 1999))
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
