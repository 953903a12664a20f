"""The watched inbox: task files renamed in, and where they go once read.

<inbox_dir>/*.toml          task files dropped in (write elsewhere, then rename in)
<inbox_dir>/accepted/       accepted files, as `<stamp>-<name>.toml`
<inbox_dir>/rejected/       rejected files, each with `<name>.error` beside it
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator.store.files import ensure_dir, open_nofollow, refuse_link


class Inbox:
    """The watched directory and its accepted/ and rejected/ folders."""

    def __init__(self, inbox_dir: Path) -> None:
        self.root = ensure_dir(inbox_dir)
        # Below the inbox nothing is followed: a linked accepted/ or rejected/ would move task
        # files (and write .error files) anywhere.
        self.accepted = ensure_dir(refuse_link(self.root / "accepted"))
        self.rejected = ensure_dir(refuse_link(self.root / "rejected"))

    def waiting(self) -> list[Path]:
        """Complete task files waiting, oldest first (dot-files are still being written)."""
        files = [p for p in self.root.glob("*.toml") if not p.name.startswith(".") and p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def move_to_accepted(self, path: Path) -> Path:
        """Move a file into accepted/ under a unique name; returns the new path."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.accepted / f"{stamp}-{path.name}"
        n = 1
        while target.exists():
            n += 1
            target = self.accepted / f"{stamp}-{n}-{path.name}"
        os.replace(path, target)
        return target

    def reject(self, path: Path, problems: tuple[str, ...], name: str | None = None) -> Path:
        """Move a file into rejected/ (as `name`, default its own) with a `.error` file
        naming every problem."""
        target = self.rejected / (name or path.name)
        if target.exists():
            target = self.rejected / f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}"
        os.replace(path, target)
        error = target.with_suffix(".error")
        # The problems name the file where it was read; name it where it now is.
        lines = [problem.replace(str(path), str(target)) for problem in problems]
        fd = open_nofollow(error, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(error, 0o600)
        return target
