"""One job's failure outside the protocol (a full disk, an unwritable file, a bug) fails that
job with a clear error; the run, and every other job, goes on."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import orchestrator.runtime.scheduler
from orchestrator.store.files import JsonlLog
from tests.test_scheduler import FakeFleet, jobs_from, result, run


@pytest.fixture
def fleet(nursery: trio.Nursery) -> FakeFleet:
    return FakeFleet(nursery)


JOBS = "".join(f'[[jobs]]\nid = "{name}"\nprompt = "hello {name}"\n' for name in "abcde")


class DiskFullFor(JsonlLog):
    """A step log whose writes fail with ENOSPC for one job."""

    victim = "c"

    def append(self, record: dict[str, Any]) -> None:
        if record.get("job_id") == self.victim:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(record)


class BuggyFor(JsonlLog):
    """A step log that hits a bug (not an OSError) for one job."""

    def append(self, record: dict[str, Any]) -> None:
        if record.get("job_id") == "c" and record.get("kind") == "turn_started":
            raise KeyError("a bug")
        super().append(record)


@pytest.mark.fault(
    "orchestrator",
    "the disk is full (ENOSPC) while one job writes its step log",
    "that job fails with 'could not write the job's records: ... No space left on device'; "
    "the other jobs complete and the run ends normally",
)
async def test_a_storage_error_fails_only_its_job(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    fleet: FakeFleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(orchestrator.runtime.scheduler, "JsonlLog", DiskFullFor)
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors(["x", "y"], 2))
    statuses = {job["job_id"]: job["status"] for job in summary["jobs"]}
    assert statuses == {
        "a": "completed",
        "b": "completed",
        "c": "failed",
        "d": "completed",
        "e": "completed",
    }
    failed = result(tmp_path, "c")
    assert "could not write the job's records" in failed["error"]
    assert "No space left on device" in failed["error"]


@pytest.mark.fault(
    "orchestrator",
    "a bug (an unexpected exception) in one job's run",
    "that job fails with 'internal error: ...' and a logged traceback; the other jobs complete",
)
async def test_an_internal_error_fails_only_its_job(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    fleet: FakeFleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(orchestrator.runtime.scheduler, "JsonlLog", BuggyFor)
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors(["x"], 4))
    statuses = {job["job_id"]: job["status"] for job in summary["jobs"]}
    assert statuses["c"] == "failed"
    assert {status for job, status in statuses.items() if job != "c"} == {"completed"}
    assert "internal error: KeyError('a bug')" in result(tmp_path, "c")["error"]


async def test_an_unwritable_result_still_leaves_the_job_failed_in_the_summary(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    fleet: FakeFleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even the result file cannot be written: the job is failed in memory and in the
    summary, the others complete."""
    real_write = orchestrator.runtime.scheduler.write_json_atomic

    def write(path: str | Path, data: Any, **options: Any) -> None:
        if Path(path).parent.name == "c":
            raise OSError(errno.EROFS, "Read-only file system")
        real_write(path, data, **options)

    monkeypatch.setattr(orchestrator.runtime.scheduler, "JsonlLog", DiskFullFor)
    monkeypatch.setattr(orchestrator.runtime.scheduler, "write_json_atomic", write)
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors(["x"], 4))
    jobs = {job["job_id"]: job for job in summary["jobs"]}
    assert jobs["c"]["status"] == "failed"
    assert "No space left on device" in jobs["c"]["error"]
    assert all(jobs[name]["status"] == "completed" for name in "abde")


@pytest.mark.fault(
    "orchestrator",
    "results/<job> is a planted link to a directory holding a 'completed' result.json",
    "the job is not taken as done: it runs, refuses to write through the link and fails "
    "saying so; the planted directory is untouched",
)
async def test_a_linked_job_directory_does_not_make_a_job_look_done(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet
) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "result.json").write_text('{"status": "completed", "final_text": "fake"}')
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "c").symlink_to(planted)
    summary = await run(tmp_path, jobs_from(tmp_path, JOBS), fleet.actors(["x"], 4))
    jobs = {job["job_id"]: job for job in summary["jobs"]}
    assert not jobs["c"]["reused"]
    assert jobs["c"]["status"] == "failed"
    assert "symbolic link" in jobs["c"]["error"]
    assert sorted(p.name for p in planted.iterdir()) == ["result.json"]
    assert all(jobs[name]["status"] == "completed" for name in "abde")
