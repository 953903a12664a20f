"""The daemon's crash-safe journal: one append-only file per job, fsync'd at each transition.

A restarted daemon folds each journal into a `JobProgress` and knows, for every accepted job,
how far it got: nothing started, a thread but no acknowledged turn, a turn the server
acknowledged (resume and reconcile it, never re-send it blindly), or a result already written
(do not run it again). A torn last line (a crash mid-write) is ignored: the transition it
described did not happen as far as recovery is concerned. No trio here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from orchestrator.jobs.model import JobStatus
from orchestrator.store.files import (
    open_append_nofollow,
    read_json,
    record_dir,
    utc_now,
    write_json_atomic,
)
from orchestrator.store.layout import check_job_id

JOURNAL_VERSION = 1


class JobJournal:
    """Appends transitions of one job; each record is on disk (fsync) before `append` returns.

    Never through a symbolic link (the journal or its directory): `UnsafePath` instead.
    """

    def __init__(self, path: Path) -> None:
        record_dir(path.parent)
        self.path = path
        self._fd = open_append_nofollow(path)

    def append(self, event: str, **fields: Any) -> None:
        """Record one transition durably."""
        record = {"v": JOURNAL_VERSION, "ts": utc_now(), "event": event, **fields}
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        os.write(self._fd, data)
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal; a torn or garbled line is skipped."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return []
    records = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            records.append(record)
    return records


def _status(value: object) -> JobStatus:
    """A journaled status; one this version does not know reads as failed."""
    try:
        return JobStatus(str(value))
    except ValueError:
        return JobStatus.FAILED


@attrs.frozen(kw_only=True)
class JobProgress:
    """How far a job got, folded from its journal."""

    job_id: str
    task_file: str | None = None
    status: JobStatus = attrs.field(default=JobStatus.ACCEPTED, converter=_status)
    connection: str | None = None
    thread_id: str | None = None
    turns_done: int = 0  # turns completed on the thread
    pending_turn: str | None = None  # acknowledged by the server, not completed
    known_turns: tuple[str, ...] = ()  # every turn id acknowledged so far
    turn_starting: bool = False  # turn/start sent, no acknowledgement recorded
    continuations: int = 0
    result_written: bool = False
    cancel_requested: bool = False
    accepted_at: str | None = None
    updated_at: str | None = None

    @property
    def summary(self) -> str:
        """Where the job stands, in a few words (for logs)."""
        pending = f", turn {self.pending_turn} pending" if self.pending_turn else ""
        return f"thread {self.thread_id or '-'}, {self.turns_done} turn(s) done{pending}"

    @property
    def finished(self) -> bool:
        """The job's result is on disk: never run it again."""
        return self.result_written


def fold(job_id: str, records: list[dict[str, Any]]) -> JobProgress:
    """The progress the records describe, applied in order."""
    state: dict[str, Any] = {"job_id": job_id}
    for record in records:
        event = record["event"]
        state["updated_at"] = record.get("ts")
        if event == "accepted":
            state.update(task_file=record.get("task_file"), accepted_at=record.get("ts"))
        elif event == "scheduled":
            state.update(status=JobStatus.RUNNING, connection=record.get("connection"))
        elif event == "thread_started":
            state.update(thread_id=record.get("thread_id"))
        elif event == "turn_starting":
            state.update(turn_starting=True)
        elif event == "turn_acknowledged":
            turn_id = record.get("turn_id")
            state.update(turn_starting=False, pending_turn=turn_id)
            state["known_turns"] = (*state.get("known_turns", ()), turn_id)
        elif event == "continuation":
            state["continuations"] = state.get("continuations", 0) + 1
        elif event == "turn_completed":
            state.update(
                pending_turn=None, turn_starting=False, turns_done=state.get("turns_done", 0) + 1
            )
        elif event == "turn_lost":
            state.update(pending_turn=None, turn_starting=False)
        elif event == "cancel_requested":
            state["cancel_requested"] = True
        elif event == "result_written":
            state.update(status=record.get("status", JobStatus.FAILED), result_written=True)
    return JobProgress(**state)


class Journals:
    """The journal directory of a state dir: `<state_dir>/journal/<job-id>.jsonl`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "journal"

    def path(self, job_id: str) -> Path:
        """The journal file of a job (the id is checked to be a safe name)."""
        return self.root / f"{check_job_id(job_id)}.jsonl"

    def open(self, job_id: str) -> JobJournal:
        """Open a job's journal for appending.

        Raises:
            UnsafePath: the journal directory or the job's journal is a symbolic link.
        """
        return JobJournal(self.path(job_id))

    def progress(self, job_id: str) -> JobProgress:
        """One job's progress (an empty journal: not accepted)."""
        compacted = read_json(self.root / f"{check_job_id(job_id)}.done.json")
        if isinstance(compacted, dict):
            compacted["known_turns"] = tuple(compacted.get("known_turns") or ())
            return JobProgress(**compacted)
        return fold(job_id, read_journal(self.path(job_id)))

    def all_progress(self) -> dict[str, JobProgress]:
        """Every job the state dir knows, by id."""
        found: dict[str, JobProgress] = {}
        if not self.root.is_dir():
            return found
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name.endswith(".done.json"):
                job_id = name.removesuffix(".done.json")
            elif name.endswith(".jsonl"):
                job_id = name.removesuffix(".jsonl")
            else:
                continue
            if job_id not in found:
                found[job_id] = self.progress(job_id)
        return found

    def compact(self, job_id: str) -> None:
        """Replace a finished job's journal by one small snapshot (bounded files over time)."""
        progress = fold(job_id, read_journal(self.path(job_id)))
        if not progress.finished:
            return
        write_json_atomic(self.root / f"{job_id}.done.json", attrs.asdict(progress))
        self.path(job_id).unlink(missing_ok=True)
