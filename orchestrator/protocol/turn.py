"""The state of one turn as the client sees it: what arrived, what was read, how it ended.

A `TurnTracker` is fed every notification routed to its turn. It keeps only what a reader still
needs: completed items not yet read (deltas are counted as activity, never stored), the final
text candidates, summed token usage, the status. Memory is bounded by `max_buffered_events`;
a reader that falls further behind than that loses the turn's buffer and is told so.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from orchestrator.protocol.jsonrpc import Notification, RequestId
from orchestrator.protocol.steps import (
    NOT_STEPS,
    FinalTextChooser,
    final_text_from_items,
    step_from_item,
)
from orchestrator.protocol.values import (
    ChatContinuation,
    ConversationStep,
    TokenUsage,
    TurnStatus,
)

DEFAULT_MAX_BUFFERED_EVENTS = 50_000

TURN_COMPLETED = "turn/completed"
ITEM_COMPLETED = "item/completed"
ITEM_STARTED = "item/started"
TOKEN_USAGE_UPDATED = "thread/tokenUsage/updated"
ERROR = "error"


class TurnTracker:
    """Bookkeeping for one (thread, turn): queue of unread items, cursor, status, usage."""

    def __init__(
        self,
        thread_id: str,
        turn_id: str,
        *,
        now: float,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
    ) -> None:
        self.thread_id = thread_id
        self.turn_id = turn_id
        self.last_activity = now
        self.gap_checked_at = now  # when the server was last asked whether the turn ended
        self.max_buffered_events = max_buffered_events
        self.pending_requests: set[RequestId] = set()
        self.readers = 0
        self.status: TurnStatus | None = None  # set by turn/completed
        self.error: dict[str, Any] | None = None
        self.last_error_event: dict[str, Any] | None = None
        self.overflowed = False
        self.summary_items: list[Any] = []
        self.unfinished: dict[str, dict[str, Any]] = {}
        self.continuations = 0
        self._queue: deque[Notification] = deque()
        self._completion: Notification | None = None
        self._delivered = 0  # steps handed to readers: the continuation cursor
        self._chooser = FinalTextChooser()
        self._usage = [0, 0, 0, 0, 0]  # input, cached, output, reasoning, total: summed `last`
        self._thread_total = 0
        self._context_window: int | None = None
        self._usage_seen = False
        self._seen_item_ids: set[str] | None = None  # set only after `reconcile`

    # -- fed by the router -------------------------------------------------------------

    def observe(
        self, method: str, params: dict[str, Any], message: dict[str, Any], now: float
    ) -> bool:
        """Take one notification for this turn (its method, params and the whole message);
        True when a waiting reader should wake."""
        self.last_activity = now
        if method == ITEM_COMPLETED:
            item = params.get("item")
            if isinstance(item, dict):
                item_id = item.get("id")
                if isinstance(item_id, str):
                    self.unfinished.pop(item_id, None)
                    if self._seen_item_ids is not None and item_id in self._seen_item_ids:
                        return False  # already adopted from thread/read
                self._chooser.observe(item)
                self._enqueue(Notification(method, params, message))
                return True
            return False
        if method == ITEM_STARTED:
            item = params.get("item")
            if (
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and item.get("type") not in NOT_STEPS
            ):
                self.unfinished[item["id"]] = item
            return False
        if method == TURN_COMPLETED:
            turn = params.get("turn")
            turn = turn if isinstance(turn, dict) else {}
            # A status we do not know cannot count as completed.
            self.status = TurnStatus.ended(turn.get("status")) or TurnStatus.FAILED
            error = turn.get("error")
            self.error = error if isinstance(error, dict) else None
            items = turn.get("items")
            self.summary_items = items if isinstance(items, list) else []
            self._completion = Notification(method, params, message)
            self.pending_requests.clear()
            return True
        if method == TOKEN_USAGE_UPDATED:
            self._add_usage(params.get("tokenUsage"))
            return False
        if method == ERROR:
            error = params.get("error")
            if isinstance(error, dict):
                self.last_error_event = error
            return False
        return False

    def _enqueue(self, note: Notification) -> None:
        if self.overflowed:
            return
        if len(self._queue) >= self.max_buffered_events:
            # The reader stopped keeping up: drop the buffer rather than grow without bound.
            self.overflowed = True
            self._queue.clear()
            return
        self._queue.append(note)

    def _add_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        last = usage.get("last")
        if isinstance(last, dict):
            keys = (
                "inputTokens",
                "cachedInputTokens",
                "outputTokens",
                "reasoningOutputTokens",
                "totalTokens",
            )
            for slot, key in enumerate(keys):
                value = last.get(key)
                if isinstance(value, int):
                    self._usage[slot] += value
        total = usage.get("total")
        if isinstance(total, dict) and isinstance(total.get("totalTokens"), int):
            self._thread_total = total["totalTokens"]
        window = usage.get("modelContextWindow")
        if isinstance(window, int):
            self._context_window = window
        self._usage_seen = True

    def reconcile(self, turn: dict[str, Any], *, cursor: int) -> None:
        """Adopt the turn as `thread/read` reports it, for a reader that was not attached
        while it ran: steps from index `cursor` on become unread; items already queued from
        the live stream are kept once; a finished turn is marked done."""
        live = list(self._queue)
        self._queue.clear()
        self._seen_item_ids = set()
        index = 0
        for item in turn.get("items") or ():
            if not isinstance(item, dict) or item.get("type") in NOT_STEPS:
                continue
            item_id = item.get("id")
            if isinstance(item_id, str):
                self._seen_item_ids.add(item_id)
                self.unfinished.pop(item_id, None)
            self._chooser.observe(item)
            if index >= cursor:
                params = {"threadId": self.thread_id, "turnId": self.turn_id, "item": item}
                self._enqueue(
                    Notification(
                        ITEM_COMPLETED, params, {"method": ITEM_COMPLETED, "params": params}
                    )
                )
            index += 1
        for note in live:
            if note.params["item"].get("id") not in self._seen_item_ids:
                self._enqueue(note)
        self._delivered = cursor
        status = TurnStatus.ended(turn.get("status"))
        if self.status is None and status is not None:
            self.status = status
            error = turn.get("error")
            self.error = error if isinstance(error, dict) else None

    # -- read by the client ------------------------------------------------------------

    @property
    def done(self) -> bool:
        """`turn/completed` has arrived (unread items may remain)."""
        return self.status is not None

    def gap_check_due(self, gap: float | None) -> float:
        """When to ask the server whether this turn ended unannounced (math.inf: not now).

        Only while no item is open and no server request waits on us: an open command or an
        approval explains a silence; a turn whose every item completed does not."""
        if gap is None or self.done or self.unfinished or self.pending_requests:
            return math.inf
        return max(self.last_activity, self.gap_checked_at) + gap

    @property
    def has_unread(self) -> bool:
        """Items are waiting to be read."""
        return bool(self._queue)

    @property
    def cursor(self) -> int:
        """How many steps readers have taken so far."""
        return self._delivered

    def next_step(self) -> ConversationStep | None:
        """Pop the next unread step, or None when nothing is waiting right now."""
        queue = self._queue
        while queue:
            note = queue.popleft()
            step = step_from_item(
                note.params["item"],
                thread_id=self.thread_id,
                turn_id=self.turn_id,
                index=self._delivered,
            )
            if step is not None:
                self._delivered += 1
                return step
        return None

    def drain(self) -> tuple[list[ConversationStep], list[dict[str, Any]]]:
        """Take every unread step and the raw events behind them (and `turn/completed`)."""
        raw = [note.raw for note in self._queue]
        steps: list[ConversationStep] = []
        while (step := self.next_step()) is not None:
            steps.append(step)
        if self._completion is not None:
            raw.append(self._completion.raw)
        return steps, raw

    def continuation(self) -> ChatContinuation:
        """Where a reader stands now."""
        return ChatContinuation(thread_id=self.thread_id, turn_id=self.turn_id, cursor=self.cursor)

    @property
    def waiting_on_server_request(self) -> bool:
        """A server request for this turn awaits our answer: the turn is not idle."""
        return bool(self.pending_requests)

    def final_text(self) -> tuple[str | None, str]:
        """The final text and where it came from (`items`, `turn_completed` or `none`)."""
        text = self._chooser.text
        if text is not None:
            return text, "items"
        text = final_text_from_items(self.summary_items)
        if text is not None:
            return text, "turn_completed"
        return None, "none"

    def usage(self) -> TokenUsage | None:
        """Tokens this turn spent, if the server reported any."""
        if not self._usage_seen:
            return None
        inp, cached, out, reasoning, total = self._usage
        return TokenUsage(
            input_tokens=inp,
            cached_input_tokens=cached,
            output_tokens=out,
            reasoning_output_tokens=reasoning,
            total_tokens=total,
            thread_total_tokens=self._thread_total,
            model_context_window=self._context_window,
        )
