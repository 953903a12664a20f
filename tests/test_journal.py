"""The daemon's journal: durable appends, torn lines, folding into progress, compaction."""

from __future__ import annotations

from pathlib import Path

from orchestrator.store.journal import Journals, fold, read_journal


def test_transitions_fold_into_progress(tmp_path: Path) -> None:
    """Each transition moves the job along; an acknowledged turn is pending until done."""
    journals = Journals(tmp_path)
    journal = journals.open("job")
    journal.append("accepted", task_file="/inbox/accepted/x.toml")
    journal.append("scheduled", connection="local")
    journal.append("thread_started", thread_id="t1")
    journal.append("turn_starting", turn_index=0)
    progress = journals.progress("job")
    assert progress.turn_starting and progress.pending_turn is None
    journal.append("turn_acknowledged", turn_index=0, turn_id="u1")
    journal.append("continuation", turn_id="u1")
    progress = journals.progress("job")
    assert progress.status == "running" and progress.thread_id == "t1"
    assert progress.pending_turn == "u1" and not progress.turn_starting
    assert progress.known_turns == ("u1",) and progress.continuations == 1
    journal.append("turn_completed", turn_index=0, turn_id="u1", status="completed")
    journal.close()
    progress = journals.progress("job")
    assert progress.turns_done == 1 and progress.pending_turn is None
    assert not progress.finished
    assert progress.task_file == "/inbox/accepted/x.toml"


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial line: recovery ignores it."""
    journals = Journals(tmp_path)
    journal = journals.open("job")
    journal.append("accepted", task_file="f")
    journal.close()
    with journals.path("job").open("ab") as handle:
        handle.write(b'{"v":1,"event":"turn_acknowl')
    records = read_journal(journals.path("job"))
    assert [r["event"] for r in records] == ["accepted"]
    assert fold("job", records).status == "accepted"


def test_a_lost_turn_is_no_longer_pending(tmp_path: Path) -> None:
    """After turn_lost the job starts that turn again, on the same thread."""
    records = [
        {"event": "thread_started", "thread_id": "t"},
        {"event": "turn_acknowledged", "turn_id": "u1"},
        {"event": "turn_lost", "turn_id": "u1"},
    ]
    progress = fold("job", records)
    assert progress.pending_turn is None and progress.thread_id == "t"
    assert progress.turns_done == 0 and progress.known_turns == ("u1",)


def test_finished_journals_are_compacted(tmp_path: Path) -> None:
    """Once its result is written, a job's journal shrinks to one snapshot file."""
    journals = Journals(tmp_path)
    with_events = journals.open("done")
    for n in range(50):
        with_events.append("continuation", turn_id=f"u{n}")
    with_events.append("result_written", status="completed")
    with_events.close()
    journals.compact("done")
    assert not journals.path("done").exists()
    progress = journals.progress("done")
    assert progress.finished and progress.status == "completed" and progress.continuations == 50
    assert set(journals.all_progress()) == {"done"}


def test_unfinished_journals_are_not_compacted(tmp_path: Path) -> None:
    """Compaction never drops the journal of a job still to be finished."""
    journals = Journals(tmp_path)
    journal = journals.open("busy")
    journal.append("accepted", task_file="f")
    journal.close()
    journals.compact("busy")
    assert journals.path("busy").exists()
