"""No secret reaches anything a daemon session writes: results, step logs, journals, the
status snapshot, the log file, rejections, or the daemon's and the CLI's output."""

from __future__ import annotations

import json
import secrets
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import trio

from orchestrator.scripted import open_scripted_provider, write_codex_home
from tests.daemon_helpers import (
    ORCHESTRATOR,
    REPO,
    DaemonProcess,
    daemon_env,
    drop_task,
    kinds,
    read_jsonl,
    stdio_connection,
    task_text,
    wait_until,
    write_daemon_config,
)
from tests.real_server import open_ws_app_server

pytestmark = pytest.mark.real_server


class DaemonWithSecrets(DaemonProcess):
    """The daemon with secrets in its environment and its log in a file (`--log-file`)."""

    def __init__(self, config: Path, logs: Path, secret_env: dict[str, str]) -> None:
        super().__init__(config, logs, "daemon")
        self.secret_env = secret_env
        self.log_file = config.parent / "daemon.log"

    def start(self) -> None:
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        argv = [*ORCHESTRATOR, "daemon", "-c", str(self.config), "--log-file", str(self.log_file)]
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**daemon_env(), **self.secret_env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m orchestrator ARGS` with the secrets in its environment too (bounded)."""
    with trio.fail_after(60):
        return await trio.run_process(
            [*ORCHESTRATOR, *args],
            cwd=REPO,
            env={**daemon_env(), **env},
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def environment_of(pid: int) -> bytes:
    """A process's environment, as the kernel shows it."""
    return Path(f"/proc/{pid}/environ").read_bytes()


def has_result(results: Path, *job_ids: str) -> bool:
    return all((results / job_id / "result.json").exists() for job_id in job_ids)


@pytest.mark.fault(
    "secrets",
    "an API key and a websocket token in the daemon's environment through a whole session "
    "(jobs over stdio and a token-protected websocket, one failed, one cancelled, a file "
    "rejected, status, SIGTERM)",
    "neither appears in any file the project writes nor in any output; dirs 0700, files 0600",
)
async def test_a_daemon_session_writes_no_secret_and_keeps_its_files_private(
    tmp_path: Path,
) -> None:
    """Secrets in the daemon's environment appear in no result, step log, journal, snapshot,
    log line, rejection or output, and every file the daemon creates is private."""
    token = "ws-" + secrets.token_hex(16)
    api_key = "sk-test-" + secrets.token_hex(16)
    cloud_key = "aws-" + secrets.token_hex(16)
    found = [token.encode(), api_key.encode(), cloud_key.encode()]
    secret_env = {
        "ORCH_WS_TOKEN": token,
        "OPENAI_API_KEY": api_key,
        "AWS_SECRET_ACCESS_KEY": cloud_key,
    }
    work = tmp_path / "work"
    work.mkdir()
    token_file = tmp_path / "server-token"  # the test's websocket server's: not scanned
    token_file.write_text(token)
    home = tmp_path / "daemon"  # config, results, state, inbox and the log file
    home.mkdir()
    logs = tmp_path / "logs"  # the daemon's stdout and stderr
    logs.mkdir()
    results, state, inbox = home / "results", home / "state", home / "inbox"
    outputs: list[bytes] = []

    async with open_scripted_provider() as provider:
        server_env = write_codex_home(tmp_path / "server-home", base_url=provider.base_url)
        extra = ("--ws-auth", "capability-token", "--ws-token-file", str(token_file))
        # The websocket server inherits the test's environment, which holds no secret.
        async with open_ws_app_server(server_env, cwd=work, extra_args=extra) as url:
            socket = (
                f'[[connections]]\nname = "socket"\ntransport = "websocket"\nurl = "{url}"\n'
                'token_env = "ORCH_WS_TOKEN"\n'
            )
            config = write_daemon_config(home, stdio_connection("pipe"), socket)
            daemon = DaemonWithSecrets(config, logs, secret_env)
            try:
                daemon.start()
                await daemon.wait_ready()
                # The test is not blind: the secrets are in the daemon's environment.
                assert f"OPENAI_API_KEY={api_key}".encode() in environment_of(daemon.pid)
                common = {"cwd": str(work), "inactivity_timeout": 90}
                env_jobs = task_text(
                    ("over-ws", "shell: env | sort"), ("over-stdio", "shell: env | sort"), **common
                )
                env_jobs = env_jobs.replace(
                    'id = "over-ws"', 'id = "over-ws"\nconnection = "socket"'
                ).replace('id = "over-stdio"', 'id = "over-stdio"\nconnection = "pipe"')
                drop_task(inbox, "env.toml", env_jobs)
                drop_task(inbox, "fails.toml", task_text(("fails", "error 500: boom"), **common))
                drop_task(
                    inbox, "long.toml", task_text(("long", "slow 1x60: never done"), **common)
                )
                drop_task(inbox, "bad.toml", task_text(("bad", "p"), **common) + 'promt = "x"\n')
                await wait_until(
                    lambda: (
                        has_result(results, "over-ws", "over-stdio", "fails")
                        and bool(
                            kinds(read_jsonl(results / "long" / "steps.jsonl"), "turn_started")
                        )
                    ),
                    seconds=120,
                    what="three results and the long turn",
                    watch=[daemon],
                )
                cancel = await run_cli(secret_env, "cancel", "-c", str(config), "long")
                assert cancel.returncode == 0, cancel.stderr
                assert cancel.stdout.decode().strip() == "long: cancelled"
                status = await run_cli(secret_env, "status", "-c", str(config), "--json")
                assert status.returncode == 0, status.stderr
                states = {j["job_id"]: j["state"] for j in json.loads(status.stdout)["jobs"]}
                assert states["over-ws"] == states["over-stdio"] == "completed", states
                assert states["fails"] == "failed", states
                text_status = await run_cli(secret_env, "status", "-c", str(config))
                outputs += [cancel.stdout, cancel.stderr, status.stdout, status.stderr]
                outputs += [text_status.stdout, text_status.stderr]
                daemon.send(signal.SIGTERM)
                assert await daemon.wait_exit(30) == 0
            finally:
                daemon.close()

    statuses = {
        job_id: json.loads((results / job_id / "result.json").read_text())["status"]
        for job_id in ("over-ws", "over-stdio", "fails", "long")
    }
    assert statuses == {
        "over-ws": "completed",
        "over-stdio": "completed",
        "fails": "failed",
        "long": "cancelled",
    }
    (error_file,) = (inbox / "rejected").glob("*.error")
    assert "promt" in error_file.read_text()
    # The commands ran `env` inside codex: what a model could see holds no secret either.
    stdio_steps = (results / "over-stdio" / "steps.jsonl").read_text()
    assert "PATH=" in stdio_steps and "OPENAI_API_KEY" not in stdio_steps

    written = [p for p in home.rglob("*") if p != config]
    assert (state / "daemon.json") in written
    # The log file is in use, one JSON object per line.
    lines = [json.loads(line) for line in daemon.log_file.read_text().splitlines()]
    assert any(line.get("job") == "over-ws" for line in lines)
    assert any(p.parent.name == "journal" for p in written)
    for path in written:
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret in data for secret in found), path
    for path in (daemon.stdout_path, daemon.stderr_path):
        assert not any(secret in path.read_bytes() for secret in found), path
    for output in outputs:
        assert not any(secret in output for secret in found), output

    # Private: every directory 0700 and file 0600 the daemon made (codex's own files in its
    # CODEX_HOME, and the task files as the user wrote them, are theirs).
    codex_home = state / "codex-home"
    checked = 0
    for path in written:
        if codex_home in path.parents or path.suffix == ".toml":
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        checked += 1
    assert checked > 20
