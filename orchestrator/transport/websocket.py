"""websocket transport: one JSON text per text frame, via trio-websocket.

The app-server never pings, so the client keeps the connection honest with its own pings and
closes it when a pong does not come back in time. No compression is offered (the server does
not negotiate it) and no `Origin` header is sent. The bearer token goes in the upgrade request's
`Authorization` header and nowhere else: it never appears in errors or logs.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import structlog
import trio
import trio_websocket

from orchestrator.concurrency import open_background_nursery
from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from orchestrator.transport.base import MessageTransport

log = structlog.get_logger("orchestrator.transport.websocket")

ENV_URL = "CODEX_APP_SERVER_WS_URL"
ENV_TOKEN = "CODEX_APP_SERVER_TOKEN"
DEFAULT_URL = "ws://127.0.0.1:8765"
MESSAGE_TOO_BIG = 1009  # RFC 6455 close code
CLOSE_TIMEOUT = 5.0  # seconds to wait for the peer's answer to our close frame


def default_url() -> str:
    """`CODEX_APP_SERVER_WS_URL`, else ws://127.0.0.1:8765."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


class WebsocketTransport(MessageTransport):
    """JSON texts over one websocket connection."""

    def __init__(
        self,
        connection: trio_websocket.WebSocketConnection,
        *,
        url: str,
        reader_scope: trio.CancelScope | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.connection = connection
        self.max_message_bytes = max_message_bytes
        self._reader_scope = reader_scope
        self.url = url
        self.description = f"app-server at {url}"
        self.ping_failed = False

    async def send(self, value: str) -> None:
        with self._map_errors():
            await self.connection.send_message(value)

    async def receive(self) -> str:
        while True:
            try:
                message = await self.connection.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise self._ended(exc) from None
            if isinstance(message, str):
                await self._check_size(message)
                return message
            # The server drops binary frames; so do we.
            log.warning("binary websocket frame ignored", bytes=len(message))

    async def receive_batch(self) -> list[str]:
        """The next message and those trio-websocket has already queued behind it, taken
        without a wait each (its queue is bounded: `message_queue_size`)."""
        # `receive`, unrolled: one coroutine fewer to suspend and resume per message.
        # `_recv_channel` is private, as `_stream` below: trio-websocket has no public way
        # to take what its queue holds without a checkpoint per message.
        queue = self.connection._recv_channel
        # The queue's buffer (private to trio) says whether another message waits: batches
        # are small (trio-websocket yields after each message), and asking `receive_nowait`
        # costs an exception per batch. Without it, the exception decides.
        waiting = getattr(getattr(queue, "_state", None), "data", None)
        batch: list[str] = []
        while not batch:
            try:
                message = await self.connection.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise self._ended(exc) from None
            while True:
                if isinstance(message, str):
                    if len(message) > self.max_message_bytes >> 2:
                        await self._check_size(message)
                    batch.append(message)
                else:
                    log.warning("binary websocket frame ignored", bytes=len(message))
                if waiting is not None and not waiting:
                    break
                try:
                    message = queue.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break  # nothing more now, or the end: the next call reports an end
        return batch

    async def _check_size(self, message: str) -> None:
        """trio-websocket limits a text message's characters, not its bytes: a text of
        multi-byte characters could be four times `max_message_bytes`. Count the bytes of any
        text long enough to be over, and treat one that is as the limit demands."""
        if len(message) <= self.max_message_bytes >> 2:
            return
        size = len(message.encode("utf-8", "surrogatepass"))
        if size <= self.max_message_bytes:
            return
        reason = f"message of {size} bytes over the limit of {self.max_message_bytes}"
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            await self.connection.aclose(MESSAGE_TOO_BIG, reason[:120])
        raise CodexMessageTooLargeError(
            f"{self.description}: a {reason}; connection closed",
            close_reason=f"{MESSAGE_TOO_BIG} {reason}",
        )

    def _ended(self, exc: trio_websocket.ConnectionClosed) -> Exception:
        """What receiving raises once the connection closed."""
        if _close_code(exc) == MESSAGE_TOO_BIG:
            return CodexMessageTooLargeError(
                f"{self.description}: a message exceeded the size limit; "
                f"connection closed ({_describe_close(exc)})",
                close_reason=_describe_close(exc),
            )
        return trio.EndOfChannel()

    async def aclose(self) -> None:
        # trio-websocket's aclose waits for the peer's close frame with no bound (and we
        # shield it), and when the peer closed first it returns without closing the TCP
        # stream. Bound the wait; then close the stream ourselves (idempotent).
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.connection.aclose()
            await self.connection._stream.aclose()
        if self._reader_scope is not None:
            self._reader_scope.cancel()  # the reader was shielded until the close was done

    async def closed_error(self) -> CodexTransportError:
        await trio.lowlevel.checkpoint()
        reason = self.connection.closed
        described = _describe_reason(reason) if reason is not None else "connection lost"
        if self.ping_failed:
            described = "no pong to our keepalive ping; " + described
        return CodexTransportError(
            f"{self.description}: websocket closed ({described})", close_reason=described
        )

    @contextmanager
    def _map_errors(self) -> Iterator[None]:
        try:
            yield
        except trio_websocket.ConnectionClosed as exc:
            raise CodexTransportError(
                f"{self.description}: websocket closed ({_describe_close(exc)})",
                close_reason=_describe_close(exc),
            ) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise CodexTransportError(f"{self.description}: {exc!r}") from exc


def _close_code(exc: trio_websocket.ConnectionClosed) -> int | None:
    reason = exc.reason
    return reason.code if reason is not None else None


def _describe_reason(reason: trio_websocket.CloseReason) -> str:
    text = f"code {reason.code}"
    if reason.name:
        text += f" {reason.name}"
    if reason.reason:
        text += f": {reason.reason}"
    return text


def _describe_close(exc: trio_websocket.ConnectionClosed) -> str:
    return _describe_reason(exc.reason) if exc.reason is not None else "connection lost"


async def _keepalive(transport: WebsocketTransport, *, interval: float, timeout: float) -> None:
    """Ping every `interval` seconds; close the connection when a pong is late."""
    connection = transport.connection
    while True:
        await trio.sleep(interval)
        try:
            with trio.fail_after(timeout):
                await connection.ping()
        except trio.TooSlowError:
            transport.ping_failed = True
            log.warning("websocket keepalive: no pong", url=transport.url, timeout=timeout)
            await connection.aclose(code=1011, reason="keepalive timeout")
            return
        except trio_websocket.ConnectionClosed:
            return


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
    async with open_background_nursery() as nursery:
        try:
            connection, reader_scope = await nursery.start(
                functools.partial(
                    _run_connection,
                    target=target,
                    host=host,
                    port=port,
                    resource=resource,
                    use_tls=use_tls,
                    extra_headers=extra,
                    max_message_bytes=max_message_bytes,
                    connect_timeout=connect_timeout,
                )
            )
        except BaseExceptionGroup as group:
            raise _connect_error(target, group) from None
        transport = WebsocketTransport(
            connection,
            url=target,
            reader_scope=reader_scope,
            max_message_bytes=max_message_bytes,
        )
        if ping_interval is not None:
            nursery.start_soon(
                lambda: _keepalive(transport, interval=ping_interval, timeout=ping_timeout)
            )
        try:
            yield transport
        finally:
            await transport.aclose()


async def _run_connection(
    *,
    target: str,
    host: str,
    port: int,
    resource: str,
    use_tls: bool,
    extra_headers: list[tuple[bytes, bytes]],
    max_message_bytes: int,
    connect_timeout: float,
    task_status: trio.TaskStatus[tuple[trio_websocket.WebSocketConnection, trio.CancelScope]],
) -> None:
    """Open the TCP stream and the websocket on it; host its reader until it ends.

    We own the stream so that it is closed on every failure (trio-websocket leaves the socket
    of a refused upgrade open). A refusal surfaces as an error of the reader task, hence the
    nursery here, whose errors `open_websocket_transport` turns into CodexTransportError.
    """
    stream = await _connect_stream(target, host, port, use_tls, connect_timeout)
    started = False
    try:
        with trio.CancelScope() as reader_scope:
            async with trio.open_nursery() as reader:
                with trio.fail_after(connect_timeout):
                    connection = await trio_websocket.wrap_client_stream(
                        reader,
                        stream,
                        host if port in (80, 443) else f"{host}:{port}",
                        resource,
                        extra_headers=extra_headers,
                        max_message_size=max_message_bytes,
                        message_queue_size=16,
                        receive_buffer_size=256 * 1024,
                    )
                # From now on only the transport stops the reader (after its close
                # handshake, which needs the reader): a cancelled caller must not kill it
                # first, or closing would wait for a reply nobody reads.
                reader_scope.shield = True
                task_status.started((connection, reader_scope))
                started = True
    finally:
        if not started:
            with trio.CancelScope(shield=True):
                await stream.aclose()


def _connect_error(target: str, group: BaseExceptionGroup[BaseException]) -> CodexTransportError:
    """The CodexTransportError for a failed connection attempt."""
    for exc in _leaves(group):
        if isinstance(exc, CodexTransportError):
            return exc
        if isinstance(exc, trio_websocket.ConnectionRejected):
            body = (exc.body or b"").decode("utf-8", errors="replace").strip()
            return CodexTransportError(
                f"app-server at {target} refused the websocket: HTTP {exc.status_code}"
                + (f" {body}" if body else "")
            )
    reasons = "; ".join(repr(exc) for exc in _leaves(group))
    return CodexTransportError(
        f"cannot connect to app-server at {target}: websocket handshake failed: {reasons}"
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


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
