"""Running the cases: one process per measurement, every case once per round.

Every round runs every case in the same order, so that a noisy moment on the machine hits a
whole round rather than one case; the figures compare cases within a round.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from cases import Case
from settings import MIB, ROOT, Settings
from spread import Results


def run_case(case: Case) -> dict[str, Any]:
    """Run one measurement process; its last stdout line is the result."""
    try:
        done = subprocess.run(
            case.argv, cwd=ROOT, capture_output=True, text=True, timeout=case.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {case.timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if done.returncode != 0 or not result or "error" in result:
        tail = done.stderr.strip().splitlines()[-3:]
        reason = result.get("error") or " / ".join(tail) or f"exit status {done.returncode}"
        return {"error": reason}
    if "peak_rss_kib" in result:
        result["peak_rss_mib"] = result["peak_rss_kib"] / MIB
        result["rss_before_mib"] = result["rss_before_kib"] / MIB
    return result


def run_rounds(settings: Settings, cases: list[Case]) -> Results:
    """Every case once per round; results per case, in round order."""
    results: Results = {case.name: [] for case in cases}
    for number in range(1, settings.repeat + 1):
        for case in cases:
            result = run_case(case)
            results[case.name].append(result)
            print(f"round {number}/{settings.repeat} {case.name}: {_brief(result)}", flush=True)
    return results


def crashed(cases: list[Case], results: Results) -> list[str]:
    """The project's cases that failed in some round (the seed's failures are findings)."""
    return [
        case.name
        for case in cases
        if case.project and any("error" in r for r in results[case.name])
    ]


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED: {result['error']}"
    if "events_per_s" in result:
        return (
            f"{result['events_per_s']:,.0f} events/s in {result['elapsed_s']:.2f} s, "
            f"peak RSS {result['peak_rss_mib']:.1f} MiB"
        )
    if "jobs_per_s" in result:
        return (
            f"{result['jobs']:,} jobs in {result['elapsed_s']:.2f} s "
            f"({result['ms_per_job']:.2f} ms each), peak RSS {result['peak_rss_mib']:.1f} MiB"
        )
    if "slowdown" in result:
        return (
            f"{result['jobs']:,} daemon jobs in {result['elapsed_s']:.2f} s, last window "
            f"{result['slowdown']:.2f}x the second, RSS {result['rss_second_window_kib'] / MIB:.1f}"
            f" -> {result['rss_last_window_kib'] / MIB:.1f} MiB"
        )
    if "per_connection_kib" in result:
        return (
            f"{result['per_connection_kib']:.1f} KiB per idle connection "
            f"({result['rss_none_kib'] / MIB:.1f} -> {result['rss_idle_kib'] / MIB:.1f} MiB)"
        )
    return f"turn {result['early_ms']:.3f} ms -> {result['late_ms']:.3f} ms"
