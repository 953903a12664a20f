"""Atomic JSON files and append-only JSONL logs, private to the user (0700 dirs, 0600 files).

Nothing here writes through a symbolic link below a root directory: `ensure_dir` hands back
the root's real path (a linked results or state directory is the user's choice), and from
there on a link where a record goes (a job's directory, a step log, a journal) would send
our writes anywhere on the disk, so writers refuse it with `UnsafePath`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.errors import UnsafePath

__all__ = [
    "JsonlLog",
    "UnsafePath",
    "ensure_dir",
    "open_append_nofollow",
    "open_nofollow",
    "read_json",
    "record_dir",
    "refuse_link",
    "utc_now",
    "write_json_atomic",
]

DIR_MODE = 0o700
FILE_MODE = 0o600


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, for records.

    Every record of every job carries one: the formatted second is reused until the clock
    moves past it (`strftime` costs more than the rest of a small record).
    """
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int(now % 1 * 1000):03d}Z"


def ensure_dir(path: Path) -> Path:
    """Create a private directory (and parents) if missing; returns its real path.

    Build records' paths on the returned path: below it, the writers here refuse links.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path.resolve()


def record_dir(path: str | Path) -> None:
    """Make sure the directory a record goes into exists (private), and is not a link.

    One `lstat` when it exists: this runs for every record file written, so it skips what
    `ensure_dir` does for roots (resolving the real path).

    Raises:
        UnsafePath: it is a symbolic link.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        try:
            os.mkdir(path, DIR_MODE)  # a new job's directory: its parent is there
        except FileNotFoundError:
            os.makedirs(path, mode=DIR_MODE, exist_ok=True)
        except FileExistsError:  # made meanwhile (or a link planted meanwhile): look again
            record_dir(path)
        return
    if stat.S_ISLNK(mode):
        refuse_link(Path(path))


def refuse_link(path: Path) -> Path:
    """The path itself, unless it is a symbolic link.

    Raises:
        UnsafePath: it is one (dangling or not).
    """
    if path.is_symlink():
        raise UnsafePath(
            f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through "
            "it: remove it"
        )
    return path


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: Any, *, durable: bool = True) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one.

    `durable`: fsync the file and its directory before returning, so the new file survives
    a power loss too (the daemon journals a result as written only after this). Without it
    the file is still atomic against a crash of this process.

    A link at `path` itself is replaced, not followed; its directory must not be a link.
    """
    document = _json_document(data)
    # Plain strings from here: this runs once per job, and pathlib's operations cost more
    # than the system calls on a fast disk.
    target = os.fspath(path)
    directory = os.path.dirname(target)
    record_dir(directory)
    fd, tmp = _create_temporary(directory, os.path.basename(target))
    try:
        try:
            _write_all(fd, document)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


_temporary_names = itertools.count()


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new private file `.<name>.<pid>.<n>.tmp` in `directory`, created exclusively and
    never through a link. Names are unique within this process, and a leftover from a dead
    process with the same pid is simply skipped."""
    while True:
        tmp = f"{directory}/.{name}.{os.getpid()}.{next(_temporary_names)}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(tmp, flags, FILE_MODE), tmp
        except FileExistsError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # short writes are rare on files, but allowed
        written += os.write(fd, data[written:])


def open_nofollow(path: str | Path, flags: int) -> int:
    """`os.open` (creating files 0600), never through a symbolic link.

    A link planted where a log, a journal or a lock goes would make us write to its target,
    anywhere on the disk; even a dangling one would create that target.

    Raises:
        UnsafePath: `path` is a symbolic link.
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(Path(path))
        raise


def open_append_nofollow(path: str | Path) -> int:
    """Open (creating it 0600) a file to append to, never through a symbolic link."""
    return open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def read_json(path: Path) -> Any:
    """Parse a JSON file, or None when it is missing, a symbolic link or not JSON (a link
    planted as a job's result.json must not make it look completed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):
        return None


# msgspec (the parser behind protocol/jsoncodec.py) encodes a step record about eight times
# faster than the standard library, and the log's cost lands on the reader's thread, per
# step. Its output is the same compact UTF-8 JSON, except that a NaN becomes null (JSON has
# no NaN) and exponents are written without a leading zero (1e-07 -> 1e-7).
_LINE_ENCODER = msgspec.json.Encoder()
_ASCII_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _json_document(data: Any) -> bytes:
    """Indented UTF-8 JSON for files people read (result.json, summary.json)."""
    try:
        return msgspec.json.format(_LINE_ENCODER.encode(data), indent=2) + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (half an emoji in a final text) has no UTF-8 form: escape it.
        return json.dumps(data, indent=2).encode("ascii") + b"\n"


def _jsonl_line(record: dict[str, Any]) -> bytes:
    """One record as a UTF-8 JSON line."""
    try:
        return _LINE_ENCODER.encode(record) + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (a server's "\ud83d" escape: half an emoji) has no UTF-8 form;
        # escaped, the line is still valid JSON and reads back as the same string.
        return _ASCII_LINE_ENCODER.encode(record).encode("ascii") + b"\n"


class JsonlLog:
    """An append-only JSONL file, one record per line, flushed after every record.

    Each record goes to the OS in one `write` of its own: no buffer in this process holds
    records back, so a crash of the process loses none that `append` returned for; `close`
    also fsyncs.
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        file = os.fspath(path)
        record_dir(os.path.dirname(file))
        self.path = path
        self.durable = durable  # fsync at close
        self._fd: int | None = open_append_nofollow(file)
        self.records = 0

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and flush it to the OS."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the log is closed")
        _write_all(self._fd, _jsonl_line(record))
        self.records += 1

    def close(self) -> None:
        """fsync (when durable) and close (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
