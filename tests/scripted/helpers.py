"""Test helpers for the scripted provider: a tiny h11 client and codex-shaped request bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import h11
import trio


@attrs.frozen
class SseEvent:
    """One parsed SSE record and the (trio) time its last byte arrived."""

    at: float
    event: str
    data: dict[str, Any]


@attrs.frozen
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes
    events: tuple[SseEvent, ...]

    def types(self) -> list[str]:
        return [e.event for e in self.events]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.event == event_type]

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class HttpClient:
    """An HTTP/1.1 client over one loopback connection; it reuses the connection (keep-alive)."""

    stream: trio.SocketStream
    conn: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.CLIENT))

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        *,
        stop_after: int | None = None,
    ) -> HttpReply:
        """Send one request and read the reply; `stop_after` stops after that many SSE events."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        headers = [("host", "127.0.0.1")]
        if body is not None:
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        await self._send(h11.Request(method=method, target=target, headers=headers))
        if body is not None:
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())
        response = await self._next_event()
        assert isinstance(response, h11.Response), response
        buffer, raw, events = b"", b"", []
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            assert isinstance(event, h11.Data), event
            raw += event.data
            buffer += event.data
            while b"\n\n" in buffer:
                record, buffer = buffer.split(b"\n\n", 1)
                events.append(_parse_record(record, trio.current_time()))
            if stop_after is not None and len(events) >= stop_after:
                break
        return HttpReply(
            status=response.status_code,
            headers={k.decode(): v.decode() for k, v in response.headers},
            body=raw,
            events=tuple(events),
        )

    async def post_json(self, body: object, **kwargs: Any) -> HttpReply:
        return await self.request("POST", "/v1/responses", json.dumps(body).encode(), **kwargs)

    async def _send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.conn.send(event) or b"")

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            return event


def _parse_record(record: bytes, at: float) -> SseEvent:
    lines = dict(line.split(": ", 1) for line in record.decode().split("\n"))
    data = json.loads(lines["data"])
    assert data["type"] == lines["event"]
    return SseEvent(at=at, event=lines["event"], data=data)


Connect = Callable[[int], Awaitable[HttpClient]]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def body_for(*items: dict[str, Any]) -> dict[str, Any]:
    """A request body shaped like codex's: developer and environment messages first."""
    preamble = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
        user("<environment_context>\n  <cwd>/tmp</cwd>\n</environment_context>"),
    ]
    return {"model": "fake-model", "stream": True, "input": [*preamble, *items]}
