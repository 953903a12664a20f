"""Reading turns: where readers wait for steps, and `TurnStream`, the iterator they hold.

`TurnReaders` owns one parking lot per turn being read. The reader task only wakes lots (it
never blocks); readers park with their inactivity deadline, or until the completion-gap check
is due. The bookkeeping of a turn (queue, cursor, status, final text) is the sans-IO
`TurnTracker`'s; here are only the waits and the requests a reader needs (`turn/start`,
`thread/read`, `turn/interrupt`), made through the client's public methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import attrs
import trio

from orchestrator._util import lazylog
from orchestrator.client._health import CompletionGaps
from orchestrator.errors import (
    CodexError,
    CodexProtocolError,
    CodexTimeoutError,
    CodexTurnInactiveError,
)
from orchestrator.protocol import methods
from orchestrator.protocol.router import Router
from orchestrator.protocol.steps import final_text_from_items
from orchestrator.protocol.turn import TurnTracker
from orchestrator.protocol.values import (
    CancelResult,
    ChatContinuation,
    ChatResult,
    ConversationStep,
    ThreadOptions,
    TurnStatus,
)

if TYPE_CHECKING:
    from orchestrator.client._connection import CodexClient

log = lazylog.get_logger("orchestrator.client")

DEFAULT_CANCEL_TIMEOUT = 30.0


class TurnOptions(TypedDict, total=False):
    """The keywords of `chat` and `chat_once` besides the text (see `CodexClient.chat`)."""

    thread_id: str | None
    thread_options: ThreadOptions | None
    inactivity_timeout: float | None
    continuation: ChatContinuation | None
    input_items: Sequence[Mapping[str, Any]] | None


@attrs.frozen(kw_only=True)
class TurnRequest:
    """What a `TurnStream` reads: a new turn (its text and input items, on `thread_id` or on
    a new thread with `thread_options`), or the running turn of `continuation`."""

    text: str | None = None
    thread_id: str | None = None
    thread_options: ThreadOptions | None = None
    inactivity_timeout: float | None = None
    continuation: ChatContinuation | None = None
    input_items: Sequence[Mapping[str, Any]] | None = None


class TurnReaders:
    """The turns being read on one connection, and the parking lots their readers wait in."""

    def __init__(self, client: CodexClient, router: Router, gaps: CompletionGaps) -> None:
        self._client = client
        self._router = router
        self._gaps = gaps
        self._lots: dict[str, trio.lowlevel.ParkingLot] = {}

    @property
    def waiting_turns(self) -> int:
        """Turns with a parking lot (some reader is, or was just, reading them)."""
        return len(self._lots)

    def wake(self, tracker: TurnTracker) -> None:
        """Something arrived for this turn: its readers look again (never blocks)."""
        lot = self._lots.get(tracker.turn_id)
        # Most wakes find nobody parked (the reader was woken by an earlier item of the same
        # batch, or is busy): skip unpark_all, which costs even then.
        if lot is not None and len(lot):
            lot.unpark_all()

    def wake_all(self) -> None:
        """The connection ended: every reader looks again, and finds it closed."""
        for lot in self._lots.values():
            lot.unpark_all()

    # -- attaching ---------------------------------------------------------------------

    async def begin(self, request: TurnRequest) -> TurnTracker:
        """Start a turn (and its thread when it names none); the tracker to read it."""
        thread_id = request.thread_id
        if thread_id is None:
            thread_id = await self._client.start_thread(request.thread_options)
        # Watch before asking: the turn's first events may beat the turn/start response.
        self._router.watch(thread_id)
        try:
            result = await self._client.request(
                methods.TURN_START,
                methods.turn_start_params(thread_id, request.text, request.input_items),
            )
            turn_id = methods.started_turn_id(result)
        except BaseException:
            self._router.unwatch(thread_id)
            raise
        tracker = self._router.attach(thread_id, turn_id, now=trio.current_time())
        self._lots.setdefault(turn_id, trio.lowlevel.ParkingLot())
        return tracker

    async def resume(self, continuation: ChatContinuation) -> TurnTracker:
        """Read on where a continuation left a turn."""
        tracker = await self.attach(continuation)
        tracker.continuations += 1
        # Resuming restarts the inactivity clock: the caller chose to keep waiting.
        tracker.last_activity = max(tracker.last_activity, trio.current_time())
        return tracker

    async def attach(self, continuation: ChatContinuation) -> TurnTracker:
        """Attach to the continuation's turn; one this client no longer tracks (fully read,
        evicted, or from another client) is rebuilt from `thread/read`."""
        known = continuation.turn_id in self._router.turns
        self._router.watch(continuation.thread_id)
        tracker = self._router.attach(
            continuation.thread_id, continuation.turn_id, now=trio.current_time()
        )
        self._lots.setdefault(tracker.turn_id, trio.lowlevel.ParkingLot())
        if not known:
            try:
                turn = await self._client.read_turn(continuation.thread_id, continuation.turn_id)
                if turn is None:
                    raise CodexProtocolError(
                        f"turn {continuation.turn_id} not found on thread {continuation.thread_id}"
                    )
                tracker.reconcile(turn, cursor=continuation.cursor)
            except BaseException:
                self.release(tracker)
                raise
        return tracker

    def release(self, tracker: TurnTracker) -> None:
        """A reader is done with a turn (finished, gave up, or timed out)."""
        self._router.unwatch(tracker.thread_id)
        self._router.detach(tracker)
        if tracker.readers == 0:
            lot = self._lots.pop(tracker.turn_id, None)
            if lot is not None:
                lot.unpark_all()

    # -- waiting -----------------------------------------------------------------------

    async def next_step(
        self, tracker: TurnTracker, inactivity_timeout: float | None
    ) -> ConversationStep | None:
        """The turn's next completed step; None once the turn is over and fully read.

        Raises:
            CodexTurnInactiveError: no event for `inactivity_timeout` seconds.
            CodexTransportError: the connection is gone.
            CodexError: the reader fell so far behind that the turn's buffer was dropped.
        """
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
            self._client.raise_if_closed()
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
            gap_check_at = self._gaps.due(tracker)
            if gap_check_at <= now:
                if await self._gaps.close(tracker):
                    self.wake(tracker)
                continue
            with trio.move_on_at(min(deadline, gap_check_at)):
                await lot.park()

    async def final_text_fallback(self, tracker: TurnTracker) -> str | None:
        """Ask `thread/read` for the turn's final text when no agent message arrived."""
        try:
            turn = await self._client.read_turn(tracker.thread_id, tracker.turn_id)
        except CodexProtocolError as exc:
            log.info("thread/read fallback failed", error=str(exc))
            return None
        return final_text_from_items(turn.get("items") or []) if turn else None

    async def cancel(self, continuation: ChatContinuation, timeout: float | None) -> CancelResult:
        """See `CodexClient.cancel`."""
        limit = DEFAULT_CANCEL_TIMEOUT if timeout is None else timeout
        tracker = await self.attach(continuation)
        lot = self._lots[tracker.turn_id]
        try:
            already_done = tracker.done
            if not already_done:
                try:
                    await self._client.interrupt_turn(
                        continuation.thread_id, continuation.turn_id, timeout=limit
                    )
                except CodexProtocolError as exc:
                    # The turn may have ended on its own meanwhile; its turn/completed tells.
                    log.info("turn/interrupt refused", error=str(exc))
                with trio.move_on_after(limit):
                    while not tracker.done:
                        self._client.raise_if_closed()
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
                was_completed=already_done or tracker.status is TurnStatus.COMPLETED,
                was_interrupted=not already_done and tracker.status is TurnStatus.INTERRUPTED,
                status=tracker.status,
            )
        finally:
            self.release(tracker)
            self._router.forget(tracker)


class TurnStream:
    """The completed steps of one turn, as an async iterator (returned by `CodexClient.chat`).

    The turn starts on the first `__anext__`. After the iteration ends, `result()` gives the
    turn's outcome. `continuation` says where reading stands; use it to resume after
    `CodexTurnInactiveError` or to `cancel`. `aclose()` (or `async with`) stops reading early;
    the turn keeps running on the server.
    """

    def __init__(self, readers: TurnReaders, request: TurnRequest) -> None:
        self._readers = readers
        self._request = request
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
            step = await self._readers.next_step(tracker, self._request.inactivity_timeout)
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
        continuation = self._request.continuation
        if continuation is not None:
            self._tracker = await self._readers.resume(continuation)
        else:
            self._tracker = await self._readers.begin(self._request)
        self._attached = True

    def _detach(self) -> None:
        if self._attached and self._tracker is not None:
            self._attached = False
            self._readers.release(self._tracker)

    async def aclose(self) -> None:
        """Stop reading; the turn itself keeps running (use `cancel` to stop it)."""
        self._detach()
        await trio.lowlevel.checkpoint()

    @property
    def thread_id(self) -> str | None:
        """The turn's thread, once known."""
        return self._tracker.thread_id if self._tracker else self._request.thread_id

    @property
    def turn_id(self) -> str | None:
        """The turn's id, once started."""
        return self._tracker.turn_id if self._tracker else None

    @property
    def continuation(self) -> ChatContinuation:
        """Where reading stands now."""
        if self._tracker is None:
            if self._request.continuation is not None:
                return self._request.continuation
            raise RuntimeError("the turn has not started yet")
        return self._tracker.continuation()

    async def result(self, *, steps: tuple[ConversationStep, ...] = ()) -> ChatResult:
        """The turn's outcome, once iteration has ended (falls back to `thread/read` for the
        final text when no agent message arrived)."""
        tracker = self._tracker
        if tracker is None or not self._finished:
            raise RuntimeError("the turn is not finished; iterate the stream to its end first")
        final_text, source = tracker.final_text()
        if final_text is None and tracker.status is TurnStatus.COMPLETED:
            final_text = await self._readers.final_text_fallback(tracker)
            source = "thread_read" if final_text is not None else "none"
        return ChatResult(
            thread_id=tracker.thread_id,
            turn_id=tracker.turn_id,
            status=tracker.status or TurnStatus.FAILED,
            final_text=final_text,
            steps=steps,
            usage=tracker.usage(),
            error=tracker.error,
            completion_source=source,
            continuations=tracker.continuations,
            unfinished_items=tuple(tracker.unfinished.values()),
        )
