"""What a job does next with its current turn, after anything: pure decisions.

This is where "kill -9 loses nothing, and nothing runs twice" is decided. The runner keeps a
`TurnProgress` (what it knows of the job's thread and current turn: from this life, or from
the daemon's journal after a restart), asks `next_action` what to do on the connection it has
now, carries the action out, and records the outcome in the progress with its transitions.
Two actions ask the server before deciding: `Reconcile` (a turn the server acknowledged on a
connection that is gone: is it still there?) and `Adopt` (a `turn/start` whose answer we never
saw: did the server start it?); the runner asks (`thread/read`) and calls `next_action` again
with the answer as a `ServerView`. Losing the connection mid-turn is `on_connection_lost`'s:
retry within the job's `retries`, or fail.

No I/O and no trio: every rule here is checked from a table (tests/test_recovery.py).
"""

from __future__ import annotations

import attrs

from orchestrator.protocol.values import TurnStatus

# -- what the runner knows ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TurnProgress:
    """How far the job's current turn got, as the runner knows it.

    A connection *generation* counts (re)connections of the job's connection: a thread or a
    turn known on one generation must be looked for again on the next (another app-server
    process, or a socket the server may have outlived).
    """

    thread_id: str | None = None
    thread_generation: int | None = None  # the generation the thread was started or resumed on
    turn_id: str | None = None  # this turn, once the server acknowledged (or we adopted) it
    cursor: int = 0  # steps of the turn already recorded
    confirmed_on: int | None = None  # the generation on which the turn is known to be live
    start_unconfirmed: bool = False  # a turn/start went out and its answer was never seen
    known_turns: frozenset[str] = frozenset()  # every turn of the thread that is the job's

    @classmethod
    def recovered(
        cls,
        *,
        thread_id: str | None,
        pending_turn: str | None,
        turn_starting: bool,
        known_turns: frozenset[str],
    ) -> TurnProgress:
        """The progress a restarted daemon reads from a job's journal: nothing is confirmed
        on the new connections yet."""
        return cls(
            thread_id=thread_id,
            turn_id=pending_turn,
            start_unconfirmed=turn_starting and pending_turn is None,
            known_turns=known_turns,
        )

    def next_turn(self) -> TurnProgress:
        """The job moves on to its next turn, on the same thread."""
        return attrs.evolve(
            self, turn_id=None, cursor=0, confirmed_on=None, start_unconfirmed=False
        )

    def on_thread(self, thread_id: str, generation: int) -> TurnProgress:
        """The thread was started (or resumed) on this generation."""
        return attrs.evolve(self, thread_id=thread_id, thread_generation=generation)

    def starting(self) -> TurnProgress:
        """turn/start is about to go out: until its answer, the server may or may not run it."""
        return attrs.evolve(self, turn_id=None, cursor=0, confirmed_on=None, start_unconfirmed=True)

    def acknowledged(self, turn_id: str, generation: int) -> TurnProgress:
        """The server answered turn/start with this turn."""
        return attrs.evolve(
            self,
            turn_id=turn_id,
            confirmed_on=generation,
            start_unconfirmed=False,
            known_turns=self.known_turns | {turn_id},
        )

    def adopted(self, turn_id: str) -> TurnProgress:
        """A turn found on the thread is ours: an unconfirmed turn/start started it."""
        return attrs.evolve(
            self,
            turn_id=turn_id,
            cursor=0,
            confirmed_on=None,
            start_unconfirmed=False,
            known_turns=self.known_turns | {turn_id},
        )

    def confirmed(self, generation: int) -> TurnProgress:
        """The turn is being read again on this generation."""
        return attrs.evolve(self, confirmed_on=generation)

    def read_to(self, cursor: int) -> TurnProgress:
        """Steps up to `cursor` are recorded (where reading resumes)."""
        return attrs.evolve(self, cursor=cursor)


@attrs.frozen(kw_only=True)
class ServerView:
    """What the server said when `Adopt` or `Reconcile` asked (`thread/read`)."""

    newest_turn: str | None = None  # Adopt: the id of the thread's last turn
    turn_status: TurnStatus | None = None  # Reconcile: the turn's status; None: not there
    thread_active: bool = False  # Reconcile: the thread runs a turn now


# -- what to do -----------------------------------------------------------------------------


@attrs.frozen
class StartThread:
    """Start the job's thread (`thread/start`)."""


@attrs.frozen
class ResumeThread:
    """Make the thread known to this connection (`thread/resume`)."""


@attrs.frozen
class Adopt:
    """A turn/start went unanswered: look at the thread's turns (`thread/read`), then ask
    again with `ServerView.newest_turn`."""


@attrs.frozen
class Adopted:
    """The thread's newest turn is one we never saw: the unanswered turn/start started it.
    Take it as this turn's (and record `turn_adopted`)."""

    turn_id: str


@attrs.frozen
class Reconcile:
    """The turn was acknowledged on a connection that is gone: ask the server about it
    (`thread/read`), then ask again with `turn_status` and `thread_active`."""

    turn_id: str


@attrs.frozen
class Resume:
    """Read the turn on from where the job's records end; `reconciled`: the server was
    asked and still has it (record `turn_reconciled`)."""

    turn_id: str
    reconciled: bool = False


@attrs.frozen
class StartTurn:
    """Send the prompt (`turn/start`). `lost`: the turn that was acknowledged for it and that
    the server no longer has (record `turn_lost`)."""

    lost: str | None = None


@attrs.frozen
class Retry:
    """The connection was lost and the job may try again (one more attempt)."""

    reason: str


@attrs.frozen
class Fail:
    """The job cannot go on."""

    reason: str


Action = StartThread | ResumeThread | Adopt | Adopted | Reconcile | Resume | StartTurn


def next_action(progress: TurnProgress, *, generation: int, view: ServerView | None) -> Action:
    """What to do next with the job's current turn, on the connection of `generation`.

    `view` is the server's answer when the previous action was `Adopt` or `Reconcile`, else
    None (a view answers only the question it was fetched for).
    """
    if progress.thread_id is None:
        return StartThread()
    if progress.thread_generation != generation:
        return ResumeThread()
    if progress.turn_id is not None:
        if progress.confirmed_on == generation:
            return Resume(progress.turn_id)
        if view is None:
            return Reconcile(progress.turn_id)
        if _still_there(view):
            return Resume(progress.turn_id, reconciled=True)
        return StartTurn(lost=progress.turn_id)
    if progress.start_unconfirmed:
        if view is None:
            return Adopt()
        if view.newest_turn is not None and view.newest_turn not in progress.known_turns:
            return Adopted(view.newest_turn)
    return StartTurn()


def _still_there(view: ServerView) -> bool:
    """A turn the server finished, or still runs: reading it on loses and repeats nothing.
    (A turn stored as in progress on a thread that runs nothing died with its app-server.)"""
    return view.turn_status is TurnStatus.COMPLETED or (
        view.turn_status is TurnStatus.IN_PROGRESS and view.thread_active
    )


def on_connection_lost(reason: str, *, attempts: int, retries: int) -> Retry | Fail:
    """The connection died under the job's turn: another attempt while `retries` allows."""
    if attempts > retries:
        return Fail(f"{reason} (after {attempts} attempts)")
    return Retry(reason)
