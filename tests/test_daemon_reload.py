"""SIGHUP makes a running daemon re-read its config: connections come and go, jobs go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.transport.stdio import find_codex

pytestmark = pytest.mark.real_server

ROOT = Path(__file__).resolve().parents[1]
COMMAND = '["codex", "app-server", "--disable", "unbounded_connection_retries"]'


def connection(name: str) -> str:
    return f'[[connections]]\nname = "{name}"\ncommand = {COMMAND}\nmax_threads = 1\n'


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def status(config: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=30,
    )
    data: dict[str, object] = json.loads(done.stdout)
    return data


def drop(inbox: Path, name: str, text: str) -> None:
    hidden = inbox / f".{name}"
    hidden.write_text(text)
    os.replace(hidden, inbox / name)


@pytest.mark.fault(
    "daemon",
    "SIGHUP with a connection added, then one removed, then an invalid config",
    "connections start and stop, jobs go on; the invalid config is refused and the daemon keeps "
    "running",
)
def test_sighup_adds_and_retires_connections(tmp_path: Path) -> None:
    """An added connection takes jobs after SIGHUP; a removed one stops; the daemon lives on."""
    header = (
        '[orchestrator]\nresults_dir = "results"\nstate_dir = "state"\ninbox_dir = "inbox"\n'
        "shutdown_grace = 2\nscripted_model = true\n"
    )
    config = tmp_path / "daemon.toml"
    config.write_text(header + connection("first"))
    env = {**os.environ, "PATH": f"{Path(find_codex()).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon", "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        inbox = tmp_path / "inbox"
        wait_for(lambda: bool(status(config)["connections"]))
        config.write_text(header + connection("first") + connection("second"))
        daemon.send_signal(signal.SIGHUP)
        snapshot = tmp_path / "state" / "daemon.json"  # what `status` reads, written each second
        names = lambda: sorted(c["name"] for c in json.loads(snapshot.read_text())["connections"])  # noqa: E731
        wait_for(lambda: names() == ["first", "second"])
        drop(inbox, "pinned.toml", '[[jobs]]\nid = "p"\nprompt = "hi"\nconnection = "second"\n')
        result = tmp_path / "results" / "p" / "result.json"
        wait_for(result.exists)
        outcome = json.loads(result.read_text())
        assert outcome["status"] == "completed" and outcome["connection"] == "second"

        config.write_text(header + connection("second"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: names() == ["second"])
        config.write_text(header + "[[connections]]\nname = 'broken'\nbogus = 1\n")
        daemon.send_signal(signal.SIGHUP)  # a bad config is refused; the daemon goes on
        drop(inbox, "after.toml", '[[jobs]]\nid = "q"\nprompt = "still here"\n')
        wait_for((tmp_path / "results" / "q" / "result.json").exists)
        assert names() == ["second"] and daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        log.close()
