"""The scheduler: runs validated jobs over a pool of connection actors, and records them.

Order: a job starts when its dependencies have completed (a dependent of a job that did not
complete is not run, and its result says why), a global `max_concurrent_jobs` slot is free,
and a thread slot is free on its pinned connection (or, unpinned, on the connection with the
most free slots). Waiting is FIFO, so jobs start in file order as far as the rules allow.
Results are written atomically when each job ends; `summary.json` when the run ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import structlog
import trio

from orchestrator.actor import ConnectionActor
from orchestrator.jobs.model import JobSpec
from orchestrator.runner import JobFailed, JobRunner, utc_now
from orchestrator.store.files import JsonlLog, read_json, write_json_atomic
from orchestrator.store.layout import ResultsLayout

log = structlog.get_logger("orchestrator.scheduler")

FINAL = ("completed", "failed", "cancelled")


@attrs.define
class JobState:
    """A job's progress in this run (what the progress display and summary show)."""

    spec: JobSpec
    status: str = "pending"  # pending | waiting | running | completed | failed | cancelled
    connection: str | None = None
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    reused: bool = False  # completed in an earlier run; not run again
    runner: JobRunner | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    @property
    def continuations(self) -> int:
        """Continuations so far (live while running)."""
        return self.runner.continuations if self.runner is not None else 0


class ActorPool:
    """The connection actors, and fair leasing of their thread slots."""

    def __init__(self, actors: Sequence[ConnectionActor]) -> None:
        self.actors = {actor.name: actor for actor in actors}
        self._released = trio.Event()

    @asynccontextmanager
    async def lease(self, name: str | None) -> AsyncIterator[ConnectionActor]:
        """A thread slot on the named connection, or on the least busy live one."""
        actor = await self._acquire(name)
        try:
            yield actor
        finally:
            actor.slots.release()
            self._released.set()
            self._released = trio.Event()

    async def _acquire(self, name: str | None) -> ConnectionActor:
        while True:
            if name is not None:
                candidates = [self.actors[name]]
            else:
                live = [a for a in self.actors.values() if a.state == "up"]
                candidates = sorted(live or self.actors.values(), key=lambda a: -a.slots.value)
            for actor in candidates:
                if actor.slots.value > 0:
                    actor.slots.acquire_nowait()
                    return actor
            await self._released.wait()


class Scheduler:
    """Runs a set of jobs to their ends and leaves their records on disk."""

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        pool: ActorPool,
        layout: ResultsLayout,
        *,
        max_concurrent_jobs: int,
        force: bool = False,
        on_change: Callable[[JobState], None] | None = None,
    ) -> None:
        self.states = {job.id: JobState(job) for job in jobs}
        self.pool = pool
        self.layout = layout
        self.force = force
        self._global = trio.Semaphore(max_concurrent_jobs)
        self._on_change = on_change or (lambda state: None)
        self._scopes: dict[str, trio.CancelScope] = {}
        self.stopping = False
        self.started_at = utc_now()

    def stop(self) -> None:
        """Stop the run: running jobs interrupt their turns and end `cancelled`; jobs not
        started are recorded as not run."""
        self.stopping = True
        for scope in self._scopes.values():
            scope.cancel()

    async def run(self) -> dict[str, Any]:
        """Run every job; returns the summary (also written to summary.json)."""
        async with trio.open_nursery() as nursery:
            for state in self.states.values():
                nursery.start_soon(self._run_job, state)
        return self.write_summary()

    def _changed(self, state: JobState, status: str) -> None:
        state.status = status
        self._on_change(state)

    async def _run_job(self, state: JobState) -> None:
        spec = state.spec
        try:
            with trio.CancelScope() as scope:
                self._scopes[spec.id] = scope
                if self.stopping:
                    scope.cancel()
                for dep in spec.depends_on:
                    await self.states[dep].done.wait()
                blocked = [d for d in spec.depends_on if self.states[d].status != "completed"]
                if blocked:
                    reasons = ", ".join(f"{d} ({self.states[d].status})" for d in blocked)
                    self._finish(state, "cancelled", error=f"not run: dependency {reasons}")
                    return
                if not self.force and self._reuse(state):
                    return
                self._changed(state, "waiting")
                async with self._global, self.pool.lease(spec.connection) as actor:
                    await self._run_on(state, actor)
            if state.status not in FINAL:
                self._finish(state, "cancelled", error="not run: the run was stopped")
        finally:
            self._scopes.pop(spec.id, None)
            state.done.set()

    def _reuse(self, state: JobState) -> bool:
        previous = read_json(self.layout.result_path(state.spec.id))
        if isinstance(previous, dict) and previous.get("status") == "completed":
            state.reused = True
            state.result = previous
            self._changed(state, "completed")
            log.info("already completed; not rerun", job=state.spec.id)
            return True
        return False

    async def _run_on(self, state: JobState, actor: ConnectionActor) -> None:
        spec = state.spec
        state.connection = actor.name
        state.started = time.monotonic()
        started_at = utc_now()
        self._changed(state, "running")
        steps_path = self.layout.steps_path(spec.id)
        if steps_path.exists():
            # A fresh run of the job gets a fresh step log; the previous one is kept aside.
            steps_path.replace(steps_path.with_suffix(".jsonl.previous"))
        with JsonlLog(steps_path) as steps:
            runner = JobRunner(spec, actor, steps)
            state.runner = runner
            error: str | None = None
            try:
                status = await runner.run()
            except JobFailed as exc:
                status, error = "failed", str(exc)
            except trio.Cancelled:
                # Stopping (Ctrl-C, shutdown): record the job cancelled before unwinding.
                self._finish(
                    state, "cancelled", runner=runner, error="stopped", started_at=started_at
                )
                raise
        if error is None and status != "completed":
            error = next((t.error for t in reversed(runner.turns) if t.error), None)
        self._finish(state, status, runner=runner, error=error, started_at=started_at)

    def _finish(
        self,
        state: JobState,
        status: str,
        *,
        runner: JobRunner | None = None,
        error: str | None = None,
        started_at: str | None = None,
    ) -> None:
        state.finished = time.monotonic()
        turns = [t.as_record() for t in runner.turns] if runner else []
        final_text = next((t["final_text"] for t in reversed(turns) if t["final_text"]), None)
        duration = round(state.finished - state.started, 3) if state.started is not None else 0.0
        result = {
            "job_id": state.spec.id,
            "status": status,
            "final_text": final_text,
            "thread_id": runner.thread_id if runner else None,
            "connection": state.connection,
            "turns": turns,
            "attempts": runner.attempts if runner else 0,
            "continuations": runner.continuations if runner else 0,
            "usage": dict(runner.usage) if runner else None,
            "error": error,
            "started_at": started_at,
            "finished_at": utc_now(),
            "duration_s": duration,
            "steps_file": str(self.layout.steps_path(state.spec.id)),
        }
        write_json_atomic(self.layout.result_path(state.spec.id), result)
        state.result = result
        self._changed(state, status)

    def write_summary(self) -> dict[str, Any]:
        """Write `summary.json`: one entry per job of this run, and totals."""
        jobs = []
        totals: dict[str, int] = {
            "jobs": 0,
            "completed": 0,
            "failed": 0,
            "cancelled": 0,
            "reused": 0,
            "total_tokens": 0,
        }
        for state in self.states.values():
            result = state.result or {}
            status = state.status if state.status in FINAL else "cancelled"
            usage = result.get("usage") or {}
            tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, Mapping) else 0
            jobs.append(
                {
                    "job_id": state.spec.id,
                    "status": status,
                    "reused": state.reused,
                    "connection": result.get("connection"),
                    "duration_s": result.get("duration_s"),
                    "total_tokens": tokens,
                    "continuations": result.get("continuations", 0),
                    "error": result.get("error"),
                    "result_file": str(self.layout.result_path(state.spec.id)),
                }
            )
            totals["jobs"] += 1
            totals[status] += 1
            totals["reused"] += int(state.reused)
            totals["total_tokens"] += tokens
        summary = {
            "started_at": self.started_at,
            "finished_at": utc_now(),
            "jobs": jobs,
            "totals": totals,
        }
        write_json_atomic(self.layout.summary_path, summary)
        return summary
