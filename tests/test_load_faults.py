"""500 jobs over 10 connections with connections lost mid-turn: nothing lost, nothing twice.

The real Scheduler, ConnectionActors and JobRunners drive in-memory fake app-servers on a
virtual clock. Half the connections behave like a websocket app-server: a dropped socket
leaves the server, its threads and its running turns alive, so the runner must resume the
thread and reconcile the turn (`thread/read`) instead of sending the prompt again. The other
half behave like a stdio app-server: the connection is the process, so a lost connection is a
restart that loses every running turn (the threads survive on disk, as codex's rollout files
do), and the runner must notice the turn is gone and send the prompt again. A fixed seed picks
1 % of the turns to lose their connection once their `turn/start` is acknowledged; every
other job on that connection loses it too.
"""

from __future__ import annotations

import gc
import itertools
import json
import pathlib
import random
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import orchestrator.runtime.scheduler
import orchestrator.store.files
from orchestrator.client import ApprovalHandler, CodexClient
from orchestrator.config import ConnectionSpec
from orchestrator.errors import CodexTransportError
from orchestrator.jobs.load import load_task_files
from orchestrator.jobs.model import JobSpec
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.store.journal import Journals
from orchestrator.store.layout import ResultsLayout
from orchestrator.transport.memory import MemoryTransport, memory_transport_pair
from tests.fake_app_server import answer_until_closed
from tests.reliability import Figures

SEED = 20240611
JOBS = 500
WARMUP_JOBS = 100
BATCH = 100
# Longer than any timer a finished job may leave behind (request timeouts, inactivity).
TIMERS_EXPIRE = 200.0
FAULT_RATE = 0.01
SOCKET_CONNECTIONS = [f"ws-{n}" for n in range(5)]  # the server survives a dropped socket
PROCESS_CONNECTIONS = [f"stdio-{n}" for n in range(5)]  # a lost connection is a restart
MAX_THREADS = 4
# Long enough for every message already sent to be read on both sides (the virtual clock
# only moves once every task waits), so the fault comes after the acknowledgement.
SETTLE = 0.01
# Bytes held after job 500 beyond those held after job 100 (allocator free lists and caches
# may keep a little; a leak of even 200 bytes a job would exceed it).
MEMORY_GROWTH_LIMIT = 64 * 1024


# --- the fake app-servers -------------------------------------------------------------


@attrs.frozen
class TurnPlan:
    """How one job's turn plays on the server, drawn from the seed."""

    think: float  # seconds before the reasoning item
    answer: float  # seconds from the reasoning item to the answer
    # On the job's first turn: "drop" (the socket), "restart" (the process), or "unanswered"
    # (the socket drops once the server has started the turn but before it answers).
    fault: str | None = None


@attrs.define
class Ledger:
    """What every server did, across connections and restarts: the test's ground truth."""

    plans: dict[str, TurnPlan]
    turns_by_job: dict[str, list[dict[str, Any]]] = attrs.Factory(dict)
    faults: Counter[str] = attrs.Factory(Counter)
    faulted_jobs: set[str] = attrs.Factory(set)
    ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        """A globally unique id, as codex's UUIDs are."""
        return f"{kind}-{next(self.ids)}"


class FakeProcess:
    """One app-server process: serves sockets, runs turns, keeps threads on its `disk`.

    With `one_socket` it is a stdio server: when its only connection ends, it exits.
    """

    def __init__(
        self, disk: dict[str, list[dict[str, Any]]], ledger: Ledger, *, one_socket: bool
    ) -> None:
        self.disk = disk  # thread id -> its turns; outlives the process (rollout files)
        self.ledger = ledger
        self.one_socket = one_socket
        self.running: dict[str, str] = {}  # turn id -> thread id, in this process
        self.subscribers: dict[str, FakeSocket] = {}  # thread id -> socket its events go to
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Live until `exit()`."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def exit(self) -> None:
        """The process ends at once: its sockets close, its running turns die unfinished."""
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def accept(self, transport: MemoryTransport) -> FakeSocket:
        """Serve one new connection."""
        assert self._nursery is not None
        socket = FakeSocket(self, transport)
        await self._nursery.start(socket.serve)
        return socket

    async def emit(self, thread_id: str, method: str, params: dict[str, Any]) -> None:
        """A notification to whoever listens to the thread now (nobody: it is lost)."""
        socket = self.subscribers.get(thread_id)
        if socket is not None:
            await socket.send({"method": method, "params": params})

    def start_turn(self, thread_id: str, text: str) -> dict[str, Any]:
        """Record a new turn and run it in the background."""
        assert self._nursery is not None
        job_id = text.removeprefix("job ")
        user = {"type": "userMessage", "id": self.ledger.new_id("user"), "content": []}
        turn: dict[str, Any] = {"id": self.ledger.new_id("turn"), "status": "inProgress"}
        turn.update(items=[user], error=None)
        self.disk[thread_id].append(turn)
        self.ledger.turns_by_job.setdefault(job_id, []).append(turn)
        self.running[turn["id"]] = thread_id
        self._nursery.start_soon(self._play, thread_id, turn, job_id)
        return turn

    async def _play(self, thread_id: str, turn: dict[str, Any], job_id: str) -> None:
        plan = self.ledger.plans[job_id]
        ids = {"threadId": thread_id, "turnId": turn["id"]}
        try:
            await trio.sleep(plan.think)
            summary = [f"thinking about {job_id}"]
            await self._item(thread_id, turn, {"type": "reasoning", "summary": summary})
            if plan.fault in ("drop", "restart") and job_id not in self.ledger.faulted_jobs:
                self.ledger.faulted_jobs.add(job_id)
                await trio.sleep(SETTLE)
                await self._fault(plan.fault, thread_id)
            await trio.sleep(plan.answer)
            answer = {"type": "agentMessage", "text": f"done {job_id}", "phase": "final_answer"}
            await self._item(thread_id, turn, answer, delta=True)
            usage = {"totalTokens": 10, "inputTokens": 8, "cachedInputTokens": 0}
            usage |= {"outputTokens": 2, "reasoningOutputTokens": 0}
            await self.emit(
                thread_id,
                "thread/tokenUsage/updated",
                {**ids, "tokenUsage": {"total": usage, "last": usage}},
            )
            turn["status"] = "completed"
            del self.running[turn["id"]]
            await self.emit(
                thread_id,
                "thread/status/changed",
                {"threadId": thread_id, "status": {"type": "idle"}},
            )
            summary_items = [item for item in turn["items"] if item["type"] == "agentMessage"]
            done = {"id": turn["id"], "status": "completed", "error": None, "items": summary_items}
            await self.emit(thread_id, "turn/completed", {"threadId": thread_id, "turn": done})
        finally:
            self.running.pop(turn["id"], None)

    async def _item(
        self, thread_id: str, turn: dict[str, Any], item: dict[str, Any], *, delta: bool = False
    ) -> None:
        item = {"id": self.ledger.new_id("item"), **item}
        ids = {"threadId": thread_id, "turnId": turn["id"]}
        await self.emit(thread_id, "item/started", {**ids, "item": {**item, "text": ""}})
        if delta:
            await self.emit(
                thread_id, "item/agentMessage/delta", {**ids, "itemId": item["id"], "delta": "x"}
            )
        turn["items"].append(item)
        await self.emit(thread_id, "item/completed", {**ids, "item": item})

    async def _fault(self, kind: str, thread_id: str) -> None:
        self.ledger.faults[kind] += 1
        if kind == "restart":
            self.exit()
            await trio.lowlevel.checkpoint()  # this turn dies with its process here
        else:
            # The connection may be down already (another fault): drop the next one.
            while thread_id not in self.subscribers:
                await trio.sleep(SETTLE)
            await self.subscribers[thread_id].close()

    def loses_answer(self, job_id: str) -> bool:
        """Whether this job's `turn/start` answer is to be lost with its socket (once)."""
        if self.ledger.plans[job_id].fault != "unanswered" or job_id in self.ledger.faulted_jobs:
            return False
        self.ledger.faulted_jobs.add(job_id)
        self.ledger.faults["unanswered"] += 1
        return True

    def thread_view(self, thread_id: str, *, include_turns: bool) -> dict[str, Any]:
        """The thread as `thread/read` shows it: active while this process runs a turn."""
        active = thread_id in self.running.values()
        return {
            "id": thread_id,
            "status": {"type": "active" if active else "idle"},
            "turns": self.disk[thread_id] if include_turns else [],
        }


class FakeSocket:
    """One client connection to a `FakeProcess`."""

    def __init__(self, process: FakeProcess, transport: MemoryTransport) -> None:
        self.process = process
        self.transport = transport

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; a closed connection drops it, as a dead socket would."""
        try:
            await self.transport.send(json.dumps(message))
        except CodexTransportError:
            pass

    async def close(self) -> None:
        """Drop the connection (the client sees it end)."""
        with trio.CancelScope(shield=True):
            await self.transport.aclose()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer requests until the connection ends."""
        task_status.started()
        try:
            await answer_until_closed(
                self.transport, self._handle, ends=(trio.EndOfChannel, CodexTransportError)
            )
        finally:
            await self.close()
            for thread_id in [t for t, s in self.process.subscribers.items() if s is self]:
                del self.process.subscribers[thread_id]
            if self.process.one_socket:
                self.process.exit()

    async def _handle(self, message: dict[str, Any]) -> None:
        if "id" not in message or "method" not in message:
            return  # `initialized`, or an answer to a request we never send
        method, params, msg_id = message["method"], message.get("params") or {}, message["id"]
        process = self.process
        result: dict[str, Any]
        if method == "initialize":
            result = {"userAgent": "fake/0.0", "codexHome": "/x", "platformOs": "linux"}
        elif method == "thread/start":
            thread_id = process.ledger.new_id("thread")
            process.disk[thread_id] = []
            process.subscribers[thread_id] = self
            result = {"thread": process.thread_view(thread_id, include_turns=False)}
        elif method == "thread/resume" and params.get("threadId") in process.disk:
            process.subscribers[params["threadId"]] = self
            result = {"thread": process.thread_view(params["threadId"], include_turns=False)}
        elif method == "thread/read" and params.get("threadId") in process.disk:
            view = process.thread_view(
                params["threadId"], include_turns=bool(params.get("includeTurns"))
            )
            result = {"thread": view}
        elif method == "turn/start" and params.get("threadId") in process.disk:
            text = " ".join(part.get("text", "") for part in params.get("input", []))
            turn = process.start_turn(params["threadId"], text)
            if process.loses_answer(text.removeprefix("job ")):
                await self.close()  # the turn runs on; its acknowledgement never arrives
                return
            result = {
                "turn": {"id": turn["id"], "status": "inProgress", "items": [], "error": None}
            }
        else:
            error = {"code": -32600, "message": f"{method}: not supported here"}
            await self.send({"id": msg_id, "error": error})
            return
        await self.send({"id": msg_id, "result": result})


class Fleet:
    """The fake app-servers behind ten connections."""

    def __init__(self, nursery: trio.Nursery, ledger: Ledger) -> None:
        self.nursery = nursery
        self.ledger = ledger
        self.disks: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.socket_servers: dict[str, FakeProcess] = {}

    def connector(
        self, name: str
    ) -> Callable[[ApprovalHandler], AbstractAsyncContextManager[CodexClient]]:
        @asynccontextmanager
        async def connect(handler: ApprovalHandler) -> AsyncIterator[CodexClient]:
            disk = self.disks.setdefault(name, {})
            if name in SOCKET_CONNECTIONS:
                process = self.socket_servers.get(name)
                if process is None:
                    process = FakeProcess(disk, self.ledger, one_socket=False)
                    await self.nursery.start(process.run)
                    self.socket_servers[name] = process
            else:
                # A stdio connection is a new process; the old one's turns are gone.
                process = FakeProcess(disk, self.ledger, one_socket=True)
                await self.nursery.start(process.run)
            client_end, server_end = memory_transport_pair()
            await process.accept(server_end)
            async with CodexClient.over(client_end, approval_handler=handler) as client:
                yield client

        return connect

    def forget_thread(self, thread_id: str) -> None:
        """Drop a finished job's thread from every server (its checks are done)."""
        for disk in self.disks.values():
            disk.pop(thread_id, None)
        for process in self.socket_servers.values():
            process.subscribers.pop(thread_id, None)

    def actors(self) -> list[ConnectionActor]:
        return [
            ConnectionActor(
                ConnectionSpec(name=name, max_threads=MAX_THREADS), connector=self.connector(name)
            )
            for name in [*SOCKET_CONNECTIONS, *PROCESS_CONNECTIONS]
        ]


# --- the plan and the checks ----------------------------------------------------------


def make_plans(rng: random.Random, job_ids: list[str]) -> dict[str, TurnPlan]:
    """Timings for every job; 1 % of them lose their connection, half of each kind."""
    faulty = rng.sample(job_ids, k=round(FAULT_RATE * len(job_ids)))
    plans = {}
    for job_id in job_ids:
        plans[job_id] = TurnPlan(think=rng.uniform(0.01, 0.3), answer=rng.uniform(0.01, 1.0))
    for number, job_id in enumerate(faulty):
        kind = "drop" if number % 2 == 0 else "restart"
        # A socket drop whose turn goes on well past the reconnection (the runner finds it
        # still running), or ends at once (it finds it completed).
        answer = (5.0 if number % 4 == 0 else 0.001) if kind == "drop" else plans[job_id].answer
        plans[job_id] = attrs.evolve(plans[job_id], answer=answer, fault=kind)
    return plans


def task_file(tmp_path: Path, job_ids: list[str], plans: dict[str, TurnPlan]) -> Path:
    """One task file of every job; a faulty job is pinned to a connection of its kind."""
    rng = random.Random(SEED + 1)
    lines = ["[defaults]", "retries = 6", "inactivity_timeout = 60", ""]
    for job_id in job_ids:
        lines += ["[[jobs]]", f'id = "{job_id}"', f'prompt = "job {job_id}"']
        fault = plans[job_id].fault
        if fault is not None:
            names = SOCKET_CONNECTIONS if fault == "drop" else PROCESS_CONNECTIONS
            lines.append(f'connection = "{rng.choice(names)}"')
        lines.append("")
    path = tmp_path / "load.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def read_steps(results: Path, job_id: str) -> list[dict[str, Any]]:
    text = (results / job_id / "steps.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def held_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated, but for the test's own records (allocated in tests/) and
    CPython's table of interned strings: pathlib interns every path component (job ids
    included), and that table grows in steps of megabytes and never shrinks, so whether it
    grows between two snapshots depends on what ran before in the process."""
    held = snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*/tests/*"),
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, pathlib.__file__),
        ]
    )
    return sum(stat.size for stat in held.statistics("filename"))


def census() -> Counter[str]:
    """Live objects of the orchestrator's classes, by class."""
    gc.collect()
    return Counter(
        f"{type(obj).__module__}.{type(obj).__qualname__}"
        for obj in gc.get_objects()
        if (type(obj).__module__ or "").startswith("orchestrator")
    )


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    """Where results and journals go: in memory (/dev/shm) when there is one, so that the
    figures measure the orchestrator rather than the disk's fsync."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="load-faults-") as directory:
        yield Path(directory)


async def run_until_idle(scheduler: Scheduler, jobs: list[JobSpec]) -> None:
    for job in jobs:
        scheduler.submit(job)
    # In serving mode a finished job leaves `states`: empty means every job has ended.
    await scheduler.wait_until(lambda: not scheduler.states)


@attrs.define
class Tally:
    """What the checks of every job add up to."""

    retries: int = 0
    lost: int = 0
    reconciled: Counter[str] = attrs.Factory(Counter)


def check_job(job_id: str, results: Path, journals: Journals, ledger: Ledger, tally: Tally) -> str:
    """Check one finished job against what the servers did; returns its thread id."""
    result = json.loads((results / job_id / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "completed", result
    assert result["final_text"] == f"done {job_id}"
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for record in read_steps(results, job_id):
        by_kind.setdefault(record["kind"], []).append(record)
    # The server ran the prompt once, plus once more per turn it had lost.
    server_turns = ledger.turns_by_job.pop(job_id)
    turn_lost = by_kind.get("turn_lost", [])
    assert len(server_turns) == 1 + len(turn_lost), (job_id, by_kind)
    assert len(by_kind["turn_started"]) == len(server_turns)
    statuses = [turn["status"] for turn in server_turns]
    assert statuses == ["inProgress"] * len(turn_lost) + ["completed"]
    # The job's turn completed exactly once, and every step of it is recorded, once.
    (completed,) = by_kind["turn_completed"]
    final_turn = server_turns[-1]
    assert completed["turn_id"] == final_turn["id"] and completed["status"] == "completed"
    steps = by_kind["step"]
    item_ids = [step["item_id"] for step in steps]
    assert len(item_ids) == len(set(item_ids)), (job_id, item_ids)
    assert [step["item_id"] for step in steps if step["turn_id"] == final_turn["id"]] == [
        item["id"] for item in final_turn["items"] if item["type"] != "userMessage"
    ]
    retries = by_kind.get("retry", [])
    assert result["attempts"] == 1 + len(retries)
    fault = ledger.plans[job_id].fault
    if fault == "drop":  # the server still had the turn: read back, never sent again
        assert by_kind["turn_reconciled"] and not turn_lost, (job_id, by_kind)
    elif fault == "restart":  # the new server did not have it: sent again
        assert turn_lost and "turn_reconciled" not in by_kind, (job_id, by_kind)
    progress = journals.progress(job_id)
    assert progress.status == "completed" and progress.finished
    assert not journals.path(job_id).exists()  # compacted
    tally.retries += len(retries)
    tally.lost += len(turn_lost)
    tally.reconciled.update(record["status"] for record in by_kind.get("turn_reconciled", []))
    thread_id: str = result["thread_id"]
    return thread_id


@pytest.mark.fault(
    "orchestrator",
    "500 jobs on 10 connections; 1 % of turns lose their connection mid-turn "
    "(socket drop with the server alive, or a server restart losing the turn)",
    "every job completes exactly once: no result lost or written twice, no step twice, a "
    "turn the server still has is reconciled not re-sent; memory flat",
)
async def test_500_jobs_with_connections_lost_mid_turn(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    store_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
) -> None:
    """Every job completes once, with every step of its final turn recorded once, whether its
    connection dropped (turn reconciled) or its server restarted (turn sent again)."""
    rng = random.Random(SEED)
    job_ids = [f"job-{n:03d}" for n in range(JOBS)]
    plans = make_plans(rng, job_ids)
    jobs = list(load_task_files([task_file(tmp_path, job_ids, plans)]))
    ledger = Ledger(plans)
    tally = Tally()
    writes: Counter[str] = Counter()  # result files written, by job
    real_write = orchestrator.store.files.write_json_atomic

    def counting_write(path: str | Path, data: Any, **options: Any) -> None:
        assert Path(path).name == "result.json"
        writes[data["job_id"]] += 1
        real_write(path, data, **options)

    monkeypatch.setattr(orchestrator.runtime.scheduler, "write_json_atomic", counting_write)
    results = store_dir / "results"
    journals = Journals(store_dir / "state")
    running = virtual = 0.0  # wall and virtual time spent running jobs (not checking them)
    tracemalloc.start()
    try:
        async with trio.open_nursery() as nursery:
            fleet = Fleet(nursery, ledger)
            actors = fleet.actors()
            scheduler = Scheduler(
                [],
                ActorPool(actors),
                ResultsLayout(results),
                max_concurrent_jobs=len(actors) * MAX_THREADS,
                journals=journals,
            )
            for actor in actors:
                await nursery.start(actor.run)
            await nursery.start(scheduler.serve)
            with trio.fail_after(3600):
                # Equal batches, each checked then forgotten by the fakes: the state after the
                # first batch and after the last should be the same, byte for byte nearly.
                for first in range(0, JOBS, BATCH):
                    batch = job_ids[first : first + BATCH]
                    started, virtual_started = time.perf_counter(), trio.current_time()
                    await run_until_idle(scheduler, jobs[first : first + BATCH])
                    running += time.perf_counter() - started
                    virtual += trio.current_time() - virtual_started
                    for job_id in batch:
                        fleet.forget_thread(check_job(job_id, results, journals, ledger, tally))
                    assert writes == dict.fromkeys(batch, 1)
                    writes.clear()
                    # trio drops the timers of finished requests lazily, when they expire.
                    await trio.sleep(TIMERS_EXPIRE)
                    if first + BATCH == WARMUP_JOBS:
                        objects_after_warmup = census()
                        bytes_after_warmup = held_bytes(tracemalloc.take_snapshot())
                objects_after_all = census()
                bytes_after_all = held_bytes(tracemalloc.take_snapshot())
                peak = tracemalloc.get_traced_memory()[1]
                # Nothing of a finished job is left in the scheduler, actors or clients.
                assert scheduler.states == {} and scheduler.active_jobs == 0
                for actor in actors:
                    assert actor.registered_threads == 0
                    assert actor.free_slots == MAX_THREADS
                    client, _ = await actor.wait_client()
                    stats = client.statistics()
                    assert stats.turns == stats.watched_threads == 0, stats
                    assert stats.pending_requests == stats.parking_lots == 0, stats
                    assert stats.finished_unread == 0, stats
            nursery.cancel_scope.cancel()
    finally:
        tracemalloc.stop()

    # The faults happened as planned, half of each kind, and both recovery paths ran: turns
    # the server still had were reconciled (running, and already completed), turns it had
    # lost were sent again.
    assert ledger.faults == {"drop": 3, "restart": 2}
    assert ledger.faulted_jobs == {job for job, plan in plans.items() if plan.fault}
    assert tally.reconciled["inProgress"] >= 1 and tally.reconciled["completed"] >= 1
    assert tally.lost >= 2
    assert sorted(p.name for p in results.iterdir()) == job_ids
    assert sorted(p.name for p in (store_dir / "state" / "journal").iterdir()) == [
        f"{job_id}.done.json" for job_id in job_ids
    ]
    # Memory: not one more orchestrator object after 500 jobs than after 100, and next to no
    # more bytes.
    assert objects_after_all == objects_after_warmup
    growth = bytes_after_all - bytes_after_warmup
    figures.record("jobs", JOBS)
    figures.record("connections", len(SOCKET_CONNECTIONS) + len(PROCESS_CONNECTIONS))
    figures.record("wall time", round(running, 2), "s")
    figures.record("throughput", round(JOBS / running, 1), "jobs/s")
    figures.record("virtual time", round(virtual, 1), "s")
    figures.record("faults injected: socket drops", ledger.faults["drop"])
    figures.record("faults injected: server restarts", ledger.faults["restart"])
    figures.record("retries after a lost connection", tally.retries)
    figures.record("turns reconciled (the server still had them)", sum(tally.reconciled.values()))
    figures.record("turns lost and sent again", tally.lost)
    figures.record("peak traced memory", round(peak / 2**20, 2), "MiB")
    figures.record("memory growth from job 100 to job 500", growth, "bytes")
    assert growth < MEMORY_GROWTH_LIMIT, growth
    assert running < 60


@pytest.mark.fault(
    "orchestrator",
    "a websocket drops after the server started a turn but before its turn/start answer",
    "the turn the server runs is adopted (thread/read), not started a second time",
)
async def test_turn_start_unanswered_on_a_dropped_socket_is_not_sent_twice(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A socket lost between the server starting a turn and answering turn/start: the job
    completes with the prompt run once on the server."""
    plans = {
        "lost-answer": TurnPlan(think=0.1, answer=2.0, fault="unanswered"),
        "bystander": TurnPlan(think=0.1, answer=0.1),
    }
    task = tmp_path / "tasks.toml"
    task.write_text(
        '[defaults]\nretries = 2\nconnection = "ws-0"\n'
        + "".join(f'[[jobs]]\nid = "{job}"\nprompt = "job {job}"\n' for job in plans)
    )
    jobs = load_task_files([task])
    ledger = Ledger(plans)
    async with trio.open_nursery() as nursery:
        fleet = Fleet(nursery, ledger)
        actors = fleet.actors()
        for actor in actors:
            await nursery.start(actor.run)
        scheduler = Scheduler(
            jobs, ActorPool(actors), ResultsLayout(tmp_path / "results"), max_concurrent_jobs=4
        )
        with trio.fail_after(600):
            summary = await scheduler.run()
        nursery.cancel_scope.cancel()
    assert ledger.faults == {"unanswered": 1}
    assert summary["totals"]["completed"] == 2
    assert [t["status"] for t in ledger.turns_by_job["bystander"]] == ["completed"]
    assert [t["status"] for t in ledger.turns_by_job["lost-answer"]] == ["completed"]
