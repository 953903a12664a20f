"""The stdio reference: a bare trio reader of one fake server, and nothing else.

It reads 256 KiB chunks (as the stdio transport does), splits lines and parses each with
`orchestrator.protocol.jsoncodec.loads`, the client's own parser. No routing, no objects,
no waiting on anything but the pipe: the most any client could do with the same reads.
"""

from __future__ import annotations

import subprocess
from typing import Any, cast

import trio
from common import server_argv

from orchestrator.protocol.jsoncodec import dumps, loads

READ_CHUNK = 256 * 1024  # what the stdio transport reads at a time
INIT_PARAMS = {"clientInfo": {"name": "bench_limit", "version": "0"}}


def request_line(msg_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    """One JSON-RPC request, without its newline."""
    return dumps({"id": msg_id, "method": method, "params": params or {}}).encode()


class BareStdio:
    """One fake server child and the bare reading of its stdout."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._parts: list[bytes] = []
        self.thread_id: str | None = None

    @classmethod
    async def start(cls, workload: list[str]) -> BareStdio:
        """Start the fake server with this workload."""
        process = await trio.lowlevel.open_process(
            server_argv(workload), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(process)

    async def messages(self) -> list[Any]:
        """The messages completed by the next chunk (possibly none)."""
        chunk = cast(bytes, await self._stdout.receive_some(READ_CHUNK))  # pipes give bytes
        if not chunk:
            raise RuntimeError("the fake server closed its stdout")
        if b"\n" not in chunk:
            self._parts.append(chunk)
            return []
        lines = chunk.split(b"\n")
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
        tail = lines.pop()
        self._parts = [tail] if tail else []
        return [loads(line) for line in lines if line]

    async def response(self, msg_id: int) -> Any:
        """Read until the response to `msg_id`; its result."""
        while True:
            for message in await self.messages():
                if message.get("id") == msg_id:
                    return message["result"]

    async def set_up(self) -> dict[str, Any]:
        """`initialize`, `initialized`, `thread/start`; the server's workload statistics."""
        # Set-up messages come one exchange at a time: a chunk never holds two of them.
        await self._stdin.send_all(request_line(1, "initialize", INIT_PARAMS) + b"\n")
        stats: dict[str, Any] = (await self.response(1))["bench"]
        started = request_line(2, "thread/start")
        await self._stdin.send_all(b'{"method":"initialized"}\n' + started + b"\n")
        self.thread_id = (await self.response(2))["thread"]["id"]
        return stats

    async def read_turn(self) -> int:
        """Start the turn and read it to `turn/completed`; the notifications read."""
        turn_start = request_line(3, "turn/start", {"threadId": self.thread_id})
        await self._stdin.send_all(turn_start + b"\n")
        events = 0
        started = done = False
        while not done:
            for message in await self.messages():
                if "id" in message:
                    started = started or message["id"] == 3
                    continue
                if not started:
                    continue  # a late set-up notification (thread/started)
                events += 1
                if message["method"] == "turn/completed":
                    done = True
        return events

    async def aclose(self) -> None:
        """Close stdin (the server exits), wait a bounded time, then kill."""
        with trio.CancelScope(shield=True):
            await self._stdin.aclose()
            with trio.move_on_after(10):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await self._stdout.aclose()
