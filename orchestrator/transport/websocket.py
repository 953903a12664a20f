"""websocket transport: one JSON text per text frame, spoken with wsproto on a trio stream.

The reader reads for itself: `receive_batch` takes up to 256 KiB from the socket, lets wsproto
parse every frame in it and returns every message those bytes completed. No task or channel
stands between the socket and the reader; a reader task handing each message over a channel
costs two task switches per message, more than the client's own handling of it.

Control frames are handled in the same pass and answered by a small sender task, so the
reader never waits to write: a ping gets its pong, a pong wakes the keepalive, a close frame
is answered and ends the stream. The app-server never pings, so the client keeps the
connection honest with its own pings and closes it when a pong does not come back in time.

No compression is offered (the server does not negotiate it) and no `Origin` header is sent.
The bearer token goes in the upgrade request's `Authorization` header and nowhere else: it
never appears in errors or logs.
"""

from __future__ import annotations

import itertools
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import ProtocolError

from orchestrator._util import lazylog
from orchestrator._util.concurrency import open_background_nursery
from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from orchestrator.transport.base import MessageTransport

log = lazylog.get_logger("orchestrator.transport.websocket")

ENV_URL = "CODEX_APP_SERVER_WS_URL"
ENV_TOKEN = "CODEX_APP_SERVER_TOKEN"
DEFAULT_URL = "ws://127.0.0.1:8765"
MESSAGE_TOO_BIG = 1009  # RFC 6455 close code
KEEPALIVE_TIMEOUT = 1011  # "internal error": what we close with when a pong is late
CLOSE_TIMEOUT = 5.0  # seconds to wait for the peer's answer to our close frame
RECEIVE_BYTES = 256 * 1024  # one read; the stdio transport reads as much
MAX_UNREAD = 16  # messages a keepalive may read ahead for a reader that is not reading
REJECT_BODY_BYTES = 16 * 1024  # of a refused upgrade's body, quoted in the error
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def default_url() -> str:
    """`CODEX_APP_SERVER_WS_URL`, else ws://127.0.0.1:8765."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


class WebsocketTransport(MessageTransport):
    """JSON texts over one websocket connection (after its handshake)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: Connection,
        nursery: trio.Nursery,
        *,
        url: str,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = url
        self.description = f"app-server at {url}"
        self.max_message_bytes = max_message_bytes
        self.ping_failed = False
        self._stream = stream
        self._ws = ws
        self._nursery = nursery  # where the sender task runs, when there is something to send
        self._ready: list[str] = []  # messages read and not yet handed out
        self._parts: list[str] = []  # a fragmented text message so far
        self._part_bytes = 0
        self._binary = False  # the fragmented message is binary (dropped, but counted)
        self._reading = False  # a task is waiting in receive_some
        self._progress = trio.Event()  # set (and replaced) after each read
        self._send_lock = trio.Lock()  # wsproto's send and the stream's send_all, in order
        self._outbox: list[Event | None] = []  # control frames for the sender task
        self._sending = False  # the sender task runs
        self._pongs: dict[bytes, trio.Event] = {}
        self._ping_ids = itertools.count()
        # How the connection ended (code, reason), once it has; set once.
        self._closed: tuple[int, str] | None = None
        self._too_large: CodexMessageTooLargeError | None = None
        self._stream_closed = False
        self._take_events()  # frames that came with the handshake's answer

    # -- receiving ------------------------------------------------------------------------

    async def receive(self) -> str:
        while not self._ready:
            await self._wait_for_messages()
        return self._ready.pop(0)

    async def receive_batch(self) -> list[str]:
        """Every message one read completed (at least one)."""
        while not self._ready:
            await self._wait_for_messages()
        batch = self._ready
        self._ready = []
        return batch

    async def _wait_for_messages(self) -> None:
        if self._closed is not None:
            await trio.lowlevel.checkpoint()
            raise self._end()
        if self._reading:  # a keepalive reading for a reader that was not
            await self._progress.wait()
        else:
            await self._read()

    async def _read(self) -> None:
        """Read once and take in what came; control frames go to the sender."""
        self._reading = True
        try:
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except _STREAM_ERRORS:
                data = b""  # reset, or closed under us: the end, as a lost connection
            if self._closed is None or data:
                self._feed(data)
        finally:
            self._reading = False
            progress, self._progress = self._progress, trio.Event()
            progress.set()

    def _feed(self, data: bytes | bytearray) -> None:
        ws = self._ws
        if ws.state is ConnectionState.CLOSED:
            self._set_closed(CloseReason.ABNORMAL_CLOSURE, "")
            return
        # None: the end of the stream, without a close frame.
        ws.receive_data(bytes(data) if data else None)
        self._take_events()

    def _take_events(self) -> None:
        ready = self._ready
        quarter = self.max_message_bytes >> 2
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                text = event.data
                if event.message_finished and not self._parts:
                    # Characters, not bytes, so far: only a long text can be over.
                    if len(text) > quarter and _utf8_size(text) > self.max_message_bytes:
                        self._refuse(_utf8_size(text))
                        return
                    ready.append(text)
                elif not self._add_part(text, event.message_finished):
                    return
            elif isinstance(event, BytesMessage):
                if not self._add_part(event.data, event.message_finished):
                    return
            elif isinstance(event, Ping):
                self._post(event.response())
            elif isinstance(event, Pong):
                self._pong_arrived(event.payload)
            elif isinstance(event, CloseConnection):
                self._set_closed(event.code, event.reason or "")
                if self._ws.state is not ConnectionState.CLOSED:
                    # The peer's close to answer, or a protocol error wsproto found (the
                    # connection still open): close with its code.
                    self._post(event.response())
                self._post(None)  # then close the stream
                return

    def _add_part(self, data: str | bytes | bytearray, finished: bool) -> bool:
        """One fragment of a message; False when the message went over the limit."""
        if not self._parts and not self._part_bytes:
            self._binary = not isinstance(data, str)
        if isinstance(data, str):
            self._part_bytes += _utf8_size(data)
            if not self._binary:
                self._parts.append(data)
        else:
            self._part_bytes += len(data)
        if self._part_bytes > self.max_message_bytes:
            self._refuse(self._part_bytes, complete=finished)
            return False
        if finished:
            if self._binary:
                log.warning("binary websocket frame ignored", bytes=self._part_bytes)
            else:
                self._ready.append("".join(self._parts))
            self._parts = []
            self._part_bytes = 0
        return True

    def _refuse(self, size: int, *, complete: bool = True) -> None:
        """A message over the limit: close with 1009; the reader gets the error."""
        at_least = "" if complete else "at least "
        reason = f"message of {at_least}{size} bytes over the limit of {self.max_message_bytes}"
        self._too_large = CodexMessageTooLargeError(
            f"{self.description}: a {reason}; connection closed (code {MESSAGE_TOO_BIG})",
            close_reason=f"{MESSAGE_TOO_BIG} {reason}",
        )
        self._parts = []
        self._set_closed(MESSAGE_TOO_BIG, reason)
        self._post(CloseConnection(MESSAGE_TOO_BIG, reason[:120]))
        self._post(None)

    def _end(self) -> BaseException:
        """What receiving raises once the connection is closed."""
        if self._too_large is not None:
            return self._too_large
        assert self._closed is not None
        if self._closed[0] == MESSAGE_TOO_BIG:  # the peer found one of ours too big
            described = _describe(*self._closed)
            return CodexMessageTooLargeError(
                f"{self.description}: a message exceeded the size limit; connection closed "
                f"({described})",
                close_reason=described,
            )
        return trio.EndOfChannel()

    def _set_closed(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = (int(code), reason)
        for pong in self._pongs.values():  # nothing will answer a ping now
            pong.set()

    # -- sending --------------------------------------------------------------------------

    async def send(self, value: str) -> None:
        await self.send_batch((value,))

    async def send_batch(self, values: Sequence[str]) -> None:
        async with self._send_lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise await self.closed_error()
            data = b"".join(self._ws.send(TextMessage(data=value)) for value in values)
            try:
                await self._stream.send_all(data)
            except _STREAM_ERRORS as exc:
                if self._closed is not None:  # closed while we wrote: say how
                    raise await self.closed_error() from None
                raise CodexTransportError(f"{self.description}: {exc!r}") from exc

    def _post(self, event: Event | None) -> None:
        """Queue a control frame for the sender task (None: close the stream after). The
        task runs only while there is something to send: an idle connection has none."""
        self._outbox.append(event)
        if not self._sending:
            self._sending = True
            try:
                self._nursery.start_soon(self._send_control_frames)
            except RuntimeError:  # the transport's nursery is closed: so is the connection
                self._sending = False

    async def _send_control_frames(self) -> None:
        """The sender task: writes the reader's pongs and close frames, so that the reader
        never waits on a write; closes the stream once the connection has ended."""
        try:
            while self._outbox:
                events, self._outbox = self._outbox, []
                frames = [event for event in events if event is not None]
                if frames:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await self._send_events(frames)
                if None in events:
                    await self._close_stream()
                    return
        finally:
            self._sending = False

    async def _send_events(self, events: list[Event]) -> bool:
        """Send control frames that the connection's state still allows; False if the
        stream is broken."""
        async with self._send_lock:
            data = bytearray()
            for event in events:
                if _can_send(self._ws.state, event):
                    data += self._ws.send(event)
            if not data or self._stream_closed:
                return not self._stream_closed
            try:
                await self._stream.send_all(data)
            except _STREAM_ERRORS:
                return False
            return True

    # -- keepalive and closing ------------------------------------------------------------

    async def ping(self) -> bool:
        """Send a ping and wait for its pong; False if the connection ended first."""
        payload = next(self._ping_ids).to_bytes(8, "big")
        pong = self._pongs[payload] = trio.Event()
        try:
            if not await self._send_events([Ping(payload)]):
                return False
            await self._pump_until(lambda: pong.is_set())
        finally:
            del self._pongs[payload]
        return self._closed is None

    def _pong_arrived(self, payload: bytes | bytearray) -> None:
        # A pong answers its ping and, by RFC 6455, may stand for the earlier ones too.
        for sent, pong in self._pongs.items():
            pong.set()
            if sent == payload:
                break

    async def _pump_until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()`: read as `receive` would when no task is reading (keeping
        what comes for the reader), or let the task that reads make the progress."""
        while not done() and self._closed is None:
            if self._reading or len(self._ready) >= MAX_UNREAD:
                await self._progress.wait()
            else:
                await self._read()

    async def fail_keepalive(self) -> None:
        """A pong did not come in time: close with 1011 and drop the stream at once."""
        self.ping_failed = True
        self._set_closed(KEEPALIVE_TIMEOUT, "keepalive timeout")
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_events([CloseConnection(KEEPALIVE_TIMEOUT, "keepalive timeout")])
        await self._close_stream()

    async def aclose(self) -> None:
        """Close (code 1000), wait a bounded time for the peer's close, drop the stream.
        Control frames not sent yet (a pong, our answer to a close, a 1009) go first."""
        with trio.CancelScope(shield=True):
            frames = [event for event in self._outbox if event is not None]
            self._outbox.clear()
            initiating = self._closed is None and not self._stream_closed
            if initiating:
                frames.append(CloseConnection(CloseReason.NORMAL_CLOSURE))
            with trio.move_on_after(CLOSE_TIMEOUT):
                # Also waits for frames the sender task is writing now (it holds the lock).
                if await self._send_events(frames) and initiating:
                    await self._pump_until(lambda: False)  # until the peer's close
            await self._close_stream()

    async def _close_stream(self) -> None:
        if self._closed is None:
            self._set_closed(CloseReason.ABNORMAL_CLOSURE, "")
        if not self._stream_closed:
            self._stream_closed = True
            # Forcefully: a TLS close_notify must not wait on a peer that is gone.
            await trio.aclose_forcefully(self._stream)

    async def closed_error(self) -> CodexTransportError:
        await trio.lowlevel.checkpoint()
        described = _describe(*self._closed) if self._closed is not None else "connection lost"
        if self.ping_failed:
            described = "no pong to our keepalive ping; " + described
        return CodexTransportError(
            f"{self.description}: websocket closed ({described})", close_reason=described
        )


def _utf8_size(text: str) -> int:
    # isascii() is a flag check in CPython: the common case costs nothing.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _can_send(state: ConnectionState, event: Event) -> bool:
    if isinstance(event, CloseConnection):
        return state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
    return state is ConnectionState.OPEN


def _describe(code: int, reason: str) -> str:
    """`code 4001: shutting down`, with the RFC's name of a standard code."""
    text = f"code {code}"
    try:
        text += f" {CloseReason(code).name}"
    except ValueError:
        pass
    if reason:
        text += f": {reason}"
    return text


async def _keepalive(transport: WebsocketTransport, *, interval: float, timeout: float) -> None:
    """Ping every `interval` seconds; close the connection when a pong is late."""
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(timeout) as waiting:
            answered = await transport.ping()
        if waiting.cancelled_caught:
            log.warning("websocket keepalive: no pong", url=transport.url, timeout=timeout)
            await transport.fail_keepalive()
            return
        if not answered:
            return  # the connection ended


@asynccontextmanager
async def open_websocket_transport(
    url: str | None = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    connect_timeout: float = 30.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
) -> AsyncIterator[WebsocketTransport]:
    """Connect to a websocket app-server and yield its transport; close it on exit.

    Args:
        url: default `CODEX_APP_SERVER_WS_URL` or ws://127.0.0.1:8765.
        token: bearer token; default `CODEX_APP_SERVER_TOKEN` (none when unset).
        ping_interval: seconds between keepalive pings (None: no pings).

    Raises:
        CodexTransportError: connecting failed or the server refused the upgrade (for
            example HTTP 401 without a valid token).
    """
    target = url or default_url()
    if token is None:
        token = os.environ.get(ENV_TOKEN) or None
    extra: list[tuple[bytes, bytes]] = []
    for name, value in (headers or {}).items():
        extra.append((name.encode("latin-1"), value.encode("latin-1")))
    if token:
        extra.append((b"Authorization", f"Bearer {token}".encode("latin-1")))
    host, port, resource, use_tls = _split_url(target)
    host_header = host if port in (80, 443) else f"{host}:{port}"
    stream = await _connect_stream(target, host, port, use_tls, connect_timeout)
    try:
        with trio.fail_after(connect_timeout):
            ws = await _handshake(stream, target, host_header, resource, extra)
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.TooSlowError):
            raise CodexTransportError(
                f"cannot connect to app-server at {target}: no websocket handshake within "
                f"{connect_timeout} s"
            ) from None
        raise
    async with open_background_nursery() as nursery:
        transport = WebsocketTransport(
            stream, ws, nursery, url=target, max_message_bytes=max_message_bytes
        )
        if ping_interval is not None:
            nursery.start_soon(
                lambda: _keepalive(transport, interval=ping_interval, timeout=ping_timeout)
            )
        try:
            yield transport
        finally:
            await transport.aclose()


async def _handshake(
    stream: trio.abc.Stream,
    target: str,
    host_header: str,
    resource: str,
    extra_headers: list[tuple[bytes, bytes]],
) -> Connection:
    """Send the upgrade request; return the open connection, or raise why it was refused.

    The connection is wsproto's, without the handshake's HTTP state (kept by `WSConnection`
    for as long as it lives, and of no use once the connection is open)."""
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        await stream.send_all(
            ws.send(Request(host=host_header, target=resource, extra_headers=extra_headers))
        )
        status: int | None = None
        body = bytearray()
        body_done = False
        while not body_done and len(body) < REJECT_BODY_BYTES:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                if status is not None:
                    break  # a refusal whose body ends with the connection
                raise CodexTransportError(
                    f"cannot connect to app-server at {target}: the connection closed during "
                    "the websocket handshake"
                )
            ws.receive_data(bytes(data))
            # Stop at the answer: frames after it stay with wsproto for the transport.
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    assert ws.connection is not None
                    return ws.connection
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    body_done = not event.has_body
                elif isinstance(event, RejectData):
                    body += event.data[: REJECT_BODY_BYTES - len(body)]
                    body_done = event.body_finished
    except _STREAM_ERRORS as exc:
        raise CodexTransportError(
            f"cannot connect to app-server at {target}: websocket handshake failed: {exc!r}"
        ) from None
    except ProtocolError as exc:
        raise CodexTransportError(
            f"cannot connect to app-server at {target}: websocket handshake failed: {exc}"
        ) from None
    text = bytes(body).decode("utf-8", errors="replace").strip()
    raise CodexTransportError(
        f"app-server at {target} refused the websocket: HTTP {status}"
        + (f" {text}" if text else "")
    )


def _split_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, resource, tls) of a ws:// or wss:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise CodexTransportError(f"not a websocket URL (ws:// or wss://): {url!r}")
    use_tls = parts.scheme == "wss"
    try:
        port = parts.port or (443 if use_tls else 80)
    except ValueError:
        raise CodexTransportError(f"bad port in websocket URL {url!r}") from None
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return parts.hostname, port, resource, use_tls


async def _connect_stream(
    target: str, host: str, port: int, use_tls: bool, timeout: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    try:
        with trio.fail_after(timeout):
            if use_tls:
                return await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                )
            return await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise CodexTransportError(
            f"cannot connect to app-server at {target}: no connection within {timeout} s"
        ) from None
    except OSError as exc:
        raise CodexTransportError(f"cannot connect to app-server at {target}: {exc}") from None
