"""The scheduler: runs validated jobs over a pool of connection actors, and records them.

Order: a job starts when its dependencies have completed (a dependent of a job that did not
complete is not run, and its result says why), a global `max_concurrent_jobs` slot is free,
and a thread slot is free on its pinned connection (or, unpinned, on the connection with the
most free slots). Waiting is FIFO, so jobs start in file order as far as the rules allow.
Results are written atomically when each job ends; `summary.json` when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import structlog
import trio

from orchestrator.errors import JobFailed
from orchestrator.jobs.model import JobSpec, JobStatus
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.runner import JobRunner
from orchestrator.store.files import JsonlLog, read_json, utc_now, write_json_atomic
from orchestrator.store.journal import JobProgress, Journals
from orchestrator.store.layout import JobFiles, ResultsLayout
from orchestrator.store.records import (
    JobRun,
    StepLog,
    SummaryEntry,
    job_result,
    run_summary,
    set_aside,
)

log = structlog.get_logger("orchestrator.runtime.scheduler")


@attrs.define
class JobState:
    """A job's progress in this run (what the progress display and summary show)."""

    spec: JobSpec
    status: JobStatus = JobStatus.PENDING
    connection: str | None = None
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    reused: bool = False  # completed in an earlier run; not run again
    runner: JobRunner | None = None
    progress: JobProgress | None = None  # where a restarted daemon picks the job up
    cancel_reason: str | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    files: JobFiles | None = None  # its record paths, once needed

    @property
    def continuations(self) -> int:
        """Continuations so far (live while running)."""
        return self.runner.continuations if self.runner is not None else 0


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
        journals: Journals | None = None,
        durable: bool = True,
    ) -> None:
        self.states = {job.id: JobState(job) for job in jobs}
        # durable: each job's step log and result are fsynced before the job counts as
        # finished (the daemon's journal relies on it); off, they are atomic against a
        # crash of this process and `run` syncs once at the end (a batch run: no fsync per
        # job on its critical path).
        self.durable = durable
        self.journals = journals
        self.pool = pool
        self.layout = layout
        self.force = force
        self._global = trio.Semaphore(max_concurrent_jobs)
        self._on_change = on_change or (lambda state: None)
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._change: trio.Event | None = None  # made by the first waiter
        self._forget_finished = False
        self.stopping = False
        self._suspending = False
        self.started_at = utc_now()

    def stop(self) -> None:
        """Stop the run: running jobs interrupt their turns and end `cancelled`; jobs not
        started are recorded as not run."""
        self.stopping = True
        for scope in self._scopes.values():
            scope.cancel()

    def suspend(self) -> None:
        """Stop without ending any job (daemon shutdown): running turns are interrupted, and
        no result is written, so the next daemon picks every unfinished job up again."""
        self._suspending = True
        self.stop()

    def suspend_waiting(self) -> None:
        """Daemon shutdown, first step: jobs not running yet are left for the next start;
        running ones go on (their results are still written if they finish)."""
        self._suspending = True
        for job_id, state in self.states.items():
            if state.status is not JobStatus.RUNNING and not state.status.finished:
                scope = self._scopes.get(job_id)
                if scope is not None:
                    scope.cancel()

    def cancel_job(self, job_id: str, reason: str = "cancelled on request") -> bool:
        """Cancel one job: its turn is interrupted and the job recorded `cancelled`."""
        state = self.states.get(job_id)
        scope = self._scopes.get(job_id)
        if state is None or scope is None or state.status.finished:
            return False
        state.cancel_reason = reason
        scope.cancel()
        return True

    @property
    def running(self) -> int:
        """Jobs holding a connection slot now."""
        return sum(1 for state in self.states.values() if state.status is JobStatus.RUNNING)

    async def run(self) -> dict[str, Any]:
        """Run every job; returns the summary (also written to summary.json)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for state in self.states.values():
                nursery.start_soon(self._run_job, state)
        summary = self.write_summary()
        if not self.durable:
            # One flush of everything the run wrote, instead of two fsyncs per job.
            await trio.to_thread.run_sync(os.sync)
        return summary

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run jobs as they are submitted, until cancelled (the daemon's mode)."""
        # A daemon runs for weeks: finished jobs leave memory (their files remain).
        self._forget_finished = True
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def submit(self, job: JobSpec, progress: JobProgress | None = None) -> None:
        """Schedule one more job (while `serve` runs)."""
        assert self._nursery is not None, "submit() needs serve() running"
        state = JobState(job, progress=progress)
        self.states[job.id] = state
        self._nursery.start_soon(self._run_job, state)

    def _dependency_status(self, job_id: str) -> str:
        state = self.states.get(job_id)
        if state is not None:
            return state.status
        # Finished in an earlier life of the daemon: its result file tells.
        previous = self._previous_result(job_id)
        return str(previous.get("status")) if isinstance(previous, dict) else "unknown"

    def _changed(self, state: JobState, status: JobStatus) -> None:
        state.status = status
        self._on_change(state)
        self._wake()

    def _wake(self) -> None:
        # Three state changes per job, and usually nobody waiting: no Event until someone is.
        change, self._change = self._change, None
        if change is not None:
            change.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds; it is checked whenever a job changes state."""
        while not condition():
            if self._change is None:
                self._change = trio.Event()
            await self._change.wait()

    @property
    def active_jobs(self) -> int:
        """Jobs whose task has not ended yet."""
        return len(self._scopes)

    async def _run_job(self, state: JobState) -> None:
        spec = state.spec
        try:
            with trio.CancelScope() as scope:
                self._scopes[spec.id] = scope
                if self.stopping:
                    scope.cancel()
                for dep in spec.depends_on:
                    if dep in self.states:
                        await self.states[dep].done.wait()
                statuses = {d: self._dependency_status(d) for d in spec.depends_on}
                blocked = [d for d, status in statuses.items() if status != JobStatus.COMPLETED]
                if blocked:
                    reasons = ", ".join(f"{d} ({statuses[d]})" for d in blocked)
                    self._finish(state, JobStatus.CANCELLED, error=f"not run: dependency {reasons}")
                    return
                if not self.force and self._reuse(state):
                    return
                self._changed(state, JobStatus.WAITING)
                async with self._global, self.pool.lease(spec.connection) as actor:
                    try:
                        await self._run_on(state, actor)
                    except Exception as exc:  # one job must not end the run
                        self._crashed(state, exc)
            if not state.status.finished and not self._suspending:
                self._finish(
                    state,
                    JobStatus.CANCELLED,
                    error=state.cancel_reason or "not run: the run was stopped",
                )
        finally:
            self._scopes.pop(spec.id, None)
            state.done.set()
            if self._forget_finished and state.status.finished:
                self.states.pop(spec.id, None)
            self._wake()

    def _crashed(self, state: JobState, exc: Exception) -> None:
        """A job ended by an error outside the protocol (a full disk, a file we may not write,
        a bug): it fails, saying why, and every other job goes on."""
        if isinstance(exc, OSError):
            error = f"could not write the job's records: {exc}"
            log.error("job failed: storage error", job=state.spec.id, error=str(exc))
        else:
            error = f"internal error: {exc!r}"
            log.exception("job failed: internal error", job=state.spec.id)
        runner = state.runner if isinstance(state.runner, JobRunner) else None
        try:
            self._finish(state, JobStatus.FAILED, runner=runner, error=error)
        except Exception as again:  # the result file may be unwritable too
            log.error("could not record the job's failure", job=state.spec.id, error=str(again))
            state.result = {"job_id": state.spec.id, "status": JobStatus.FAILED, "error": error}
            self._changed(state, JobStatus.FAILED)

    def _previous_result(self, job_id: str) -> Any:
        """The job's result from an earlier run, if any. Not through a linked job directory:
        a planted one holding a "completed" result must not make the job look done."""
        if self.layout.job_dir(job_id).is_symlink():
            return None
        return read_json(self.layout.result_path(job_id))

    def _reuse(self, state: JobState) -> bool:
        previous = self._previous_result(state.spec.id)
        if isinstance(previous, dict) and previous.get("status") == JobStatus.COMPLETED:
            state.reused = True
            state.result = previous
            self._journal_result(state.spec.id, JobStatus.COMPLETED)
            self._changed(state, JobStatus.COMPLETED)
            log.info("already completed; not rerun", job=state.spec.id)
            return True
        return False

    async def _run_on(self, state: JobState, actor: ConnectionActor) -> None:
        spec = state.spec
        state.connection = actor.name
        state.started = time.monotonic()
        started_at = utc_now()
        self._changed(state, JobStatus.RUNNING)
        steps_path = self._files(state).steps
        if state.progress is None:
            # A fresh run of the job gets a fresh step log; the previous one is kept aside.
            # (A job resumed by a restarted daemon goes on appending to its log.)
            set_aside(steps_path)
        journal = self.journals.open(spec.id) if self.journals is not None else None
        try:
            if journal is not None:
                journal.append("scheduled", connection=actor.name)
            steps = JsonlLog(steps_path, durable=self.durable)
            try:
                runner = JobRunner(
                    spec, actor, StepLog(steps, spec.id), journal=journal, resume=state.progress
                )
                state.runner = runner
                error: str | None = None
                try:
                    status = await runner.run()
                except JobFailed as exc:
                    status, error = JobStatus.FAILED, str(exc)
                except trio.Cancelled:
                    # Stopping: record the job cancelled before unwinding, unless the daemon
                    # is only suspending it until its next start.
                    if not self._suspending:
                        self._finish(
                            state,
                            JobStatus.CANCELLED,
                            runner=runner,
                            error=state.cancel_reason or "stopped",
                            started_at=started_at,
                        )
                    raise
            finally:
                steps.close()
        finally:
            if journal is not None:
                journal.close()
        if error is None and status is not JobStatus.COMPLETED:
            error = next((t.error for t in reversed(runner.turns) if t.error), None)
        self._finish(state, status, runner=runner, error=error, started_at=started_at)

    def _finish(
        self,
        state: JobState,
        status: JobStatus,
        *,
        runner: JobRunner | None = None,
        error: str | None = None,
        started_at: str | None = None,
    ) -> None:
        """Write the job's result and mark it finished."""
        result = self._result(state, status, runner=runner, error=error, started_at=started_at)
        write_json_atomic(self._files(state).result, result, durable=self.durable)
        self._finished(state, status, result)

    def _files(self, state: JobState) -> JobFiles:
        if state.files is None:
            state.files = self.layout.job_files(state.spec.id)
        return state.files

    def _result(
        self,
        state: JobState,
        status: JobStatus,
        *,
        runner: JobRunner | None,
        error: str | None,
        started_at: str | None,
    ) -> dict[str, Any]:
        state.finished = time.monotonic()
        duration = round(state.finished - state.started, 3) if state.started is not None else 0.0
        return job_result(
            state.spec.id,
            status,
            runner.run_record() if runner is not None else JobRun(),
            connection=state.connection,
            error=error,
            started_at=started_at,
            duration_s=duration,
            steps_file=self._files(state).steps,
        )

    def _finished(self, state: JobState, status: JobStatus, result: dict[str, Any]) -> None:
        self._journal_result(state.spec.id, status)
        state.result = result
        self._changed(state, status)

    def _journal_result(self, job_id: str, status: JobStatus) -> None:
        """Journal that the job's result is on disk (a daemon killed between writing the
        result and journaling it finds the result at its next start), then compact."""
        if self.journals is None or self.journals.progress(job_id).finished:
            return
        with contextlib.closing(self.journals.open(job_id)) as journal:
            journal.append("result_written", status=status)
        self.journals.compact(job_id)

    def write_summary(self) -> dict[str, Any]:
        """Write `summary.json`: one entry per job of this run, and totals."""
        summary = run_summary(
            (
                SummaryEntry(
                    job_id=state.spec.id,
                    status=state.status,
                    reused=state.reused,
                    result=state.result,
                    result_file=self._files(state).result,
                )
                for state in self.states.values()
            ),
            started_at=self.started_at,
        )
        write_json_atomic(self.layout.summary_path, summary)
        return summary
