"""A scriptable hostile app-server for the fault tests.

It is the in-memory `FakeAppServer` (the same answers, the same turn helpers) behind a real
transport: JSONL over its own stdin/stdout, or one JSON text frame per message over a websocket
on 127.0.0.1. A JSON plan says what it does wrong and when; it decides nothing on its own, so
each test reads as its plan. In-process tests may also run `HostileAppServer` over a memory
transport.

A plan (every key optional):

    {"init":   [action, ...],      run when `initialize` arrives, before answering it
     "turn":   [action, ...],      every turn (default: accept, echo the input, complete)
     "silent": [method, ...],      requests never answered
     "late":   {method: seconds},  requests answered that late
     "storm":  {method: n}}        each request answered -32001 n times first ("*": any method)

Actions are arrays:

    ["accept"]                     the turn/start response
    ["message", text]              an agentMessage item (started, delta, completed)
    ["raw", text] / ["raw", text, n]   one message sent as is (`text` n times over); `$thread`
                                   and `$turn` are replaced
    ["raw_bytes", text]            stdio: the text's latin-1 bytes as is; websocket: a binary frame
    ["big", n] / ["big", n, char]  an agentMessage item/completed of exactly n bytes of UTF-8,
                                   its text made of `char` (default "x"), padded with "x"
    ["big_stuck", n]               the same (stdio only) written with blocking writes: the whole
                                   server stalls until it is read, deaf to stdin closing
    ["stderr", n]                  n bytes of log lines to stderr, blocking like a real logger
    ["stderr_text", text]          text to stderr
    ["request", method]            a server request about the turn; waits for the answer
    ["request_nowait", method]     the same, without waiting
    ["sleep", seconds] / ["hang"]
    ["complete"] / ["complete", status]
    ["die", how, ...]              stdio: "exit" CODE | "kill" (SIGKILL itself) |
                                   "close_stdout" (and live on until stdin closes);
                                   websocket: "close" CODE REASON | "reset" (TCP RST) |
                                   "drop" (TCP FIN, no close frame) | "kill" (the whole process)

`stdio_command(plan)` is a command for `CodexClient.connect_stdio`; `open_websocket_server(plan)`
starts a listening process. A websocket client may choose its own connection's plan with
`?plan=<url-encoded JSON>` (`WebsocketServer.url_for`), so a bystander can share the server.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import urllib.parse
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from orchestrator.transport.stdio import stop_process
from tests.fake_app_server import FakeAppServer, FakeTurn

ROOT = Path(__file__).resolve().parents[2]
APPROVAL = "item/commandExecution/requestApproval"
OVERLOADED = -32001
_LOG_TEXT = b"2026-01-01T00:00:00.000000Z TRACE codex_core::session: polling the model"
LOG_LINE = _LOG_TEXT.ljust(99, b".") + b"\n"  # 100 bytes, like a chatty server's trace log

Plan = Mapping[str, Any]

# A turn that waits on the client's approval in its middle: a bystander's turn is surely still
# running on its server while a test hurts another connection.
BYSTANDER_PLAN: Plan = {
    "turn": [
        ["accept"],
        ["message", "before"],
        ["request", APPROVAL],
        ["message", "after"],
        ["complete"],
    ]
}


class HostileAppServer(FakeAppServer):
    """`FakeAppServer` following a plan (see the module docstring).

    `wire` is any transport with `send`, `receive` and `aclose` (plus `send_bytes` and `die`
    for the actions that need them).
    """

    def __init__(self, wire: Any, plan: Plan | None = None) -> None:
        super().__init__(wire)
        self.plan = dict(plan or {})
        self.silent_methods = set(self.plan.get("silent", ()))
        self.late: dict[str, float] = dict(self.plan.get("late", {}))
        self.storm: dict[str, int] = dict(self.plan.get("storm", {}))
        self.storm_answers: Counter[str] = Counter()  # request key -> -32001 answers so far
        self.arrivals: list[tuple[float, str]] = []  # (clock, method) of every request
        if "turn" in self.plan:
            actions = self.plan["turn"]
            self.turn_script = functools.partial(self.act, actions)

    async def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            self.arrivals.append((trio.current_time(), method))
            if method == "initialize" and "init" in self.plan:
                await self.act(self.plan["init"], None)
            if self._overloaded(method, message.get("params")):
                self.method_counts[method] += 1
                error = {"code": OVERLOADED, "message": "Server overloaded; retry later."}
                await self.send({"id": message["id"], "error": error})
                return
            if method in self.late:
                self.method_counts[method] += 1
                assert self._nursery is not None
                self._nursery.start_soon(self._answer_late, message["id"], self.late[method])
                return
        await super()._handle(message)

    def _overloaded(self, method: str, params: Any) -> bool:
        """Whether this request gets -32001; a retry is the same method with the same params."""
        limit = self.storm.get(method, self.storm.get("*", 0))
        if not limit:
            return False
        key = method + json.dumps(params, sort_keys=True)
        if self.storm_answers[key] < limit:
            self.storm_answers[key] += 1
            return True
        del self.storm_answers[key]  # answered: an identical request later is stormed again
        return False

    async def _answer_late(self, msg_id: Any, delay: float) -> None:
        await trio.sleep(delay)
        await self.send({"id": msg_id, "result": {"late": True}})

    async def act(self, actions: Sequence[Sequence[Any]], turn: FakeTurn | None) -> None:
        """Run plan actions, in order (`turn` is None for `init` actions)."""
        for name, *args in actions:
            await self._action(name, args, turn)

    async def _action(self, name: str, args: list[Any], turn: FakeTurn | None) -> None:
        match name:
            case "accept":
                await _turn(turn).accept()
            case "message":
                await _turn(turn).item("agentMessage", args[0])
            case "raw":
                await self.send_raw(_fill(args[0], turn) * (args[1] if len(args) > 1 else 1))
            case "raw_bytes":
                await self.transport.send_bytes(_fill(args[0], turn).encode("latin-1"))
            case "big":
                await self.send_raw(big_item_completed(_turn(turn), *args))
            case "big_stuck":
                os.set_blocking(1, True)  # stall right here, event loop and all
                write_all(1, big_item_completed(_turn(turn), *args).encode() + b"\n")
            case "stderr":
                write_log_lines(args[0])
            case "stderr_text":
                write_all(2, args[0].encode())
            case "request":
                await _turn(turn).request(args[0], itemId="hostile-item", command="touch x")
            case "request_nowait":
                # Sent from this task: a new task would not run before a `die` that follows.
                msg_id = next(self._server_ids)
                self._waiting[msg_id] = trio.Event()  # where the answer will be recorded
                params = {"threadId": _turn(turn).thread_id, "turnId": _turn(turn).turn_id}
                params.update(itemId="hostile-item", command="touch x")
                await self.send({"id": msg_id, "method": args[0], "params": params})
            case "sleep":
                await trio.sleep(args[0])
            case "hang":
                await trio.sleep_forever()
            case "complete":
                await _turn(turn).complete(*args)
            case "die":
                await self.transport.die(*args)
                await trio.sleep_forever()  # the serve loop ends with the connection
            case _:
                raise ValueError(f"unknown action {name!r}")


def _turn(turn: FakeTurn | None) -> FakeTurn:
    if turn is None:
        raise ValueError("this action needs a turn")
    return turn


def _fill(text: str, turn: FakeTurn | None) -> str:
    if turn is None:
        return text
    return text.replace("$thread", turn.thread_id).replace("$turn", turn.turn_id)


def big_item_completed(turn: FakeTurn, size: int, char: str = "x") -> str:
    """An agentMessage `item/completed` whose JSON text is exactly `size` bytes of UTF-8.

    It is not added to the turn's items: `turn/completed` would repeat it.
    """
    item = {"type": "agentMessage", "id": "big", "text": "", "phase": None}
    params = {"threadId": turn.thread_id, "turnId": turn.turn_id, "item": item}
    envelope = {"method": "item/completed", "params": params}
    room = size - len(json.dumps(envelope, ensure_ascii=False).encode())
    unit = len(char.encode())
    item["text"] = char * (room // unit) + "x" * (room % unit)
    text = json.dumps(envelope, ensure_ascii=False)
    assert len(text.encode()) == size, "size too small for the envelope"
    return text


def write_all(fd: int, data: bytes) -> None:
    """Write everything to a blocking fd (a full pipe blocks us, as it would a real server)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_log_lines(total: int) -> None:
    """`total` bytes of log lines to stderr, one MiB-sized write at a time."""
    block = LOG_LINE * ((1 << 20) // len(LOG_LINE))
    while total > 0:
        chunk = block[:total]
        write_all(2, chunk)
        total -= len(chunk)


class StdioWire:
    """The server's side of stdio: JSONL in on fd 0, out on fd 1."""

    def __init__(self) -> None:
        self._in = trio.lowlevel.FdStream(os.dup(0))
        self._out = trio.lowlevel.FdStream(os.dup(1))
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()

    async def send(self, text: str) -> None:
        await self._out.send_all(text.encode() + b"\n")

    async def send_bytes(self, data: bytes) -> None:
        await self._out.send_all(data)

    async def receive(self) -> str:
        while not self._lines:
            chunk = await self._in.receive_some(65536)
            if not chunk:
                raise trio.EndOfChannel
            self._buffer += chunk
            *lines, rest = self._buffer.split(b"\n")
            self._lines.extend(lines)
            self._buffer = bytearray(rest)
        return self._lines.popleft().decode()

    async def aclose(self) -> None:
        await self._out.aclose()

    async def die(self, how: str, *args: Any) -> None:
        if how == "exit":
            os._exit(int(args[0]))
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "close_stdout":
            await self._out.aclose()
            os.close(1)  # the last descriptor of the pipe: the client reads EOF, we live on
        else:
            raise ValueError(f"stdio cannot die by {how!r}")


# The peer going away while we write is its business, not a failure of this server.
GONE: tuple[type[Exception], ...] = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


async def _serve_stdio(plan: Plan) -> None:
    try:
        await HostileAppServer(StdioWire(), plan).serve()
    except* GONE:
        pass


def main(argv: list[str]) -> None:
    """`[--websocket] PLAN_JSON`."""
    plans = [arg for arg in argv if arg != "--websocket"]
    plan = json.loads(plans[0]) if plans else {}
    if "--websocket" in argv:
        # Imported only here: stdio servers start faster without trio-websocket.
        from tests.faults.hostile_websocket import serve_websocket

        trio.run(serve_websocket, plan)
    else:
        trio.run(_serve_stdio, plan)


BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from tests.faults.hostile_server import main; main(sys.argv[2:])"
)


def stdio_command(plan: Plan | None = None) -> list[str]:
    """argv of a hostile stdio app-server following `plan`."""
    return [sys.executable, "-c", BOOTSTRAP, str(ROOT), json.dumps(plan or {})]


@attrs.frozen
class WebsocketServer:
    """A running hostile websocket app-server process."""

    url: str
    process: trio.Process

    def url_for(self, plan: Plan) -> str:
        """The URL of a connection following `plan` instead of the server's own."""
        return f"{self.url}/?plan={urllib.parse.quote(json.dumps(plan))}"


@asynccontextmanager
async def open_websocket_server(plan: Plan | None = None) -> AsyncIterator[WebsocketServer]:
    """Start a hostile websocket app-server on 127.0.0.1 and a free port; stop it on exit."""
    process = await trio.lowlevel.open_process(
        [*stdio_command(plan), "--websocket"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the hostile websocket server exited before listening")
                line += chunk
        yield WebsocketServer(url=line.decode().strip(), process=process)
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(process, grace=2)
            await process.stdout.aclose()


if __name__ == "__main__":
    main(sys.argv[1:])
