"""Does writing the step log slow the reader? One turn of many completed items through the
job runner, with its step log on or off.

`steplog --log jsonl`: `JobRunner` on a `ConnectionActor` to the fake server, writing
`steps.jsonl` with the store's `JsonlLog` in a temporary directory, as the scheduler does.
`steplog --log null`: the same, with a step log that drops every record (the runner still
builds each record; only serializing and writing it are skipped).

The timed window is `JobRunner.run()`: starting the thread, the turn, every step recorded.
Closing the log (its fsync) comes after and is reported apart as `close_s`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
from common import Timer
from orchestration import connection_spec, log_like_the_cli, make_jobs
from rss import peak_rss_kib


class NullStepLog:
    """A step log that keeps nothing: what the runner costs without writing records."""

    def __init__(self) -> None:
        self.records = 0

    def append(self, record: dict[str, Any]) -> None:
        """Count the record, then drop it."""
        self.records += 1

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> NullStepLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def steplog(workload: list[str], log: str, timer: Timer) -> dict[str, Any]:
    """One job of one turn through `JobRunner`; step log `jsonl` or `null`."""
    from orchestrator.runtime.actor import ConnectionActor
    from orchestrator.runtime.runner import JobRunner
    from orchestrator.store.files import JsonlLog
    from orchestrator.store.records import StepLog

    log_like_the_cli()
    with tempfile.TemporaryDirectory(prefix="bench-steplog-") as tmp:
        (spec,) = make_jobs(Path(tmp), 1)
        path = Path(tmp) / "results" / spec.id / "steps.jsonl"
        actor = ConnectionActor(connection_spec("fake", workload, 1))
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)
            client, _generation = await actor.wait_client()
            assert client.initialize_result is not None
            stats = client.initialize_result.raw["bench"]
            steps = JsonlLog(path) if log == "jsonl" else NullStepLog()
            before = peak_rss_kib()
            try:
                runner = JobRunner(spec, actor, StepLog(steps, spec.id))  # type: ignore[arg-type]
                with timer:
                    status = await runner.run()
            finally:
                closing = time.perf_counter()
                steps.close()
                close_s = time.perf_counter() - closing
            nursery.cancel_scope.cancel()
        records = steps.records
        log_bytes = path.stat().st_size if path.exists() else 0
    # thread_started, turn_started, one per step, turn_completed
    if status != "completed" or records != stats["steps"] + 3:
        raise RuntimeError(f"job ended {status} with {records} records, steps {stats['steps']}")
    return {
        "log": log,
        "events": stats["notifications"],
        "steps": stats["steps"],
        "log_bytes": log_bytes,
        "elapsed_s": timer.elapsed,
        "cpu_s": timer.cpu,
        "events_per_s": stats["notifications"] / timer.elapsed,
        "steps_per_s": stats["steps"] / timer.elapsed,
        "close_s": close_s,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }
