"""`CodexClient`: a trio-native client for `codex app-server` over stdio or websocket.

This module is the I/O shell around the sans-IO protocol core (`orchestrator.protocol`): it
owns one reader task (decode, route, wake waiters; it never blocks), one writer task (the only
one that writes to the transport), and one task per server request (approvals run there, off
the reader). Turn bookkeeping (routing, cursors, step mapping, final text) lives in
`protocol/`; here are only the waits.

When the reader stops for any reason, every pending request and every waiting turn reader fails
at once with the same `CodexTransportError`: nothing waits forever on a dead peer.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from orchestrator import __version__, lazylog
from orchestrator.concurrency import open_background_nursery
from orchestrator.errors import (
    THREAD_BUSY_MESSAGE,
    CodexError,
    CodexMessageTooLargeError,
    CodexOverloadedError,
    CodexProtocolError,
    CodexThreadBusyError,
    CodexTimeoutError,
    CodexTransportError,
    CodexTurnInactiveError,
)
from orchestrator.models import (
    CancelResult,
    ChatContinuation,
    ChatResult,
    ConversationStep,
    InitializeResult,
    ServerRequest,
    ThreadOptions,
    TokenUsage,
)
from orchestrator.protocol import jsoncodec, jsonrpc
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from orchestrator.protocol.router import Router, ids_of
from orchestrator.protocol.server_requests import decline_result
from orchestrator.protocol.steps import final_text_from_items
from orchestrator.protocol.turn import (
    DEFAULT_MAX_BUFFERED_EVENTS,
    TERMINAL_STATUSES,
    TurnTracker,
)
from orchestrator.transport.base import MessageTransport
from orchestrator.transport.stdio import open_stdio_transport

__all__ = [
    "ApprovalHandler",
    "CancelResult",
    "ChatContinuation",
    "ChatResult",
    "CodexClient",
    "CodexError",
    "CodexMessageTooLargeError",
    "CodexOverloadedError",
    "CodexProtocolError",
    "CodexThreadBusyError",
    "CodexTimeoutError",
    "CodexTransportError",
    "CodexTurnInactiveError",
    "ConversationStep",
    "InitializeResult",
    "ServerRequest",
    "ThreadOptions",
    "TokenUsage",
    "TurnStream",
]

log = lazylog.get_logger("orchestrator.client")

ApprovalHandler = Callable[[ServerRequest], Awaitable[Mapping[str, Any] | None]]

CLIENT_NAME = "codex_orchestrator"
WRITE_QUEUE_SIZE = 1024
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_CANCEL_TIMEOUT = 30.0
DEFAULT_APPROVAL_TIMEOUT = 600.0
OVERLOAD_RETRIES = 6
OVERLOAD_BASE_DELAY = 0.2
OVERLOAD_MAX_DELAY = 8.0
# Every item of a turn completed, then silence this long: ask `thread/read` whether the turn
# ended without its `turn/completed` reaching us.
DEFAULT_COMPLETION_GAP = 30.0
COMPLETION_CHECK_TIMEOUT = 30.0
# After a request timed out, a hung server (stopped, deadlocked) is told from a slow one by
# this cheap request: no answer within the probe timeout closes the connection.
LIVENESS_PROBE = "thread/loaded/list"
DEFAULT_HANG_PROBE_TIMEOUT = 10.0
# What a message of an unexpected shape can raise while it is routed.
_UNEXPECTED_SHAPE = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


@attrs.define
class _PendingCall:
    """A request of ours waiting for its response."""

    method: str
    done: trio.Event = attrs.field(factory=trio.Event)
    response: jsonrpc.Response | jsonrpc.ErrorResponse | None = None
    error: CodexTransportError | None = None


class CodexClient:
    """A connection to one app-server. Create it with `connect_stdio` or `connect_websocket`.

    All methods may be called from many tasks at once: many threads and turns share one
    connection. Leaving the `async with` block closes the transport and fails everything
    still pending with `CodexTransportError`.
    """

    def __init__(
        self,
        transport: MessageTransport,
        nursery: trio.Nursery,
        *,
        approval_handler: ApprovalHandler | None = None,
        inactivity_timeout: float | None = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        approval_timeout: float | None = DEFAULT_APPROVAL_TIMEOUT,
        client_name: str = CLIENT_NAME,
        client_version: str = __version__,
        capabilities: Mapping[str, Any] | None = None,
        overload_retries: int = OVERLOAD_RETRIES,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        completion_gap: float | None = DEFAULT_COMPLETION_GAP,
        hang_probe_timeout: float | None = DEFAULT_HANG_PROBE_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.approval_handler = approval_handler
        self.inactivity_timeout = inactivity_timeout
        self.request_timeout = request_timeout
        self.approval_timeout = approval_timeout
        self.overload_retries = overload_retries
        self.completion_gap = completion_gap
        self.completion_gaps_closed = 0  # turns ended from thread/read: turn/completed was lost
        self.hang_probe_timeout = hang_probe_timeout
        self._probe_done: trio.Event | None = None
        self.router = Router(max_buffered_events=max_buffered_events)
        self.bad_messages = 0
        self.initialize_result: InitializeResult | None = None
        self._nursery = nursery
        self._client_info = {
            "name": client_name,
            "title": "codex-orchestrator",
            "version": client_version,
        }
        self._capabilities = dict(capabilities) if capabilities else None
        self._ids = itertools.count(1)
        self._pending: dict[jsonrpc.RequestId, _PendingCall] = {}
        self._lots: dict[str, trio.lowlevel.ParkingLot] = {}
        self._outgoing_send, self._outgoing_receive = trio.open_memory_channel[str](
            WRITE_QUEUE_SIZE
        )
        self._closed: CodexTransportError | None = None
        self._init_lock = trio.Lock()
        self.reader_done = trio.Event()

    # -- construction ------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def connect_stdio(
        cls,
        command: Sequence[str] | str | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        **options: Any,
    ) -> AsyncIterator[CodexClient]:
        """Start `codex app-server` (or `command`, or `CODEX_APP_SERVER_CMD`) and connect.

        The process inherits our environment plus `env`; with `inherit_env=False`, `env` is
        its whole environment.

        `options` are `CodexClient` keywords (`approval_handler`, `inactivity_timeout` ...).
        The process is stopped (stdin closed, then SIGTERM, then SIGKILL) on exit.
        """
        async with (
            open_stdio_transport(
                command,
                cwd=cwd,
                env=env,
                inherit_env=inherit_env,
                max_message_bytes=max_message_bytes,
            ) as transport,
            cls.over(transport, **options) as client,
        ):
            yield client

    @classmethod
    @asynccontextmanager
    async def connect_websocket(
        cls,
        url: str | None = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        connect_timeout: float = 30.0,
        **options: Any,
    ) -> AsyncIterator[CodexClient]:
        """Connect to a websocket app-server (default `CODEX_APP_SERVER_WS_URL` or
        ws://127.0.0.1:8765) with `Authorization: Bearer <token>` (default
        `CODEX_APP_SERVER_TOKEN`)."""
        # Imported here: wsproto costs memory that stdio users need not pay.
        from orchestrator.transport.websocket import open_websocket_transport

        async with (
            open_websocket_transport(
                url,
                token=token,
                headers=headers,
                max_message_bytes=max_message_bytes,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                connect_timeout=connect_timeout,
            ) as transport,
            cls.over(transport, **options) as client,
        ):
            yield client

    @classmethod
    @asynccontextmanager
    async def over(cls, transport: MessageTransport, **options: Any) -> AsyncIterator[CodexClient]:
        """A client over a transport the caller owns (used by tests and the orchestrator)."""
        async with open_background_nursery() as nursery:
            client = cls(transport, nursery, **options)
            nursery.start_soon(client._read_loop)
            nursery.start_soon(client._write_loop)
            try:
                yield client
            finally:
                client._fail_everything(CodexTransportError("the client was closed"))

    # -- the wire ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        error: CodexTransportError | None = None
        # Looked up once: over a websocket a batch is often a single message.
        receive_batch = self.transport.receive_batch
        without_activity = self.router.without_activity
        dispatch = self._dispatch
        try:
            while True:
                try:
                    batch = await receive_batch()
                except trio.EndOfChannel:
                    error = await self.transport.closed_error()
                    break
                except CodexTransportError as exc:
                    error = exc
                    break
                # One clock reading per batch: its messages arrived together.
                now = trio.current_time()
                # Streaming deltas of known turns are taken by the router unparsed.
                for text in without_activity(batch, now=now):
                    try:
                        dispatch(text, now)
                    except _UNEXPECTED_SHAPE as exc:
                        # A message of a shape nothing expected (an array where a string
                        # goes, nesting too deep ...): one bad message never ends the reader.
                        self.bad_messages += 1
                        log.warning("ignored a message the client could not use", error=repr(exc))
        finally:
            if error is None:
                error = CodexTransportError(f"{self.transport.description}: reader stopped")
            else:
                log.warning("app-server connection ended", error=error.message)
            self._fail_everything(error)
            self.reader_done.set()

    async def _write_loop(self) -> None:
        outgoing = self._outgoing_receive
        async for text in outgoing:
            try:
                # Asked, not found out by catching WouldBlock: raising it on every write
                # raised the peak RSS of a fast 100,000-event turn by 3.7 MiB, in one run
                # out of five (bench/README.md).
                if not outgoing.statistics().current_buffer_used:
                    await self.transport.send(text)  # the usual case: nothing else queued
                    continue
                # What was queued meanwhile goes out in the same write. While the reader is
                # busy with a fast stream, the writer gets a turn only every scheduler round
                # or two; one message per turn let answers to server requests pile up.
                batch = [text]
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while len(batch) < WRITE_QUEUE_SIZE:
                        batch.append(outgoing.receive_nowait())
                await self.transport.send_batch(batch)
                batch = []
            except CodexTransportError as exc:
                # A failed write may have sent part of a line: the connection is unusable.
                self._fail_everything(exc)
                await self.transport.aclose()
                return

    def _dispatch(self, text: str | bytes, now: float) -> None:
        """Handle one incoming message, received at `now`. Runs on the reader task: must
        never block."""
        try:
            obj = jsoncodec.loads(text)
        except ValueError:
            self.bad_messages += 1
            log.warning("ignored a message from the app-server that is not JSON")
            return
        if isinstance(obj, dict):
            if self.router.note_activity(obj, now=now):
                return  # a delta of a known turn: nothing more to do
            notification = jsonrpc.notification_parts(obj)
            if notification is not None:
                method, params = notification
                tracker = self.router.route(method, params, obj, now=now)
                if tracker is not None:
                    self._wake(tracker)
                return
        try:
            message = jsonrpc.decode_parsed(obj, text)
        except jsonrpc.BadMessage as exc:
            self.bad_messages += 1
            log.warning("ignored a malformed message from the app-server", reason=str(exc))
            self._refuse_malformed_request(obj, str(exc))
            return
        # `notification_parts` took every notification above.
        assert not isinstance(message, jsonrpc.Notification)
        if isinstance(message, jsonrpc.Request):
            self._receive_server_request(message)
        else:
            call = self._pending.get(message.id) if message.id is not None else None
            if call is None:
                log.warning("response to no pending request", id=message.id)
                return
            call.response = message
            call.done.set()

    def _refuse_malformed_request(self, obj: Any, reason: str) -> None:
        """A server request we cannot use (its params are not an object ...) still gets an
        answer, an error: never leave the server waiting on us."""
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
            return
        msg_id = obj.get("id")
        if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
            return
        text = jsonrpc.encode_error(
            msg_id, jsonrpc.INVALID_REQUEST, f"malformed request: {reason:.200}"
        )
        try:
            self._outgoing_send.send_nowait(text)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            # The write queue is full or closed: the connection is in trouble anyway.
            log.warning("could not refuse a malformed request", id=msg_id)

    def _wake(self, tracker: TurnTracker) -> None:
        lot = self._lots.get(tracker.turn_id)
        # Most wakes find nobody parked (the reader was woken by an earlier item of the same
        # batch, or is busy): skip unpark_all, which costs even then.
        if lot is not None and len(lot):
            lot.unpark_all()

    def _fail_everything(self, error: CodexTransportError) -> None:
        if self._closed is not None:
            return
        self._closed = error
        for call in self._pending.values():
            call.error = error
            call.done.set()
        for lot in self._lots.values():
            lot.unpark_all()
        self._outgoing_send.close()

    @property
    def closed(self) -> bool:
        """The connection is gone; every call now raises `CodexTransportError`."""
        return self._closed is not None

    @property
    def close_error(self) -> CodexTransportError | None:
        """Why the connection ended, once it has."""
        return self._closed

    def _raise_if_closed(self) -> None:
        if self._closed is not None:
            raise _copy_transport_error(self._closed)

    async def _send(self, text: str) -> None:
        self._raise_if_closed()
        try:
            await self._outgoing_send.send(text)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._raise_if_closed()
            raise CodexTransportError("the client was closed") from None

    # -- requests ----------------------------------------------------------------------

    async def initialize(
        self, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> InitializeResult:
        """Send `initialize` (once) and the `initialized` notification; later calls return
        the first result."""
        async with self._init_lock:
            if self.initialize_result is not None:
                return self.initialize_result
            body: dict[str, Any] = {"clientInfo": dict(self._client_info)}
            if self._capabilities is not None:
                body["capabilities"] = self._capabilities
            if params:
                body.update(params)
            result = await self._call("initialize", body, timeout)
            await self._send(jsonrpc.encode_notification("initialized"))
            raw = result if isinstance(result, dict) else {}
            self.initialize_result = InitializeResult(
                user_agent=raw.get("userAgent"),
                codex_home=raw.get("codexHome"),
                platform_os=raw.get("platformOs"),
                raw=raw,
            )
            return self.initialize_result

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Call `method` and return its result (initializing first if needed).

        Raises:
            CodexProtocolError: the server answered with an error.
            CodexOverloadedError: the server stayed overloaded (-32001) through every retry.
            CodexTimeoutError: no answer within `timeout` (default: the client's).
            CodexTransportError: the connection is gone.
        """
        if self.initialize_result is None and method != "initialize":
            await self.initialize()
        return await self._call(method, params, timeout)

    async def _call(
        self, method: str, params: Mapping[str, Any] | None, timeout: float | None
    ) -> Any:
        for attempt in itertools.count():
            response = await self._call_once(method, params, timeout)
            if isinstance(response, jsonrpc.Response):
                return response.result
            if response.code == jsonrpc.SERVER_OVERLOADED:
                if attempt < self.overload_retries:
                    delay = min(OVERLOAD_MAX_DELAY, OVERLOAD_BASE_DELAY * 2 ** min(attempt, 32))
                    delay *= random.uniform(0.5, 1.5)  # jitter: don't come back in lockstep
                    log.info("app-server overloaded; retrying", method=method, delay=delay)
                    await trio.sleep(delay)
                    continue
                raise CodexOverloadedError(
                    f"{method}: {response.message or 'server overloaded'} "
                    f"(after {attempt + 1} attempts)",
                    code=response.code,
                    data=response.data,
                )
            error_type = (
                CodexThreadBusyError
                if THREAD_BUSY_MESSAGE in (response.message or "")
                else CodexProtocolError
            )
            raise error_type(
                f"{method}: {response.message}", code=response.code, data=response.data
            )
        raise AssertionError("unreachable")

    async def _call_once(
        self, method: str, params: Mapping[str, Any] | None, timeout: float | None
    ) -> jsonrpc.Response | jsonrpc.ErrorResponse:
        limit = self.request_timeout if timeout is None else timeout
        response = await self._exchange(method, params, limit)
        if response is None:
            await self._check_alive(f"{method} got no response within {limit} s")
            raise CodexTimeoutError(f"{method}: no response within {limit} s")
        return response

    async def _exchange(
        self, method: str, params: Mapping[str, Any] | None, limit: float | None
    ) -> jsonrpc.Response | jsonrpc.ErrorResponse | None:
        """Send one request and wait for its answer; None when `limit` ran out first."""
        self._raise_if_closed()
        msg_id = next(self._ids)
        call = _PendingCall(method)
        self._pending[msg_id] = call
        try:
            await self._send(
                jsonrpc.encode_request(msg_id, method, dict(params) if params is not None else None)
            )
            with trio.move_on_after(math.inf if limit is None else limit):
                await call.done.wait()
            if call.error is not None:
                raise _copy_transport_error(call.error)
            return call.response
        finally:
            del self._pending[msg_id]

    async def _check_alive(self, why: str) -> None:
        """After a request timed out: is the server slow, or hung (stopped, deadlocked)?

        A cheap request answers that: any answer, even an error, proves the server still reads
        and writes. None within `hang_probe_timeout` means it is hung: the connection is closed
        (a stdio app-server is stopped) and everything pending fails with
        `CodexTransportError`, so callers treat it as the lost connection it is and a
        supervisor reconnects. Concurrent timeouts share one probe.
        """
        if self.hang_probe_timeout is None or self._closed is not None:
            self._raise_if_closed()
            return
        if self._probe_done is not None:
            await self._probe_done.wait()
            self._raise_if_closed()
            return
        self._probe_done = done = trio.Event()
        try:
            answer = await self._exchange(LIVENESS_PROBE, None, self.hang_probe_timeout)
            if answer is None:
                self._declare_hung(why)
        finally:
            self._probe_done = None
            done.set()
        self._raise_if_closed()

    def _declare_hung(self, why: str) -> None:
        error = CodexTransportError(
            f"{self.transport.description}: stopped answering ({why}, and a liveness probe "
            f"none within {self.hang_probe_timeout} s); connection closed"
        )
        log.error("app-server hung; closing the connection", error=error.message)
        self._fail_everything(error)
        self._nursery.start_soon(self.transport.aclose)

    # -- server requests ---------------------------------------------------------------

    def _receive_server_request(self, message: jsonrpc.Request) -> None:
        thread_id, turn_id = ids_of(message.params)
        request = ServerRequest(
            id=message.id,
            method=message.method,
            params=message.params,
            thread_id=thread_id,
            turn_id=turn_id,
        )
        self.router.request_opened(message.id, message.params, now=trio.current_time())
        # The answer is produced off the reader task: a slow handler must not stop reading.
        self._nursery.start_soon(self._answer_server_request, request)

    async def _answer_server_request(self, request: ServerRequest) -> None:
        try:
            result = await self._decide(request)
            if result is None:
                text = jsonrpc.encode_error(
                    request.id,
                    jsonrpc.METHOD_NOT_FOUND,
                    f"codex-orchestrator does not handle {request.method}",
                )
            else:
                text = jsonrpc.encode_result(request.id, result)
            try:
                await self._send(text)
            except CodexTransportError:
                return
        finally:
            self.router.resolve_request(request.id, request.thread_id, now=trio.current_time())
            if request.turn_id is not None:
                tracker = self.router.turns.get(request.turn_id)
                if tracker is not None:
                    self._wake(tracker)

    async def _decide(self, request: ServerRequest) -> Mapping[str, Any] | None:
        """The handler's answer; the method's refusal when there is no handler, it fails,
        returns None, or takes longer than `approval_timeout`."""
        if self.approval_handler is not None:
            limit = math.inf if self.approval_timeout is None else self.approval_timeout
            try:
                with trio.move_on_after(limit) as scope:
                    answer = await self.approval_handler(request)
                    if answer is not None:
                        return dict(answer)
                if scope.cancelled_caught:
                    log.warning(
                        "approval handler timed out; declining", method=request.method, limit=limit
                    )
            except Exception:
                log.exception("approval handler failed; declining", method=request.method)
        return decline_result(request.method)

    # -- threads and turns -------------------------------------------------------------

    async def start_thread(
        self, options: ThreadOptions | None = None, timeout: float | None = None
    ) -> str:
        """`thread/start` with these options; returns the new thread's id."""
        result = await self.request(
            "thread/start", (options or ThreadOptions()).to_params(), timeout
        )
        try:
            thread_id = result["thread"]["id"]
        except (KeyError, TypeError):
            raise CodexProtocolError(f"thread/start: no thread id in {result!r:.200}") from None
        if not isinstance(thread_id, str):
            raise CodexProtocolError(f"thread/start: bad thread id {thread_id!r}")
        return thread_id

    def chat(
        self,
        text: str | None = None,
        *,
        thread_id: str | None = None,
        thread_options: ThreadOptions | None = None,
        inactivity_timeout: float | None = None,
        continuation: ChatContinuation | None = None,
        input_items: Sequence[Mapping[str, Any]] | None = None,
    ) -> TurnStream:
        """Run a turn and iterate its completed steps, in order (no deltas).

        Starts a thread first when `thread_id` is None. With `continuation`, resumes reading a
        running turn where an inactivity timeout left it. `inactivity_timeout` defaults to the
        client's; None waits forever.

        Raises (while iterating):
            CodexTurnInactiveError: no event for `inactivity_timeout` seconds; carries the
                continuation. The turn keeps running on the server.
            CodexTransportError: the connection is gone.
        """
        if text is None and continuation is None and input_items is None:
            raise ValueError("chat() needs text, input_items or a continuation")
        return TurnStream(
            self,
            text=text,
            thread_id=thread_id,
            thread_options=thread_options,
            inactivity_timeout=(
                self.inactivity_timeout if inactivity_timeout is None else inactivity_timeout
            ),
            continuation=continuation,
            input_items=input_items,
        )

    async def chat_once(
        self,
        text: str | None = None,
        *,
        thread_id: str | None = None,
        thread_options: ThreadOptions | None = None,
        inactivity_timeout: float | None = None,
        continuation: ChatContinuation | None = None,
        input_items: Sequence[Mapping[str, Any]] | None = None,
    ) -> ChatResult:
        """Run a turn to its end and return everything at once (see `chat`).

        On inactivity, the `CodexTurnInactiveError` carries the steps read so far in
        `.steps` and a continuation for the rest.
        """
        stream = self.chat(
            text,
            thread_id=thread_id,
            thread_options=thread_options,
            inactivity_timeout=inactivity_timeout,
            continuation=continuation,
            input_items=input_items,
        )
        steps: list[ConversationStep] = []
        try:
            async for step in stream:
                steps.append(step)
        except CodexTurnInactiveError as exc:
            exc.steps = tuple(steps)
            raise
        return await stream.result(steps=tuple(steps))

    async def interrupt_turn(
        self, thread_id: str, turn_id: str, timeout: float | None = None
    ) -> Any:
        """The bare `turn/interrupt` request."""
        return await self.request(
            "turn/interrupt", {"threadId": thread_id, "turnId": turn_id}, timeout
        )

    async def cancel(
        self, continuation: ChatContinuation, timeout: float | None = None
    ) -> CancelResult:
        """Interrupt the turn, wait (bounded) for its end, and return what was not read.

        The thread is usable for a new turn afterwards.

        Raises:
            CodexTimeoutError: the turn did not end within `timeout` seconds (default 30).
        """
        limit = DEFAULT_CANCEL_TIMEOUT if timeout is None else timeout
        tracker = await self._attach_continuation(continuation)
        lot = self._lots[tracker.turn_id]
        try:
            already_done = tracker.done
            if not already_done:
                try:
                    await self.interrupt_turn(
                        continuation.thread_id, continuation.turn_id, timeout=limit
                    )
                except CodexProtocolError as exc:
                    # The turn may have ended on its own meanwhile; its turn/completed tells.
                    log.info("turn/interrupt refused", error=str(exc))
                with trio.move_on_after(limit):
                    while not tracker.done:
                        self._raise_if_closed()
                        await lot.park()
                if not tracker.done:
                    raise CodexTimeoutError(
                        f"turn {continuation.turn_id} did not end within {limit} s "
                        "of turn/interrupt"
                    )
            steps, raw = tracker.drain()
            return CancelResult(
                steps=tuple(steps),
                raw_events=tuple(raw),
                was_completed=already_done or tracker.status == "completed",
                was_interrupted=not already_done and tracker.status == "interrupted",
                status=tracker.status,
            )
        finally:
            self._release(tracker)
            self.router.forget(tracker)

    # -- turn reading (used by TurnStream) ---------------------------------------------

    async def _begin_turn(
        self,
        *,
        text: str | None,
        thread_id: str | None,
        thread_options: ThreadOptions | None,
        input_items: Sequence[Mapping[str, Any]] | None,
    ) -> TurnTracker:
        if thread_id is None:
            thread_id = await self.start_thread(thread_options)
        items: list[dict[str, Any]] = []
        if text is not None:
            items.append({"type": "text", "text": text, "text_elements": []})
        items.extend(dict(item) for item in input_items or ())
        # Watch before asking: the turn's first events may beat the turn/start response.
        self.router.watch(thread_id)
        try:
            result = await self.request("turn/start", {"threadId": thread_id, "input": items})
            turn_id = result["turn"]["id"] if isinstance(result, dict) else None
            if not isinstance(turn_id, str):
                raise CodexProtocolError(f"turn/start: no turn id in {result!r:.200}")
        except BaseException:
            self.router.unwatch(thread_id)
            raise
        tracker = self.router.attach(thread_id, turn_id, now=trio.current_time())
        self._lots.setdefault(turn_id, trio.lowlevel.ParkingLot())
        return tracker

    async def _resume_turn(self, continuation: ChatContinuation) -> TurnTracker:
        tracker = await self._attach_continuation(continuation)
        tracker.continuations += 1
        # Resuming restarts the inactivity clock: the caller chose to keep waiting.
        tracker.last_activity = max(tracker.last_activity, trio.current_time())
        return tracker

    async def _attach_continuation(self, continuation: ChatContinuation) -> TurnTracker:
        """Attach to the continuation's turn; one this client no longer tracks (fully read,
        evicted, or from another client) is rebuilt from `thread/read`."""
        known = continuation.turn_id in self.router.turns
        self.router.watch(continuation.thread_id)
        tracker = self.router.attach(
            continuation.thread_id, continuation.turn_id, now=trio.current_time()
        )
        self._lots.setdefault(tracker.turn_id, trio.lowlevel.ParkingLot())
        if not known:
            try:
                turn = await self.read_turn(continuation.thread_id, continuation.turn_id)
                if turn is None:
                    raise CodexProtocolError(
                        f"turn {continuation.turn_id} not found on thread {continuation.thread_id}"
                    )
                tracker.reconcile(turn, cursor=continuation.cursor)
            except BaseException:
                self._release(tracker)
                raise
        return tracker

    async def read_turn(
        self, thread_id: str, turn_id: str, *, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """The turn as `thread/read` reports it, or None."""
        result = await self.request(
            "thread/read", {"threadId": thread_id, "includeTurns": True}, timeout=timeout
        )
        turns = (result.get("thread") or {}).get("turns") if isinstance(result, dict) else None
        for turn in turns or ():
            if isinstance(turn, dict) and turn.get("id") == turn_id:
                return turn
        return None

    def _release(self, tracker: TurnTracker) -> None:
        """A reader is done with a turn (finished, gave up, or timed out)."""
        self.router.unwatch(tracker.thread_id)
        self.router.detach(tracker)
        if tracker.readers == 0:
            lot = self._lots.pop(tracker.turn_id, None)
            if lot is not None:
                lot.unpark_all()

    async def _next_step(
        self, tracker: TurnTracker, inactivity_timeout: float | None
    ) -> ConversationStep | None:
        """The turn's next completed step; None once the turn is over and fully read."""
        lot = self._lots[tracker.turn_id]
        while True:
            if tracker.overflowed:
                raise CodexError(
                    f"turn {tracker.turn_id}: more than {tracker.max_buffered_events} unread "
                    "items; the reader fell too far behind and the turn's buffer was dropped"
                )
            step = tracker.next_step()
            if step is not None:
                return step
            if tracker.done:
                return None
            self._raise_if_closed()
            now = trio.current_time()
            if inactivity_timeout is None or tracker.waiting_on_server_request:
                deadline = math.inf
            else:
                deadline = tracker.last_activity + inactivity_timeout
                if deadline <= now:
                    raise CodexTurnInactiveError(
                        f"turn {tracker.turn_id} on thread {tracker.thread_id}: no event for "
                        f"{inactivity_timeout} s",
                        continuation=tracker.continuation(),
                    )
            gap_check_at = tracker.gap_check_due(self.completion_gap)
            if gap_check_at <= now:
                await self._close_completion_gap(tracker)
                continue
            with trio.move_on_at(min(deadline, gap_check_at)):
                await lot.park()

    async def _close_completion_gap(self, tracker: TurnTracker) -> None:
        """Every item completed and then nothing came: if `thread/read` shows the turn ended,
        its `turn/completed` was lost, so end it from what the server stored."""
        tracker.gap_checked_at = trio.current_time()
        try:
            limit = COMPLETION_CHECK_TIMEOUT
            if self.request_timeout is not None:
                limit = min(limit, self.request_timeout)
            turn = await self.read_turn(tracker.thread_id, tracker.turn_id, timeout=limit)
        except (CodexProtocolError, CodexTimeoutError) as exc:
            log.info("completion check failed; still waiting", turn=tracker.turn_id, error=str(exc))
            return
        if turn is None or turn.get("status") not in TERMINAL_STATUSES or tracker.done:
            return
        log.warning(
            "turn/completed never arrived; the turn ended according to thread/read",
            thread=tracker.thread_id,
            turn=tracker.turn_id,
            status=turn.get("status"),
        )
        tracker.reconcile(turn, cursor=tracker.cursor)
        self.completion_gaps_closed += 1
        self._wake(tracker)

    async def _thread_read_final_text(self, tracker: TurnTracker) -> str | None:
        """Fallback: ask `thread/read` for the turn's items when none arrived."""
        try:
            turn = await self.read_turn(tracker.thread_id, tracker.turn_id)
        except CodexProtocolError as exc:
            log.info("thread/read fallback failed", error=str(exc))
            return None
        return final_text_from_items(turn.get("items") or []) if turn else None

    def statistics(self) -> dict[str, int]:
        """Sizes of the client's internal state (bounded: see the router)."""
        stats = self.router.statistics()
        stats.update(
            pending_requests=len(self._pending),
            parking_lots=len(self._lots),
            bad_messages=self.bad_messages,
            completion_gaps_closed=self.completion_gaps_closed,
        )
        return stats


class TurnStream:
    """The completed steps of one turn, as an async iterator (returned by `CodexClient.chat`).

    The turn starts on the first `__anext__`. After the iteration ends, `result()` gives the
    turn's outcome. `continuation` says where reading stands; use it to resume after
    `CodexTurnInactiveError` or to `cancel`. `aclose()` (or `async with`) stops reading early;
    the turn keeps running on the server.
    """

    def __init__(
        self,
        client: CodexClient,
        *,
        text: str | None,
        thread_id: str | None,
        thread_options: ThreadOptions | None,
        inactivity_timeout: float | None,
        continuation: ChatContinuation | None,
        input_items: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        self._client = client
        self._text = text
        self._thread_id = thread_id
        self._thread_options = thread_options
        self._inactivity_timeout = inactivity_timeout
        self._continuation = continuation
        self._input_items = input_items
        self._tracker: TurnTracker | None = None
        self._attached = False
        self._finished = False

    def __aiter__(self) -> TurnStream:
        return self

    async def start(self) -> str:
        """Start (or attach to) the turn now, without waiting for a step; returns its id.

        Once this returns, the server has acknowledged the turn."""
        if self._tracker is None:
            await self._open()
        assert self._tracker is not None
        return self._tracker.turn_id

    async def __aenter__(self) -> TurnStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> ConversationStep:
        if self._finished:
            raise StopAsyncIteration
        if self._tracker is None:
            await self._open()
        elif not self._attached:
            raise RuntimeError("this stream stopped; resume the turn with its continuation")
        tracker = self._tracker
        assert tracker is not None
        try:
            step = await self._client._next_step(tracker, self._inactivity_timeout)
        except BaseException:
            # Timed out, cancelled or disconnected: let go of the turn. It stays resumable
            # through `continuation` while the connection lives.
            self._detach()
            raise
        if step is None:
            self._finished = True
            self._detach()
            raise StopAsyncIteration
        return step

    async def _open(self) -> None:
        if self._continuation is not None:
            self._tracker = await self._client._resume_turn(self._continuation)
        else:
            self._tracker = await self._client._begin_turn(
                text=self._text,
                thread_id=self._thread_id,
                thread_options=self._thread_options,
                input_items=self._input_items,
            )
        self._attached = True

    def _detach(self) -> None:
        if self._attached and self._tracker is not None:
            self._attached = False
            self._client._release(self._tracker)

    async def aclose(self) -> None:
        """Stop reading; the turn itself keeps running (use `cancel` to stop it)."""
        self._detach()
        await trio.lowlevel.checkpoint()

    @property
    def thread_id(self) -> str | None:
        """The turn's thread, once known."""
        return self._tracker.thread_id if self._tracker else self._thread_id

    @property
    def turn_id(self) -> str | None:
        """The turn's id, once started."""
        return self._tracker.turn_id if self._tracker else None

    @property
    def continuation(self) -> ChatContinuation:
        """Where reading stands now."""
        if self._tracker is None:
            if self._continuation is not None:
                return self._continuation
            raise RuntimeError("the turn has not started yet")
        return self._tracker.continuation()

    async def result(self, *, steps: tuple[ConversationStep, ...] = ()) -> ChatResult:
        """The turn's outcome, once iteration has ended (falls back to `thread/read` for the
        final text when no agent message arrived)."""
        tracker = self._tracker
        if tracker is None or not self._finished:
            raise RuntimeError("the turn is not finished; iterate the stream to its end first")
        final_text, source = tracker.final_text()
        if final_text is None and tracker.status == "completed":
            final_text = await self._client._thread_read_final_text(tracker)
            source = "thread_read" if final_text is not None else "none"
        return ChatResult(
            thread_id=tracker.thread_id,
            turn_id=tracker.turn_id,
            status=tracker.status or "failed",
            final_text=final_text,
            steps=steps,
            usage=tracker.usage(),
            error=tracker.error,
            completion_source=source,
            continuations=tracker.continuations,
            unfinished_items=tuple(tracker.unfinished.values()),
        )


def _copy_transport_error(error: CodexTransportError) -> CodexTransportError:
    """A fresh exception per raiser (one instance raised in many tasks would share a
    traceback)."""
    copy = type(error)(
        error.message,
        exit_status=error.exit_status,
        close_reason=error.close_reason,
        stderr_tail=error.stderr_tail,
    )
    return copy
