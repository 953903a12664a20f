"""The orchestrator's overhead: the same trivial jobs through the scheduler and through the
bare client.

`scheduler`: `--jobs` one-turn jobs, loaded from a task file, run by `Scheduler` over
`--connections` `ConnectionActor`s of `--threads` thread slots each, with
`max_concurrent_jobs` = connections x threads, as `orchestrator run` does: a step log and a
`result.json` per job and `summary.json` in a temporary results directory, a JSON log line
per job state change on stderr.
`scheduler-bare`: the same job specs on the same number of stdio connections to the same fake
server, `--threads` tasks per connection, each taking the next job and running it with one
`chat_once` (which starts the job's thread with the job's options, as the runner does), and
nothing else: no files, no log.

`records`: the files the scheduler writes for the same jobs, written alone in a loop with
the same functions (a step log of four records and a `result.json` per job, `summary.json`
and one sync at the end): no turn, no scheduling. The scheduler cannot take less than the
bare turns plus this, so this is what the disk alone adds to a trivial job.

The timed window of the first two opens once every connection is up (initialized) and closes
when the last job has ended (for the scheduler: when `summary.json` is written and synced).
Loading the task file and starting the app-servers are outside it.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from common import TIMEOUT, Timer, server_argv
from orchestration import PROMPT, connection_spec, log_like_the_cli, make_jobs
from rss import peak_rss_kib

if TYPE_CHECKING:
    from orchestrator.client import CodexClient
    from orchestrator.jobs.model import JobSpec

ANSWER = f"ECHO: {PROMPT}"


async def scheduler(
    workload: list[str],
    jobs: int,
    connections: int,
    threads: int,
    timer: Timer,
    results_in: str | None = None,
) -> dict[str, Any]:
    """The jobs through `Scheduler`, with its records under `results_in` (default: the
    system's temporary directory)."""
    from orchestrator.app.batch import log_change  # what run_batch reports changes with
    from orchestrator.runtime.actor import ConnectionActor
    from orchestrator.runtime.pool import ActorPool
    from orchestrator.runtime.scheduler import Scheduler
    from orchestrator.store.files import ensure_dir
    from orchestrator.store.layout import ResultsLayout

    log_like_the_cli()
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-", dir=results_in) as tmp:
        specs = make_jobs(Path(tmp), jobs)
        layout = ResultsLayout(ensure_dir(Path(tmp) / "results"))
        actors = [
            ConnectionActor(connection_spec(f"fake-{n}", workload, threads))
            for n in range(connections)
        ]
        run = Scheduler(
            specs,
            ActorPool(actors),
            layout,
            max_concurrent_jobs=connections * threads,
            force=True,
            on_change=log_change,
            durable=False,  # as run_batch: one sync at the end
        )
        # What run_batch does, minus signal handling, with the clock started once every
        # connection is up.
        async with trio.open_nursery() as nursery:
            for actor in actors:
                await nursery.start(actor.run)
            if any(actor.state != "up" for actor in actors):
                raise RuntimeError("a connection did not come up")
            before = peak_rss_kib()
            with timer:
                summary = await run.run()
            nursery.cancel_scope.cancel()
        totals = summary["totals"]
        if totals["completed"] != jobs:
            raise RuntimeError(f"{totals['completed']} of {jobs} jobs completed: {totals}")
    return _timing(jobs, timer, before, connections=connections, threads=threads)


async def scheduler_bare(
    workload: list[str], jobs: int, connections: int, threads: int, timer: Timer
) -> dict[str, Any]:
    """The same job specs, one `chat_once` each, on bare clients."""
    from orchestrator.client import CodexClient

    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        specs = make_jobs(Path(tmp), jobs)
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(connections):
            client = await stack.enter_async_context(
                CodexClient.connect_stdio(server_argv(workload), request_timeout=TIMEOUT)
            )
            await client.initialize()
            clients.append(client)
        queue = iter(specs)
        done = itertools.count()
        before = peak_rss_kib()
        with timer:
            async with trio.open_nursery() as nursery:
                for client in clients:
                    for _ in range(threads):
                        nursery.start_soon(_work, client, queue, done)
        completed = next(done)
    if completed != jobs:
        raise RuntimeError(f"{completed} of {jobs} turns completed")
    return _timing(jobs, timer, before, connections=connections, threads=threads)


async def _work(client: CodexClient, queue: Iterator[JobSpec], done: Iterator[int]) -> None:
    """Take the next job until there is none; one thread and one turn each."""
    for spec in queue:
        result = await client.chat_once(
            spec.prompt,
            thread_options=spec.thread_options(),
            inactivity_timeout=spec.inactivity_timeout,
        )
        if result.status != "completed" or result.final_text != ANSWER:
            raise RuntimeError(f"job {spec.id} ended {result.status}: {result.final_text!r}")
        next(done)


async def records(jobs: int, timer: Timer, results_in: str | None = None) -> dict[str, Any]:
    """What the scheduler writes for `jobs` trivial jobs, and nothing else."""
    from orchestrator.store.files import JsonlLog, ensure_dir, utc_now, write_json_atomic
    from orchestrator.store.layout import ResultsLayout

    with tempfile.TemporaryDirectory(prefix="bench-records-", dir=results_in) as tmp:
        layout = ResultsLayout(ensure_dir(Path(tmp) / "results"))
        before = peak_rss_kib()
        with timer:
            for number in range(jobs):
                job_id = f"job-{number:05d}"
                files = layout.job_files(job_id)
                with JsonlLog(files.steps, durable=False) as log:
                    for kind in ("thread_started", "turn_started", "step", "turn_completed"):
                        log.append(_record(job_id, kind, utc_now()))
                write_json_atomic(files.result, _result(job_id, str(files.steps)), durable=False)
            summary = {"jobs": [{"job_id": f"job-{n:05d}"} for n in range(jobs)]}
            write_json_atomic(layout.summary_path, summary)
            await trio.to_thread.run_sync(os.sync)
    return _timing(jobs, timer, before)


def _record(job_id: str, kind: str, ts: str) -> dict[str, Any]:
    """A step-log record of a trivial job's size and shape."""
    return {
        "v": 1,
        "ts": ts,
        "job_id": job_id,
        "thread_id": "019a0000-bench-7000-8000-000000000001",
        "turn_id": "019a0000-bench-7000-8000-000000000002",
        "kind": kind,
        "text": ANSWER,
    }


def _result(job_id: str, steps_file: str) -> dict[str, Any]:
    """A completed trivial job's result.json."""
    return {
        "job_id": job_id,
        "status": "completed",
        "final_text": ANSWER,
        "thread_id": "019a0000-bench-7000-8000-000000000001",
        "connection": "fake-0",
        "turns": [
            {
                "turn_id": "019a0000-bench-7000-8000-000000000002",
                "status": "completed",
                "final_text": ANSWER,
                "continuations": 0,
                "error": None,
            }
        ],
        "attempts": 1,
        "continuations": 0,
        "usage": dict.fromkeys(("input_tokens", "output_tokens", "total_tokens"), 10),
        "error": None,
        "started_at": "2026-01-01T00:00:00.000Z",
        "finished_at": "2026-01-01T00:00:00.001Z",
        "duration_s": 0.001,
        "steps_file": steps_file,
    }


def _timing(jobs: int, timer: Timer, before: int, **shape: int) -> dict[str, Any]:
    return {
        "jobs": jobs,
        **shape,
        "elapsed_s": timer.elapsed,
        "cpu_s": timer.cpu,
        "jobs_per_s": jobs / timer.elapsed,
        "ms_per_job": timer.elapsed / jobs * 1000,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }
