"""Telling a hung or forgetful server from a slow one.

Two checks, each a cheap request at a moment when waiting longer would be waiting forever:
- `HangProbe`: a request timed out. A liveness probe that gets no answer either means the
  server is hung (stopped, deadlocked): the connection is declared dead, so every caller fails
  over to a reconnection instead of timing out one by one.
- `CompletionGaps`: every item of a turn completed and then nothing came. If `thread/read` says
  the turn ended, its `turn/completed` was lost: end the turn from what the server stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from orchestrator._util import lazylog
from orchestrator.errors import CodexProtocolError, CodexTimeoutError
from orchestrator.protocol.methods import LIVENESS_PROBE
from orchestrator.protocol.turn import TurnTracker
from orchestrator.protocol.values import TurnStatus

if TYPE_CHECKING:
    from orchestrator.client._connection import CodexClient

log = lazylog.get_logger("orchestrator.client")

DEFAULT_HANG_PROBE_TIMEOUT = 10.0
# Every item of a turn completed, then silence this long: ask `thread/read` whether the turn
# ended without its `turn/completed` reaching us.
DEFAULT_COMPLETION_GAP = 30.0
COMPLETION_CHECK_TIMEOUT = 30.0

# Sends one request and waits at most the limit; None when no answer came in time.
Exchange = Callable[[str, None, float | None], Awaitable[Any | None]]


class HangProbe:
    """After a request timed out: is the server slow, or hung (stopped, deadlocked)?

    A cheap request answers that: any answer, even an error, proves the server still reads and
    writes. None within `timeout` means it is hung, and `declare_hung(why)` closes the
    connection. Concurrent timeouts share one probe.
    """

    def __init__(
        self, *, timeout: float | None, exchange: Exchange, declare_hung: Callable[[str], None]
    ) -> None:
        self.timeout = timeout
        self._exchange = exchange
        self._declare_hung = declare_hung
        self._done: trio.Event | None = None

    async def check(self, why: str) -> None:
        """Probe once (or wait for the probe under way); returns when it is settled."""
        if self.timeout is None:
            await trio.lowlevel.checkpoint()
            return
        if self._done is not None:
            await self._done.wait()
            return
        self._done = done = trio.Event()
        try:
            answer = await self._exchange(LIVENESS_PROBE, None, self.timeout)
            if answer is None:
                self._declare_hung(f"{why}, and a liveness probe none within {self.timeout} s")
        finally:
            self._done = None
            done.set()


class CompletionGaps:
    """Ends turns whose `turn/completed` never arrived, from what `thread/read` says."""

    def __init__(self, client: CodexClient, *, gap: float | None) -> None:
        self.gap = gap
        self.closed = 0  # turns ended from thread/read: their turn/completed was lost
        self._client = client

    def due(self, tracker: TurnTracker) -> float:
        """When to ask about this turn (math.inf: not now; see `TurnTracker.gap_check_due`)."""
        return tracker.gap_check_due(self.gap)

    async def close(self, tracker: TurnTracker) -> bool:
        """Ask the server whether the turn ended; True when it did and the tracker now says so."""
        tracker.gap_checked_at = trio.current_time()
        client = self._client
        try:
            limit = COMPLETION_CHECK_TIMEOUT
            if client.request_timeout is not None:
                limit = min(limit, client.request_timeout)
            turn = await client.read_turn(tracker.thread_id, tracker.turn_id, timeout=limit)
        except (CodexProtocolError, CodexTimeoutError) as exc:
            log.info("completion check failed; still waiting", turn=tracker.turn_id, error=str(exc))
            return False
        if turn is None or TurnStatus.ended(turn.get("status")) is None or tracker.done:
            return False
        log.warning(
            "turn/completed never arrived; the turn ended according to thread/read",
            thread=tracker.thread_id,
            turn=tracker.turn_id,
            status=turn.get("status"),
        )
        tracker.reconcile(turn, cursor=tracker.cursor)
        self.closed += 1
        return True
