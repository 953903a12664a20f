"""Where each record lives under the results directory. Pure: paths only, no I/O.

A job id names a directory, so it must be one safe path component: `../x`, `/x`, `a/b` or
a name with a newline never reach the disk. (A symbolic link planted under the root is the
writers' business: `store/files.py` refuses to write through one.)
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from orchestrator.errors import UnsafeJobId

__all__ = ["JobFiles", "ResultsLayout", "UnsafeJobId", "check_job_id"]

# `\Z`, not `$`: `$` also matches before a trailing newline.
JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
RESULT_FILE = "result.json"
STEPS_FILE = "steps.jsonl"


def check_job_id(job_id: str) -> str:
    """The id itself, if it is a safe single path component."""
    if not JOB_ID.match(job_id) or job_id in (".", ".."):
        raise UnsafeJobId(f"job id {job_id!r} is not a safe name ([A-Za-z0-9._-]+)")
    return job_id


@attrs.frozen
class JobFiles:
    """One job's record paths, built once per job (a scheduler needs them several times).

    Plain strings: the scheduler builds these for every job, and only hands them to system
    calls (a pathlib join costs more than a small file write)."""

    directory: str
    steps: str
    result: str


@attrs.frozen
class ResultsLayout:
    """Paths of the files one run writes."""

    root: Path

    def job_dir(self, job_id: str) -> Path:
        """`<root>/<job-id>/`; the id cannot escape the root."""
        return self.root / check_job_id(job_id)

    def job_files(self, job_id: str) -> JobFiles:
        """`job_dir`, `steps_path` and `result_path` at once."""
        directory = f"{self.root}/{check_job_id(job_id)}"
        return JobFiles(directory, f"{directory}/{STEPS_FILE}", f"{directory}/{RESULT_FILE}")

    def result_path(self, job_id: str) -> Path:
        """`<root>/<job-id>/result.json`."""
        return self.job_dir(job_id) / RESULT_FILE

    def steps_path(self, job_id: str) -> Path:
        """`<root>/<job-id>/steps.jsonl`."""
        return self.job_dir(job_id) / STEPS_FILE

    @property
    def summary_path(self) -> Path:
        """`<root>/summary.json`."""
        return self.root / "summary.json"
