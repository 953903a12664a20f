"""Resident set size of the running process, peak and current; shared by the project's and
the seed's measurements (no project imports: the seed's venv has no orchestrator)."""

from __future__ import annotations

import resource


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB.

    Read from VmHWM in /proc/self/status where there is one: `ru_maxrss` of a process that
    was started by fork + exec also counts the parent's resident set at the fork (Linux
    keeps the larger of the two), so it can never show less than the driver's own size.
    """
    peak = _status_kib(b"VmHWM:")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if peak is None else peak


def current_rss_kib() -> int:
    """This process's resident set size now (VmRSS), in KiB; 0 where /proc is missing."""
    return _status_kib(b"VmRSS:") or 0


def _status_kib(field: bytes) -> int | None:
    """A field of /proc/self/status in KiB; None where there is no such line (or file)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
