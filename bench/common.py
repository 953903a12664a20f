"""What every measurement mode shares: the fake server's command line and the timed window.

Imports nothing from the project, so that a reference's peak RSS does not include the
client's modules.
"""

from __future__ import annotations

import cProfile
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SERVER = BENCH / "fake_server.py"
TIMEOUT = 600.0


def server_argv(workload: list[str]) -> list[str]:
    """The fake app-server command for a workload.

    Over stdio the server needs only the standard library, so it starts without `site`
    (`-S`): that halves its start-up, which counts when a case starts a hundred of them.
    """
    lean = [] if any(option.startswith("--listen") for option in workload) else ["-S"]
    return [sys.executable, *lean, str(SERVER), *workload]


class Timer:
    """The timed window, with an optional cProfile of exactly that window.

    `elapsed` is wall time (what the figures use); `cpu` is this process's CPU time in the
    window, which other load on the machine moves less.
    """

    def __init__(self, profile_path: str | None = None) -> None:
        self._profile = cProfile.Profile() if profile_path else None
        self._path = profile_path
        self.start = 0.0
        self.elapsed = 0.0
        self._cpu_start = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timer:
        if self._profile is not None:
            self._profile.enable()
        self._cpu_start = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.perf_counter() - self.start
        self.cpu = time.process_time() - self._cpu_start
        if self._profile is not None and self._path is not None:
            self._profile.disable()
            self._profile.dump_stats(self._path)
