"""Jobs: task files in, frozen validated `JobSpec`s out (pure: no trio, no running)."""

from __future__ import annotations

from orchestrator.jobs.load import find_cycles, load_task_file, load_task_files
from orchestrator.jobs.model import (
    ApprovalRules,
    Decision,
    FrozenMap,
    InactivityAction,
    JobSpec,
    SourceLocation,
    TaskFile,
)

__all__ = [
    "ApprovalRules",
    "Decision",
    "FrozenMap",
    "InactivityAction",
    "JobSpec",
    "SourceLocation",
    "TaskFile",
    "find_cycles",
    "load_task_file",
    "load_task_files",
]
