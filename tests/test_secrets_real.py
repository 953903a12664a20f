"""No secret reaches anything the orchestrator writes: results, step logs, state, logs."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest
import trio

from orchestrator._util.logs import configure_logging
from orchestrator.app.batch import run_batch
from orchestrator.config import load_config
from orchestrator.jobs.load import load_task_files
from orchestrator.scripted import open_scripted_provider, write_codex_home
from tests.real_server import open_ws_app_server

pytestmark = pytest.mark.real_server

COMMAND = '["codex", "app-server", "--disable", "unbounded_connection_retries"]'


@pytest.mark.fault(
    "secrets",
    "a websocket token and an API key in the environment of a batch over stdio and a "
    "token-protected websocket",
    "neither appears in any file written or any output, nor in what `env` shows the model; dirs "
    "0700, files 0600",
)
async def test_a_batch_writes_no_token_and_keeps_its_files_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a websocket token and an API key in the environment, a whole batch over stdio and
    a token-protected websocket leaves neither in any file or output; dirs 0700, files 0600."""
    token = "ws-" + secrets.token_hex(16)
    api_key = "sk-test-" + secrets.token_hex(16)
    configure_logging("json")
    work = tmp_path / "work"
    work.mkdir()
    token_file = tmp_path / "server-token"  # the server's, not ours: not scanned
    token_file.write_text(token)
    async with open_scripted_provider() as provider:
        server_env = write_codex_home(tmp_path / "server-home", base_url=provider.base_url)
        extra = ("--ws-auth", "capability-token", "--ws-token-file", str(token_file))
        async with open_ws_app_server(server_env, cwd=work, extra_args=extra) as url:
            # Set only now: the test's own websocket server must not have them either.
            monkeypatch.setenv("ORCH_WS_TOKEN", token)
            monkeypatch.setenv("OPENAI_API_KEY", api_key)
            out = tmp_path / "out"
            config = out / "config.toml"
            out.mkdir()
            config.write_text(
                '[orchestrator]\nresults_dir = "results"\nstate_dir = "state"\n'
                "scripted_model = true\n"
                f'[[connections]]\nname = "pipe"\ncommand = {COMMAND}\n'
                f'[[connections]]\nname = "socket"\ntransport = "websocket"\nurl = "{url}"\n'
                'token_env = "ORCH_WS_TOKEN"\n'
            )
            tasks = out / "tasks.toml"
            tasks.write_text(
                f'[defaults]\ncwd = "{work}"\napproval_policy = "never"\n'
                '[[jobs]]\nid = "over-ws"\nprompt = "shell: env | sort"\nconnection = "socket"\n'
                '[[jobs]]\nid = "over-stdio"\nprompt = "shell: env | sort"\nconnection = "pipe"\n'
            )
            with trio.fail_after(90):
                summary = await run_batch(load_config(config), load_task_files([tasks]))
    assert summary["totals"]["completed"] == 2
    captured = capsys.readouterr()
    written = [p for p in (out / "results").rglob("*")] + [p for p in (out / "state").rglob("*")]
    assert any(p.name == "steps.jsonl" for p in written)
    codex_home = out / "state" / "codex-home"  # codex's own files, inside our 0700 dir
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        ours = codex_home not in path.parents
        if path.is_dir():
            assert mode == 0o700 or not ours, path
        else:
            assert mode == 0o600 or not ours, path
            text = path.read_bytes()
            assert token.encode() not in text, path
            assert api_key.encode() not in text, path
    for text in (captured.out, captured.err):
        assert token not in text and api_key not in text
    # The commands ran `env` inside codex: what the model could see holds neither.
    stdio_steps = (out / "results" / "over-stdio" / "steps.jsonl").read_text()
    assert "PATH=" in stdio_steps and "ORCH_WS_TOKEN" not in stdio_steps
