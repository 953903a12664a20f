"""The websocket transport against trio-websocket servers and a hand-driven wsproto peer on
127.0.0.1, port 0.

Everything runs in this process, so a mock clock that jumps only after the loop has been idle
for a moment (`io_clock`) makes keepalive and close timeouts instant without racing loopback
I/O.
"""

from __future__ import annotations

import gc
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from orchestrator.client import CodexClient
from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.transport.websocket import default_url, open_websocket_transport

TOKEN = "s3cret-t0ken-value"
Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


@pytest.fixture
def io_clock() -> trio.testing.MockClock:
    """A mock clock that autojumps only after 50 ms of real idleness (safe with real I/O)."""
    return trio.testing.MockClock(autojump_threshold=0.05)


@asynccontextmanager
async def serving(handler: Handler, **options: Any) -> AsyncIterator[str]:
    """Run a trio-websocket server on 127.0.0.1, port 0; yield its ws:// URL."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None, **options)
        )
        yield f"ws://127.0.0.1:{server.port}"
        nursery.cancel_scope.cancel()


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    """Echo every message back."""
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


def sending(*messages: str | bytes) -> Handler:
    """A handler that accepts the upgrade, sends `messages`, then waits for the client to go."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        for message in messages:
            await ws.send_message(message)
        await trio.sleep_forever()

    return handler


def recording_headers(seen: list[list[tuple[bytes, bytes]]]) -> Handler:
    """An echoing handler that first appends the upgrade request's headers to `seen`."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        seen.append(list(request.headers))
        await echo(request)

    return handler


def app_server(on_request: Callable[[trio_websocket.WebSocketConnection, dict[str, Any]], Any]):
    """A websocket app-server answering `initialize`; other requests go to `on_request`."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                message = json.loads(await ws.get_message())
                if message.get("method") == "initialize":
                    await ws.send_message(json.dumps({"id": message["id"], "result": {}}))
                elif "id" in message:
                    await on_request(ws, message)
        except trio_websocket.ConnectionClosed:
            pass

    return handler


async def failed_request(
    on_request: Callable[[trio_websocket.WebSocketConnection, dict[str, Any]], Any],
    error: type[CodexTransportError] = CodexTransportError,
    **options: Any,
) -> CodexTransportError:
    """The `error` that `thread/start` raises on a client of an `app_server(on_request)`."""
    async with (
        serving(app_server(on_request)) as url,
        CodexClient.connect_websocket(url, ping_interval=None, **options) as client,
    ):
        with pytest.raises(error) as caught:
            await client.request("thread/start", {})
    return caught.value


def header(headers: list[tuple[bytes, bytes]], name: str) -> list[str]:
    """Every value of header `name` (case-insensitive)."""
    return [v.decode() for k, v in headers if k.decode().lower() == name.lower()]


class RawPeer:
    """A websocket server driven by hand with wsproto: it accepts the upgrade, then records
    every event; only when told to answer does it echo texts and answer pings and closes."""

    def __init__(self, *, answer: bool) -> None:
        self.answer = answer
        self.events: list[Event] = []
        self.port = 0
        self.scope = trio.CancelScope()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        self.port = listener.socket.getsockname()[1]
        task_status.started()
        with self.scope:
            await self._serve(listener)

    async def _serve(self, listener: trio.SocketListener) -> None:
        stream = await listener.accept()
        await listener.aclose()
        async with stream:
            ws = WSConnection(ConnectionType.SERVER)
            while data := await stream.receive_some(65536):
                ws.receive_data(data)
                for event in ws.events():
                    self.events.append(event)
                    if isinstance(event, Request):
                        await stream.send_all(ws.send(AcceptConnection()))
                    elif self.answer and isinstance(event, Ping):
                        await stream.send_all(ws.send(event.response()))
                    elif self.answer and isinstance(event, TextMessage):
                        await stream.send_all(ws.send(TextMessage(data=event.data)))
                    elif self.answer and isinstance(event, CloseConnection):
                        await stream.send_all(ws.send(event.response()))
                        return

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def pings(self) -> int:
        return sum(isinstance(event, Ping) for event in self.events)


# -- messages and the upgrade request ------------------------------------------------------


async def test_text_frames_round_trip() -> None:
    """One JSON text per text frame, both ways, in order."""
    async with serving(echo) as url, open_websocket_transport(url) as transport:
        for i in range(3):
            await transport.send(json.dumps({"n": i, "text": "héllo ✓"}))
        assert [json.loads(await transport.receive()) for _ in range(3)] == [
            {"n": i, "text": "héllo ✓"} for i in range(3)
        ]


async def test_a_batch_goes_out_as_frames_of_their_own() -> None:
    """`send_batch` writes several messages at once; each is a text frame of its own."""
    messages = [json.dumps({"n": i, "text": "héllo ✓"}) for i in range(5)]
    async with serving(echo) as url, open_websocket_transport(url) as transport:
        await transport.send_batch(messages)
        assert [await transport.receive() for _ in messages] == messages


@pytest.mark.fault(
    "client: hostile input",
    "websocket: a binary frame",
    "ignored; the next text frame delivered",
)
async def test_binary_frames_are_ignored() -> None:
    """A binary frame from the server is skipped; the next text frame is delivered."""
    handler = sending(b"\x00binary", '{"after": "binary"}')
    async with serving(handler) as url, open_websocket_transport(url) as transport:
        assert await transport.receive() == '{"after": "binary"}'


@pytest.mark.parametrize("source", ["argument", "environment"])
async def test_upgrade_carries_the_bearer_token_and_no_origin_or_extensions(
    monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """The upgrade request has `Authorization: Bearer <token>`, no `Origin`, and offers no
    compression."""
    seen: list[list[tuple[bytes, bytes]]] = []
    handler = recording_headers(seen)
    token = TOKEN if source == "argument" else None
    if source == "environment":
        monkeypatch.setenv("CODEX_APP_SERVER_TOKEN", TOKEN)
    else:
        monkeypatch.delenv("CODEX_APP_SERVER_TOKEN", raising=False)
    async with serving(handler) as url, open_websocket_transport(url, token=token) as transport:
        await transport.send("{}")
        assert await transport.receive() == "{}"
    [headers] = seen
    assert header(headers, "Authorization") == [f"Bearer {TOKEN}"]
    assert header(headers, "Origin") == []
    assert header(headers, "Sec-WebSocket-Extensions") == []


async def test_no_token_means_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a token argument or `CODEX_APP_SERVER_TOKEN`, no `Authorization` is sent."""
    monkeypatch.delenv("CODEX_APP_SERVER_TOKEN", raising=False)
    seen: list[list[tuple[bytes, bytes]]] = []
    async with serving(recording_headers(seen)) as url, open_websocket_transport(url):
        pass
    assert header(seen[0], "Authorization") == []


async def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`CODEX_APP_SERVER_WS_URL` is the URL used when none is given."""
    monkeypatch.delenv("CODEX_APP_SERVER_WS_URL", raising=False)
    assert default_url() == "ws://127.0.0.1:8765"
    async with serving(echo) as url:
        monkeypatch.setenv("CODEX_APP_SERVER_WS_URL", url)
        async with open_websocket_transport() as transport:
            assert transport.url == url
            await transport.send('{"via": "env"}')
            assert await transport.receive() == '{"via": "env"}'


# -- refusals and closes ---------------------------------------------------------------------


# trio-websocket (0.12.2) never closes the client's TCP stream when the upgrade is rejected,
# so the transport owns the stream; the gc.collect() below would expose a leaked socket.
async def test_rejected_upgrade_names_the_status_and_body_but_never_the_token() -> None:
    """HTTP 401 on the upgrade is a `CodexTransportError` with the status and body, and the
    token appears nowhere in it."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(401, body=b"missing websocket bearer token")

    async with serving(handler) as url:
        with pytest.raises(CodexTransportError) as caught:
            async with CodexClient.connect_websocket(url, token=TOKEN):
                pass
    text = str(caught.value)
    assert "401" in text and "missing websocket bearer token" in text
    everything = "".join(traceback.format_exception(caught.value)) + repr(caught.value.__context__)
    assert TOKEN not in everything
    del caught
    gc.collect()  # a leaked socket of the refused upgrade would warn (and fail) right here


async def test_connection_refused_is_a_transport_error_with_the_reason() -> None:
    """Nothing listening gives a `CodexTransportError` naming the URL and why."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # the port is now (almost certainly) closed
    url = f"ws://127.0.0.1:{port}"
    with pytest.raises(CodexTransportError) as caught:
        async with open_websocket_transport(url, ping_interval=None):
            pass
    assert url in str(caught.value)
    assert "connect" in str(caught.value).lower()


@pytest.mark.fault(
    "client: websocket close",
    "the server closes with 4001 and a reason, a request pending",
    "the request fails with CodexTransportError naming 4001 and the reason",
)
async def test_server_close_fails_the_pending_request_with_the_code() -> None:
    """A server closing with a code and reason fails the pending request with both."""

    async def close(ws: trio_websocket.WebSocketConnection, message: dict[str, Any]) -> None:
        await ws.aclose(code=4001, reason="shutting down")

    error = await failed_request(close)
    assert "4001" in str(error)
    assert "shutting down" in str(error)


@pytest.mark.fault(
    "client: message size",
    "websocket: a response over the limit",
    "CodexMessageTooLargeError; the connection closed with 1009",
)
async def test_message_over_the_limit_closes_with_1009() -> None:
    """A message over `max_message_bytes` raises `CodexMessageTooLargeError` (close 1009)."""

    async def big(ws: trio_websocket.WebSocketConnection, message: dict[str, Any]) -> None:
        await ws.send_message(json.dumps({"id": message["id"], "result": "z" * 5000}))

    error = await failed_request(big, CodexMessageTooLargeError, max_message_bytes=1000)
    assert "1009" in str(error)


@pytest.mark.fault(
    "client: message size",
    "websocket transport: a frame over the limit",
    "CodexMessageTooLargeError",
)
async def test_message_over_the_limit_on_the_transport() -> None:
    """The transport itself raises `CodexMessageTooLargeError` for an oversized frame."""
    async with (
        serving(sending("x" * 2000)) as url,
        open_websocket_transport(url, max_message_bytes=1000, ping_interval=None) as transport,
    ):
        with pytest.raises(CodexMessageTooLargeError):
            await transport.receive()


# -- keepalive -------------------------------------------------------------------------------


@pytest.mark.fault(
    "client: server stops",
    "websocket: the peer stops answering (no pong to our pings)",
    "closed after ping_timeout; the pending request fails with 'no pong'",
)
async def test_missing_pong_closes_the_connection(io_clock: trio.testing.MockClock) -> None:
    """A peer that never answers our pings is dropped after `ping_timeout`, and the pending
    request's error says there was no pong."""
    peer = RawPeer(answer=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        async with CodexClient.connect_websocket(
            peer.url, ping_interval=5, ping_timeout=5, request_timeout=None
        ) as client:
            started = trio.current_time()
            with pytest.raises(CodexTransportError, match="no pong") as caught:
                await client.request("initialize", {})
            assert 10 <= trio.current_time() - started < 11
        nursery.cancel_scope.cancel()
    assert peer.pings() == 1
    assert caught.value.close_reason is not None and "no pong" in caught.value.close_reason


async def test_answered_pings_keep_the_connection_alive(io_clock: trio.testing.MockClock) -> None:
    """A peer that answers pings stays connected through many ping intervals."""
    peer = RawPeer(answer=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        async with open_websocket_transport(peer.url, ping_interval=1, ping_timeout=1) as transport:
            await trio.sleep(10.5)
            await transport.send('{"still": "here"}')
            assert await transport.receive() == '{"still": "here"}'
            assert not transport.ping_failed
        nursery.cancel_scope.cancel()
    assert peer.pings() == 10


@pytest.mark.fault(
    "client: websocket close",
    "the peer never answers our close frame (leaving the block)",
    "leaving is bounded; nothing raised",
)
async def test_exit_is_bounded_when_the_peer_never_answers_the_close(
    io_clock: trio.testing.MockClock,
) -> None:
    """Leaving the context with a peer that ignores our close frame finishes in bounded time
    and raises nothing."""
    peer = RawPeer(answer=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        nursery.start_soon(_hang_up_after, peer, 60)  # turns a hang into a failure
        started = trio.current_time()
        async with open_websocket_transport(peer.url, ping_interval=None):
            pass
        assert trio.current_time() - started < 10
        nursery.cancel_scope.cancel()


@pytest.mark.fault(
    "client: websocket close",
    "the peer never answers our close frame (aclose)",
    "aclose returns in bounded time",
)
async def test_aclose_is_bounded_when_the_peer_never_answers_the_close(
    io_clock: trio.testing.MockClock,
) -> None:
    """`aclose()` on a peer that ignores our close frame returns in bounded time."""
    peer = RawPeer(answer=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        async with open_websocket_transport(peer.url, ping_interval=None) as transport:
            started = trio.current_time()
            # A regression would hang here forever (the close is shielded); the peer's
            # stream closing at the 60 s mark below turns that into a plain failure.
            nursery.start_soon(_hang_up_after, peer, 60)
            await transport.aclose()
            assert trio.current_time() - started < 10
        nursery.cancel_scope.cancel()


async def _hang_up_after(peer: RawPeer, seconds: float) -> None:
    await trio.sleep(seconds)
    peer.scope.cancel()


# -- frames the transport parses itself ------------------------------------------------------


async def raw_server(
    send: Callable[[trio.SocketStream, WSConnection], Awaitable[None]],
    received: list[Event],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept one upgrade with wsproto, run `send`, then record what the client sends
    (answering its pings and its close) until it hangs up."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    task_status.started(listener.socket.getsockname()[1])
    stream = await listener.accept()
    await listener.aclose()
    async with stream:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(await stream.receive_some(65536))
        assert any(isinstance(event, Request) for event in ws.events())
        await stream.send_all(ws.send(AcceptConnection()))
        await send(stream, ws)
        try:
            while data := await stream.receive_some(65536):
                ws.receive_data(data)
                for event in ws.events():
                    received.append(event)
                    if isinstance(event, Ping) or (
                        isinstance(event, CloseConnection) and ws.state.name == "REMOTE_CLOSING"
                    ):
                        await stream.send_all(ws.send(event.response()))
        except trio.BrokenResourceError:
            pass


@pytest.mark.fault(
    "client: message size",
    "websocket: a frame announcing 1 GiB, its payload trickling in",
    "CodexMessageTooLargeError once the limit is passed, without waiting for the rest; "
    "closed with 1009",
)
async def test_an_oversized_frame_is_refused_while_it_arrives() -> None:
    """A frame longer than the limit fails as soon as the limit is passed: the transport
    never buffers more than `max_message_bytes` of it, nor waits for its end."""
    received: list[Event] = []

    async def trickle(stream: trio.SocketStream, ws: WSConnection) -> None:
        # An unmasked text frame header with a 64-bit length of 1 GiB, then 3,000 bytes.
        await stream.send_all(bytes([0x81, 127]) + (1 << 30).to_bytes(8, "big") + b"x" * 3000)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(raw_server, trickle, received)
        with trio.fail_after(10):
            async with open_websocket_transport(
                f"ws://127.0.0.1:{port}", max_message_bytes=1000, ping_interval=None
            ) as transport:
                with pytest.raises(CodexMessageTooLargeError) as caught:
                    await transport.receive()
        nursery.cancel_scope.cancel()
    assert "at least" in str(caught.value) and "code 1009" in str(caught.value)
    assert [event.code for event in received if isinstance(event, CloseConnection)] == [1009]


@pytest.mark.fault(
    "client: hostile input",
    "websocket: a frame with a reserved opcode; a text frame of invalid UTF-8",
    "the connection closes with 1002 (protocol error) or 1007 (invalid data); the error names "
    "the code",
)
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x83, 2]) + b"hi", 1002),  # opcode 3 is reserved
        (bytes([0x81, 2]) + b"\xff\xfe", 1007),  # a text frame that is not UTF-8
    ],
    ids=["reserved-opcode", "invalid-utf8"],
)
async def test_a_broken_frame_closes_with_the_protocol_code(frame: bytes, code: int) -> None:
    """A frame wsproto cannot accept closes the connection with the RFC's code, and
    receiving ends with an error that names it; the message before it still arrives."""
    received: list[Event] = []

    async def broken(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.send_all(ws.send(TextMessage(data='{"before": "the break"}')) + frame)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(raw_server, broken, received)
        with trio.fail_after(10):
            async with open_websocket_transport(
                f"ws://127.0.0.1:{port}", ping_interval=None
            ) as transport:
                assert await transport.receive() == '{"before": "the break"}'
                with pytest.raises(trio.EndOfChannel):
                    await transport.receive()
                error = await transport.closed_error()
        nursery.cancel_scope.cancel()
    assert error.close_reason is not None and f"code {code}" in error.close_reason
    assert [event.code for event in received if isinstance(event, CloseConnection)] == [code]


async def test_a_ping_is_answered_while_nobody_reads(io_clock: trio.testing.MockClock) -> None:
    """The keepalive reads for a reader that does not (keeping what comes for it): a
    server's ping is answered, and the message read ahead is delivered afterwards."""
    received: list[Event] = []

    async def ping(stream: trio.SocketStream, ws: WSConnection) -> None:
        # Wait for the client's first keepalive ping; answer it behind a message and a ping
        # of ours, so that the keepalive reads both before it finds its pong.
        while True:
            ws.receive_data(await stream.receive_some(65536))
            pings = [event for event in ws.events() if isinstance(event, Ping)]
            if pings:
                break
        await stream.send_all(
            ws.send(TextMessage(data="kept"))
            + ws.send(Ping(b"hello"))
            + ws.send(pings[0].response())
        )

    async with trio.open_nursery() as nursery:
        port = await nursery.start(raw_server, ping, received)
        async with open_websocket_transport(
            f"ws://127.0.0.1:{port}", ping_interval=1, ping_timeout=1
        ) as transport:
            with trio.fail_after(10):
                while Pong(b"hello") not in received:
                    await trio.sleep(0.5)
            assert await transport.receive() == "kept"
        nursery.cancel_scope.cancel()


async def test_server_pings_mid_stream_are_answered_in_order() -> None:
    """A server that pings between messages (and waits for each pong) gets every pong while
    the reader takes a steady stream; every message arrives once, in order."""

    async def stream_with_pings(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        for n in range(2000):
            await ws.send_message(json.dumps({"n": n}))
            if n % 200 == 199:
                with trio.fail_after(10):
                    await ws.ping()  # returns when our pong arrives
        await trio.sleep_forever()

    async with serving(stream_with_pings) as url, open_websocket_transport(url) as transport:
        seen: list[int] = []
        with trio.fail_after(30):
            while len(seen) < 2000:
                seen.extend(json.loads(text)["n"] for text in await transport.receive_batch())
    assert seen == list(range(2000))
