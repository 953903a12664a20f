"""The records a job leaves on disk: its step log lines, its result.json, the run's summary.

Their shapes are contract (README, "Results on disk"): every step-log record has `v`, `ts`,
`job_id`, `thread_id`, `turn_id` and `kind`; a result has `job_id`, `status`, `final_text`,
`turns`, ... Built here, written by `files.py` (atomically, or appended and flushed). No trio.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from orchestrator.jobs.model import JobStatus
from orchestrator.protocol.values import (
    ChatResult,
    ConversationStep,
    ServerRequest,
    TokenUsage,
    TurnStatus,
)
from orchestrator.store.files import JsonlLog, utc_now

RECORD_VERSION = 1
USAGE_KEYS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)


class StepLog:
    """One job's `steps.jsonl`: a record per completed step and per decision, as it happens.

    `thread_id` and `turn_id` are the job's current ones, stamped on decisions that name no
    turn of their own; the runner keeps them up to date.
    """

    def __init__(self, log: JsonlLog, job_id: str) -> None:
        self.log = log
        self.job_id = job_id
        self.thread_id: str | None = None
        self.turn_id: str | None = None

    def decision(self, kind: str, turn_id: str | None = None, **fields: Any) -> None:
        """Append one decision (`turn_started`, `continuation`, `retry`, `approval`, ...)."""
        self.log.append(
            {
                "v": RECORD_VERSION,
                "ts": utc_now(),
                "job_id": self.job_id,
                "thread_id": self.thread_id,
                "turn_id": turn_id if turn_id is not None else self.turn_id,
                "kind": kind,
                **fields,
            }
        )

    def turn_completed(self, result: ChatResult) -> None:
        """Append the end of a turn: its status, final text and error."""
        self.decision(
            "turn_completed",
            turn_id=result.turn_id,
            status=result.status,
            final_text=result.final_text,
            error=result.error_message,
        )

    def approval(self, request: ServerRequest, *, decision: str, subject: str) -> None:
        """Append how a server request was answered, and what about."""
        self.decision(
            "approval",
            turn_id=request.turn_id,
            method=request.method,
            decision=decision,
            subject=subject,
            item_id=request.item_id,
        )

    def step(self, step: ConversationStep) -> None:
        """Append one completed step."""
        self.log.append(
            {
                "v": RECORD_VERSION,
                "ts": utc_now(),
                "job_id": self.job_id,
                "thread_id": step.thread_id,
                "turn_id": step.turn_id,
                "kind": "step",
                "step_type": step.step_type,
                "item_type": step.item_type,
                "item_id": step.item_id,
                "index": step.index,
                "text": step.text,
                "status": step.data.get("status"),
                "exit_code": step.data.get("exitCode"),
            }
        )


@attrs.define
class TurnOutcome:
    """How one turn ended, as recorded in `result.json`."""

    turn_id: str | None
    status: TurnStatus  # completed | interrupted | failed | cancelled
    final_text: str | None
    continuations: int = 0
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The `turns[]` entry of result.json."""
        return {
            "turn_id": self.turn_id,
            "status": self.status,
            "final_text": self.final_text,
            "continuations": self.continuations,
            "error": self.error,
        }


class UsageTotals:
    """Tokens a job spent, summed over its turns (result.json's `usage`)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(USAGE_KEYS, 0)

    def add(self, usage: TokenUsage | None) -> None:
        """Add one turn's usage (None: the server reported none)."""
        if usage is not None:
            for key in USAGE_KEYS:
                self.totals[key] += getattr(usage, key)


@attrs.frozen(kw_only=True)
class JobRun:
    """What a run of a job left to record (nothing but the job's id when it never ran)."""

    thread_id: str | None = None
    turns: Sequence[TurnOutcome] = ()
    attempts: int = 0
    continuations: int = 0
    usage: Mapping[str, int] | None = None


def job_result(
    job_id: str,
    status: JobStatus,
    run: JobRun,
    *,
    connection: str | None,
    error: str | None,
    started_at: str | None,
    duration_s: float,
    steps_file: str,
) -> dict[str, Any]:
    """The job's `result.json`."""
    turns = [turn.as_record() for turn in run.turns]
    final_text = next((t["final_text"] for t in reversed(turns) if t["final_text"]), None)
    return {
        "job_id": job_id,
        "status": status,
        "final_text": final_text,
        "thread_id": run.thread_id,
        "connection": connection,
        "turns": turns,
        "attempts": run.attempts,
        "continuations": run.continuations,
        "usage": dict(run.usage) if run.usage is not None else None,
        "error": error,
        "started_at": started_at,
        "finished_at": utc_now(),
        "duration_s": duration_s,
        "steps_file": steps_file,
    }


def unloadable_result(job_id: str, error: str) -> dict[str, Any]:
    """The result of a recovered job whose task file no longer loads."""
    return {"job_id": job_id, "status": JobStatus.FAILED, "error": error, "finished_at": utc_now()}


@attrs.frozen(kw_only=True)
class SummaryEntry:
    """One job of a run, as the summary lists it."""

    job_id: str
    status: JobStatus
    reused: bool
    result: Mapping[str, Any] | None
    result_file: str


def run_summary(entries: Iterable[SummaryEntry], *, started_at: str) -> dict[str, Any]:
    """`summary.json`: one line per job of the run, and totals. A job that did not finish
    counts as cancelled."""
    jobs = []
    totals: dict[str, int] = {
        "jobs": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "reused": 0,
        "total_tokens": 0,
    }
    for entry in entries:
        result = entry.result or {}
        status = entry.status if entry.status.finished else JobStatus.CANCELLED
        usage = result.get("usage") or {}
        tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, Mapping) else 0
        jobs.append(
            {
                "job_id": entry.job_id,
                "status": status,
                "reused": entry.reused,
                "connection": result.get("connection"),
                "duration_s": result.get("duration_s"),
                "total_tokens": tokens,
                "continuations": result.get("continuations", 0),
                "error": result.get("error"),
                "result_file": entry.result_file,
            }
        )
        totals["jobs"] += 1
        totals[status] += 1
        totals["reused"] += int(entry.reused)
        totals["total_tokens"] += tokens
    return {"started_at": started_at, "finished_at": utc_now(), "jobs": jobs, "totals": totals}


def set_aside(path: str | Path) -> None:
    """Keep an existing file as `<path>.previous` (replacing an older one): a fresh run of a
    job starts a fresh step log."""
    if os.path.exists(path):
        os.replace(path, f"{path}.previous")
