"""The recovery decisions, from a table: what a job does next with its turn, after anything.

Each row is a situation the runner can be in (fresh, mid-turn, after a lost connection, after
a daemon restarted from its journal; the daemon's kill -9 tests drive the real ones) and the
one action `next_action` must choose. The runner carries the actions out; these rows pin the
decisions without any I/O.
"""

from __future__ import annotations

import pytest

from orchestrator.jobs.recovery import (
    Action,
    Adopt,
    Adopted,
    Fail,
    Reconcile,
    Resume,
    ResumeThread,
    Retry,
    ServerView,
    StartThread,
    StartTurn,
    TurnProgress,
    next_action,
    on_connection_lost,
)
from orchestrator.protocol.values import TurnStatus

GEN = 2  # the connection generation the runner holds now
THREAD = TurnProgress(thread_id="th", thread_generation=GEN)
ACKED = TurnProgress(
    thread_id="th",
    thread_generation=GEN,
    turn_id="t1",
    confirmed_on=GEN,
    known_turns=frozenset({"t1"}),
)
# The same turn after its connection was lost and the thread resumed on a new one.
LOST = TurnProgress(
    thread_id="th", thread_generation=GEN, turn_id="t1", confirmed_on=GEN - 1,
    known_turns=frozenset({"t1"}),
)  # fmt: skip
UNCONFIRMED = TurnProgress(
    thread_id="th", thread_generation=GEN, start_unconfirmed=True, known_turns=frozenset({"t0"})
)
# A restarted daemon, from the journal: nothing is confirmed on the new connections.
JOURNAL_ACKED = TurnProgress.recovered(
    thread_id="th", pending_turn="t1", turn_starting=False, known_turns=frozenset({"t1"})
)
JOURNAL_STARTING = TurnProgress.recovered(
    thread_id="th", pending_turn=None, turn_starting=True, known_turns=frozenset({"t0"})
)
JOURNAL_SCHEDULED = TurnProgress.recovered(
    thread_id=None, pending_turn=None, turn_starting=False, known_turns=frozenset()
)


def view(status: TurnStatus | None = None, *, active: bool = False) -> ServerView:
    return ServerView(turn_status=status, thread_active=active)


TABLE: list[tuple[str, TurnProgress, ServerView | None, Action]] = [
    # a fresh job
    ("no thread yet", TurnProgress(), None, StartThread()),
    ("a thread, no turn yet", THREAD, None, StartTurn()),
    ("the next turn of the job", ACKED.next_turn(), None, StartTurn()),
    # the same connection: an inactivity continuation
    ("acknowledged on this connection", ACKED, None, Resume("t1")),
    # a lost connection, in this life
    (
        "the thread is known to an older connection",
        TurnProgress(thread_id="th", thread_generation=GEN - 1),
        None,
        ResumeThread(),
    ),
    ("acknowledged on a connection that is gone", LOST, None, Reconcile("t1")),
    (
        "the server finished it meanwhile",
        LOST,
        view(TurnStatus.COMPLETED),
        Resume("t1", reconciled=True),
    ),
    (
        "the server still runs it (a websocket server that outlived the socket)",
        LOST,
        view(TurnStatus.IN_PROGRESS, active=True),
        Resume("t1", reconciled=True),
    ),
    (
        "stored in progress on a thread that runs nothing (died with its app-server)",
        LOST,
        view(TurnStatus.IN_PROGRESS, active=False),
        StartTurn(lost="t1"),
    ),
    (
        "interrupted (a daemon that stopped on SIGTERM)",
        LOST,
        view(TurnStatus.INTERRUPTED),
        StartTurn(lost="t1"),
    ),
    ("failed on the server", LOST, view(TurnStatus.FAILED), StartTurn(lost="t1")),
    ("not on the thread at all", LOST, view(None), StartTurn(lost="t1")),
    # turn/start went out, its answer never came
    ("a turn/start unanswered", UNCONFIRMED, None, Adopt()),
    (
        "the thread shows a turn we never saw: ours",
        UNCONFIRMED,
        ServerView(newest_turn="t9"),
        Adopted("t9"),
    ),
    (
        "the newest turn is one we know: the start never arrived",
        UNCONFIRMED,
        ServerView(newest_turn="t0"),
        StartTurn(),
    ),
    ("the thread has no turn at all", UNCONFIRMED, ServerView(newest_turn=None), StartTurn()),
    (
        "an adopted turn is reconciled like any other",
        UNCONFIRMED.adopted("t9"),
        None,
        Reconcile("t9"),
    ),
    # a daemon restarted after kill -9, from the journal
    ("journal: scheduled, nothing more", JOURNAL_SCHEDULED, None, StartThread()),
    ("journal: a thread and an acknowledged turn", JOURNAL_ACKED, None, ResumeThread()),
    (
        "journal: ... once the thread is resumed",
        JOURNAL_ACKED.on_thread("th", GEN),
        None,
        Reconcile("t1"),
    ),
    ("journal: turn_starting, no acknowledgement", JOURNAL_STARTING, None, ResumeThread()),
    (
        "journal: turn_starting, once the thread is resumed",
        JOURNAL_STARTING.on_thread("th", GEN),
        None,
        Adopt(),
    ),
]


@pytest.mark.parametrize(
    ("progress", "server", "action"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_next_action(progress: TurnProgress, server: ServerView | None, action: Action) -> None:
    """Each situation leads to exactly one action."""
    assert next_action(progress, generation=GEN, view=server) == action


def test_transitions_lead_where_the_runner_goes_next() -> None:
    """Carrying the actions out moves the progress on: a started turn is resumed on its own
    connection, reconciled on the next one, and a lost one is started afresh."""
    progress = TurnProgress()
    assert next_action(progress, generation=1, view=None) == StartThread()
    progress = progress.on_thread("th", 1)
    assert next_action(progress, generation=1, view=None) == StartTurn()
    progress = progress.starting()
    assert next_action(progress, generation=2, view=None) == ResumeThread()
    assert next_action(progress.on_thread("th", 2), generation=2, view=None) == Adopt()
    progress = progress.acknowledged("t1", 1).read_to(3)
    assert next_action(progress, generation=1, view=None) == Resume("t1")
    progress = progress.on_thread("th", 2)
    assert next_action(progress, generation=2, view=None) == Reconcile("t1")
    assert progress.confirmed(2).cursor == 3
    assert next_action(progress.confirmed(2), generation=2, view=None) == Resume("t1")
    assert progress.next_turn().known_turns == {"t1"}
    assert next_action(progress.next_turn(), generation=2, view=None) == StartTurn()


@pytest.mark.parametrize(
    ("attempts", "retries", "decision"),
    [
        (1, 1, Retry("connection lost: x")),
        (1, 0, Fail("connection lost: x (after 1 attempts)")),
        (2, 1, Fail("connection lost: x (after 2 attempts)")),
        (3, 5, Retry("connection lost: x")),
    ],
)
def test_a_lost_connection_is_retried_within_retries(
    attempts: int, retries: int, decision: Retry | Fail
) -> None:
    """`retries` extra attempts, then the job fails saying how many it made."""
    assert on_connection_lost("connection lost: x", attempts=attempts, retries=retries) == decision
