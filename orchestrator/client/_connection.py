"""`CodexClient`: one connection to `codex app-server`, its tasks and its requests.

The I/O shell around the sans-IO core (`orchestrator.protocol`): one reader task (decode,
route, wake waiters; it never blocks), one writer task (the only one that writes to the
transport), and one task per server request (approvals run there, off the reader). Request
ids, pending requests, initialize-once and what an answer means are the `RpcSession`'s; turn
bookkeeping is the router's and the trackers'; waiting for turns is `_turns.py`'s; telling a
hung server from a slow one is `_health.py`'s.

When the reader stops for any reason, every pending request and every waiting turn reader fails
at once with the same `CodexTransportError`: nothing waits forever on a dead peer.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Unpack

import attrs
import trio

from orchestrator import __version__
from orchestrator._util import lazylog
from orchestrator._util.concurrency import open_background_nursery
from orchestrator.client._health import (
    DEFAULT_COMPLETION_GAP,
    DEFAULT_HANG_PROBE_TIMEOUT,
    CompletionGaps,
    HangProbe,
)
from orchestrator.client._turns import TurnOptions, TurnReaders, TurnRequest, TurnStream
from orchestrator.errors import (
    CodexTimeoutError,
    CodexTransportError,
    CodexTurnInactiveError,
)
from orchestrator.protocol import jsoncodec, jsonrpc, methods
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from orchestrator.protocol.router import Router, RouterStatistics
from orchestrator.protocol.rpc import (
    OVERLOAD_RETRIES,
    Answered,
    Malformed,
    ResponseArrived,
    RetryAfter,
    RpcSession,
    ServerRequestArrived,
    StrayResponse,
)
from orchestrator.protocol.server_requests import decline_result
from orchestrator.protocol.turn import DEFAULT_MAX_BUFFERED_EVENTS
from orchestrator.protocol.values import (
    CancelResult,
    ChatContinuation,
    ChatResult,
    ConversationStep,
    InitializeResult,
    ServerRequest,
    ThreadOptions,
)
from orchestrator.transport.base import MessageTransport
from orchestrator.transport.stdio import open_stdio_transport

log = lazylog.get_logger("orchestrator.client")

ApprovalHandler = Callable[[ServerRequest], Awaitable[Mapping[str, Any] | None]]

CLIENT_NAME = "codex_orchestrator"
WRITE_QUEUE_SIZE = 1024
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_APPROVAL_TIMEOUT = 600.0
# What a message of an unexpected shape can raise while it is routed.
_UNEXPECTED_SHAPE = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


@attrs.define
class _Waiter:
    """Where the caller of one request waits for its answer."""

    done: trio.Event = attrs.field(factory=trio.Event)
    response: jsonrpc.Response | jsonrpc.ErrorResponse | None = None
    error: CodexTransportError | None = None


@attrs.frozen(kw_only=True)
class ClientStatistics(RouterStatistics):
    """Sizes of a client's internal state (every one bounded: see the router) and counters."""

    pending_requests: int
    parking_lots: int
    bad_messages: int
    completion_gaps_closed: int


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
        self.router = Router(max_buffered_events=max_buffered_events)
        self.bad_messages = 0
        self.reader_done = trio.Event()
        self._rpc: RpcSession[_Waiter] = RpcSession(
            client_info={
                "name": client_name,
                "title": "codex-orchestrator",
                "version": client_version,
            },
            capabilities=capabilities,
            overload_retries=overload_retries,
        )
        self._gaps = CompletionGaps(self, gap=completion_gap)
        self._turns = TurnReaders(self, self.router, self._gaps)
        self._hang_probe = HangProbe(
            timeout=hang_probe_timeout, exchange=self._exchange, declare_hung=self._declare_hung
        )
        self._nursery = nursery
        self._outgoing_send, self._outgoing_receive = trio.open_memory_channel[str](
            WRITE_QUEUE_SIZE
        )
        self._closed: CodexTransportError | None = None
        self._init_lock = trio.Lock()

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
        transport = open_stdio_transport(
            command, cwd=cwd, env=env, inherit_env=inherit_env, max_message_bytes=max_message_bytes
        )
        async with transport as opened, cls.over(opened, **options) as client:
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

        transport = open_websocket_transport(
            url,
            token=token,
            headers=headers,
            max_message_bytes=max_message_bytes,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            connect_timeout=connect_timeout,
        )
        async with transport as opened, cls.over(opened, **options) as client:
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
            # Notifications, nearly all the traffic, go straight to their turn.
            if self.router.note_activity(obj, now=now):
                return  # a delta of a known turn: nothing more to do
            notification = jsonrpc.notification_parts(obj)
            if notification is not None:
                self._route(*notification, obj, now)
                return
        event = self._rpc.receive(obj, text)
        if isinstance(event, ResponseArrived):
            event.waiter.response = event.response
            event.waiter.done.set()
        elif isinstance(event, ServerRequestArrived):
            self._receive_server_request(event.request, now)
        elif isinstance(event, StrayResponse):
            log.warning("response to no pending request", id=event.id)
        elif isinstance(event, Malformed):
            self.bad_messages += 1
            log.warning("ignored a malformed message from the app-server", reason=event.reason)
            if event.refusal is not None:
                # A server request we cannot use still gets an answer: never leave the
                # server waiting on us.
                self._send_nowait(event.refusal, why="could not refuse a malformed request")
        else:
            self._route(event.method, event.params, event.raw, now)

    def _route(self, method: str, params: dict[str, Any], obj: dict[str, Any], now: float) -> None:
        tracker = self.router.route(method, params, obj, now=now)
        if tracker is not None:
            self._turns.wake(tracker)

    def _send_nowait(self, text: str, *, why: str) -> None:
        try:
            self._outgoing_send.send_nowait(text)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            # The write queue is full or closed: the connection is in trouble anyway.
            log.warning(why)

    def _fail_everything(self, error: CodexTransportError) -> None:
        if self._closed is not None:
            return
        self._closed = error
        for waiter in self._rpc.pending.values():
            waiter.error = error
            waiter.done.set()
        self._turns.wake_all()
        self._outgoing_send.close()

    @property
    def closed(self) -> bool:
        """The connection is gone; every call now raises `CodexTransportError`."""
        return self._closed is not None

    @property
    def close_error(self) -> CodexTransportError | None:
        """Why the connection ended, once it has."""
        return self._closed

    def raise_if_closed(self) -> None:
        """Raise the connection's end (a fresh `CodexTransportError`), if it has ended."""
        if self._closed is not None:
            raise _copy_transport_error(self._closed)

    async def _send(self, text: str) -> None:
        self.raise_if_closed()
        try:
            await self._outgoing_send.send(text)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.raise_if_closed()
            raise CodexTransportError("the client was closed") from None

    # -- requests ----------------------------------------------------------------------

    @property
    def initialize_result(self) -> InitializeResult | None:
        """The server's answer to `initialize`, once it was sent."""
        return self._rpc.initialize_result

    async def initialize(
        self, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> InitializeResult:
        """Send `initialize` (once) and the `initialized` notification; later calls return
        the first result."""
        async with self._init_lock:
            if self._rpc.initialize_result is not None:
                return self._rpc.initialize_result
            result = await self._call("initialize", self._rpc.initialize_params(params), timeout)
            initialized, notification = self._rpc.initialized(result)
            await self._send(notification)
            return initialized

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
        if self._rpc.needs_initialize(method):
            await self.initialize()
        return await self._call(method, params, timeout)

    async def _call(
        self, method: str, params: Mapping[str, Any] | None, timeout: float | None
    ) -> Any:
        attempt = 0
        while True:
            limit = self.request_timeout if timeout is None else timeout
            response = await self._exchange(method, params, limit)
            if response is None:
                why = f"{method} got no response within {limit} s"
                if not self.closed:
                    await self._hang_probe.check(why)
                self.raise_if_closed()
                raise CodexTimeoutError(f"{method}: no response within {limit} s")
            outcome = self._rpc.outcome(method, response, attempt)
            if isinstance(outcome, Answered):
                return outcome.result
            if isinstance(outcome, RetryAfter):
                log.info("app-server overloaded; retrying", method=method, delay=outcome.delay)
                await trio.sleep(outcome.delay)
                attempt += 1
                continue
            raise outcome

    async def _exchange(
        self, method: str, params: Mapping[str, Any] | None, limit: float | None
    ) -> jsonrpc.Response | jsonrpc.ErrorResponse | None:
        """Send one request and wait for its answer; None when `limit` ran out first."""
        self.raise_if_closed()
        waiter = _Waiter()
        msg_id, text = self._rpc.open_request(method, params, waiter)
        try:
            await self._send(text)
            with trio.move_on_after(math.inf if limit is None else limit):
                await waiter.done.wait()
            if waiter.error is not None:
                raise _copy_transport_error(waiter.error)
            return waiter.response
        finally:
            self._rpc.close_request(msg_id)

    def _declare_hung(self, why: str) -> None:
        """No answer to a request nor to the liveness probe: close the connection, so every
        caller fails with `CodexTransportError` and a supervisor reconnects."""
        error = CodexTransportError(
            f"{self.transport.description}: stopped answering ({why}); connection closed"
        )
        log.error("app-server hung; closing the connection", error=error.message)
        self._fail_everything(error)
        self._nursery.start_soon(self.transport.aclose)

    # -- server requests ---------------------------------------------------------------

    def _receive_server_request(self, request: ServerRequest, now: float) -> None:
        self.router.request_opened(request.id, request.params, now=now)
        # The answer is produced off the reader task: a slow handler must not stop reading.
        self._nursery.start_soon(self._answer_server_request, request)

    async def _answer_server_request(self, request: ServerRequest) -> None:
        try:
            text = RpcSession.answer(request, await self._decide(request))
            try:
                await self._send(text)
            except CodexTransportError:
                return
        finally:
            self.router.resolve_request(request.id, request.thread_id, now=trio.current_time())
            if request.turn_id is not None:
                tracker = self.router.turns.get(request.turn_id)
                if tracker is not None:
                    self._turns.wake(tracker)

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
            methods.THREAD_START, methods.thread_start_params(options), timeout
        )
        return methods.started_thread_id(result)

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
        request = TurnRequest(
            text=text,
            thread_id=thread_id,
            thread_options=thread_options,
            inactivity_timeout=(
                self.inactivity_timeout if inactivity_timeout is None else inactivity_timeout
            ),
            continuation=continuation,
            input_items=input_items,
        )
        return TurnStream(self._turns, request)

    async def chat_once(
        self, text: str | None = None, **options: Unpack[TurnOptions]
    ) -> ChatResult:
        """Run a turn to its end and return everything at once (same keywords as `chat`:
        `thread_id`, `thread_options`, `inactivity_timeout`, `continuation`, `input_items`).

        On inactivity, the `CodexTurnInactiveError` carries the steps read so far in
        `.steps` and a continuation for the rest.
        """
        stream = self.chat(text, **options)
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
            methods.TURN_INTERRUPT, methods.turn_interrupt_params(thread_id, turn_id), timeout
        )

    async def cancel(
        self, continuation: ChatContinuation, timeout: float | None = None
    ) -> CancelResult:
        """Interrupt the turn, wait (bounded) for its end, and return what was not read.

        The thread is usable for a new turn afterwards.

        Raises:
            CodexTimeoutError: the turn did not end within `timeout` seconds (default 30).
        """
        return await self._turns.cancel(continuation, timeout)

    async def read_turn(
        self, thread_id: str, turn_id: str, *, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """The turn as `thread/read` reports it, or None."""
        result = await self.request(
            methods.THREAD_READ,
            methods.thread_read_params(thread_id, include_turns=True),
            timeout=timeout,
        )
        return methods.turn_of(result, turn_id)

    @property
    def completion_gaps_closed(self) -> int:
        """Turns ended from `thread/read` because their `turn/completed` was lost."""
        return self._gaps.closed

    def statistics(self) -> ClientStatistics:
        """Sizes of the client's internal state (bounded: see the router)."""
        return ClientStatistics(
            **attrs.asdict(self.router.statistics()),
            pending_requests=len(self._rpc.pending),
            parking_lots=self._turns.waiting_turns,
            bad_messages=self.bad_messages,
            completion_gaps_closed=self._gaps.closed,
        )


def _copy_transport_error(error: CodexTransportError) -> CodexTransportError:
    """A fresh exception per raiser (one instance raised in many tasks would share a
    traceback)."""
    return type(error)(
        error.message,
        exit_status=error.exit_status,
        close_reason=error.close_reason,
        stderr_tail=error.stderr_tail,
    )
