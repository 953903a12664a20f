"""A loopback HTTP server that plays the OpenAI Responses API from a `Script`.

`ScriptedProvider.serve` answers `POST /v1/responses` with the server-sent events that
`script.py` plans and `sse.py` encodes, and `GET /health` with 200. It speaks HTTP/1.1 through
h11 with keep-alive (codex reuses its connections), handles each connection in its own task,
writes each SSE event as soon as it is due, and sleeps through scripted pauses with
`trio.sleep`, so a slow reply is cancellable and `autojump_clock` can skip it. A malformed
request or a client that hangs up ends its own connection, never the server. It binds
127.0.0.1 only: it exists for tests and offline demos.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import attrs
import h11
import trio

from orchestrator._util.concurrency import open_background_nursery
from orchestrator.scripted.script import HttpError, ItemIds, Script
from orchestrator.scripted.sse import error_body, stream_steps

__all__ = ["ScriptedProvider", "main", "open_scripted_provider"]

LOOPBACK = "127.0.0.1"
RECORDED_REQUESTS = 200
MAX_BODY_BYTES = 32 * 1024 * 1024
_RECEIVE_SIZE = 64 * 1024

log = logging.getLogger(__name__)


class _Reject(Exception):
    """Answer the current request with an error status, then carry on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.define(eq=False)
class ScriptedProvider:
    """The scripted Responses API server.

    Attributes:
        script: the rules that map prompts onto directives.
        requests: the parsed JSON bodies of the latest `POST /v1/responses` calls, oldest
            first (at most 200), for tests to inspect what codex sent.
        port: the port it listens on; 0 until `serve` has bound.
    """

    script: Script = attrs.field(factory=Script)
    requests: deque[Any] = attrs.field(init=False, factory=lambda: deque(maxlen=RECORDED_REQUESTS))
    port: int = attrs.field(init=False, default=0)
    _ids: ItemIds = attrs.field(init=False, factory=ItemIds)

    @property
    def base_url(self) -> str:
        """The `base_url` for codex's provider config: `http://127.0.0.1:<port>/v1`."""
        if not self.port:
            raise RuntimeError("the scripted provider is not listening yet")
        return f"http://{LOOPBACK}:{self.port}/v1"

    async def serve(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on `host:port` (port 0 picks a free one) and serve until cancelled.

        Calls `task_status.started(port)` once it accepts connections. Cancelling it closes the
        listener and every open connection, mid-stream or not.

        Raises:
            ValueError: `host` is not 127.0.0.1.
            OSError: the port cannot be bound.
        """
        if host != LOOPBACK:
            raise ValueError(f"the scripted provider binds {LOOPBACK} only, not {host!r}")
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
            task_status.started(self.port)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        # Anything that goes wrong on one connection ends that connection only.
        try:
            async with stream:
                await _Exchange(stream, self._respond).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client hung up, e.g. codex dropping a stream on turn/interrupt
        except Exception:
            log.exception("scripted provider: connection failed")

    async def _respond(self, exchange: _Exchange, request: h11.Request, body: bytes) -> None:
        target = request.target.split(b"?", 1)[0]
        method = request.method
        if target == b"/health":
            if method != b"GET":
                raise _Reject(405, "use GET")
            await exchange.send_whole(200, b"ok\n", content_type=b"text/plain")
            return
        if target != b"/v1/responses":
            raise _Reject(404, f"no such path: {target.decode('latin-1')}")
        if method != b"POST":
            raise _Reject(405, "use POST")
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Reject(400, f"request body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise _Reject(400, "request body must be a JSON object")
        self.requests.append(parsed)
        reply = self.script.plan(parsed, self._ids)
        if isinstance(reply, HttpError):
            await exchange.send_whole(reply.status, error_body(reply))
            return
        await exchange.send_head(200, b"text/event-stream", [(b"cache-control", b"no-cache")])
        for step in stream_steps(reply, created_at=int(time.time())):
            if step.delay > 0:
                await trio.sleep(step.delay)
            await exchange.send_data(step.data)
        await exchange.send_end()


@attrs.define(eq=False)
class _Exchange:
    """One HTTP/1.1 connection: a loop of read a request, answer it, until either side closes."""

    stream: trio.SocketStream
    handler: Callable[[_Exchange, h11.Request, bytes], Awaitable[None]]
    conn: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.SERVER))

    async def run(self) -> None:
        while True:
            try:
                request = await self._next_request()
                if request is None:
                    return
                await self.handler(self, *request)
            except _Reject as reject:
                if self.conn.our_state is not h11.SEND_RESPONSE:
                    raise
                error = {"message": reject.message, "type": "invalid_request_error"}
                body = json.dumps({"error": error})
                await self.send_whole(reject.status, body.encode())
            except h11.RemoteProtocolError as exc:
                # Garbage from the client: answer if we still can (h11 allows it from IDLE
                # when the request line itself is bad), then drop the connection, since h11
                # cannot find the next request boundary.
                if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self.send_whole(exc.error_status_hint, f"{exc}\n".encode())
                return
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is not h11.DONE:
                # A rejected request may leave its body unread; closing is simpler than draining.
                return
            self.conn.start_next_cycle()

    async def _next_request(self) -> tuple[h11.Request, bytes] | None:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError(f"expected a request, got {event!r}")
        body = bytearray()
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY_BYTES:
                    raise _Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
            elif isinstance(part, h11.EndOfMessage):
                return event, bytes(body)

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(_RECEIVE_SIZE))
                continue
            if event is h11.PAUSED:
                # Only a client pipelining past our unfinished response lands here.
                raise h11.RemoteProtocolError("request received before the response was sent")
            assert isinstance(event, h11.Event)
            return event

    async def send_head(
        self, status: int, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b"content-type", content_type), *(extra or [])]
        reason = _reason(status)
        await self._send(h11.Response(status_code=status, headers=headers, reason=reason))

    async def send_data(self, data: bytes) -> None:
        await self._send(h11.Data(data=data))

    async def send_end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def send_whole(
        self, status: int, body: bytes, *, content_type: bytes = b"application/json"
    ) -> None:
        await self.send_head(status, content_type, [(b"content-length", str(len(body)).encode())])
        await self.send_data(body)
        await self.send_end()

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


@asynccontextmanager
async def open_scripted_provider(script: Script | None = None) -> AsyncIterator[ScriptedProvider]:
    """Run a `ScriptedProvider` on a free loopback port for the duration of the block.

    It is listening when the block starts, and it is cancelled (listener and connections
    closed) when the block exits.
    """
    provider = ScriptedProvider(script=script if script is not None else Script())
    async with open_background_nursery() as nursery:
        await nursery.start(provider.serve)
        yield provider


def main(argv: list[str] | None = None) -> int:
    """Serve the scripted provider until SIGINT or SIGTERM; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="scripted-provider",
        description="Imitate the OpenAI Responses API on 127.0.0.1 for offline codex runs.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: pick a free one)")
    parser.add_argument("--script", type=Path, help="TOML file of [[rules]] match/reply")
    args = parser.parse_args(argv)
    try:
        script = Script.from_toml(args.script) if args.script else Script()
    except (OSError, ValueError) as exc:
        print(f"scripted provider: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_serve_until_signalled, ScriptedProvider(script=script), args.port)
    except OSError as exc:
        print(f"scripted provider: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signalled(provider: ScriptedProvider, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(provider.serve, port=port))
            print(f"scripted provider listening on {provider.base_url}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
