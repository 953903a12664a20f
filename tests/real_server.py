"""Helpers to run the real `codex app-server` behind the scripted model provider."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from orchestrator.scripted import (
    SCRIPTED_APP_SERVER_ARGS,
    open_scripted_provider,
    write_codex_home,
)
from orchestrator.transport.stdio import StderrTail, find_codex, stop_process

CODEX_VERSION = "0.169.0"


def codex_command() -> list[str]:
    """argv of the scripted app-server; fails clearly when codex is not installed."""
    codex = find_codex()
    if codex == "codex":
        raise RuntimeError(
            "codex is not installed: run `bash scripts/setup` (installs @openai/codex@"
            f"{CODEX_VERSION} into .codex-runtime/) or put codex on PATH"
        )
    return [codex, *SCRIPTED_APP_SERVER_ARGS]


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _ready(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    async with stream:
        await stream.send_all(
            b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        data = b""
        with trio.move_on_after(2):
            while chunk := await stream.receive_some(4096):
                data += chunk
                if b"\r\n" in data:
                    break
        return data.startswith(b"HTTP/1.1 200")


@asynccontextmanager
async def open_ws_app_server(
    env: Mapping[str, str], *, cwd: Path, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """Start `codex app-server --listen ws://127.0.0.1:<port>`; yield its URL once ready."""
    port = free_port()
    argv = [*codex_command(), "--listen", f"ws://127.0.0.1:{port}", *extra_args]
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env},
        start_new_session=True,
    )
    tail = StderrTail()

    async def drain() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.receive_some(65536):
            tail.add(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            with trio.fail_after(60):
                while not await _ready(port):
                    if process.returncode is not None:
                        raise RuntimeError(f"codex app-server exited: {tail.text()}")
                    await trio.sleep(0.05)
            try:
                yield f"ws://127.0.0.1:{port}"
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            # The websocket server ignores stdin EOF: a short grace, then SIGTERM.
            await stop_process(process, grace=1)
            if process.stderr is not None:
                await process.stderr.aclose()


@asynccontextmanager
async def scripted_codex_home(home: Path) -> AsyncIterator[dict[str, str]]:
    """Run a scripted model provider; yield the environment of a CODEX_HOME at `home` that
    points codex at it."""
    async with open_scripted_provider() as provider:
        yield write_codex_home(home, base_url=provider.base_url)


def work_dir(tmp_path: Path) -> Path:
    """`tmp_path/work`, created: the jobs' and app-servers' working directory."""
    work = tmp_path / "work"
    work.mkdir()
    return work


def kill_group(pid: int) -> None:
    """SIGKILL a process group (the app-server launcher and the native server)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
