"""A batch run: validated jobs, a pool of connection actors, the scheduler, signals, display.

Ctrl-C (SIGINT) once stops gracefully: running turns are interrupted (`turn/interrupt`, bounded),
their jobs recorded `cancelled`, jobs not started recorded as not run, the summary written.
A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import structlog
import trio

from orchestrator.config.model import OrchestratorConfig
from orchestrator.jobs.model import JobSpec
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.environment import open_actor_env
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.scheduler import JobState, Scheduler
from orchestrator.store.files import ensure_dir
from orchestrator.store.layout import ResultsLayout

log = structlog.get_logger("orchestrator.app.batch")

PROGRESS_INTERVAL = 0.5


class Progress:
    """A one-line live display of the run on a terminal."""

    def __init__(self, scheduler: Scheduler, out: TextIO) -> None:
        self.scheduler = scheduler
        self.out = out
        self.started = time.monotonic()

    def line(self) -> str:
        """`running 2 · done 3 · failed 1 · continuations 4 · 12.5 s`."""
        states = list(self.scheduler.states.values())
        count = {
            s: sum(1 for st in states if st.status == s)
            for s in ("running", "completed", "failed", "cancelled")
        }
        waiting = len(states) - sum(count.values())
        continuations = sum(st.continuations for st in states)
        elapsed = time.monotonic() - self.started
        return (
            f"running {count['running']} · waiting {waiting} · done {count['completed']} · "
            f"failed {count['failed']} · cancelled {count['cancelled']} · "
            f"continuations {continuations} · {elapsed:.1f} s"
        )

    async def run(self) -> None:
        """Redraw until cancelled."""
        try:
            while True:
                self.out.write("\r\x1b[2K" + self.line())
                self.out.flush()
                await trio.sleep(PROGRESS_INTERVAL)
        finally:
            self.out.write("\r\x1b[2K")
            self.out.flush()


def log_change(state: JobState) -> None:
    """Log a job's change of state: a line when it starts and one when it ends."""
    fields: dict[str, Any] = {"job": state.spec.id, "status": state.status}
    if state.connection:
        fields["connection"] = state.connection
    if state.runner is not None and state.runner.thread_id:
        fields["thread"] = state.runner.thread_id
    # One line when a job starts and one when it ends; waiting is routine (debug).
    emit = log.debug if state.status == "waiting" else log.info
    emit("job " + state.status, **fields)


async def run_batch(
    config: OrchestratorConfig,
    jobs: Sequence[JobSpec],
    *,
    force: bool = False,
    progress: bool = False,
    progress_out: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Run the jobs to their ends; returns the summary written to `summary.json`."""
    layout = ResultsLayout(ensure_dir(config.results_dir))
    async with open_actor_env(config) as env:
        actors = [ConnectionActor(spec, extra_env=env) for spec in config.connections]
        pool = ActorPool(actors)
        scheduler = Scheduler(
            jobs,
            pool,
            layout,
            max_concurrent_jobs=config.max_concurrent_jobs,
            force=force,
            on_change=None if progress else log_change,
            durable=False,  # one sync at the end of the run (see Scheduler)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, scheduler, nursery.cancel_scope)
            for actor in actors:
                await nursery.start(actor.run)
            display = Progress(scheduler, progress_out) if progress else None
            async with trio.open_nursery() as shown:
                if display is not None:
                    shown.start_soon(display.run)
                summary = await scheduler.run()
                shown.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        return summary


async def _watch_signals(scheduler: Scheduler, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for signum in signals:
            count += 1
            if count == 1:
                log.warning(
                    "stopping: interrupting running turns (again to stop now)",
                    signal=signal.Signals(signum).name,
                )
                scheduler.stop()
            else:
                everything.cancel()
                raise KeyboardInterrupt


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    """The human summary: one line per job, then totals and where the files are."""
    for job in summary["jobs"]:
        reused = " (done earlier)" if job["reused"] else ""
        duration = f"{job['duration_s']:.1f} s" if job.get("duration_s") is not None else "-"
        line = (
            f"{job['status']:<9} {job['job_id']:<24} {duration:>8}  "
            f"{job['total_tokens']:>7} tokens  {job['result_file']}{reused}"
        )
        if job.get("error") and job["status"] != "completed":
            line += f"\n          {job['error']}"
        print(line, file=out)
    totals = summary["totals"]
    print(
        f"{totals['jobs']} jobs: {totals['completed']} completed, {totals['failed']} failed, "
        f"{totals['cancelled']} cancelled · {totals['total_tokens']} tokens",
        file=out,
    )
