"""One daemon per state directory: `<state_dir>/daemon.lock`, held with flock for its life."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import DaemonError
from orchestrator.store.files import ensure_dir, open_nofollow

LOCK_FILE = "daemon.lock"


@contextlib.contextmanager
def daemon_lock(state_dir: Path) -> Iterator[None]:
    """Hold `<state_dir>/daemon.lock` for the daemon's life; refuse a second daemon.

    Raises:
        DaemonError: another daemon holds it (the message names its pid).
    """
    path = ensure_dir(state_dir) / LOCK_FILE
    # Never through a link: a planted one would have us overwrite its target with our pid.
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DaemonError(
                f"another orchestrator daemon (pid {pid}) is already running on {state_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def running_daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding the state dir's lock, or None when none runs."""
    path = state_dir / LOCK_FILE
    if not path.exists():
        return None
    fd = open_nofollow(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
