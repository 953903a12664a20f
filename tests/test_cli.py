"""`orchestrator chat` and the offline example, end to end against the real app-server."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from orchestrator.app.cli import main
from tests.real_server import open_ws_app_server, scripted_codex_home, work_dir

pytestmark = pytest.mark.real_server

ROOT = Path(__file__).resolve().parents[1]


def chat_offline(*args: str) -> int:
    """`orchestrator chat --offline ARGS`: its exit status."""
    return main(["chat", "--offline", *args])


def test_chat_offline_prints_labelled_steps(capsys: pytest.CaptureFixture[str]) -> None:
    """Several prompts run as turns on one thread and each step prints as a labelled block."""
    code = chat_offline(
        "--log-format",
        "json",
        "--prompt",
        "reason: labels",
        "--prompt",
        "shell: echo cli-shell-output",
        "--show-data",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "--- thinking ---\nThinking about: labels" in out
    assert "--- codex ---\nREASONED: labels" in out
    assert "--- exec · /bin/bash -lc 'echo cli-shell-output' · exit 0 · completed ---" in out
    assert '"type": "commandExecution"' in out  # --show-data
    assert out.count("[turn completed") == 2


def test_chat_resumes_on_inactivity_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """A turn quiet for longer than --inactivity-timeout is waited for, then completes."""
    code = chat_offline("--inactivity-timeout", "0.5", "--prompt", "slow 1x2: resumed")
    out = capsys.readouterr().out
    assert code == 0
    assert "still waiting" in out
    assert "SLOW: resumed" in out and "[turn completed" in out


def test_chat_cancel_on_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """With --cancel-on-timeout the quiet turn is interrupted and the exit status is 1."""
    code = chat_offline(
        "--inactivity-timeout", "0.5", "--cancel-on-timeout", "--prompt", "slow 3x3: cut short"
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "cancelling" in out and "[turn interrupted]" in out


def test_chat_without_prompt_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --prompt and nothing on stdin: exit status 2 and a clear message."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat"]) == 2
    assert "no prompt given" in capsys.readouterr().err


def test_offline_client_example_runs() -> None:
    """examples/client_offline.py, the README's runnable example, works as documented."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples/client_offline.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "completed: REASONED: what to do" in done.stdout
    assert "made-by-codex.txt" in done.stdout
    assert "completed: SLOW: take your time after" in done.stdout


async def test_chat_over_websocket_with_a_token(tmp_path: Path) -> None:
    """`--transport websocket --url --token` talks to a token-protected app-server."""
    token_file = tmp_path / "token"
    token_file.write_text("cli-secret-token")
    work = work_dir(tmp_path)
    async with scripted_codex_home(tmp_path / "home") as env:
        extra = ("--ws-auth", "capability-token", "--ws-token-file", str(token_file))
        async with open_ws_app_server(env, cwd=work, extra_args=extra) as url:
            argv = [
                "chat",
                "--transport",
                "websocket",
                "--url",
                url,
                "--token",
                "cli-secret-token",
                "--cwd",
                str(work),
                "--prompt",
                "over ws",
            ]
            out = io.StringIO()

            def run_cli() -> int:
                with contextlib.redirect_stdout(out):
                    return main(argv)

            code = await trio.to_thread.run_sync(run_cli)
    assert code == 0
    assert "--- codex ---\nECHO: over ws" in out.getvalue()
    assert "cli-secret-token" not in out.getvalue()
