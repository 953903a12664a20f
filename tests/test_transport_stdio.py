"""The stdio transport against small Python children playing the app-server.

Process waits cannot run on a mock clock, so these tests use real time with small graces and
bound every wait with `fail_after`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio

import orchestrator.transport.stdio as stdio
from orchestrator.client import CodexClient
from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.transport.stdio import StderrTail, default_command, open_stdio_transport

# Generous bound for anything that should be immediate; far below the default 5 s grace.
PROMPTLY = 2.0

ECHO = textwrap.dedent(
    """
    import sys
    for line in sys.stdin.buffer:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    """
)

# Echo each line back in 7-byte writes, each flushed, with a pause so reads really see pieces.
DRIBBLE = textwrap.dedent(
    """
    import sys, time
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        for i in range(0, len(line), 7):
            out.write(line[i:i + 7])
            out.flush()
            time.sleep(0.0005)
    """
)

# A JSON-RPC app-server that answers `initialize` and runs ACTION for any other request.
FAKE_SERVER = """
import json, os, signal, sys
def answer(msg, result):
    sys.stdout.write(json.dumps({"id": msg["id"], "result": result}) + "\\n")
    sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        answer(msg, {"userAgent": "fake/1"})
    elif "id" in msg:
        ACTION
"""


def python(code: str) -> list[str]:
    """argv running `code` in a fresh interpreter."""
    return [sys.executable, "-c", code]


def fake_server(action: str) -> list[str]:
    """argv of a fake app-server that runs `action` (indented Python) on each request."""
    body = textwrap.indent(textwrap.dedent(action).strip(), " " * 8).lstrip()
    return python(FAKE_SERVER.replace("ACTION", body))


async def failed_request(
    command: list[str], error: type[CodexTransportError] = CodexTransportError, **options: Any
) -> CodexTransportError:
    """The `error` that `thread/start` raises on a client of `command` (within PROMPTLY)."""
    with trio.fail_after(PROMPTLY):
        async with CodexClient.connect_stdio(command, **options) as client:
            with pytest.raises(error) as caught:
                await client.request("thread/start", {})
    return caught.value


def is_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# -- messages ----------------------------------------------------------------------------


async def test_round_trip_through_an_echoing_child() -> None:
    """Messages sent to the child come back whole and in order."""
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(ECHO)) as transport:
            for i in range(3):
                await transport.send(json.dumps({"n": i, "text": "héllo ✓"}))
            received = [json.loads(await transport.receive()) for _ in range(3)]
    assert received == [{"n": i, "text": "héllo ✓"} for i in range(3)]


async def test_a_batch_goes_out_as_lines_of_their_own() -> None:
    """`send_batch` writes several messages at once; each arrives as a message of its own."""
    messages = [json.dumps({"n": i, "text": "héllo ✓"}) for i in range(5)]
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(ECHO)) as transport:
            await transport.send_batch(messages)
            await transport.send_batch(messages[:1])
            received = [await transport.receive() for _ in range(6)]
    assert received == [*messages, messages[0]]


async def test_messages_written_in_many_small_flushes_arrive_whole() -> None:
    """A child that writes each line in tiny flushed pieces still delivers whole messages."""
    messages = [json.dumps({"id": i, "result": {"pad": "x" * (40 + i)}}) for i in range(4)]
    with trio.fail_after(20):  # generous: this checks framing, not speed, on a busy machine
        async with open_stdio_transport(python(DRIBBLE)) as transport:
            for message in messages:
                await transport.send(message)
            received = [await transport.receive() for _ in messages]
    assert received == messages


async def test_five_mebibyte_message_round_trips() -> None:
    """A 5 MiB message (well under the 64 MiB default limit) survives the round trip."""
    message = json.dumps({"blob": "y" * (5 * 1024 * 1024)})
    with trio.fail_after(20):
        async with open_stdio_transport(python(ECHO)) as transport:
            await transport.send(message)
            assert await transport.receive() == message


async def test_clean_eof_ends_the_channel() -> None:
    """A child that exits 0 after its last line gives the lines, then `EndOfChannel`."""
    code = "print('{\"last\": true}', flush=True)"
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(code)) as transport:
            assert await transport.receive() == '{"last": true}'
            with pytest.raises(trio.EndOfChannel):
                await transport.receive()
            error = await transport.closed_error()
    assert error.exit_status == 0


# -- the size limit ----------------------------------------------------------------------


@pytest.mark.fault(
    "client: message size",
    "stdio transport: a 5000-byte line over a 1000-byte limit",
    "CodexMessageTooLargeError naming the limit, sticky; the process stopped",
)
async def test_line_over_the_limit_raises_and_stops_the_process() -> None:
    """A line over `max_message_bytes` raises `CodexMessageTooLargeError` and the child is
    stopped."""
    code = "import sys; print('x' * 5000, flush=True); sys.stdin.read()"
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(code), max_message_bytes=1000) as transport:
            with pytest.raises(CodexMessageTooLargeError, match="1000"):
                await transport.receive()
            assert transport.process.returncode is not None
            # The error is sticky: framing is lost for good.
            with pytest.raises(CodexMessageTooLargeError):
                await transport.receive()


@pytest.mark.fault(
    "client: message size",
    "stdio transport: whole lines in the same read as an oversized one",
    "delivered first, then CodexMessageTooLargeError",
)
async def test_lines_before_an_oversized_one_are_still_delivered() -> None:
    """Whole lines that arrived in the same read as an oversized one come out first."""
    code = "import sys; sys.stdout.write('a\\nb\\n' + 'x' * 5000 + '\\n'); sys.stdout.flush()"
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(code), max_message_bytes=1000) as transport:
            assert await transport.receive() == "a"
            assert await transport.receive() == "b"
            with pytest.raises(CodexMessageTooLargeError):
                await transport.receive()


@pytest.mark.fault(
    "client: message size",
    "stdio: a response over the limit",
    "the pending request fails with CodexMessageTooLargeError",
)
async def test_oversized_response_fails_the_pending_request() -> None:
    """A pending `request` fails with `CodexMessageTooLargeError` when the answer is too big."""
    command = fake_server("answer(msg, {'blob': 'z' * 5000})")
    await failed_request(command, CodexMessageTooLargeError, max_message_bytes=1000)


# -- stderr --------------------------------------------------------------------------------


@pytest.mark.fault(
    "client: stderr",
    "stdio: 4 MiB of stderr before an answer",
    "not blocked; the tail bounded and cut at a line start",
)
async def test_megabytes_of_stderr_do_not_block_and_the_tail_is_bounded() -> None:
    """A child that logs 4 MiB to stderr before answering is not blocked, and only a bounded
    tail starting at a line boundary is kept."""
    line_count = 60_000
    code = textwrap.dedent(
        f"""
        import sys
        sys.stdin.readline()
        for i in range({line_count}):
            sys.stderr.write(f"log line {{i:07d}} " + "." * 50 + "\\n")
        sys.stderr.flush()
        print('{{"answered": true}}', flush=True)
        sys.stdin.read()
        """
    )
    line = re.compile(r"log line \d{7} \.{50}")
    with trio.fail_after(PROMPTLY * 2):
        async with open_stdio_transport(python(code), stderr_tail_bytes=1000) as transport:
            await transport.send("{}")
            assert await transport.receive() == '{"answered": true}'
            # Everything was written before the answer; wait (bounded) for the drain.
            while transport.stderr_tail.total_bytes < line_count * 68:
                await trio.sleep(0.01)
            tail = transport.stderr_tail.text()
    assert transport.stderr_tail.total_bytes == line_count * 68
    assert 0 < len(tail.encode()) <= 1000
    lines = tail.splitlines()
    assert all(line.fullmatch(text) for text in lines)
    assert lines[-1].startswith(f"log line {line_count - 1:07d}")


def test_stderr_tail_keeps_a_bounded_tail_from_a_line_boundary() -> None:
    """`StderrTail` keeps at most its limit, cut to a line start, whatever the chunk sizes."""
    tail = StderrTail(limit=50)
    assert tail.text() == ""
    tail.add(b"first\n")
    assert tail.text() == "first\n"
    for i in range(30):
        tail.add(f"line {i:02d}\n".encode())
    tail.add(b"partial")
    text = tail.text()
    assert len(text.encode()) <= 50
    assert text.startswith("line ") and text.endswith("line 29\npartial")
    tail.add(b"z" * 120 + b"\nend\n")  # one chunk bigger than the limit
    assert tail.text() == "end\n"
    assert tail.total_bytes == 6 + 30 * 8 + 7 + 125


# -- how the child ended -------------------------------------------------------------------


@pytest.mark.fault(
    "client: server stops",
    "stdio: the process exits 3 after an error on stderr, a request pending",
    "CodexTransportError with exit status 3 and the stderr tail, promptly",
)
async def test_exit_status_and_stderr_fail_the_pending_request_promptly() -> None:
    """A child that exits 3 after an error on stderr fails the pending request with the status
    and the stderr tail."""
    command = fake_server(
        """
        sys.stderr.write("noise\\n" * 20000 + "FATAL: config.toml is broken\\n")
        sys.stderr.flush()
        sys.exit(3)
        """
    )
    error = await failed_request(command)
    assert error.exit_status == 3
    assert "exited with status 3" in str(error)
    assert "FATAL: config.toml is broken" in str(error)
    assert error.stderr_tail.endswith("FATAL: config.toml is broken\n")


@pytest.mark.fault(
    "client: server stops",
    "stdio: the process is killed (SIGKILL) with a request pending",
    "CodexTransportError naming SIGKILL",
)
async def test_death_by_signal_is_named() -> None:
    """A child killed by a signal fails the pending request with a message naming it."""
    error = await failed_request(fake_server("os.kill(os.getpid(), signal.SIGKILL)"))
    assert error.exit_status == -signal.SIGKILL
    assert "SIGKILL" in str(error)


@pytest.mark.fault(
    "client: server stops",
    "stdio: writing to a process that has exited",
    "CodexTransportError, not a trio error",
)
async def test_write_to_a_dead_child_is_a_transport_error() -> None:
    """Sending to a child that has exited raises `CodexTransportError`, not a trio error."""
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python("pass")) as transport:
            await transport.process.wait()
            with pytest.raises(CodexTransportError):
                for _ in range(100):  # the first writes may still fit in the pipe
                    await transport.send("{}" * 50_000)


# -- stopping --------------------------------------------------------------------------------

IGNORES_EOF = "import sys, time; print('ready', flush=True); time.sleep(60)"
IGNORES_EOF_AND_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)
# Exits 0 on stdin EOF; a SIGTERM would make it exit 42 instead.
EXITS_ON_EOF = (
    "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(42)); "
    "print('ready', flush=True); sys.stdin.read()"
)


@pytest.mark.parametrize(
    ("code", "returncode", "graces"),
    [
        (EXITS_ON_EOF, 0, 0),
        (IGNORES_EOF, -signal.SIGTERM, 1),
        (IGNORES_EOF_AND_TERM, -signal.SIGKILL, 2),
    ],
    ids=["eof", "sigterm", "sigkill"],
)
@pytest.mark.fault(
    "client: server stops",
    "stdio: a server ignoring stdin EOF (and SIGTERM) when the client leaves",
    "stopped by SIGTERM, else SIGKILL, one grace each: never hangs",
)
async def test_stop_closes_stdin_then_terminates_then_kills(
    monkeypatch: pytest.MonkeyPatch, code: str, returncode: int, graces: int
) -> None:
    """Stopping escalates stdin EOF, SIGTERM, SIGKILL, each after one grace, and no further
    than needed."""
    grace = 0.3
    monkeypatch.setattr(stdio, "EXIT_WAIT_SECONDS", grace)
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(code)) as transport:
            assert await transport.receive() == "ready"
            started = trio.current_time()
    elapsed = trio.current_time() - started
    assert transport.process.returncode == returncode
    assert graces * grace <= elapsed < graces * grace + 0.8


@pytest.mark.fault(
    "client: server stops",
    "stdio: the server leaves a child process behind as it exits",
    "the whole process group is killed",
)
async def test_grandchild_does_not_outlive_the_transport() -> None:
    """A process the child spawned (like the npm launcher's native server) is killed with it."""
    code = textwrap.dedent(
        """
        import subprocess, sys
        grandchild = subprocess.Popen(["sleep", "60"])
        print(grandchild.pid, flush=True)
        sys.stdin.read()  # exit on EOF, leaving the grandchild behind
        """
    )
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport(python(code)) as transport:
            pid = int(await transport.receive())
            assert is_alive(pid)
        with trio.fail_after(1):  # SIGKILL was sent; allow a moment for it to land
            while is_alive(pid):
                await trio.sleep(0.01)
    assert transport.process.returncode == 0


# -- the command -----------------------------------------------------------------------------


def test_default_command_is_split_like_a_shell() -> None:
    """`CODEX_APP_SERVER_CMD` is split with shell quoting rules; unset means `codex app-server`."""
    env = {"CODEX_APP_SERVER_CMD": "node '/opt/my tools/codex.js' app-server --flag=\"a b\""}
    assert default_command(env) == ["node", "/opt/my tools/codex.js", "app-server", "--flag=a b"]
    fallback = default_command({})
    assert fallback[-1] == "app-server" and fallback[0].endswith("codex")


async def test_environment_command_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no command given, the transport runs `CODEX_APP_SERVER_CMD`."""
    monkeypatch.setenv("CODEX_APP_SERVER_CMD", shlex.join(python(ECHO)))
    with trio.fail_after(PROMPTLY):
        async with open_stdio_transport() as transport:
            await transport.send('{"via": "env"}')
            assert await transport.receive() == '{"via": "env"}'


async def test_missing_executable_is_a_transport_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An executable that does not exist gives `CodexTransportError` naming it."""
    with pytest.raises(CodexTransportError, match="no-such-codex-binary"):
        async with open_stdio_transport(["/nonexistent/no-such-codex-binary", "app-server"]):
            pass
    monkeypatch.setenv("CODEX_APP_SERVER_CMD", "no-such-codex-binary app-server")
    with pytest.raises(CodexTransportError, match="no-such-codex-binary"):
        async with CodexClient.connect_stdio():
            pass
