"""A small in-memory app-server that speaks the wire format of the transcripts.

Tests script each turn with an async function receiving a `FakeTurn`; the fake answers
`initialize`, `thread/start`, `turn/start`, `turn/interrupt` and `thread/read` itself, and lets
tests inject faults (overload errors, garbage, a vanished peer).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from orchestrator.transport.base import MessageTransport
from orchestrator.transport.memory import MemoryTransport

TurnScript = Callable[["FakeTurn"], Awaitable[None]]


class FakeTurn:
    """One running turn of the fake server; scripts emit its events through this."""

    def __init__(
        self, server: FakeAppServer, thread_id: str, turn_id: str, msg_id: Any, text: str = ""
    ) -> None:
        self.server = server
        self.text = text  # the turn's input text
        self.thread_id = thread_id
        self.turn_id = turn_id
        self._msg_id = msg_id
        self.accepted = False
        self.items: list[dict[str, Any]] = []
        self._item_ids = itertools.count(1)

    async def accept(self) -> None:
        """Send the `turn/start` response (scripts may emit events before it)."""
        if not self.accepted:
            self.accepted = True
            turn = {"id": self.turn_id, "items": [], "status": "inProgress", "error": None}
            await self.server.send({"id": self._msg_id, "result": {"turn": turn}})

    async def notify(self, method: str, **params: Any) -> None:
        """Send a notification about this turn."""
        body = {"threadId": self.thread_id, "turnId": self.turn_id, **params}
        await self.server.send({"method": method, "params": body})

    async def item(self, item_type: str, text: str = "", **fields: Any) -> dict[str, Any]:
        """Emit item/started, a delta, and item/completed for one item."""
        item_id = fields.pop("id", f"{item_type}_{next(self._item_ids)}")
        item: dict[str, Any] = {"type": item_type, "id": item_id, **fields}
        if item_type == "agentMessage":
            item.setdefault("text", text)
            item.setdefault("phase", None)
        elif item_type == "reasoning":
            item.setdefault("summary", [text])
        elif item_type == "commandExecution":
            item.setdefault("aggregatedOutput", text)
            item.setdefault("status", "completed")
            item.setdefault("exitCode", 0)
        await self.notify("item/started", item={**item, "text": ""})
        if item_type == "agentMessage" and text:
            await self.notify("item/agentMessage/delta", itemId=item_id, delta=text)
        await self.notify("item/completed", item=item)
        self.items.append(item)
        return item

    async def usage(self, total: int = 10) -> None:
        """Emit a token usage update for one model call."""
        breakdown = {
            "totalTokens": total,
            "inputTokens": total - 2,
            "cachedInputTokens": 0,
            "outputTokens": 2,
            "reasoningOutputTokens": 0,
        }
        await self.notify(
            "thread/tokenUsage/updated",
            tokenUsage={"total": breakdown, "last": breakdown, "modelContextWindow": 1000},
        )

    async def request(self, method: str, **params: Any) -> Any:
        """Send a server request about this turn and wait for the client's answer."""
        body = {"threadId": self.thread_id, "turnId": self.turn_id, **params}
        return await self.server.server_request(method, body)

    async def complete(
        self, status: str = "completed", error: dict[str, Any] | None = None
    ) -> None:
        """Emit the idle status change and turn/completed."""
        await self.server.send(
            {
                "method": "thread/status/changed",
                "params": {"threadId": self.thread_id, "status": {"type": "idle"}},
            }
        )
        summary = [i for i in self.items if i["type"] == "agentMessage"][-1:]
        turn = {"id": self.turn_id, "status": status, "error": error, "items": summary}
        await self.server.send(
            {"method": "turn/completed", "params": {"threadId": self.thread_id, "turn": turn}}
        )
        self.server.remember_turn({"id": self.turn_id, "items": self.items, "status": status})


async def echo_turn(turn: FakeTurn) -> None:
    """The default script: accept, one agent message echoing the input, usage, complete."""
    await turn.accept()
    await turn.item("agentMessage", f"ECHO: {turn.server.last_input_text}")
    await turn.usage()
    await turn.complete()


def trickling_turn(deltas: int, *, every: float = 2) -> TurnScript:
    """A script that sends `deltas` message deltas `every` seconds apart (activity, but no
    step), then one agent message "done", and completes."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        for _ in range(deltas):
            await trio.sleep(every)
            await turn.notify("item/agentMessage/delta", itemId="m", delta="x")
        await turn.item("agentMessage", "done")
        await turn.complete()

    return script


def asking_turn(answers: list[Any], method: str, **params: Any) -> TurnScript:
    """A script that sends one server request `method` and appends the client's answer to
    `answers` before it completes."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        answers.append(await turn.request(method, **params))
        await turn.complete()

    return script


async def answer_until_closed(
    transport: MessageTransport,
    handle: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    ends: tuple[type[BaseException], ...] = (trio.EndOfChannel, Exception),
) -> None:
    """Pass every JSON message the client sends to `handle`, until a receive raises one of
    `ends` (the connection is over)."""
    while True:
        try:
            text = await transport.receive()
        except ends:
            return
        await handle(json.loads(text))


class FakeAppServer:
    """Serves one client connection over a memory transport until closed."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.turn_script: TurnScript = echo_turn
        self.scripts: deque[TurnScript] = deque()  # per-turn scripts, used before turn_script
        self.method_counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)
        self.overload: Counter[str] = Counter()  # method -> how many -32001 answers to give
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.silent_methods: set[str] = set()  # requests never answered
        # method -> JSON-RPC errors to answer with, one per request, before answering normally
        self.refusals: dict[str, deque[dict[str, Any]]] = {}
        self.responses: dict[Any, Any] = {}
        self.completed_turns: dict[str, dict[str, Any]] = {}
        self.last_input_text = ""
        self._threads = itertools.count(1)
        self.active_turns = 0  # turns running now, and the most seen at once
        self.max_active_turns = 0
        self._turns = itertools.count(1)
        self._server_ids = itertools.count(0)
        self._waiting: dict[Any, trio.Event] = {}
        self._running: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message (the real server omits "jsonrpc")."""
        await self.transport.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        """Send a text as is (garbage, partial JSON ...)."""
        await self.transport.send(text)

    async def server_request(self, method: str, params: dict[str, Any]) -> Any:
        """Send a request to the client and wait for its answer."""
        msg_id = next(self._server_ids)
        done = trio.Event()
        self._waiting[msg_id] = done
        await self.send({"id": msg_id, "method": method, "params": params})
        await done.wait()
        answer = self.responses.pop(msg_id)
        await self.send(
            {
                "method": "serverRequest/resolved",
                "params": {"threadId": params.get("threadId"), "requestId": msg_id},
            }
        )
        return answer

    def remember_turn(self, turn: dict[str, Any]) -> None:
        """Keep a finished turn for thread/read (only the last few: tests run 10,000 turns)."""
        self.completed_turns[turn["id"]] = turn
        while len(self.completed_turns) > 50:
            del self.completed_turns[next(iter(self.completed_turns))]

    async def close(self) -> None:
        """Vanish: the client sees the connection end."""
        await self.transport.aclose()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer the client until it disconnects."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await answer_until_closed(self.transport, self._handle)
            finally:
                nursery.cancel_scope.cancel()

    async def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # a response to one of our requests
            self.responses[message["id"]] = message.get("result", message.get("error"))
            self._waiting.pop(message["id"]).set()
            return
        self.method_counts[method] += 1
        self.recent.append(message)
        if "id" not in message:
            return  # a notification such as `initialized`
        msg_id = message["id"]
        params = message.get("params") or {}
        if method in self.silent_methods:
            return
        if self.overload[method] > 0:
            self.overload[method] -= 1
            await self.send({"id": msg_id, "error": {"code": -32001, "message": "overloaded"}})
            return
        if self.refusals.get(method):
            error = self.refusals[method].popleft()
            await self.send({"id": msg_id, "error": error})
            return
        if method in self.handlers:
            result = self.handlers[method](params)
            await self.send({"id": msg_id, "result": result})
            return
        if method == "initialize":
            await self.send(
                {
                    "id": msg_id,
                    "result": {"userAgent": "fake/0.0", "codexHome": "/x", "platformOs": "linux"},
                }
            )
        elif method == "thread/start":
            thread_id = f"thread-{next(self._threads)}"
            thread = {"id": thread_id, "status": {"type": "idle"}, "turns": []}
            await self.send({"id": msg_id, "result": {"thread": thread, "model": "fake"}})
            await self.send({"method": "thread/started", "params": {"thread": thread}})
        elif method == "turn/start":
            self.last_input_text = " ".join(
                part.get("text", "") for part in params.get("input", [])
            )
            turn = FakeTurn(
                self,
                params["threadId"],
                f"turn-{next(self._turns)}",
                msg_id,
                self.last_input_text,
            )
            script = self.scripts.popleft() if self.scripts else self.turn_script
            assert self._nursery is not None
            self._nursery.start_soon(self._run_turn, turn, script)
        elif method == "turn/interrupt":
            scope = self._running.get(params["turnId"])
            await self.send({"id": msg_id, "result": {}})
            if scope is not None:
                scope.cancel()
        elif method == "thread/resume":
            thread = {"id": params["threadId"], "status": {"type": "idle"}, "turns": []}
            await self.send({"id": msg_id, "result": {"thread": thread}})
        elif method == "thread/read":
            turns = [t for t in self.completed_turns.values()]
            thread = {"id": params["threadId"], "turns": turns}
            await self.send({"id": msg_id, "result": {"thread": thread}})
        else:
            await self.send(
                {"id": msg_id, "error": {"code": -32600, "message": f"unknown method {method}"}}
            )

    async def _run_turn(self, turn: FakeTurn, script: TurnScript) -> None:
        self.active_turns += 1
        self.max_active_turns = max(self.max_active_turns, self.active_turns)
        try:
            with trio.CancelScope() as scope:
                self._running[turn.turn_id] = scope
                await script(turn)
        finally:
            self.active_turns -= 1
        del self._running[turn.turn_id]
        if scope.cancelled_caught:
            await turn.accept()
            await turn.complete("interrupted")
