"""The daemon end to end: `python -m orchestrator daemon` as a real process, real codex.

Each test writes its own config under `tmp_path` (results, state and inbox there, scripted
model, a one-second `shutdown_grace`), starts the daemon as a subprocess, drops task files
into its inbox the documented way (a dot-file renamed in), and checks the files it leaves:
results, step logs, journals, `inbox/accepted/` and `inbox/rejected/`. Kills are real
SIGKILLs of the daemon's pid; every wait is a bounded poll.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.daemon_helpers import (
    DaemonProcess,
    command_line,
    descendants,
    drop_task,
    journal_events,
    kinds,
    read_json_file,
    read_jsonl,
    run_cli,
    running_daemon,
    stdio_connection,
    still_alive,
    task_text,
    wait_until,
    write_daemon_config,
    ws_connection,
)
from tests.real_server import open_ws_app_server, scripted_codex_home, work_dir

pytestmark = pytest.mark.real_server


def result_of(tmp_path: Path, job_id: str) -> dict[str, Any]:
    """The job's result.json (it must be written)."""
    result = read_json_file(tmp_path / "results" / job_id / "result.json")
    assert result is not None, f"no result for {job_id}"
    return result


def steps_of(tmp_path: Path, job_id: str) -> list[dict[str, Any]]:
    """The job's step records."""
    return read_jsonl(tmp_path / "results" / job_id / "steps.jsonl")


def has_result(tmp_path: Path, *job_ids: str) -> bool:
    """Every named job has its result.json."""
    return all((tmp_path / "results" / job_id / "result.json").exists() for job_id in job_ids)


async def wait_for_result(
    tmp_path: Path, job_id: str, daemon: DaemonProcess, *, seconds: float = 30
) -> None:
    """Wait until the job's result.json is written; fail at once if `daemon` exits."""
    await wait_until(
        lambda: has_result(tmp_path, job_id), seconds=seconds, what=f"job {job_id}", watch=[daemon]
    )


async def kill_and_check_children_gone(daemon: DaemonProcess) -> None:
    """SIGKILL the daemon; every process it had started must be gone within seconds."""
    children = descendants(daemon.pid)
    assert any("app-server" in command_line(pid) for pid in children), children
    await daemon.kill()
    assert daemon.returncode() == -signal.SIGKILL
    await wait_until(
        lambda: not still_alive(children),
        seconds=15,
        what=f"the killed daemon's children {sorted(children)} to exit",
    )


# --- 1. the inbox -----------------------------------------------------------------------


@pytest.mark.fault(
    "daemon",
    "a task file with an unknown key dropped into the inbox among seven good ones",
    "moved to rejected/ with a .error naming file:line: key; the seven jobs complete",
)
async def test_inbox_takes_valid_files_and_rejects_a_bad_one(tmp_path: Path) -> None:
    """Eight files dropped into a running daemon's inbox: seven jobs complete and their files
    move to accepted/, the bad file moves to rejected/ with a `.error` naming file:line: key."""
    work = work_dir(tmp_path)
    config = write_daemon_config(tmp_path)
    inbox = tmp_path / "inbox"
    prompts = {
        "plain-1": "first plain job",
        "plain-2": "second plain job",
        "slow": "slow 1x2: worth the wait",
        "shell": "shell: echo hi",
        "reason": "reason: which file first?",
        "final": "final: drafting | all done",
        "plain-3": "third plain job",
    }
    async with running_daemon(config, tmp_path, "daemon") as daemon:
        names = []
        for index, (job_id, prompt) in enumerate(prompts.items()):
            if index == 3:
                bad = task_text(("bad-job", "p"), cwd=str(work)) + 'promt = "typo"\n'
                drop_task(inbox, "bad.toml", bad)
            names.append(f"{job_id}.toml")
            drop_task(
                inbox,
                names[-1],
                task_text((job_id, prompt), cwd=str(work), inactivity_timeout=30),
            )
        await wait_until(
            lambda: has_result(tmp_path, *prompts),
            seconds=60,
            what="seven results",
            watch=[daemon],
        )

    for job_id in prompts:
        result = result_of(tmp_path, job_id)
        assert result["status"] == "completed", result
        assert len(kinds(steps_of(tmp_path, job_id), "turn_started")) == 1
    assert result_of(tmp_path, "slow")["final_text"] == "SLOW: worth the wait"
    shell_text = str(result_of(tmp_path, "shell")["final_text"])
    assert shell_text.startswith("SHELL DONE: exit=0") and shell_text.endswith("hi")
    shell_steps = kinds(steps_of(tmp_path, "shell"), "step")
    assert [s["exit_code"] for s in shell_steps if s["step_type"] == "exec"] == [0]
    assert not (tmp_path / "results" / "bad-job").exists()

    assert not list(inbox.glob("*.toml")) and not list(inbox.glob(".*"))
    accepted = sorted(p.name for p in (inbox / "accepted").iterdir())
    assert len(accepted) == 7
    assert sorted(name.split("-", 1)[1] for name in accepted) == sorted(names)
    # A rejected file keeps the name it was dropped under.
    (rejected,) = (inbox / "rejected").glob("*.toml")
    assert rejected.name == "bad.toml"
    assert sorted((inbox / "rejected").iterdir()) == [rejected.with_suffix(".error"), rejected]
    error = rejected.with_suffix(".error").read_text("utf-8").splitlines()
    assert any(line.startswith(f"{rejected}:8: jobs[0].promt: ") for line in error), error


# --- 2. kill -9 ---------------------------------------------------------------------------


@pytest.mark.fault(
    "daemon",
    "kill -9 of the daemon before a turn is acknowledged, mid-turn, and right after a result is "
    "written",
    "after each restart every job completes exactly once; a written result is never rerun; no "
    "app-server outlives the daemon",
)
async def test_sigkill_at_three_moments_each_job_completes_once(tmp_path: Path) -> None:
    """SIGKILL before a turn is acknowledged, mid-turn and after a result is written: after
    each restart every job completes exactly once, and a written result is never rerun.

    (a) Job `a` is pinned to a connection whose app-server cannot start in the first life,
    so its journal stops at `scheduled`: no thread, no turn. The next daemon starts it
    afresh: one `turn_started`. (b) Job `b` is killed mid-turn (`turn_acknowledged`, no
    `turn_completed`). Its stdio app-server is the daemon's child and exits when the daemon's
    pipes close, so the acknowledged turn dies with it: the next daemon's app-server resumes
    the thread, reads the turn back as not running (`turn_lost`) and sends the prompt once
    more: two `turn_started`, one `turn_completed`. (c) Job `c` is killed right after its
    result.json appears; the next daemon leaves the file alone and starts no turn.
    """
    work = work_dir(tmp_path)
    inbox = tmp_path / "inbox"
    state = tmp_path / "state"
    broken = json.dumps([str(tmp_path / "no-such-codex"), "app-server"])
    config = write_daemon_config(
        tmp_path, stdio_connection("local"), stdio_connection("later", command=broken)
    )
    common = {"cwd": str(work), "inactivity_timeout": 30, "retries": 2}

    # Life 1: `a` waits, scheduled, for a connection that is not up.
    async with running_daemon(config, tmp_path, "life1") as daemon:
        drop_task(
            inbox, "a.toml", task_text(("a", "slow 0.5x2: a done"), connection="later", **common)
        )
        await wait_until(
            lambda: "scheduled" in journal_events(state, "a"),
            seconds=60,
            what="job a to be scheduled",
            watch=[daemon],
        )
        events = journal_events(state, "a")
        assert "turn_starting" not in events and "turn_acknowledged" not in events, events
        await kill_and_check_children_gone(daemon)
    assert not (tmp_path / "results" / "a" / "result.json").exists()

    # Life 2: `later` works now; `a` completes. Then `b` is killed mid-turn.
    config = write_daemon_config(tmp_path, stdio_connection("local"), stdio_connection("later"))
    async with running_daemon(config, tmp_path, "life2") as daemon:
        await wait_for_result(tmp_path, "a", daemon, seconds=60)
        drop_task(inbox, "b.toml", task_text(("b", "slow 1x4: b done"), **common))
        await wait_until(
            lambda: "turn_acknowledged" in journal_events(state, "b"),
            seconds=60,
            what="job b's turn to be acknowledged",
            watch=[daemon],
        )
        assert "turn_completed" not in journal_events(state, "b")
        await kill_and_check_children_gone(daemon)
    assert not (tmp_path / "results" / "b" / "result.json").exists()

    # Life 3: `b` is recovered and completes. Then `c` is killed as its result appears.
    async with running_daemon(config, tmp_path, "life3") as daemon:
        await wait_for_result(tmp_path, "b", daemon, seconds=60)
        drop_task(inbox, "c.toml", task_text(("c", "quick c"), **common))
        await wait_for_result(tmp_path, "c", daemon, seconds=60)
        await kill_and_check_children_gone(daemon)
        c_result = (tmp_path / "results" / "c" / "result.json").read_bytes()
        c_steps = (tmp_path / "results" / "c" / "steps.jsonl").read_bytes()

    # Life 4: everything ends; a job dropped now shows the daemon is past its recovery.
    async with running_daemon(config, tmp_path, "life4") as daemon:
        drop_task(inbox, "d.toml", task_text(("d", "after the kills"), **common))
        await wait_for_result(tmp_path, "d", daemon, seconds=60)
        await wait_until(
            lambda: (state / "journal" / "c.done.json").exists(),
            seconds=30,
            what="job c's journal to be closed",
            watch=[daemon],
        )

    assert (tmp_path / "results" / "c" / "result.json").read_bytes() == c_result
    assert (tmp_path / "results" / "c" / "steps.jsonl").read_bytes() == c_steps
    expected_starts = {"a": 1, "b": 2, "c": 1, "d": 1}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(expected_starts)
    for job_id, starts in expected_starts.items():
        result = result_of(tmp_path, job_id)
        records = steps_of(tmp_path, job_id)
        assert result["status"] == "completed", result
        assert len(kinds(records, "turn_started")) == starts, (job_id, records)
        assert [r["status"] for r in kinds(records, "turn_completed")] == ["completed"]
        progress = read_json_file(state / "journal" / f"{job_id}.done.json")
        assert progress is not None and progress["status"] == "completed", progress
    assert result_of(tmp_path, "a")["final_text"] == "SLOW: a done"
    assert result_of(tmp_path, "a")["connection"] == "later"
    b_records = steps_of(tmp_path, "b")
    assert len(kinds(b_records, "turn_lost")) == 1
    assert not kinds(b_records, "turn_reconciled")
    assert kinds(b_records, "thread_resumed")
    assert result_of(tmp_path, "b")["final_text"] == "SLOW: b done"


@pytest.mark.fault(
    "daemon",
    "kill -9 of the daemon mid-turn on a websocket app-server that lives on",
    "the next daemon resumes and reconciles the running turn: one turn_started, never sent again",
)
async def test_sigkill_mid_turn_on_a_websocket_resumes_the_turn(tmp_path: Path) -> None:
    """SIGKILL of the daemon mid-turn on a websocket app-server it does not own: the turn
    goes on without it, and the next daemon resumes and reconciles it instead of re-sending
    the prompt (one `turn_started`, one `turn_reconciled`)."""
    work = work_dir(tmp_path)
    inbox = tmp_path / "inbox"
    state = tmp_path / "state"
    async with scripted_codex_home(tmp_path / "ws-home") as ws_env:
        async with open_ws_app_server(ws_env, cwd=work) as url:
            config = write_daemon_config(
                tmp_path, ws_connection("socket", url), scripted_model=False
            )
            common = {"cwd": str(work), "inactivity_timeout": 30, "retries": 2}
            async with running_daemon(config, tmp_path, "life1") as daemon:
                drop_task(inbox, "w.toml", task_text(("w", "slow 1x4: survived"), **common))
                await wait_until(
                    lambda: "turn_acknowledged" in journal_events(state, "w"),
                    seconds=30,
                    what="job w's turn to be acknowledged",
                    watch=[daemon],
                )
                assert "turn_completed" not in journal_events(state, "w")
                assert not descendants(daemon.pid)  # no app-server of its own
                await daemon.kill()
            assert not (tmp_path / "results" / "w" / "result.json").exists()
            async with running_daemon(config, tmp_path, "life2") as daemon:
                await wait_for_result(tmp_path, "w", daemon)

    result = result_of(tmp_path, "w")
    records = steps_of(tmp_path, "w")
    assert result["status"] == "completed", result
    assert result["final_text"] == "SLOW: survived"
    started = kinds(records, "turn_started")
    (reconciled,) = kinds(records, "turn_reconciled")
    assert len(started) == 1
    assert reconciled["turn_id"] == started[0]["turn_id"]
    assert not kinds(records, "turn_lost")
    assert [r["turn_id"] for r in kinds(records, "turn_completed")] == [started[0]["turn_id"]]


@pytest.mark.fault(
    "daemon",
    "a crash between writing result.json and journaling it",
    "the next daemon does not run the job again and closes its journal; status shows it completed",
)
async def test_result_written_but_not_journaled_is_closed_without_a_rerun(
    tmp_path: Path,
) -> None:
    """A kill between writing result.json and journaling it: the next daemon does not run the
    job again, and closes its journal so that `status` shows it completed."""
    work = work_dir(tmp_path)
    inbox = tmp_path / "inbox"
    state = tmp_path / "state"
    config = write_daemon_config(tmp_path)
    common = {"cwd": str(work), "inactivity_timeout": 30}
    async with running_daemon(config, tmp_path, "life1") as daemon:
        drop_task(inbox, "c.toml", task_text(("c", "quick c"), **common))
        await wait_until(
            lambda: (state / "journal" / "c.done.json").exists(),
            seconds=30,
            what="job c to finish",
            watch=[daemon],
        )
        await daemon.kill()
    result_bytes = (tmp_path / "results" / "c" / "result.json").read_bytes()
    steps_bytes = (tmp_path / "results" / "c" / "steps.jsonl").read_bytes()
    # The journal as it stood between `write_json_atomic(result)` and
    # `journal.append("result_written")` in Scheduler._finish.
    done = read_json_file(state / "journal" / "c.done.json")
    assert done is not None
    (turn_id,) = done["known_turns"]
    records = [
        {"event": "accepted", "task_file": done["task_file"]},
        {"event": "scheduled", "connection": "local"},
        {"event": "thread_started", "thread_id": done["thread_id"]},
        {"event": "turn_starting", "turn_index": 0},
        {"event": "turn_acknowledged", "turn_index": 0, "turn_id": turn_id},
        {"event": "turn_completed", "turn_index": 0, "turn_id": turn_id, "status": "completed"},
    ]
    (state / "journal" / "c.jsonl").write_text(
        "".join(json.dumps({"v": 1, "ts": done["accepted_at"], **r}) + "\n" for r in records)
    )
    (state / "journal" / "c.done.json").unlink()

    async with running_daemon(config, tmp_path, "life2") as daemon:
        # A job dropped now ends after the recovered ones were submitted.
        drop_task(inbox, "d.toml", task_text(("d", "after the kill"), **common))
        await wait_for_result(tmp_path, "d", daemon)
        assert (tmp_path / "results" / "c" / "result.json").read_bytes() == result_bytes
        assert (tmp_path / "results" / "c" / "steps.jsonl").read_bytes() == steps_bytes
        status = json.loads((await run_cli("status", "-c", str(config), "--json")).stdout)
        states = {job["job_id"]: job["state"] for job in status["jobs"]}
        assert states == {"c": "completed", "d": "completed"}
        assert (state / "journal" / "c.done.json").exists()


# --- 3. SIGTERM ---------------------------------------------------------------------------


@pytest.mark.fault(
    "daemon",
    "SIGTERM during a slow turn",
    "exits 0 within shutdown_grace + a few seconds, the turn interrupted; the next start completes "
    "the job",
)
async def test_sigterm_mid_turn_exits_zero_and_the_next_start_finishes_the_job(
    tmp_path: Path,
) -> None:
    """SIGTERM during a slow turn: the daemon exits 0 within shutdown_grace and a few seconds,
    leaving the job unfinished with the cancel in its step log; the next daemon completes it.

    The stop interrupts the turn on the server (`turn/interrupt`), so the next daemon reads
    it back `interrupted`, records `turn_lost` and sends the prompt again.
    """
    work = work_dir(tmp_path)
    inbox = tmp_path / "inbox"
    state = tmp_path / "state"
    grace = 1.0
    config = write_daemon_config(tmp_path, shutdown_grace=grace)
    steps = tmp_path / "results" / "slow" / "steps.jsonl"
    async with running_daemon(config, tmp_path, "life1") as daemon:
        drop_task(
            inbox,
            "slow.toml",
            task_text(("slow", "slow 1x4: finally"), cwd=str(work), inactivity_timeout=30),
        )
        await wait_until(
            lambda: bool(kinds(read_jsonl(steps), "turn_started")),
            seconds=30,
            what="the slow turn to start",
            watch=[daemon],
        )
        stopping = trio.current_time()
        daemon.send(signal.SIGTERM)
        assert await daemon.wait_exit(grace + 10) == 0, daemon.stderr()[-4000:]
        assert trio.current_time() - stopping < grace + 5
    assert not (tmp_path / "results" / "slow" / "result.json").exists()
    records = read_jsonl(steps)
    (cancel,) = kinds(records, "cancel")
    assert cancel["reason"] == "stopped"
    assert cancel["turn_id"] == kinds(records, "turn_started")[0]["turn_id"]
    assert not kinds(records, "turn_completed")
    events = journal_events(state, "slow")
    assert "turn_acknowledged" in events and "result_written" not in events

    async with running_daemon(config, tmp_path, "life2") as daemon:
        await wait_for_result(tmp_path, "slow", daemon)
    result = result_of(tmp_path, "slow")
    records = read_jsonl(steps)
    assert result["status"] == "completed", result
    assert result["final_text"] == "SLOW: finally"
    assert len(kinds(records, "turn_started")) == 2
    assert [r["status"] for r in kinds(records, "turn_lost")] == ["interrupted"]
    assert [r["status"] for r in kinds(records, "turn_completed")] == ["completed"]


# --- 4. status and cancel -----------------------------------------------------------------


async def read_status(config: Path) -> dict[str, Any]:
    """`orchestrator status -c CONFIG --json`, parsed."""
    done = await run_cli("status", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def job_entry(status: dict[str, Any], job_id: str) -> dict[str, Any] | None:
    """One job's entry of a status report."""
    return next((job for job in status["jobs"] if job["job_id"] == job_id), None)


async def wait_for_job_state(
    config: Path,
    job_id: str,
    state: str,
    *,
    daemon: DaemonProcess,
    ready: Callable[[dict[str, Any]], bool] = lambda entry: True,
    seconds: float = 30,
) -> dict[str, Any]:
    """Poll `status --json` until it shows the job in `state`; returns that report."""
    with trio.move_on_after(seconds):
        while True:
            daemon.check_running()
            status = await read_status(config)
            entry = job_entry(status, job_id)
            if entry is not None and entry["state"] == state and ready(entry):
                return status
            await trio.sleep(0.2)
    raise AssertionError(f"status never showed {job_id} {state} within {seconds} s: {status}")


async def test_cancel_a_running_job_and_status_throughout(tmp_path: Path) -> None:
    """`orchestrator cancel` ends a running slow job `cancelled` within seconds, and
    `orchestrator status --json` shows the daemon's pid and the job's state before, during and
    after, and the jobs from the journals once the daemon has stopped."""
    work = work_dir(tmp_path)
    config = write_daemon_config(tmp_path)
    async with running_daemon(config, tmp_path, "daemon") as daemon:
        status = await read_status(config)
        assert status["daemon"] == {"running": True, "pid": daemon.pid}
        assert status["jobs"] == []
        assert [c["name"] for c in status["connections"]] == ["local"]

        drop_task(
            tmp_path / "inbox",
            "long.toml",
            task_text(("long", "slow 1x30: never finished"), cwd=str(work), inactivity_timeout=60),
        )
        running = await wait_for_job_state(
            config, "long", "running", daemon=daemon, ready=lambda e: bool(e["turn_id"])
        )
        entry = job_entry(running, "long")
        assert entry is not None
        assert entry["connection"] == "local" and entry["thread_id"]
        assert "result" not in entry
        assert running["daemon"]["pid"] == daemon.pid

        asked = trio.current_time()
        done = await run_cli("cancel", "-c", str(config), "long")
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().strip() == "long: cancelled"
        assert trio.current_time() - asked < 10
        result = result_of(tmp_path, "long")
        assert result["status"] == "cancelled"
        assert result["error"] == "cancelled on request"
        records = steps_of(tmp_path, "long")
        assert kinds(records, "cancel")
        assert not kinds(records, "turn_completed")

        # The live snapshot (daemon.json) is rewritten every second; until then it may
        # still say running.
        ended = await wait_for_job_state(config, "long", "cancelled", daemon=daemon)
        entry = job_entry(ended, "long")
        assert entry is not None and entry["result"].endswith("result.json")

        daemon.send(signal.SIGTERM)
        assert await daemon.wait_exit(15) == 0

    status = await read_status(config)
    assert status["daemon"] == {"running": False, "pid": None}
    assert [(job["job_id"], job["state"]) for job in status["jobs"]] == [("long", "cancelled")]
    done = await run_cli("cancel", "-c", str(config), "long")
    assert done.returncode == 1
    assert str(tmp_path / "state") in done.stderr.decode()


# --- 5. one daemon per state dir ----------------------------------------------------------


@pytest.mark.fault(
    "daemon",
    "a second daemon started on a state dir in use",
    "it exits 1 naming the first one's pid; the first goes on",
)
async def test_second_daemon_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    """A second daemon on a state dir in use exits 1 naming the first one's pid, and the
    first one goes on."""
    config = write_daemon_config(tmp_path)
    async with running_daemon(config, tmp_path, "first") as first:
        second = await run_cli("daemon", "-c", str(config), "--log-format", "json")
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr.decode()
        first.check_running()
        (tmp_path / "work").mkdir()
        drop_task(
            tmp_path / "inbox",
            "after.toml",
            task_text(("after", "still here"), cwd=str(tmp_path / "work")),
        )
        await wait_for_result(tmp_path, "after", first)
        assert result_of(tmp_path, "after")["status"] == "completed"


# --- 6. duplicate ids ---------------------------------------------------------------------


@pytest.mark.fault(
    "daemon",
    "a task file reusing a job id the daemon already accepted",
    "rejected whole with an error naming the id at its line; the first job's records untouched",
)
async def test_a_later_file_reusing_a_job_id_is_rejected(tmp_path: Path) -> None:
    """A task file naming a job id the daemon already accepted is rejected whole, with an
    error naming the id, and the first job's records stay as they were."""
    work = work_dir(tmp_path)
    inbox = tmp_path / "inbox"
    config = write_daemon_config(tmp_path)
    async with running_daemon(config, tmp_path, "daemon") as daemon:
        drop_task(inbox, "first.toml", task_text(("dup", "the first dup"), cwd=str(work)))
        await wait_for_result(tmp_path, "dup", daemon)
        before = (tmp_path / "results" / "dup" / "result.json").read_bytes()
        drop_task(
            inbox,
            "second.toml",
            task_text(("fresh", "a new job"), ("dup", "the second dup"), cwd=str(work)),
        )
        await wait_until(
            lambda: any((inbox / "rejected").glob("*.error")),
            seconds=30,
            what="the second file to be rejected",
            watch=[daemon],
        )
        # One more file, to be sure the daemon has finished with the rejected one.
        drop_task(inbox, "third.toml", task_text(("third", "later"), cwd=str(work)))
        await wait_for_result(tmp_path, "third", daemon)

    (rejected,) = (inbox / "rejected").glob("*.toml")
    assert rejected.name == "second.toml"
    error = rejected.with_suffix(".error").read_text("utf-8").splitlines()
    # `dup` is the second job of the file: its [[jobs]] table starts on line 9.
    assert any(
        line.startswith(f"{rejected}:9: jobs[1].id: ") and "'dup'" in line for line in error
    ), error
    assert not any("fresh" in line for line in error)
    assert not (tmp_path / "results" / "fresh").exists()
    assert (tmp_path / "results" / "dup" / "result.json").read_bytes() == before
    assert result_of(tmp_path, "dup")["final_text"] == "ECHO: the first dup"
    assert sorted(p.name.split("-", 1)[1] for p in (inbox / "accepted").iterdir()) == [
        "first.toml",
        "third.toml",
    ]
