"""Requests to the running daemon from outside it: files in `<state_dir>/control/`.

`orchestrator cancel JOB` writes `cancel-<job>.request` (atomically); the daemon's intake
loop takes each request, acts on it and deletes it. A file per request: no socket to secure,
and a request made while the daemon restarts waits for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from orchestrator.jobs.model import JobStatus
from orchestrator.store.files import (
    ensure_dir,
    read_json,
    refuse_link,
    utc_now,
    write_json_atomic,
)
from orchestrator.store.layout import ResultsLayout, check_job_id

POLL_INTERVAL = 0.2

CANCEL_PREFIX = "cancel-"
REQUEST_SUFFIX = ".request"


def control_dir(state_dir: Path) -> Path:
    """`<state_dir>/control/`, made if missing (never through a link)."""
    return ensure_dir(refuse_link(ensure_dir(state_dir) / "control"))


def request_cancel(state_dir: Path, job_id: str) -> Path:
    """Ask the running daemon to cancel a job; returns the request file.

    Raises:
        UnsafeJobId: the id is not a safe name.
    """
    path = control_dir(state_dir) / f"{CANCEL_PREFIX}{check_job_id(job_id)}{REQUEST_SUFFIX}"
    write_json_atomic(path, {"job_id": job_id, "requested_at": utc_now()})
    return path


def cancel_requests(directory: Path) -> Iterator[tuple[str, Path]]:
    """The waiting cancel requests, in name order: (job id, request file)."""
    for request in sorted(directory.glob(f"{CANCEL_PREFIX}*{REQUEST_SUFFIX}")):
        yield request.name.removeprefix(CANCEL_PREFIX).removesuffix(REQUEST_SUFFIX), request


def wait_for_result(results_dir: Path, job_id: str, seconds: float) -> JobStatus | None:
    """Poll (blocking: the command line's wait) for the job's final status, at most
    `seconds`; None when it has not ended by then."""
    result_path = ResultsLayout(results_dir).result_path(job_id)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = read_json(result_path)
        status = result.get("status") if isinstance(result, dict) else None
        if status in (JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED):
            return JobStatus(status)
        time.sleep(POLL_INTERVAL)
    return None
