"""What every measurement mode shares: the fake server's command line, the timed window and
reading a turn with the client.

Imports nothing from the project at run time, so that a reference's peak RSS does not
include the client's modules.
"""

from __future__ import annotations

import cProfile
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from orchestrator.client import ChatResult, CodexClient

BENCH = Path(__file__).resolve().parent
SERVER = BENCH / "fake_server.py"
TIMEOUT = 600.0


def server_argv(workload: list[str]) -> list[str]:
    """The fake app-server command for a workload.

    Over stdio the server needs only the standard library, so it starts without `site`
    (`-S`): that halves its start-up, which counts when a case starts a hundred of them.
    """
    lean = [] if any(option.startswith("--listen") for option in workload) else ["-S"]
    return [sys.executable, *lean, str(SERVER), *workload]


async def read_turn(client: CodexClient, thread_id: str, api: str) -> tuple[ChatResult, int]:
    """One turn read to its end through `chat_once` or `chat` (steps not kept): its result
    and how many steps were read."""
    if api == "chat_once":
        result = await client.chat_once("go", thread_id=thread_id)
        return result, len(result.steps)
    steps = 0
    stream = client.chat("go", thread_id=thread_id)
    async for _step in stream:
        steps += 1
    return await stream.result(), steps


class Timer:
    """The timed window, with an optional cProfile of exactly that window.

    `elapsed` is wall time (what the figures use); `cpu` is this process's CPU time in the
    window, which other load on the machine moves less.
    """

    def __init__(self, profile_path: str | None = None) -> None:
        self._profile = cProfile.Profile() if profile_path else None
        self._path = profile_path
        self.start = 0.0
        self.elapsed = 0.0
        self._cpu_start = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timer:
        if self._profile is not None:
            self._profile.enable()
        self._cpu_start = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.perf_counter() - self.start
        self.cpu = time.process_time() - self._cpu_start
        if self._profile is not None and self._path is not None:
            self._profile.disable()
            self._profile.dump_stats(self._path)


class ws_server:  # lower case: used like a function, `async with ws_server(...) as url`
    """Start fake_server.py in websocket mode on a free port; yield its URL; stop it."""

    def __init__(self, workload: list[str]) -> None:
        self._argv = server_argv([*workload, "--listen", "ws://127.0.0.1:0"])
        self._process: trio.Process | None = None

    async def __aenter__(self) -> str:
        self._process = await trio.lowlevel.open_process(self._argv, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        seen = b""
        with trio.fail_after(120):  # the server encodes the whole turn before listening
            while b"\n" not in seen:
                chunk = await self._process.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError("the websocket fake server exited before listening")
                seen += chunk
        line = seen.split(b"\n", 1)[0].decode()
        return line.removeprefix("listening ").strip()

    async def __aexit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


def as_dict(record: Any) -> dict[str, Any]:
    """A statistics record as JSON-ready data (attrs is imported only where a client ran)."""
    import attrs

    return attrs.asdict(record)
