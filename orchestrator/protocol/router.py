"""Routing of notifications and server requests to turns, by `threadId`/`turnId`.

Several threads run turns on one connection at once and their events interleave. Events of a
turn can arrive before the `turn/start` response names it, so a notification for an unknown
turn on a *watched* thread (one a caller is working on) creates that turn's tracker on the spot.
Everything else is unrouted: kept in a small ring for diagnostics, never accumulated.

Nothing here grows with the number of turns served: trackers leave when their turn is done and
nobody reads them; finished-but-unread turns are kept for late readers in a bounded LRU.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from orchestrator.protocol import jsoncodec
from orchestrator.protocol.jsonrpc import Notification, RequestId
from orchestrator.protocol.turn import DEFAULT_MAX_BUFFERED_EVENTS, TurnTracker

UNROUTED_RING_SIZE = 256

# Streaming notifications: to the client they only mean "the turn is alive". They are most
# of the traffic, so they take a short path (`without_activity`) when their turn is known.
# Most frequent first: the prefixes below are tried in this order.
_ACTIVITY_ONLY_ORDERED = (
    "item/agentMessage/delta",
    "item/reasoning/summaryTextDelta",
    "item/commandExecution/outputDelta",
    "item/reasoning/textDelta",
    "item/reasoning/summaryPartAdded",
    "item/fileChange/outputDelta",
    "item/plan/delta",
    "item/mcpToolCall/progress",
)
ACTIVITY_ONLY_METHODS = frozenset(_ACTIVITY_ONLY_ORDERED)
# How the server writes the start of such a notification (compact, method first). Only a cheap
# hint of which texts are worth peeking at: the peek decides, and a text written
# any other way takes the full path.
_ACTIVITY_TEXT_PREFIXES = tuple(f'{{"method":"{method}"' for method in _ACTIVITY_ONLY_ORDERED)
_ACTIVITY_LINE_PREFIXES = tuple(prefix.encode() for prefix in _ACTIVITY_TEXT_PREFIXES)
_peek_activity = jsoncodec.notification_peeker(ACTIVITY_ONLY_METHODS)
FINISHED_UNREAD_KEPT = 256


def ids_of(note_params: dict[str, Any]) -> tuple[str | None, str | None]:
    """The thread and turn a notification's params name, if any."""
    thread_id = note_params.get("threadId")
    turn_id = note_params.get("turnId")
    if turn_id is None:
        turn = note_params.get("turn")
        if isinstance(turn, dict):
            turn_id = turn.get("id")
    return (
        thread_id if isinstance(thread_id, str) else None,
        turn_id if isinstance(turn_id, str) else None,
    )


@attrs.frozen(kw_only=True)
class RouterStatistics:
    """Sizes of everything a router holds (for tests and diagnostics)."""

    turns: int
    watched_threads: int
    unrouted_kept: int
    unrouted_total: int
    finished_unread: int


class Router:
    """Turn trackers by turn id, watched threads, and the ring of unrouted notifications."""

    def __init__(self, *, max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS) -> None:
        self.max_buffered_events = max_buffered_events
        self.turns: dict[str, TurnTracker] = {}
        self.watched: dict[str, int] = {}  # thread id -> how many callers watch it
        self.unrouted: deque[Notification] = deque(maxlen=UNROUTED_RING_SIZE)
        self.unrouted_count = 0
        self._finished_unread: OrderedDict[str, None] = OrderedDict()

    # -- watching threads --------------------------------------------------------------

    def watch(self, thread_id: str) -> None:
        """A caller works on this thread: route its turns' events from now on."""
        self.watched[thread_id] = self.watched.get(thread_id, 0) + 1

    def unwatch(self, thread_id: str) -> None:
        """One caller is done with this thread."""
        count = self.watched.get(thread_id, 0) - 1
        if count > 0:
            self.watched[thread_id] = count
            return
        self.watched.pop(thread_id, None)
        # Turns that ended while the thread was watched but that nobody attached to.
        orphans = [
            t for t in self.turns.values() if t.thread_id == thread_id and t.done and not t.readers
        ]
        for tracker in orphans:
            self._release_if_idle(tracker)

    # -- trackers ----------------------------------------------------------------------

    def tracker(self, thread_id: str, turn_id: str, *, now: float) -> TurnTracker:
        """The tracker for this turn, created if needed."""
        tracker = self.turns.get(turn_id)
        if tracker is None:
            tracker = TurnTracker(
                thread_id, turn_id, now=now, max_buffered_events=self.max_buffered_events
            )
            self.turns[turn_id] = tracker
        return tracker

    def attach(self, thread_id: str, turn_id: str, *, now: float) -> TurnTracker:
        """A reader starts reading this turn."""
        tracker = self.tracker(thread_id, turn_id, now=now)
        tracker.readers += 1
        self._finished_unread.pop(turn_id, None)
        return tracker

    def detach(self, tracker: TurnTracker) -> None:
        """A reader stops reading; forget the turn once it is done and unread by anyone."""
        tracker.readers = max(0, tracker.readers - 1)
        self._release_if_idle(tracker)

    def _release_if_idle(self, tracker: TurnTracker) -> None:
        if tracker.readers or not tracker.done:
            return
        if tracker.has_unread:
            # Keep it for a late continuation, within a bound.
            self._finished_unread[tracker.turn_id] = None
            while len(self._finished_unread) > FINISHED_UNREAD_KEPT:
                old, _ = self._finished_unread.popitem(last=False)
                self.turns.pop(old, None)
        else:
            self.turns.pop(tracker.turn_id, None)
            self._finished_unread.pop(tracker.turn_id, None)

    def forget(self, tracker: TurnTracker) -> None:
        """Drop a tracker now, whatever its state (the caller took everything it wanted)."""
        self.turns.pop(tracker.turn_id, None)
        self._finished_unread.pop(tracker.turn_id, None)

    # -- routing -----------------------------------------------------------------------

    def without_activity(
        self, texts: Sequence[str | bytes], *, now: float
    ) -> Iterator[str | bytes]:
        """Take the streaming notifications of known turns among `texts`, received at `now`
        (each refreshes its turn's inactivity clock), before they are parsed; yield every
        other text, in order, for the full path (parse, then `note_activity` or `route`).
        The texts are all str or all bytes (one transport's batch).

        Lazy: a text is looked at only once everything yielded before it has been handled,
        so the outcome is exactly that of handling the texts one by one in full. A text taken
        here is one `note_activity` would take after parsing (see `notification_peeker`).
        """
        if not texts:
            return
        turns = self.turns
        peek = _peek_activity
        prefixes = (
            _ACTIVITY_LINE_PREFIXES if isinstance(texts[0], bytes) else _ACTIVITY_TEXT_PREFIXES
        )
        for text in texts:
            # (mypy cannot pair the text's type with the prefixes'; a turnId of None finds
            # no tracker.)
            if text.startswith(prefixes):  # type: ignore[arg-type]
                try:
                    tracker = turns.get(peek(text).params.turnId)  # type: ignore[arg-type]
                except (ValueError, RecursionError):
                    tracker = None
                if tracker is not None:
                    tracker.last_activity = now
                    continue
            yield text

    def note_activity(self, message: dict[str, Any], *, now: float) -> bool:
        """The short path for a streaming notification of a known turn: refresh the turn's
        inactivity clock and report True; anything else reports False (use `route`)."""
        if message.get("method") not in ACTIVITY_ONLY_METHODS or "id" in message:
            return False
        params = message.get("params")
        if not isinstance(params, dict):
            return False
        tracker = self.turns.get(params.get("turnId"))  # type: ignore[arg-type]
        if tracker is None:
            return False
        tracker.last_activity = now
        return True

    def route(
        self, method: str, params: dict[str, Any], message: dict[str, Any], *, now: float
    ) -> TurnTracker | None:
        """Give a notification (its method, params and the whole message) to its turn;
        returns the tracker when a reader should wake."""
        thread_id, turn_id = ids_of(params)
        if method == "serverRequest/resolved":
            self.resolve_request(params.get("requestId"), thread_id, now=now)
            return None
        if turn_id is not None:
            tracker = self.turns.get(turn_id)
            if tracker is None and thread_id is not None and thread_id in self.watched:
                tracker = self.tracker(thread_id, turn_id, now=now)
            if tracker is not None:
                wake = tracker.observe(method, params, message, now)
                # While the thread is watched, a caller may be about to attach (the turn can
                # end before the turn/start response arrives): keep the tracker until then.
                if tracker.done and not tracker.readers and thread_id not in self.watched:
                    self._release_if_idle(tracker)
                return tracker if wake else None
        elif thread_id is not None and thread_id in self.watched:
            # Thread-level news (status changes, warnings) shows the thread is alive.
            for tracker in self.turns.values():
                if tracker.thread_id == thread_id and not tracker.done:
                    tracker.last_activity = now
            return None
        self.unrouted.append(Notification(method, params, message))
        self.unrouted_count += 1
        return None

    # -- server requests ---------------------------------------------------------------

    def request_opened(self, request_id: RequestId, params: dict[str, Any], *, now: float) -> None:
        """A server request for a turn is awaiting our answer: the turn is not inactive."""
        thread_id, turn_id = ids_of(params)
        if turn_id is None or thread_id is None:
            return
        tracker = self.turns.get(turn_id)
        if tracker is None and thread_id in self.watched:
            tracker = self.tracker(thread_id, turn_id, now=now)
        if tracker is not None:
            tracker.pending_requests.add(request_id)
            tracker.last_activity = now

    def resolve_request(self, request_id: Any, thread_id: str | None, *, now: float = 0.0) -> None:
        """The request was answered (by us, or resolved by the server): it no longer blocks."""
        for tracker in self.turns.values():
            if request_id in tracker.pending_requests and (
                thread_id is None or tracker.thread_id == thread_id
            ):
                tracker.pending_requests.discard(request_id)
                if now:
                    tracker.last_activity = max(tracker.last_activity, now)

    def statistics(self) -> RouterStatistics:
        """Sizes of everything the router holds."""
        return RouterStatistics(
            turns=len(self.turns),
            watched_threads=len(self.watched),
            unrouted_kept=len(self.unrouted),
            unrouted_total=self.unrouted_count,
            finished_unread=len(self._finished_unread),
        )
