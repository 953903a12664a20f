"""stdio transport: `codex app-server` as a child process speaking JSONL on stdin/stdout.

The child runs in its own session (process group): the npm `codex` command is a launcher that
spawns the native server, and only signalling the whole group stops both. stderr is drained
continuously (the server logs a lot and would block on a full pipe) into a bounded tail that
error messages quote. Stopping goes: close stdin, bounded wait, SIGTERM, bounded wait, SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from orchestrator._util.concurrency import open_background_nursery
from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES, LineFramer, MessageTooLarge
from orchestrator.transport.base import MessageTransport, map_io_errors

ENV_COMMAND = "CODEX_APP_SERVER_CMD"
READ_CHUNK = 256 * 1024
# Linux's limit for a pipe an unprivileged process may ask for (default pipes hold 64 KiB).
STDOUT_PIPE_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 16 * 1024
EXIT_WAIT_SECONDS = 5.0

# Where `.ci/run` and the quick start install codex when it is not on PATH.
PROJECT_CODEX = Path(__file__).resolve().parents[2] / ".codex-runtime/node_modules/.bin/codex"


def find_codex() -> str:
    """The `codex` executable: the checkout's pinned install (`scripts/setup`) if present,
    else `codex` on PATH."""
    if PROJECT_CODEX.exists():
        return str(PROJECT_CODEX)
    return shutil.which("codex") or "codex"


def default_command(env: Mapping[str, str] | None = None) -> list[str]:
    """`CODEX_APP_SERVER_CMD` split like a shell would, else `codex app-server`."""
    source = os.environ if env is None else env
    configured = source.get(ENV_COMMAND)
    if configured:
        return shlex.split(configured)
    return [find_codex(), "app-server"]


class StderrTail:
    """The last bytes a process wrote to stderr, bounded."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self.total_bytes = 0

    def add(self, chunk: bytes | bytearray) -> None:
        """Keep a chunk, dropping the oldest bytes beyond the limit."""
        self.total_bytes += len(chunk)
        if len(chunk) >= self._limit:
            self._chunks.clear()
            chunk = chunk[-self._limit :]
            self._size = 0
        self._chunks.append(bytes(chunk))
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        """The tail as text, starting at a line boundary when it was cut."""
        data = b"".join(self._chunks)[-self._limit :]
        text = data.decode("utf-8", errors="replace")
        if self.total_bytes > len(data) and "\n" in text:
            text = text.split("\n", 1)[1]
        return text


class StdioTransport(MessageTransport):
    """JSONL over a child process's stdin/stdout."""

    def __init__(
        self, process: trio.Process, *, max_message_bytes: int, stderr_tail: StderrTail
    ) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stderr_tail = stderr_tail
        self.description = f"app-server (pid {process.pid})"
        self._stdin = process.stdin
        self._stdout = process.stdout
        _enlarge_pipe(process.stdout)
        self._framer = LineFramer(max_message_bytes)
        self._lines: deque[bytes] = deque()  # read but not yet received
        self._eof = False
        self._too_large: CodexMessageTooLargeError | None = None

    async def send(self, value: str) -> None:
        with map_io_errors(self.description):
            await self._stdin.send_all(value.encode("utf-8") + b"\n")

    async def send_batch(self, values: Sequence[str]) -> None:
        # A JSON text has no raw newline: joined, each is still a line of its own.
        with map_io_errors(self.description):
            await self._stdin.send_all(("\n".join(values) + "\n").encode("utf-8"))

    async def receive(self) -> str:
        while not self._lines:
            self._lines.extend(await self._read_lines())
        return self._lines.popleft().decode("utf-8", errors="replace")

    async def receive_batch(self) -> list[bytes]:
        """Every line completed by one read (at least one), as bytes: the JSON parser reads
        UTF-8 itself, and invalid UTF-8 gets the U+FFFD that `receive` would give."""
        if self._lines:
            lines = list(self._lines)
            self._lines.clear()
            return lines
        while not (lines := await self._read_lines()):
            pass
        return lines

    async def _read_lines(self) -> list[bytes]:
        """The lines completed by the next read from stdout (often none)."""
        if self._too_large is not None:
            raise self._too_large
        if self._eof:
            raise trio.EndOfChannel
        try:
            chunk = await self._stdout.receive_some(READ_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # Mapped here rather than around the read: a generator-based context manager per
            # read is a measurable share of reading a fast stream.
            with map_io_errors(self.description):
                raise
        if not chunk:
            self._eof = True
            rest = self._framer.eof()
            return [] if rest is None else [rest]
        try:
            return self._framer.feed(chunk)
        except MessageTooLarge as exc:
            self._too_large = CodexMessageTooLargeError(
                f"{self.description}: {exc}; connection closed",
                stderr_tail=self.stderr_tail.text(),
            )
            # Framing is lost: nothing after this can be trusted. Stop the process. Our end of
            # its stdout goes first: a server blocked writing the rest of the line then gets
            # EPIPE and exits, instead of sitting out the stop's grace period.
            await self._stdout.aclose()
            await self.aclose()
            # Lines completed before the oversized one are still whole: deliver them first;
            # the error comes with the next read.
            return exc.lines

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await stop_process(self.process, grace=EXIT_WAIT_SECONDS)

    async def closed_error(self) -> CodexTransportError:
        if self._too_large is not None:
            return self._too_large
        # stdout closed; give the process a moment to report how it ended.
        with trio.move_on_after(EXIT_WAIT_SECONDS):
            await self.process.wait()
        status = self.process.returncode
        if status is None:
            what = "closed its stdout but is still running"
        elif status < 0:
            what = f"was killed by signal {signal.Signals(-status).name} (exit status {status})"
        else:
            what = f"exited with status {status}"
        return CodexTransportError(
            f"{self.description} {what}", exit_status=status, stderr_tail=self.stderr_tail.text()
        )


def _enlarge_pipe(stream: trio.abc.ReceiveStream) -> None:
    """Give the child's stdout a bigger pipe, where the system allows it (Linux).

    With a 64 KiB pipe a burst of output is read 64 KiB at a time, whatever we ask for; with
    1 MiB, reads take up to READ_CHUNK. Four times fewer reads, and fewer wakeups of waiting
    readers: about a fifth less CPU for a fast stream. Best effort: the pipe is otherwise left
    as it is.
    """
    set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_pipe_size is None or not isinstance(stream, trio.lowlevel.FdStream):
        return
    try:
        fcntl.fcntl(stream.fileno(), set_pipe_size, STDOUT_PIPE_BYTES)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size, or a pipe that cannot grow


async def stop_process(process: trio.Process, *, grace: float) -> None:
    """Close stdin, wait, SIGTERM the group, wait, SIGKILL the group. Every wait is bounded."""
    with trio.CancelScope(shield=True):
        if process.stdin is not None:
            try:
                await process.stdin.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        with trio.move_on_after(grace):
            await process.wait()
        if process.returncode is None:
            _signal_group(process, signal.SIGTERM)
            with trio.move_on_after(grace):
                await process.wait()
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
            await process.wait()
        else:
            # The launcher exited; make sure nothing it spawned outlives it.
            _signal_group(process, signal.SIGKILL)


def _signal_group(process: trio.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _drain_stderr(stream: trio.abc.ReceiveStream, tail: StderrTail) -> None:
    try:
        while chunk := await stream.receive_some(READ_CHUNK):
            tail.add(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@asynccontextmanager
async def open_stdio_transport(
    command: Sequence[str] | str | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    stderr_tail_bytes: int = STDERR_TAIL_BYTES,
) -> AsyncIterator[StdioTransport]:
    """Start the app-server and yield its transport; stop the process on exit.

    Args:
        command: argv (a string is split like a shell would); default `CODEX_APP_SERVER_CMD`
            or `codex app-server`.
        env: extra environment variables, over the inherited ones (or alone when
            `inherit_env` is False).

    Raises:
        CodexTransportError: the command cannot be started.
    """
    if command is None:
        argv = default_command()
    elif isinstance(command, str):
        argv = shlex.split(command)
    else:
        argv = list(command)
    child_env = dict(os.environ) if inherit_env else {}
    if env:
        child_env.update(env)
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise CodexTransportError(f"cannot start app-server {argv!r}: {exc}") from exc
    # This frame lives as long as the connection: don't keep a copy of the environment
    # (a few KiB per connection) in it.
    del child_env
    tail = StderrTail(stderr_tail_bytes)
    transport = StdioTransport(process, max_message_bytes=max_message_bytes, stderr_tail=tail)
    try:
        async with open_background_nursery() as nursery:
            assert process.stderr is not None
            nursery.start_soon(_drain_stderr, process.stderr, tail)
            try:
                yield transport
            finally:
                await transport.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(process, grace=EXIT_WAIT_SECONDS)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()
