"""Jobs: task files in, frozen validated `JobSpec`s out, and the pure decisions about them
(policy: inactivity and approvals; recovery: what a turn does next). No trio, no running."""

from __future__ import annotations

from orchestrator._util.frozen import FrozenMap
from orchestrator.jobs.load import find_cycles, load_task_file, load_task_files
from orchestrator.jobs.model import (
    ApprovalRules,
    Decision,
    InactivityAction,
    JobSpec,
    JobStatus,
    SourceLocation,
    TaskFile,
)

__all__ = [
    "ApprovalRules",
    "Decision",
    "FrozenMap",
    "InactivityAction",
    "JobSpec",
    "JobStatus",
    "SourceLocation",
    "TaskFile",
    "find_cycles",
    "load_task_file",
    "load_task_files",
]
