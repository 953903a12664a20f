"""Does the orchestrator stay fast and small over a long life? The daemon's core, many jobs.

`soak`: `Scheduler.serve` as the daemon runs it (a journal per job, durable records, finished
jobs forgotten), over `--connections` stdio connections to the fake server with `--threads`
slots each. Jobs come in as a daemon receives them: whenever fewer than two jobs per slot
are in the scheduler, the next ones are submitted. The state and results directories are on
tmpfs when there is one (`--results-in`), so that the daemon's fsyncs do not set the pace:
what is measured is whether the scheduler itself slows down or grows.

Every `--window` jobs finished, the window's wall time per job and the resident set size
(VmRSS, not the peak) are noted. The first window warms up (imports, caches, the servers'
own warm-up); the figures compare the last window with the second.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio
from orchestration import connection_spec, make_jobs
from rss import current_rss_kib, peak_rss_kib

QUEUED_PER_SLOT = 2  # jobs in the scheduler per connection slot: enough to keep slots busy


async def soak(
    workload: list[str],
    jobs: int,
    connections: int,
    threads: int,
    window: int,
    results_in: str | None = None,
) -> dict[str, Any]:
    """`jobs` one-turn jobs through a serving scheduler; per-window figures."""
    from orchestrator._util.logs import configure_logging
    from orchestrator.runtime.actor import ConnectionActor
    from orchestrator.runtime.pool import ActorPool
    from orchestrator.runtime.scheduler import Scheduler
    from orchestrator.store.files import ensure_dir
    from orchestrator.store.journal import Journals
    from orchestrator.store.layout import ResultsLayout

    # Warnings only: 10,000 jobs would be 20,000 lines on the driver's pipe, and the batch
    # case already measures their cost.
    configure_logging("json", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-soak-", dir=results_in) as tmp:
        # Each job is made when it is submitted (one loaded job with a new id), so that the
        # driver holds no job: the memory figures are the scheduler's alone.
        (template,) = make_jobs(Path(tmp), 1)
        layout = ResultsLayout(ensure_dir(Path(tmp) / "results"))
        journals = Journals(ensure_dir(Path(tmp) / "state"))
        actors = [
            ConnectionActor(connection_spec(f"fake-{n}", workload, threads))
            for n in range(connections)
        ]
        slots = connections * threads
        windows: list[dict[str, float]] = []
        ended: dict[str, int] = {"completed": 0, "failed": 0, "cancelled": 0}

        def count(state: Any) -> None:  # where the daemon logs the change
            if state.status in ended:
                ended[state.status] += 1

        scheduler = Scheduler(
            [],
            ActorPool(actors),
            layout,
            max_concurrent_jobs=slots,
            journals=journals,
            on_change=count,
        )
        in_scheduler = slots * QUEUED_PER_SLOT
        async with trio.open_nursery() as nursery:
            for actor in actors:
                await nursery.start(actor.run)
            await nursery.start(scheduler.serve)
            before = peak_rss_kib()
            start = mark = time.perf_counter()
            marked = 0
            for number in range(jobs):
                # A finished job leaves `states` (the daemon forgets it; its files remain).
                await scheduler.wait_until(lambda: len(scheduler.states) < in_scheduler)
                scheduler.submit(attrs.evolve(template, id=f"job-{number:06d}"))
                while sum(ended.values()) - marked >= window:
                    mark, marked = _note(windows, mark, marked, window)
            await scheduler.wait_until(lambda: not scheduler.states)
            while sum(ended.values()) - marked >= window:
                mark, marked = _note(windows, mark, marked, window)
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        journal_files = len(os.listdir(journals.root))
        kept_states = len(scheduler.states)
    if ended["completed"] != jobs:
        raise RuntimeError(f"of {jobs} jobs: {ended}")
    second, last = windows[1] if len(windows) > 1 else windows[0], windows[-1]
    return {
        "jobs": jobs,
        "connections": connections,
        "threads": threads,
        "window": window,
        "elapsed_s": elapsed,
        "windows": windows,
        "ms_per_job_second_window": second["ms_per_job"],
        "ms_per_job_last_window": last["ms_per_job"],
        "slowdown": last["ms_per_job"] / second["ms_per_job"],
        "rss_second_window_kib": second["rss_kib"],
        "rss_last_window_kib": last["rss_kib"],
        "rss_growth_per_1000_jobs_kib": (last["rss_kib"] - second["rss_kib"])
        / max(1, (len(windows) - 2) * window)
        * 1000,
        "journal_files": journal_files,
        "states_kept": kept_states,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }


def _note(
    windows: list[dict[str, float]], mark: float, marked: int, window: int
) -> tuple[float, int]:
    """Close one window of `window` finished jobs."""
    now = time.perf_counter()
    windows.append({"ms_per_job": (now - mark) / window * 1000, "rss_kib": current_rss_kib()})
    return now, marked + window
