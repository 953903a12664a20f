"""What the daemon shows of itself: `<state_dir>/daemon.json` while it runs, and `status`.

The daemon rewrites its snapshot every second; `collect_status` reads the journals (every job
the state dir knows) and, when a daemon runs, its snapshot (live turns, connections' health),
so it works whether the daemon runs or not.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from orchestrator.app.daemon.lock import running_daemon_pid
from orchestrator.config.model import OrchestratorConfig
from orchestrator.jobs.model import JobStatus
from orchestrator.runtime.actor import ConnectionActor, ConnectionSnapshot
from orchestrator.runtime.scheduler import JobState
from orchestrator.store.files import read_json, utc_now
from orchestrator.store.journal import Journals
from orchestrator.store.layout import ResultsLayout

SNAPSHOT_FILE = "daemon.json"
LIVE = (JobStatus.RUNNING, JobStatus.WAITING, JobStatus.PENDING)


@attrs.frozen(kw_only=True)
class LiveJob:
    """A job the daemon has not finished, as it stands now."""

    status: JobStatus
    connection: str | None
    thread_id: str | None
    turn_id: str | None
    continuations: int

    @classmethod
    def of(cls, state: JobState) -> LiveJob:
        """The live view of a scheduler's job."""
        runner = state.runner
        return cls(
            status=state.status,
            connection=state.connection,
            thread_id=runner.thread_id if runner else None,
            turn_id=runner.current_turn if runner else None,
            continuations=state.continuations,
        )


@attrs.frozen(kw_only=True)
class DaemonSnapshot:
    """The running daemon's `daemon.json`."""

    pid: int
    started_at: str
    updated_at: str
    stopping: bool
    connections: tuple[ConnectionSnapshot, ...]
    running_jobs: Mapping[str, LiveJob]

    @classmethod
    def now(
        cls,
        *,
        started_at: str,
        stopping: bool,
        actors: Iterable[ConnectionActor],
        jobs: Iterable[tuple[str, JobState]],
    ) -> DaemonSnapshot:
        """This process's snapshot at this moment."""
        return cls(
            pid=os.getpid(),
            started_at=started_at,
            updated_at=utc_now(),
            stopping=stopping,
            connections=tuple(actor.snapshot() for actor in actors),
            running_jobs={
                job_id: LiveJob.of(state) for job_id, state in jobs if state.status in LIVE
            },
        )

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to daemon.json."""
        return attrs.asdict(self)


def collect_status(config: OrchestratorConfig) -> dict[str, Any]:
    """Every known job and the connections' health; works whether the daemon runs or not."""
    state_dir = config.state_dir
    pid = running_daemon_pid(state_dir) if state_dir.exists() else None
    snapshot = read_json(state_dir / SNAPSHOT_FILE) if pid is not None else None
    live = (snapshot or {}).get("running_jobs", {}) if isinstance(snapshot, dict) else {}
    layout = ResultsLayout(config.results_dir)
    jobs = []
    for job_id, progress in sorted(Journals(state_dir).all_progress().items()):
        entry: dict[str, Any] = {
            "job_id": job_id,
            "state": progress.status,
            "connection": progress.connection,
            "thread_id": progress.thread_id,
            "turn_id": progress.pending_turn,
            "turns_done": progress.turns_done,
            "continuations": progress.continuations,
            "accepted_at": progress.accepted_at,
            "age_s": _age(progress.accepted_at),
        }
        if job_id in live and not progress.finished:
            entry.update({k: v for k, v in live[job_id].items() if v is not None})
            entry["state"] = live[job_id]["status"]
        if isinstance(read_json(layout.result_path(job_id)), dict):
            entry["result"] = str(layout.result_path(job_id))
        jobs.append(entry)
    return {
        "daemon": {"running": pid is not None, "pid": pid},
        "connections": (snapshot or {}).get("connections", []) if snapshot else [],
        "jobs": jobs,
    }


def snapshot_path(state_dir: Path) -> Path:
    """Where the running daemon keeps its snapshot."""
    return state_dir / SNAPSHOT_FILE


def _age(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        accepted = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return None
    return round(time.time() - accepted, 1)


def format_status(status: dict[str, Any]) -> str:
    """The human view of `collect_status`."""
    daemon = status["daemon"]
    lines = [
        f"daemon: running (pid {daemon['pid']})" if daemon["running"] else "daemon: not running"
    ]
    for conn in status["connections"]:
        lines.append(
            f"connection {conn['name']}: {conn['state']} · threads {conn['threads_in_use']}/"
            f"{conn['max_threads']} · restarts {conn['restarts']}"
        )
    for job in status["jobs"]:
        lines.append(
            f"{job['state']:<10} {job['job_id']:<24} {job.get('connection') or '-':<10} "
            f"turn {job.get('turn_id') or '-'} · continuations {job['continuations']}"
        )
    return "\n".join(lines)


def json_dumps(data: Any) -> str:
    """Stable JSON for `status --json`."""
    return json.dumps(data, indent=2, sort_keys=True)
