"""The batch runner end to end: real `codex app-server` 0.169.0 behind the scripted model.

Each test writes its own config and task files under `tmp_path`, runs them through
`orchestrator.app.cli.main` (or `run_batch` where it needs to act during the run), and checks the
result files, step logs and summary the run leaves on disk.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

import orchestrator.app.batch
from orchestrator.app.batch import run_batch
from orchestrator.app.cli import main
from orchestrator.config import load_config
from orchestrator.jobs.load import load_task_files
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.transport.stdio import StdioTransport
from tests.daemon_helpers import (
    kinds,
    read_jsonl,
    stdio_connection,
    write_config,
    ws_connection,
)
from tests.real_server import kill_group, open_ws_app_server, scripted_codex_home, work_dir

pytestmark = pytest.mark.real_server

REPO = Path(__file__).resolve().parent.parent
STEP_FIELDS = ("ts", "job_id", "thread_id", "turn_id", "kind")
STEP_ONLY_FIELDS = ("step_type", "item_type", "item_id", "text")


# --- files ------------------------------------------------------------------------------


def write_text(path: Path, text: str) -> Path:
    """Write a dedented file (leading blank lines dropped) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def write_tasks(tmp_path: Path, text: str) -> tuple[Path, Path]:
    """The default config and `text` (dedented) as tasks.toml, both under `tmp_path`."""
    return write_config(tmp_path), write_text(tmp_path / "tasks.toml", text)


def run_argv(config: Path, taskfile: Path) -> list[str]:
    """The arguments of `orchestrator run` for one config and task file, no progress line."""
    return ["run", "-c", str(config), str(taskfile), "--no-progress"]


def read_result(results: Path, job_id: str) -> dict[str, Any]:
    """The job's `result.json`."""
    data: dict[str, Any] = json.loads((results / job_id / "result.json").read_text("utf-8"))
    return data


def read_steps(results: Path, job_id: str) -> list[dict[str, Any]]:
    """Every record of the job's `steps.jsonl` (empty when there is none)."""
    return read_jsonl(results / job_id / "steps.jsonl")


def read_summary(results: Path) -> dict[str, Any]:
    """The run's `summary.json`."""
    data: dict[str, Any] = json.loads((results / "summary.json").read_text("utf-8"))
    return data


def ts(record: dict[str, Any]) -> datetime:
    """A record's timestamp."""
    return datetime.fromisoformat(record["ts"])


async def wait_for_record(path: Path, kind: str, *, seconds: float = 30.0) -> dict[str, Any]:
    """Poll a step log until a record of `kind` is in it (fails after `seconds`)."""
    with trio.fail_after(seconds):
        while True:
            found = kinds(read_jsonl(path), kind)
            if found:
                return found[0]
            await trio.sleep(0.05)


def poll_until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Poll `condition` (from a sync test) until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def peak_concurrency(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end at t closes before a start
    at t opens)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# --- 1. the offline example ---------------------------------------------------------------


def test_offline_example_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped offline pipeline completes every job and leaves private, complete records."""
    config = write_config(tmp_path, stdio_connection("local"), max_concurrent_jobs=4)
    taskfile = REPO / "jobs" / "examples" / "pipeline.toml"
    assert main(run_argv(config, taskfile)) == 0
    results = tmp_path / "results"
    job_ids = ["greet", "survey", "plan", "slow-report", "wrap-up"]

    summary = read_summary(results)
    assert [job["job_id"] for job in summary["jobs"]] == job_ids
    assert summary["totals"]["jobs"] == 5
    assert summary["totals"]["completed"] == 5
    assert summary["totals"]["failed"] == summary["totals"]["cancelled"] == 0
    assert summary["totals"]["total_tokens"] == sum(j["total_tokens"] for j in summary["jobs"])
    assert summary["totals"]["total_tokens"] > 0

    for job_id in job_ids:
        result = read_result(results, job_id)
        assert result["status"] == "completed", result
        assert result["job_id"] == job_id
        assert result["final_text"]
        assert result["thread_id"]
        assert result["attempts"] == 1
        assert result["usage"]["total_tokens"] > 0
        assert result["error"] is None
        assert result["started_at"] and result["finished_at"]
        for turn in result["turns"]:
            assert set(turn) >= {"turn_id", "status", "final_text", "continuations"}
            assert turn["status"] == "completed"
        records = read_steps(results, job_id)
        started = kinds(records, "turn_started")
        steps = kinds(records, "step")
        assert len(started) == len(result["turns"])
        assert [r["turn_id"] for r in started] == [t["turn_id"] for t in result["turns"]]
        assert steps, job_id
        for record in records:
            assert all(field in record for field in STEP_FIELDS), record
            assert record["job_id"] == job_id
            if record["kind"] in ("turn_started", "step"):
                assert record["thread_id"] == result["thread_id"]
                assert record["turn_id"]
        for record in steps:
            assert all(field in record for field in STEP_ONLY_FIELDS), record
            assert record["item_id"]

    survey = kinds(read_steps(results, "survey"), "step")
    assert [s["step_type"] for s in survey if s["item_type"] == "commandExecution"] == ["exec"]
    assert "pipeline.toml" in next(s["text"] for s in survey if s["step_type"] == "exec")
    plan = read_result(results, "plan")
    assert len(plan["turns"]) == 2
    assert "thinking" in {s["step_type"] for s in kinds(read_steps(results, "plan"), "step")}
    slow = read_steps(results, "slow-report")
    assert kinds(slow, "continuation")
    assert read_result(results, "slow-report")["continuations"] == len(kinds(slow, "continuation"))
    assert read_result(results, "wrap-up")["final_text"] == "all jobs done"
    # Dependencies were honoured: wrap-up started after slow-report ended.
    wrap_started = ts(kinds(read_steps(results, "wrap-up"), "turn_started")[0])
    assert wrap_started >= ts(kinds(slow, "turn_completed")[-1])

    for path in [results, *results.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    # The CODEX_HOME the batch writes for its app-servers is private too.
    home = tmp_path / "state" / "codex-home"
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "config.toml").stat().st_mode) == 0o600
    assert str(results) in capsys.readouterr().out


# --- 2. two connections, stdio and websocket ----------------------------------------------


async def test_jobs_spread_over_stdio_and_websocket(tmp_path: Path) -> None:
    """Pinned and unpinned jobs run on a stdio and a websocket connection, never more than
    `max_threads` threads at once on either."""
    work = work_dir(tmp_path)
    async with scripted_codex_home(tmp_path / "ws-home") as ws_env:
        async with open_ws_app_server(ws_env, cwd=work) as url:
            config_path = write_config(
                tmp_path,
                stdio_connection("pipe", max_threads=2),
                ws_connection("socket", url, max_threads=2),
            )
            pins = ["pipe"] * 3 + ["socket"] * 3 + [None] * 2
            jobs_text = '[defaults]\ncwd = "work"\napproval_policy = "never"\n'
            jobs_text += "inactivity_timeout = 10\n"
            for index, pin in enumerate(pins):
                jobs_text += f'\n[[jobs]]\nid = "job{index}"\nprompt = "slow 0.5x2: job {index}"\n'
                if pin is not None:
                    jobs_text += f'connection = "{pin}"\n'
            taskfile = write_text(tmp_path / "tasks.toml", jobs_text)
            config = load_config(config_path)
            jobs = load_task_files([taskfile])
            with trio.fail_after(90):
                summary = await run_batch(config, jobs)

    results = tmp_path / "results"
    assert summary["totals"]["completed"] == summary["totals"]["jobs"] == len(pins)
    intervals: dict[str, list[tuple[datetime, datetime]]] = {"pipe": [], "socket": []}
    for index, pin in enumerate(pins):
        result = read_result(results, f"job{index}")
        assert result["status"] == "completed"
        assert result["final_text"] == f"SLOW: job {index}"
        if pin is not None:
            assert result["connection"] == pin
        records = read_steps(results, f"job{index}")
        start = ts(kinds(records, "turn_started")[0])
        end = ts(kinds(records, "turn_completed")[0])
        assert start < end
        intervals[result["connection"]].append((start, end))
    # Every job waits at the start, and each turn lasts a second: both slots fill up.
    assert peak_concurrency(intervals["pipe"]) == 2
    assert peak_concurrency(intervals["socket"]) == 2


async def test_batch_with_a_websocket_connection_ends_promptly(tmp_path: Path) -> None:
    """`run_batch` returns within a moment of its last job ending, websocket connection or not."""
    work = work_dir(tmp_path)
    async with scripted_codex_home(tmp_path / "ws-home") as ws_env:
        async with open_ws_app_server(ws_env, cwd=work) as url:
            config_path = write_config(tmp_path, ws_connection("socket", url))
            taskfile = write_text(
                tmp_path / "tasks.toml",
                """
                [[jobs]]
                id = "only"
                cwd = "work"
                approval_policy = "never"
                prompt = "hello over the socket"
                """,
            )
            with trio.fail_after(60):
                summary = await run_batch(load_config(config_path), load_task_files([taskfile]))
            returned = datetime.now(UTC)
    assert summary["totals"]["completed"] == 1
    finished = datetime.fromisoformat(summary["finished_at"])
    assert (returned - finished).total_seconds() < 2.5


# --- 3. inactivity policies ---------------------------------------------------------------


def test_inactivity_policies(tmp_path: Path) -> None:
    """On a slow turn, `continue` resumes until it completes, `cancel` ends the job cancelled
    with its earlier steps kept, and `fail` ends it failed."""
    config, taskfile = write_tasks(
        tmp_path,
        """
        [defaults]
        approval_policy = "never"
        inactivity_timeout = 0.6

        [[jobs]]
        id = "waits"
        prompt = "slow 1x3: worth the wait"
        on_inactivity = "continue"
        max_continuations = 10

        [[jobs]]
        id = "gives-up"
        turns = ["quick first turn", "slow 1x3: too slow", "never sent"]
        on_inactivity = "cancel"

        [[jobs]]
        id = "fails"
        prompt = "slow 1x3: too slow"
        on_inactivity = "fail"
        """,
    )
    assert main(run_argv(config, taskfile)) == 1
    results = tmp_path / "results"

    waits = read_result(results, "waits")
    records = read_steps(results, "waits")
    assert waits["status"] == "completed"
    assert waits["final_text"] == "SLOW: worth the wait"
    continued = kinds(records, "continuation")
    assert 1 <= len(continued) <= 10
    assert waits["continuations"] == waits["turns"][0]["continuations"] == len(continued)
    assert all(r["action"] == "continue" for r in kinds(records, "inactive"))
    assert not kinds(records, "cancel")

    gave_up = read_result(results, "gives-up")
    records = read_steps(results, "gives-up")
    assert gave_up["status"] == "cancelled"
    assert [t["status"] for t in gave_up["turns"]] == ["completed", "cancelled"]
    assert gave_up["turns"][0]["final_text"] == "ECHO: quick first turn"
    assert "0.6" in gave_up["error"]
    started = kinds(records, "turn_started")
    assert [r["prompt"] for r in started] == ["quick first turn", "slow 1x3: too slow"]
    first_turn, slow_turn = (r["turn_id"] for r in started)
    assert [s["text"] for s in kinds(records, "step") if s["turn_id"] == first_turn] == [
        "ECHO: quick first turn"
    ]
    assert [r["action"] for r in kinds(records, "inactive")] == ["cancel"]
    (cancel,) = kinds(records, "cancel")
    assert cancel["turn_id"] == slow_turn
    assert cancel["reason"] == "inactive (cancel)"
    assert not any(r["kind"] == "step" and r["turn_id"] == slow_turn for r in records)

    failed = read_result(results, "fails")
    records = read_steps(results, "fails")
    assert failed["status"] == "failed"
    assert [t["status"] for t in failed["turns"]] == ["failed"]
    assert [r["action"] for r in kinds(records, "inactive")] == ["fail"]
    assert kinds(records, "cancel")[0]["reason"] == "inactive (fail)"

    totals = read_summary(results)["totals"]
    assert (totals["completed"], totals["cancelled"], totals["failed"]) == (1, 1, 1)


# --- 4. approvals -------------------------------------------------------------------------


def test_approval_rules_on_real_commands(tmp_path: Path) -> None:
    """Under `untrusted`, an allowed command is approved and runs; any other is declined."""
    work = work_dir(tmp_path)
    (work / "precious.txt").write_text("keep me\n")
    config, taskfile = write_tasks(
        tmp_path,
        """
        [defaults]
        cwd = "work"
        approval_policy = "untrusted"
        sandbox = "workspace-write"
        inactivity_timeout = 30
        approvals = { commands = "decline", allow_commands = [["touch"]] }

        [[jobs]]
        id = "allowed"
        prompt = "shell: touch allowed.txt"

        [[jobs]]
        id = "declined"
        prompt = "shell: rm -f precious.txt"
        """,
    )
    assert main(run_argv(config, taskfile)) == 0
    results = tmp_path / "results"

    assert (work / "allowed.txt").exists()
    records = read_steps(results, "allowed")
    (approval,) = kinds(records, "approval")
    assert approval["decision"] == "accept"
    assert "touch allowed.txt" in approval["subject"]
    assert approval["turn_id"] == kinds(records, "turn_started")[0]["turn_id"]
    (exec_step,) = [s for s in kinds(records, "step") if s["step_type"] == "exec"]
    assert exec_step["status"] == "completed"
    assert exec_step["exit_code"] == 0
    assert read_result(results, "allowed")["final_text"].startswith("SHELL DONE: exit=0")

    assert (work / "precious.txt").read_text() == "keep me\n"
    records = read_steps(results, "declined")
    (approval,) = kinds(records, "approval")
    assert approval["decision"] == "decline"
    assert "rm -f precious.txt" in approval["subject"]
    (exec_step,) = [s for s in kinds(records, "step") if s["step_type"] == "exec"]
    assert exec_step["status"] == "declined"


# --- 5. dependencies ----------------------------------------------------------------------


def test_failed_dependency_stops_the_chain(tmp_path: Path) -> None:
    """In a chain a -> b -> c where b fails, c is never started and says why."""
    config, taskfile = write_tasks(
        tmp_path,
        """
        [defaults]
        approval_policy = "never"
        inactivity_timeout = 30

        [[jobs]]
        id = "a"
        prompt = "first link"

        [[jobs]]
        id = "b"
        prompt = "error 500: boom"
        depends_on = ["a"]

        [[jobs]]
        id = "c"
        prompt = "last link"
        depends_on = ["b"]
        """,
    )
    assert main(run_argv(config, taskfile)) == 1
    results = tmp_path / "results"

    assert read_result(results, "a")["status"] == "completed"
    b = read_result(results, "b")
    assert b["status"] == "failed"
    # codex words a 500 from the model provider its own way: only require an error.
    assert b["error"]
    assert [t["status"] for t in b["turns"]] == ["failed"]
    b_started = ts(kinds(read_steps(results, "b"), "turn_started")[0])
    assert b_started >= ts(kinds(read_steps(results, "a"), "turn_completed")[0])
    c = read_result(results, "c")
    assert c["status"] == "cancelled"
    assert "dependency" in c["error"] and "b (failed)" in c["error"]
    assert c["started_at"] is None and c["thread_id"] is None and c["turns"] == []
    assert not kinds(read_steps(results, "c"), "turn_started")
    totals = read_summary(results)["totals"]
    assert (totals["completed"], totals["failed"], totals["cancelled"]) == (1, 1, 1)


# --- 6. re-running ------------------------------------------------------------------------


def test_rerun_reuses_completed_jobs_unless_forced(tmp_path: Path) -> None:
    """A second run reuses completed results untouched; `--force` runs the jobs again."""
    config, taskfile = write_tasks(
        tmp_path,
        """
        [defaults]
        approval_policy = "never"

        [[jobs]]
        id = "one"
        prompt = "first job"

        [[jobs]]
        id = "two"
        prompt = "second job"
        """,
    )
    argv = run_argv(config, taskfile)
    results = tmp_path / "results"
    files = [
        results / job / name for job in ("one", "two") for name in ("result.json", "steps.jsonl")
    ]

    assert main(argv) == 0
    before = {path: path.read_bytes() for path in files}
    assert read_summary(results)["totals"]["reused"] == 0

    assert main(argv) == 0
    assert {path: path.read_bytes() for path in files} == before
    summary = read_summary(results)
    assert [(j["job_id"], j["reused"], j["status"]) for j in summary["jobs"]] == [
        ("one", True, "completed"),
        ("two", True, "completed"),
    ]
    assert summary["totals"]["reused"] == 2
    assert summary["totals"]["completed"] == 2

    assert main([*argv, "--force"]) == 0
    summary = read_summary(results)
    assert summary["totals"]["reused"] == 0
    for job in ("one", "two"):
        old = json.loads(before[results / job / "result.json"])
        new = read_result(results, job)
        assert new["status"] == "completed"
        assert new["started_at"] > old["started_at"]
        assert new["thread_id"] != old["thread_id"]
        # The fresh run has a fresh step log; the earlier one is kept beside it.
        assert (results / job / "steps.jsonl.previous").read_bytes() == before[
            results / job / "steps.jsonl"
        ]
        assert kinds(read_steps(results, job), "turn_started")[0]["thread_id"] == new["thread_id"]


# --- 7. invalid input ---------------------------------------------------------------------

GOOD_JOB = '[[jobs]]\nid = "@ok"\nprompt = "p"\n'

InvalidCase = tuple[str, str | None, str | None, list[tuple[str, int, str]]]


def bad_job_line(case: str, line: str, key: str) -> InvalidCase:
    """A case whose good job has one bad line more, reported at line 4 as `jobs[0].<key>`."""
    return (case, f"{GOOD_JOB}{line}\n", None, [("tasks", 4, f"jobs[0].{key}")])


def bad_config(case: str, text: str, line: int, key: str) -> InvalidCase:
    """A case with the good task file and config `text`, reported at `line` as `key`."""
    return (case, None, text, [("config", line, key)])


# (case, task file text or None for a good one, config text or None for a good one,
#  expected problems as (file: "tasks" | "config", line, key)). "@" in a task file becomes a
# per-case prefix, so that every case's ids are distinct when validated together.
INVALID: list[InvalidCase] = [
    (
        "toml-syntax",
        '[[jobs]]\nid = "@a"\nprompt = "unterminated\n',
        None,
        [("tasks", 3, "syntax")],
    ),
    bad_job_line("unknown-job-key", 'promt = "typo"', "promt"),
    bad_job_line("wrong-type", 'inactivity_timeout = "soon"', "inactivity_timeout"),
    bad_job_line("bad-on-inactivity", 'on_inactivity = "maybe"', "on_inactivity"),
    bad_job_line("bad-approval-policy", 'approval_policy = "always"', "approval_policy"),
    bad_job_line(
        "bad-approval-decision", 'approvals = { commands = "sometimes" }', "approvals.commands"
    ),
    bad_job_line("negative-count", "max_continuations = -1", "max_continuations"),
    ("unsafe-id", '[[jobs]]\nid = "@a/b"\nprompt = "p"\n', None, [("tasks", 2, "jobs[0].id")]),
    ("duplicate-id", GOOD_JOB + GOOD_JOB, None, [("tasks", 5, "jobs[1].id")]),
    bad_job_line("unknown-dependency", 'depends_on = ["@nope"]', "depends_on[0]"),
    (
        "dependency-cycle",
        '[[jobs]]\nid = "@a"\nprompt = "p"\ndepends_on = ["@b"]\n\n'
        '[[jobs]]\nid = "@b"\nprompt = "p"\ndepends_on = ["@a"]\n',
        None,
        [("tasks", 4, "jobs[0].depends_on")],
    ),
    bad_job_line("prompt-and-turns", 'turns = ["x", "y"]', "turns"),
    bad_job_line("missing-cwd", 'cwd = "no/such/dir"', "cwd"),
    (
        "id-in-defaults",
        '[defaults]\nid = "x"\n\n' + GOOD_JOB,
        None,
        [("tasks", 2, "defaults.id")],
    ),
    ("no-jobs", '[defaults]\nsandbox = "read-only"\n', None, [("tasks", 1, "jobs")]),
    bad_job_line("unknown-connection", 'connection = "nowhere"', "connection"),
    bad_config(
        "config-unknown-key", '[orchestrator]\nresult_dir = "out"\n', 2, "orchestrator.result_dir"
    ),
    bad_config(
        "config-zero-threads",
        '[[connections]]\nname = "x"\nmax_threads = 0\n',
        3,
        "connections[0].max_threads",
    ),
    bad_config(
        "config-token-in-file",
        '[[connections]]\nname = "ws"\ntransport = "websocket"\nurl = "ws://127.0.0.1:1"\n'
        'token = "secret"\n',
        5,
        "connections[0].token",
    ),
    bad_config("config-syntax", "[orchestrator\n", 1, "syntax"),
]


def write_invalid_case(
    directory: Path, case: str, tasks: str | None, config: str | None
) -> tuple[Path, Path]:
    """The task file and config of one invalid case (the good one where None)."""
    directory.mkdir(parents=True, exist_ok=True)
    if config is None:
        config_path = write_config(directory, name=f"{case}.config.toml")
    else:
        config_path = write_text(directory / f"{case}.config.toml", config)
    tasks_path = write_text(
        directory / f"{case}.tasks.toml", (tasks or GOOD_JOB).replace("@", f"{case}-")
    )
    return tasks_path, config_path


def assert_reported(
    stderr: str, expected: list[tuple[str, int, str]], files: dict[str, Path]
) -> None:
    """Every expected problem is a line of stderr starting `file:line: key: `."""
    lines = stderr.splitlines()
    for which, line, key in expected:
        prefix = f"{files[which]}:{line}: {key}: "
        assert any(text.startswith(prefix) for text in lines), (prefix, stderr)


@pytest.mark.parametrize(
    ("case", "tasks", "config", "expected"), INVALID, ids=[c[0] for c in INVALID]
)
@pytest.mark.fault(
    "config",
    "invalid task or config file given to `orchestrator run`",
    "exit 2 before anything runs; every problem as file:line: key",
)
def test_invalid_input_runs_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    tasks: str | None,
    config: str | None,
    expected: list[tuple[str, int, str]],
) -> None:
    """A bad task or config file exits 2 before anything runs, naming file, line and key."""
    tasks_path, config_path = write_invalid_case(tmp_path, case, tasks, config)
    assert main(run_argv(config_path, tasks_path)) == 2
    captured = capsys.readouterr()
    assert_reported(captured.err, expected, {"tasks": tasks_path, "config": config_path})
    assert captured.out == ""
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "out").exists()


def test_at_least_twelve_kinds_of_invalid_input() -> None:
    """The invalid-input table covers at least twelve kinds of problem."""
    assert len({case for case, *_ in INVALID}) >= 12


def test_validate_reports_every_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` over every bad task file and a bad config lists all their problems."""
    paths: list[Path] = []
    expected: list[str] = []
    config_case = next(c for c in INVALID if c[0] == "config-zero-threads")
    _, config_path = write_invalid_case(tmp_path / "cfg", *config_case[:3])
    for case, tasks, config, problems in INVALID:
        # A job's unknown connection is checked only against a valid config.
        if tasks is None or case == "unknown-connection":
            continue
        tasks_path, _ = write_invalid_case(tmp_path, case, tasks, config)
        paths.append(tasks_path)
        expected += [f"{tasks_path}:{line}: {key}: " for _, line, key in problems]
    expected += [f"{config_path}:3: connections[0].max_threads: "]
    assert main(["validate", "-c", str(config_path), *map(str, paths)]) == 2
    lines = capsys.readouterr().err.splitlines()
    for prefix in expected:
        assert any(line.startswith(prefix) for line in lines), prefix
    assert len(expected) >= 12
    assert not (tmp_path / "results").exists()


# --- 8. an app-server killed mid-turn -----------------------------------------------------


@pytest.mark.fault(
    "orchestrator",
    "SIGKILL of one connection's real app-server mid-turn",
    "the actor restarts it, the job recovers and completes; a job on the other connection never "
    "notices",
)
async def test_killed_app_server_is_restarted_and_the_job_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of one connection's app-server during a turn: the actor restarts it, the job
    recovers and completes, and a job on the other connection never notices."""
    actors: dict[str, ConnectionActor] = {}

    def recording_actor(*args: Any, **kwargs: Any) -> ConnectionActor:
        actor = ConnectionActor(*args, **kwargs)
        actors[actor.name] = actor
        return actor

    monkeypatch.setattr(orchestrator.app.batch, "ConnectionActor", recording_actor)
    config_path = write_config(tmp_path, stdio_connection("doomed"), stdio_connection("steady"))
    taskfile = write_text(
        tmp_path / "tasks.toml",
        """
        [defaults]
        approval_policy = "never"
        inactivity_timeout = 30
        retries = 2

        [[jobs]]
        id = "victim"
        prompt = "slow 1x3: survived"
        connection = "doomed"

        [[jobs]]
        id = "bystander"
        prompt = "slow 1x3: untouched"
        connection = "steady"
        """,
    )
    results = tmp_path / "results"
    config = load_config(config_path)
    jobs = load_task_files([taskfile])
    summary: dict[str, Any] = {}

    async def run() -> None:
        summary.update(await run_batch(config, jobs))

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await wait_for_record(results / "victim" / "steps.jsonl", "turn_started")
            client, generation = await actors["doomed"].wait_client()
            assert generation == 1
            assert isinstance(client.transport, StdioTransport)
            kill_group(client.transport.process.pid)

    assert actors["doomed"].generation >= 2
    assert actors["steady"].generation == 1
    victim = read_result(results, "victim")
    records = read_steps(results, "victim")
    assert victim["status"] == "completed", victim
    assert victim["final_text"] == "SLOW: survived"
    assert victim["attempts"] >= 2
    assert any(r["allowed"] for r in kinds(records, "retry"))
    assert kinds(records, "turn_lost") or kinds(records, "turn_reconciled")
    assert kinds(records, "thread_resumed")
    assert kinds(records, "turn_completed")[-1]["status"] == "completed"

    bystander = read_result(results, "bystander")
    records = read_steps(results, "bystander")
    assert bystander["status"] == "completed"
    assert bystander["attempts"] == 1
    assert not kinds(records, "retry")
    assert len(kinds(records, "turn_started")) == 1
    assert summary["totals"]["completed"] == 2


# --- 9. Ctrl-C ----------------------------------------------------------------------------


@pytest.mark.fault(
    "orchestrator (real CLI)",
    "SIGINT (Ctrl-C) to `orchestrator run` during a slow turn",
    "the turn is interrupted, its job recorded cancelled with its steps, dependents not run, the "
    "summary written, exit 1",
)
def test_sigint_stops_the_batch_gracefully(tmp_path: Path) -> None:
    """SIGINT to `python -m orchestrator run` interrupts the running turn, records the job
    cancelled with its steps, writes the summary and exits 1."""
    config, taskfile = write_tasks(
        tmp_path,
        """
        [defaults]
        approval_policy = "never"
        inactivity_timeout = 60

        [[jobs]]
        id = "quick"
        prompt = "done in a moment"

        [[jobs]]
        id = "slow"
        prompt = "slow 1x60: never finished"

        [[jobs]]
        id = "after"
        prompt = "never started"
        depends_on = ["slow"]
        """,
    )
    results = tmp_path / "results"
    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", "-c", str(config), str(taskfile)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        try:
            poll_until(
                lambda: (
                    bool(kinds(read_steps(results, "slow"), "turn_started"))
                    and (results / "quick" / "result.json").exists()
                ),
                seconds=60,
                what="the slow turn to start and the quick job to finish",
            )
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert status == 1, (tmp_path / "err.txt").read_text()

    assert read_result(results, "quick")["status"] == "completed"
    slow = read_result(results, "slow")
    records = read_steps(results, "slow")
    assert slow["status"] == "cancelled"
    assert slow["error"] == "stopped"
    assert [t["status"] for t in slow["turns"]] == ["cancelled"]
    assert kinds(records, "turn_started")
    assert kinds(records, "cancel")[0]["reason"] == "stopped"
    after = read_result(results, "after")
    assert after["status"] == "cancelled"
    assert after["started_at"] is None
    assert not (results / "after" / "steps.jsonl").exists()
    summary = read_summary(results)
    assert [(j["job_id"], j["status"]) for j in summary["jobs"]] == [
        ("quick", "completed"),
        ("slow", "cancelled"),
        ("after", "cancelled"),
    ]
    assert summary["totals"]["cancelled"] == 2
