"""Hostile names and planted symbolic links never make the orchestrator write elsewhere.

Job ids, `cwd` values and directory settings with traversal (`..`), absolute paths, unicode,
NUL and very long names end in a value or a located `ConfigError`, never in a traceback. A
symbolic link planted where a record goes (`results/<job-id>`, a step log, a result, the
summary, a journal, the journal directory) is refused with a clear error or replaced, never
followed: the sentinel directory every link points to is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.app.cli import main
from orchestrator.app.daemon import Inbox, daemon_lock, request_cancel
from orchestrator.config import OrchestratorConfig, load_config
from orchestrator.errors import ConfigError
from orchestrator.jobs.load import load_task_files
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.scheduler import Scheduler
from orchestrator.store.files import (
    JsonlLog,
    UnsafePath,
    ensure_dir,
    read_json,
    write_json_atomic,
)
from orchestrator.store.journal import Journals
from orchestrator.store.layout import ResultsLayout, UnsafeJobId, check_job_id
from tests.test_scheduler import FakeFleet

SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
NAME_MAX = 255
HOSTILE_NAMES = [
    "..",
    ".",
    "../escape",
    "../../etc/passwd",
    "a/../../b",
    "/etc/passwd",
    "/",
    "a/b",
    "a\\b",
    "~",
    "~root",
    "$HOME",
    "",
    " ",
    "job\n",
    "job\nother",
    "a\x00b",
    "\x00",
    "é",
    "ジョブ",
    "\u202eexe.txt",
    "x" * 129,
    "x" * 300,
    "x" * 5000,
    "-" + "y" * 4200,
]
hostile_text = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(max_size=300),
    st.text(alphabet="./\\\x00a~", max_size=20),
    st.text(min_size=1, max_size=12).map(lambda s: s + "\n"),
)


def toml_string(value: str) -> str:
    """A TOML basic string of any text (control and non-printable characters escaped)."""
    out = []
    for char in value:
        if char.isprintable() and char not in '"\\':
            out.append(char)
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh directory per hypothesis example (function-scoped fixtures are shared)."""
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def problems_of(error: ConfigError) -> tuple[str, ...]:
    assert error.problems, error
    return error.problems


# --- job ids ------------------------------------------------------------------------------


@pytest.mark.fault(
    "store",
    "job ids with traversal, absolute paths, unicode, NUL, newlines, 5,000 chars (hypothesis)",
    "only single safe names are accepted; every path stays a direct child of its root",
)
@settings(max_examples=400, deadline=None)
@given(hostile_text)
@example("job\n")  # `$` in a pattern matches before a trailing newline; `\Z` does not
def test_a_job_id_is_one_safe_path_component_or_refused(job_id: str) -> None:
    """check_job_id accepts exactly the safe names; every path built on one stays a direct
    child of its root (results, journals)."""
    root = Path("/results-root")
    if SAFE_ID.match(job_id) and job_id not in (".", ".."):
        assert check_job_id(job_id) == job_id
        layout = ResultsLayout(root)
        assert layout.job_dir(job_id).parent == root
        assert layout.job_dir(job_id).name == job_id
        assert (
            layout.steps_path(job_id).parent
            == layout.result_path(job_id).parent
            == (layout.job_dir(job_id))
        )
        assert Journals(root).path(job_id) == root / "journal" / f"{job_id}.jsonl"
    else:
        with pytest.raises(UnsafeJobId):
            check_job_id(job_id)
        with pytest.raises(UnsafeJobId):
            ResultsLayout(root).steps_path(job_id)
        with pytest.raises(UnsafeJobId):
            Journals(root).open(job_id)


@pytest.mark.fault(
    "config",
    "hostile job ids in a task file (hypothesis)",
    "a safe id, or a ConfigError located at jobs[0].id",
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text)
def test_a_task_file_with_a_hostile_job_id_is_loaded_safely_or_refused(job_id: str) -> None:
    """A job id from a task file is either a safe name or a ConfigError located at the id."""
    with scratch_dir() as directory:
        task = directory / "tasks.toml"
        task.write_text(f"[[jobs]]\nid = {toml_string(job_id)}\nprompt = 'p'\n", "utf-8")
        try:
            (job,) = load_task_files([task])
        except ConfigError as error:
            assert all(p.startswith(f"{task}:2: jobs[0].id: ") for p in problems_of(error))
        else:
            assert job.id == job_id and check_job_id(job.id) == job_id


@pytest.mark.fault(
    "config",
    "eight hostile job ids in one task file (../, /abs, a/b, newline, NUL, unicode, long, ..)",
    "`validate` exits 2 naming file:line: jobs[n].id for each; nothing written",
)
def test_validate_names_each_hostile_id_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orchestrator validate` exits 2 and names file:line: jobs[n].id for every bad id."""
    ids = ["../escape", "/etc/passwd", "a/b", "job\n", "a\x00b", "ジョブ", "x" * 129, ".."]
    task = tmp_path / "tasks.toml"
    task.write_text(
        "".join(f"[[jobs]]\nid = {toml_string(i)}\nprompt = 'p'\n\n" for i in ids), "utf-8"
    )
    assert main(["validate", str(task)]) == 2
    lines = capsys.readouterr().err.splitlines()
    for n in range(len(ids)):
        assert any(line.startswith(f"{task}:{2 + 4 * n}: jobs[{n}].id: ") for line in lines), n
    assert not (tmp_path / "results").exists()


@pytest.mark.fault(
    "daemon",
    "`cancel` with a job id such as ../escape",
    "UnsafeJobId; no request file written anywhere",
)
def test_cancel_request_with_a_hostile_id_is_refused(tmp_path: Path) -> None:
    """`cancel ../x` writes no request file anywhere."""
    config = OrchestratorConfig.default(tmp_path)
    for job_id in ["../escape", "/abs", "a/b", "job\n", ".."]:
        with pytest.raises(UnsafeJobId):
            request_cancel(config.state_dir, job_id)
    assert not (tmp_path / "escape").exists()
    assert list((tmp_path / "state" / "control").iterdir()) == []


# --- cwd and directories ----------------------------------------------------------------


@pytest.mark.fault(
    "config",
    "hostile cwd values: traversal, absolute, unicode, NUL, 5,000-char names (hypothesis)",
    "an existing absolute directory, or a ConfigError located at jobs[0].cwd",
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text)
@example("x" * 5000)
@example("../" * 50)
@example("/" + "y" * 300)
def test_a_hostile_cwd_is_an_existing_directory_or_a_located_error(cwd: str) -> None:
    """`cwd` resolves to an existing directory, or is a ConfigError at jobs[0].cwd."""
    with scratch_dir() as directory:
        task = directory / "tasks.toml"
        task.write_text(
            f"[[jobs]]\nid = 'j'\nprompt = 'p'\ncwd = {toml_string(cwd)}\n", encoding="utf-8"
        )
        try:
            (job,) = load_task_files([task])
        except ConfigError as error:
            assert all(p.startswith(f"{task}:4: jobs[0].cwd: ") for p in problems_of(error))
        else:
            assert job.cwd.is_absolute() and job.cwd.is_dir()


@pytest.mark.fault(
    "config",
    "hostile results_dir / state_dir / inbox_dir values (hypothesis)",
    "an absolute path, or a ConfigError located at the key",
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text, st.sampled_from(["results_dir", "state_dir", "inbox_dir"]))
def test_hostile_directory_settings_load_or_are_located_errors(value: str, key: str) -> None:
    """results_dir, state_dir and inbox_dir load as absolute paths or are located errors."""
    with scratch_dir() as directory:
        config = directory / "config.toml"
        config.write_text(f"[orchestrator]\n{key} = {toml_string(value)}\n", encoding="utf-8")
        try:
            loaded = load_config(config)
        except ConfigError as error:
            expected = f"{config}:2: orchestrator.{key}: "
            assert all(p.startswith(expected) for p in problems_of(error)), error.problems
        else:
            assert getattr(loaded, key).is_absolute()


@pytest.mark.fault(
    "config",
    "results_dir with a name longer than the file system allows",
    "a located error before anything runs, not a traceback from `run`",
)
def test_a_results_dir_name_too_long_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` with a results_dir whose name the file system cannot hold exits 2, naming it."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[orchestrator]\nresults_dir = "{"r" * (NAME_MAX + 1)}"\n[[connections]]\n'
        f'name = "x"\ncommand = ["{tmp_path / "no-such-app-server"}"]\n'
    )
    task = tmp_path / "tasks.toml"
    task.write_text("[[jobs]]\nid = 'a'\nprompt = 'p'\n")
    assert main(["run", "-c", str(config), str(task), "--no-progress"]) == 2
    assert f"{config}:2: orchestrator.results_dir: " in capsys.readouterr().err


# --- symbolic links planted under results/ and state/ ---------------------------------------


def snapshot(directory: Path) -> dict[str, str]:
    """Every entry under a directory (links not followed), with a digest of each file."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(directory))
            if path.is_symlink():
                found[rel] = "link -> " + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "dir"
    return found


@contextlib.contextmanager
def left_untouched(directory: Path) -> Iterator[None]:
    """Run the block, an OSError from it allowed (a refusal), then check nothing under
    `directory` changed."""
    before = snapshot(directory)
    with contextlib.suppress(OSError):
        yield
    assert snapshot(directory) == before


Plant = Callable[[Path, Path, Path], None]


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def _job_dir(results: Path, state: Path, sentinel: Path) -> None:
    _link(results / "victim", sentinel)


def _step_log(results: Path, state: Path, sentinel: Path) -> None:
    _link(results / "victim" / "steps.jsonl", sentinel / "precious.txt")


def _dangling_step_log(results: Path, state: Path, sentinel: Path) -> None:
    _link(results / "victim" / "steps.jsonl", sentinel / "created-through-a-link")


def _result(results: Path, state: Path, sentinel: Path) -> None:
    # It says `completed`: followed, it would make the job look done and never run.
    (sentinel / "result.json").write_text(json.dumps({"status": "completed"}))
    _link(results / "victim" / "result.json", sentinel / "result.json")


def _previous_step_log(results: Path, state: Path, sentinel: Path) -> None:
    (results / "victim").mkdir(parents=True)
    (results / "victim" / "steps.jsonl").write_text('{"kind": "old"}\n')
    _link(results / "victim" / "steps.jsonl.previous", sentinel / "precious.txt")


def _summary(results: Path, state: Path, sentinel: Path) -> None:
    _link(results / "summary.json", sentinel / "precious.txt")


def _journal(results: Path, state: Path, sentinel: Path) -> None:
    _link(state / "journal" / "victim.jsonl", sentinel / "precious.txt")


def _dangling_journal(results: Path, state: Path, sentinel: Path) -> None:
    _link(state / "journal" / "victim.jsonl", sentinel / "created-through-a-link")


def _journal_dir(results: Path, state: Path, sentinel: Path) -> None:
    _link(state / "journal", sentinel)


# (plant, the victim's status, the bystander's): refused links fail their job, with an error
# naming the link; links the store replaces (results, logs kept aside, the summary) do not.
PLANTS: dict[str, tuple[Plant, str, str]] = {
    "job-directory": (_job_dir, "failed", "completed"),
    "step-log": (_step_log, "completed", "completed"),
    "dangling-step-log": (_dangling_step_log, "failed", "completed"),
    "result": (_result, "completed", "completed"),
    "previous-step-log": (_previous_step_log, "completed", "completed"),
    "summary": (_summary, "completed", "completed"),
    "journal": (_journal, "failed", "completed"),
    "dangling-journal": (_dangling_journal, "failed", "completed"),
    "journal-directory": (_journal_dir, "failed", "failed"),
}


@pytest.fixture
def fleet(nursery: trio.Nursery) -> FakeFleet:
    return FakeFleet(nursery)


@pytest.mark.fault(
    "store",
    "a symbolic link planted in results/ or state/ (job dir, step log, result, summary, "
    "journal, journal dir) pointing outside",
    "never followed: the job fails naming the link, or the link is replaced; nothing is "
    "written outside results/ and state/",
)
@pytest.mark.parametrize("plant_name", sorted(PLANTS))
async def test_planted_links_are_never_followed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, fleet: FakeFleet, plant_name: str
) -> None:
    """A run with a planted link ends normally; the victim fails with an error naming the
    link or completes; the sentinel the link points to and everything outside results/ and
    state/ are left byte for byte as they were."""
    plant, victim_status, bystander_status = PLANTS[plant_name]
    results, state, sentinel = tmp_path / "results", tmp_path / "state", tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "precious.txt").write_text("precious\n")
    task = tmp_path / "tasks.toml"
    task.write_text(
        '[[jobs]]\nid = "victim"\nprompt = "hi"\n[[jobs]]\nid = "bystander"\nprompt = "hi"\n'
    )
    jobs = load_task_files([task])
    plant(results, state, sentinel)
    sentinel_before = snapshot(sentinel)
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if _outside(k)}

    actors = fleet.actors(["a"], 2)
    layout = ResultsLayout(results)
    scheduler = Scheduler(
        jobs, ActorPool(actors), layout, max_concurrent_jobs=2, journals=Journals(state)
    )
    async with trio.open_nursery() as nursery:
        for actor in actors:
            await nursery.start(actor.run)
        with trio.fail_after(60):
            summary = await scheduler.run()
        nursery.cancel_scope.cancel()

    assert snapshot(sentinel) == sentinel_before
    assert {k: v for k, v in snapshot(tmp_path).items() if _outside(k)} == outside_before
    statuses = {job["job_id"]: job for job in summary["jobs"]}
    assert statuses["victim"]["status"] == victim_status, statuses["victim"]
    assert statuses["bystander"]["status"] == bystander_status, statuses["bystander"]
    for job in statuses.values():
        if job["status"] == "failed":
            assert "is a symbolic link" in job["error"], job
            assert "refusing to write through it" in job["error"], job
    if victim_status == "completed":
        # The link was replaced by a real file, or moved aside, never written through.
        for name in ("result.json", "steps.jsonl"):
            assert not (results / "victim" / name).is_symlink()
        assert json.loads((results / "victim" / "result.json").read_text())["status"] == (
            "completed"
        )
    assert not (results / "summary.json").is_symlink()


def _outside(relative: str) -> bool:
    return relative.split(os.sep)[0] not in ("results", "state", "sentinel")


@pytest.mark.fault(
    "store",
    "a linked job directory, step log or result file given to the store's writers",
    "UnsafePath naming the link; read_json does not read through a link; nothing written "
    "through it",
)
def test_store_writers_refuse_links_directly(tmp_path: Path) -> None:
    """JsonlLog and write_json_atomic refuse a linked directory or log; read_json does not
    read through a link."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "data.json").write_text('{"status": "completed"}')
    (tmp_path / "linked-dir").symlink_to(sentinel)
    (tmp_path / "log.jsonl").symlink_to(sentinel / "new.jsonl")
    (tmp_path / "result.json").symlink_to(sentinel / "data.json")
    before = snapshot(sentinel)
    with pytest.raises(UnsafePath, match=r"linked-dir is a symbolic link"):
        write_json_atomic(tmp_path / "linked-dir" / "result.json", {"x": 1})
    with pytest.raises(UnsafePath, match=r"linked-dir is a symbolic link"):
        JsonlLog(tmp_path / "linked-dir" / "steps.jsonl")
    with pytest.raises(UnsafePath, match=r"log\.jsonl is a symbolic link"):
        JsonlLog(tmp_path / "log.jsonl")
    assert read_json(tmp_path / "result.json") is None
    write_json_atomic(tmp_path / "result.json", {"status": "failed"})  # replaces the link
    assert not (tmp_path / "result.json").is_symlink()
    assert snapshot(sentinel) == before


# --- links the daemon follows today (daemon.py) --------------------------------------------


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    directory = tmp_path / "sentinel"
    directory.mkdir()
    (directory / "precious.txt").write_text("precious\n")
    return directory


@pytest.mark.fault(
    "daemon",
    "state/daemon.lock is a symbolic link to another file",
    "the daemon refuses it; the other file is not truncated",
)
def test_a_linked_daemon_lock_is_not_followed(tmp_path: Path, sentinel: Path) -> None:
    """Starting on a state dir whose daemon.lock is a link leaves the link's target alone."""
    state = tmp_path / "state"
    _link(state / "daemon.lock", sentinel / "precious.txt")
    with left_untouched(sentinel), daemon_lock(state):
        pass


@pytest.mark.fault(
    "daemon",
    "inbox/rejected/<name>.error is a symbolic link when a bad task file is rejected",
    "the error file is written in rejected/, not through the link",
)
def test_a_linked_rejection_error_file_is_not_followed(tmp_path: Path, sentinel: Path) -> None:
    """Rejecting a file whose `.error` name is taken by a link writes nothing through it."""
    inbox = Inbox(tmp_path / "inbox")
    (inbox.rejected / "bad.error").symlink_to(sentinel / "written-through-a-link")
    dropped = inbox.root / "bad.toml"
    dropped.write_text("not toml [")
    with left_untouched(sentinel):
        inbox.reject(dropped, ("bad.toml:1: syntax: bad",))


@pytest.mark.fault(
    "daemon",
    "state/control is a symbolic link to another directory",
    "`cancel` refuses it; no request file is written elsewhere",
)
def test_a_linked_control_directory_is_not_followed(tmp_path: Path, sentinel: Path) -> None:
    """A cancel request is never written through a linked state/control."""
    _link(tmp_path / "state" / "control", sentinel)
    with left_untouched(sentinel):
        request_cancel(OrchestratorConfig.default(tmp_path).state_dir, "victim")


def test_a_linked_results_root_is_the_users_choice(tmp_path: Path) -> None:
    """A results or state directory that is itself a link works: only links below it are
    refused."""
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "results").symlink_to(real)
    root = ensure_dir(tmp_path / "results")
    assert root == real.resolve()
    write_json_atomic(ResultsLayout(root).summary_path, {"jobs": []})
    write_json_atomic(ResultsLayout(root).result_path("j"), {"status": "completed"})
    assert sorted(p.name for p in real.iterdir()) == ["j", "summary.json"]
