"""Record files: timestamps, atomic JSON writes, and the JSON log renderer."""

from __future__ import annotations

import datetime
import json
import os
import re
import stat
from pathlib import Path

import attrs
import pytest

from orchestrator._util import logs
from orchestrator.protocol.values import TurnStatus
from orchestrator.store import files
from orchestrator.store.files import utc_now, write_json_atomic
from orchestrator.store.records import TurnOutcome

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def _expected(now: float) -> str:
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(now % 1 * 1000):03d}Z"


def test_utc_now_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The formatted second is reused within a second and redone when the clock moves on
    (or back)."""
    for now in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0005, 1_699_999_999.5):
        monkeypatch.setattr(files.time, "time", lambda now=now: now)
        assert utc_now() == _expected(now)
    monkeypatch.undo()
    assert STAMP.match(utc_now())


def test_atomic_write_leaves_a_private_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "job" / "result.json"
    write_json_atomic(path, {"status": "completed", "text": "héllo"}, durable=False)
    write_json_atomic(path, {"status": "failed"})
    assert json.loads(path.read_text()) == {"status": "failed"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_atomic_write_skips_a_leftover_temporary_name(tmp_path: Path) -> None:
    """A temporary file left by a dead process with our pid (or a planted link) is neither
    overwritten nor followed: the next name is used."""
    path = tmp_path / "result.json"
    write_json_atomic(path, {"n": 1})
    following = next(files._temporary_names) + 1
    stale = tmp_path / f".result.json.{os.getpid()}.{following}.tmp"
    stale.symlink_to(tmp_path / "elsewhere")
    write_json_atomic(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert stale.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_a_failed_atomic_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"n": 1})

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_turn_record_has_every_field() -> None:
    """`as_record` is written out by hand (it runs per job); it must not miss a field."""
    outcome = TurnOutcome("turn-1", TurnStatus.FAILED, "text", continuations=2, error="boom")
    assert outcome.as_record() == attrs.asdict(outcome)


def test_json_log_lines_survive_awkward_values() -> None:
    """What msgspec cannot encode (a lone surrogate, an integer over 64 bits, an object)
    still makes one valid JSON line; secrets stay masked."""
    event = {
        "event": "x",
        "api_key": "sk-123456",
        "half": "\ud83d",
        "big": 2**70,
        "path": Path("/tmp/x"),
        "text": "héllo",
    }
    line = logs._render_json(None, "info", logs._redact_event(None, "info", dict(event)))
    assert "\n" not in line
    decoded = json.loads(line)
    assert decoded["api_key"] == logs.MASK
    assert decoded["half"] == "\ud83d" and decoded["big"] == 2**70
    assert decoded["path"] == repr(Path("/tmp/x")) and decoded["text"] == "héllo"
    plain = logs._render_json(None, "info", {"event": "job completed", "job": "a"})
    assert json.loads(plain) == {"event": "job completed", "job": "a"}
