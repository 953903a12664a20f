"""Helpers to run `python -m orchestrator daemon` as a real subprocess and watch its files.

The daemon runs with the real `codex app-server` (found on PATH, as `find_codex` finds it)
behind the scripted model. Tests wait on files (results, journals, the status snapshot) with
bounded polls, never on log wording; every process started here is killed by pid on the way
out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import trio

from orchestrator.store.journal import read_journal
from orchestrator.transport.stdio import find_codex

REPO = Path(__file__).resolve().parent.parent
POLL = 0.05
ORCHESTRATOR = (sys.executable, "-m", "orchestrator")


# --- files ------------------------------------------------------------------------------


def stdio_connection(name: str, *, command: str | None = None, max_threads: int = 4) -> str:
    """A `[[connections]]` table for a stdio app-server (the scripted codex by default)."""
    argv = command or '["codex", "app-server", "--disable", "unbounded_connection_retries"]'
    return f"""
        [[connections]]
        name = "{name}"
        transport = "stdio"
        command = {argv}
        max_threads = {max_threads}
        """


def ws_connection(name: str, url: str, *, max_threads: int = 4) -> str:
    """A `[[connections]]` table for a websocket app-server at `url`."""
    return f"""
        [[connections]]
        name = "{name}"
        transport = "websocket"
        url = "{url}"
        max_threads = {max_threads}
        """


def write_config(
    directory: Path,
    *connections: str,
    name: str = "config.toml",
    max_concurrent_jobs: int = 8,
    **settings: Any,
) -> Path:
    """`directory/<name>`: an `[orchestrator]` table (results and state under `directory`,
    scripted model, then `settings`) and `connections` (one scripted stdio `local` by
    default)."""
    table = {
        "results_dir": "results",
        "state_dir": "state",
        "max_concurrent_jobs": max_concurrent_jobs,
        "scripted_model": True,
        **settings,
    }
    lines = ["[orchestrator]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    text = "\n".join(lines) + "\n"
    text += "".join(textwrap.dedent(c) for c in connections or (stdio_connection("local"),))
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def write_daemon_config(
    directory: Path,
    *connections: str,
    shutdown_grace: float = 1,
    max_concurrent_jobs: int = 8,
    scripted_model: bool = True,
) -> Path:
    """`directory/config.toml`: results, state and inbox under `directory`, scripted model."""
    return write_config(
        directory,
        *connections,
        max_concurrent_jobs=max_concurrent_jobs,
        inbox_dir="inbox",
        shutdown_grace=shutdown_grace,
        scripted_model=scripted_model,
    )


def task_text(*jobs: tuple[str, str], **common: Any) -> str:
    """A task file: `[defaults]` (approval `never` plus `common`), then one job per (id, prompt)."""
    lines = ["[defaults]", 'approval_policy = "never"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in common.items()]
    for job_id, prompt in jobs:
        lines += ["", "[[jobs]]", f'id = "{job_id}"', f"prompt = {json.dumps(prompt)}"]
    return "\n".join(lines) + "\n"


def drop_task(inbox: Path, name: str, text: str) -> Path:
    """Put a task file into the inbox the documented way: write a dot-file, rename it in."""
    inbox.mkdir(parents=True, exist_ok=True)
    hidden = inbox / f".{name}"
    hidden.write_text(text, encoding="utf-8")
    target = inbox / name
    os.replace(hidden, target)
    return target


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file (a torn last line is ignored)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None while it is missing."""
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    return data


def kinds(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The step records of one kind."""
    return [record for record in records if record["kind"] == kind]


def journal_events(state_dir: Path, job_id: str) -> list[str]:
    """The events of a job's live journal (empty once compacted or before acceptance)."""
    return [r["event"] for r in read_journal(state_dir / "journal" / f"{job_id}.jsonl")]


# --- processes ------------------------------------------------------------------------------


def daemon_env() -> dict[str, str]:
    """The environment of an orchestrator subprocess: this checkout importable, codex on PATH."""
    codex = find_codex()
    if codex == "codex":
        raise RuntimeError("codex is not installed: put codex 0.169.0 on PATH")
    path = os.pathsep.join([str(Path(codex).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}


def _stat_fields(pid: int) -> list[str] | None:
    """`/proc/<pid>/stat` split after the command name (field 3, the state, is first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of a process, as pid -> start time (to tell a reused pid)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
        starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def still_alive(processes: dict[int, str]) -> list[int]:
    """The processes of a `descendants` snapshot that still run (zombies count as gone)."""
    alive = []
    for pid, start in processes.items():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != "Z" and fields[19] == start:
            alive.append(pid)
    return alive


def command_line(pid: int) -> str:
    """A process's argv joined by spaces (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class DaemonProcess:
    """One `python -m orchestrator daemon` subprocess, its stdout/stderr in files."""

    def __init__(self, config: Path, logs: Path, label: str) -> None:
        self.config = config
        self.state_dir = config.parent / "state"
        self.stdout_path = logs / f"{label}.out"
        self.stderr_path = logs / f"{label}.err"
        self._files: list[IO[bytes]] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the daemon (it is not ready yet: see `wait_ready`)."""
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        self.process = subprocess.Popen(
            [*ORCHESTRATOR, "daemon", "-c", str(self.config), "--log-format", "json"],
            cwd=REPO,
            env=daemon_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        assert self.process is not None
        return self.process.pid

    def returncode(self) -> int | None:
        """The exit status, or None while it runs."""
        assert self.process is not None
        return self.process.poll()

    def stderr(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.stderr_path.read_text("utf-8", errors="replace")

    def check_running(self) -> None:
        """Fail the test at once, with the daemon's stderr, if it has exited."""
        status = self.returncode()
        if status is not None:
            raise AssertionError(f"daemon exited with status {status}:\n{self.stderr()[-4000:]}")

    async def wait_ready(self, seconds: float = 60) -> None:
        """Wait until this daemon has recovered its jobs and writes its status snapshot."""

        def ready() -> bool:
            self.check_running()
            snapshot = read_json_file(self.state_dir / "daemon.json")
            return snapshot is not None and snapshot.get("pid") == self.pid

        await wait_until(ready, seconds=seconds, what=f"daemon {self.pid} to be ready")

    def send(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon (by pid)."""
        os.kill(self.pid, sig)

    async def wait_exit(self, seconds: float) -> int:
        """Wait for the daemon to exit; returns its status (fails after `seconds`)."""
        await wait_until(
            lambda: self.returncode() is not None,
            seconds=seconds,
            what=f"daemon {self.pid} to exit",
        )
        status = self.returncode()
        assert status is not None
        return status

    async def kill(self) -> None:
        """SIGKILL the daemon and reap it."""
        if self.returncode() is None:
            self.send(signal.SIGKILL)
        await self.wait_exit(10)

    def close(self) -> None:
        """Kill the daemon if it still runs (by pid), reap it, close its log files."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        for handle in self._files:
            handle.close()


@asynccontextmanager
async def running_daemon(config: Path, logs: Path, label: str) -> AsyncIterator[DaemonProcess]:
    """A ready daemon; killed on the way out whatever happened."""
    daemon = DaemonProcess(config, logs, label)
    try:
        daemon.start()
        await daemon.wait_ready()
        yield daemon
    finally:
        daemon.close()


async def run_cli(*args: str, seconds: float = 30) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m orchestrator ARGS` to its end (bounded), capturing its output."""
    with trio.fail_after(seconds):
        return await trio.run_process(
            [*ORCHESTRATOR, *args],
            cwd=REPO,
            env=daemon_env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def wait_until(
    condition: Callable[[], bool],
    *,
    seconds: float,
    what: str,
    watch: Iterable[DaemonProcess] = (),
) -> None:
    """Poll `condition` until it holds; fail after `seconds`, or at once if a watched daemon
    exits."""
    watched = list(watch)
    with trio.move_on_after(seconds):
        while True:
            for daemon in watched:
                daemon.check_running()
            if condition():
                return
            await trio.sleep(POLL)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
