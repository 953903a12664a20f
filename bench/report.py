"""bench/RESULTS.md: the figures and the measurements of the rounds, what the tables do not
show, the workload, the machine, the exact commands and where time goes.

The prose is bench/report.md.tmpl's (see bench/template.py); this module works out what
fills it in: the cells (median and min-max over the rounds) and the tables' rows.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import figures
from cases import Case, show_command
from machine import machine, uncommitted, versions
from profiles import Profiles
from settings import JOB_CONNECTIONS, JOB_THREADS, MIB, SIZES, Settings
from spread import Results, Spread, cell, last_success, values
from template import fill

# A cell of a paragraph: case, key, format and the factor its values are shown at.
Cell = tuple[str, str, str, float]
IN_MIB = 1 / MIB  # KiB shown in MiB

# The paragraphs below the measurements table, in the template's order: each is written when
# its case (first) has values of its key, with its cells by placeholder.
# fmt: off
PARAGRAPHS: dict[str, tuple[tuple[str, str], dict[str, Cell]]] = {
    "trivial_turns": (("trivial", "median_ms"), {
        "early_ms": ("trivial", "early_ms", "{:.3f}", 1),
        "late_ms": ("trivial", "late_ms", "{:.3f}", 1),
        "median_ms": ("trivial", "median_ms", "{:.3f}", 1),
        "p99_ms": ("trivial", "p99_ms", "{:.3f}", 1),
        "turns_per_s": ("trivial", "turns_per_s", "{:,.0f}", 1),
        "peak_rss": ("trivial", "peak_rss_mib", "{:.1f}", 1),
    }),
    "idle_connections": (("idle", "per_connection_kib"), {
        "rss_none": ("idle", "rss_none_kib", "{:.1f}", IN_MIB),
        "rss_idle": ("idle", "rss_idle_kib", "{:.1f}", IN_MIB),
        "each": ("idle", "per_connection_kib", "{:.1f}", 1),
    }),
    "idle_websockets": (("idle-ws", "per_connection_kib"), {
        "rss_none": ("idle-ws", "rss_none_kib", "{:.1f}", IN_MIB),
        "rss_idle": ("idle-ws", "rss_idle_kib", "{:.1f}", IN_MIB),
        "each": ("idle-ws", "per_connection_kib", "{:.1f}", 1),
    }),
    "many_connections": (("many-chat", "elapsed_s"), {
        "chat_rate": ("many-chat", "events_per_s", "{:,.0f}", 1),
        "chat_elapsed": ("many-chat", "elapsed_s", "{:.2f}", 1),
        "chat_cpu": ("many-chat", "cpu_s", "{:.2f}", 1),
        "limit_rate": ("many-limit", "events_per_s", "{:,.0f}", 1),
        "limit_elapsed": ("many-limit", "elapsed_s", "{:.2f}", 1),
        "limit_cpu": ("many-limit", "cpu_s", "{:.2f}", 1),
    }),
    "job_overhead": (("jobs-scheduler", "elapsed_s"), {
        "bare_ms": ("jobs-bare", "ms_per_job", "{:.2f}", 1),
        "bare_cpu": ("jobs-bare", "cpu_s", "{:.2f}", 1),
        "scheduler_ms": ("jobs-scheduler", "ms_per_job", "{:.2f}", 1),
        "scheduler_cpu": ("jobs-scheduler", "cpu_s", "{:.2f}", 1),
        "tmpfs_ms": ("jobs-scheduler-tmpfs", "ms_per_job", "{:.2f}", 1),
        "tmpfs_cpu": ("jobs-scheduler-tmpfs", "cpu_s", "{:.2f}", 1),
        "records_ms": ("jobs-records", "ms_per_job", "{:.2f}", 1),
        "records_tmpfs_ms": ("jobs-records-tmpfs", "ms_per_job", "{:.2f}", 1),
    }),
    "daemon_jobs": (("soak", "elapsed_s"), {
        "second_ms": ("soak", "ms_per_job_second_window", "{:.2f}", 1),
        "last_ms": ("soak", "ms_per_job_last_window", "{:.2f}", 1),
        "second_rss": ("soak", "rss_second_window_kib", "{:.1f}", IN_MIB),
        "last_rss": ("soak", "rss_last_window_kib", "{:.1f}", IN_MIB),
    }),
    "approval_requests": (("approvals-stdio", "answer_p50_ms"), {
        "requests": ("approvals-stdio", "requests", "{:.0f}", 1),
        "rate": ("approvals-stdio", "events_per_s", "{:,.0f}", 1),
        "p50": ("approvals-stdio", "answer_p50_ms", "{:.1f}", 1),
        "p99": ("approvals-stdio", "answer_p99_ms", "{:.1f}", 1),
        "max": ("approvals-stdio", "answer_max_ms", "{:.1f}", 1),
    }),
    "step_log": (("steplog-jsonl", "elapsed_s"), {
        "null_rate": ("steplog-null", "steps_per_s", "{:,.0f}", 1),
        "null_cpu": ("steplog-null", "cpu_s", "{:.2f}", 1),
        "jsonl_rate": ("steplog-jsonl", "steps_per_s", "{:,.0f}", 1),
        "jsonl_cpu": ("steplog-jsonl", "cpu_s", "{:.2f}", 1),
        "log_mib": ("steplog-jsonl", "log_bytes", "{:.1f}", 1 / 2**20),
        "close_s": ("steplog-jsonl", "close_s", "{:.3f}", 1),
    }),
}
# fmt: on
BELOW_TABLE = ("trivial", "idle", "idle-ws")  # cases whose figures only the paragraphs give


def write_report(
    settings: Settings,
    cases: list[Case],
    results: Results,
    seed_note: str,
    extra_notes: list[str],
    profiles: Profiles | None,
    started: datetime.datetime,
) -> list[tuple[str, str, str, str]]:
    """Write the markdown report; return the summary rows for the terminal."""
    summary = figures.summary(settings, results)
    failed = [r["error"] for runs in results.values() for r in runs if "error" in r]
    notes = [*extra_notes, fill("failed", count=len(failed))] if failed else extra_notes
    text = fill(
        "report",
        **_words(settings),
        **_paragraphs(settings, results),
        quick=" " + fill("quick") if settings.quick else "",
        command=_command(settings),
        started=f"{started:%Y-%m-%d %H:%M}",
        rounds="1 round" if settings.repeat == 1 else f"{settings.repeat} rounds",
        best_of=" " + fill("best_of", best_of=settings.best_of) if settings.best_of > 1 else "",
        figure_rows="\n".join(f"| {' | '.join(row)} |" for row in summary),
        case_rows="\n".join(
            _case_row(case, results[case.name]) for case in cases if case.name not in BELOW_TABLE
        ),
        notes=fill("notes", notes="\n".join(f"- {note}" for note in notes)) if notes else "",
        workload=" ".join(settings.workload()),
        large_items=_large_items(settings),
        fleet_workload=" ".join(settings.fleet_workload()),
        steps_workload=" ".join(settings.steps_workload()),
        machine=_machine(seed_note),
        commands="\n".join(f"- {case.name}: `{show_command(case.argv)}`" for case in cases),
        profile="" if profiles is None else _profile(profiles, results),
    )
    settings.output.write_text(text + "\n")
    return summary


def _words(settings: Settings) -> dict[str, str]:
    """The settings as the prose shows them."""
    return {
        "notifications": f"{settings.notifications:,}",
        "turns": f"{settings.turns:,}",
        "window": str(settings.window),
        "early_turns": settings.early_turns,
        "fleet": str(settings.fleet),
        "fleet_notifications": f"{settings.fleet_notifications:,}",
        "jobs": f"{settings.jobs:,}",
        "connections": str(JOB_CONNECTIONS),
        "threads": str(JOB_THREADS),
        "soak_jobs": f"{settings.soak_jobs:,}",
        "soak_window": f"{settings.soak_window:,}",
        "soak_second_window": settings.soak_second_window,
        "request_every": f"{settings.request_every:,}",
        "log_steps": f"{settings.log_steps:,}",
    }


def _command(settings: Settings) -> str:
    """How this report is made again."""
    command = ".venv/bin/python bench/run.py" + (" --quick" if settings.quick else "")
    if settings.repeat != SIZES["repeat"][0 if settings.quick else 1]:
        command += f" --repeat {settings.repeat}"
    return command


def _case_row(case: Case, runs: list[dict[str, Any]]) -> str:
    """The case's line of the measurements table, with its failures."""
    failures = [r["error"] for r in runs if "error" in r]
    cells = [
        cell(values(runs, "events_per_s"), "{:,.0f}"),
        cell(values(runs, "elapsed_s"), "{:.2f}"),
        cell(values(runs, "rss_before_mib"), "{:.1f}"),
        cell(values(runs, "peak_rss_mib"), "{:.1f}"),
    ]
    what = case.what + (f" ({len(failures)} failed: {failures[0]})" if failures else "")
    return f"| {case.name} | {what} | " + " | ".join(cells) + " |"


def _paragraphs(settings: Settings, results: Results) -> dict[str, str]:
    """Each paragraph below the table, or "" where its case has no values."""
    words = _words(settings)
    filled = {}
    for name, ((case, key), cells) in PARAGRAPHS.items():
        if not values(results.get(case, []), key):
            filled[name] = ""
            continue
        shown = {
            slot: cell([v * scale for v in values(results.get(of, []), k)], fmt)
            for slot, (of, k, fmt, scale) in cells.items()
        }
        last_round = LAST_ROUND.get(name, lambda _: {})(last_success(results[case]))
        filled[name] = fill(name, **words, **shown, **last_round)
    return filled


def _trivial_state(last: dict[str, Any]) -> dict[str, str]:
    return {"client_state": json.dumps(last["client_state"])}


def _soak_windows(last: dict[str, Any]) -> dict[str, str]:
    return {
        "states_kept": str(last["states_kept"]),
        "journal_files": f"{last['journal_files']:,}",
        "windows": ", ".join(
            f"{w['ms_per_job']:.2f} ms/{w['rss_kib'] / MIB:.1f} MiB" for w in last["windows"]
        ),
    }


# What paragraphs take from the last round that succeeded, besides their cells.
LAST_ROUND: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "trivial_turns": _trivial_state,
    "daemon_jobs": _soak_windows,
}


def _large_items(settings: Settings) -> str:
    """The workload's clause on its large items, if it has them."""
    if not settings.large_every:
        return ""
    return fill("large_items", large_every=settings.large_every) + " "


def _machine(seed_note: str) -> str:
    """The machine, the versions and the seed."""
    changes = " " + fill("uncommitted") if uncommitted() else ""
    return fill("machine", **machine(), **versions(), uncommitted=changes, seed=seed_note)


def _profile(profiles: Profiles, results: Results) -> str:
    """'Where time goes': the per-event budget, then the layers and functions."""
    cprofile, sampled, commands = profiles
    section = fill(
        "profile",
        per_notification=_per_notification(results),
        commands=commands,
        sampled="" if sampled is None else _sampled(sampled),
        cprofile="" if cprofile is None else _cprofile(cprofile),
    )
    # The report has ended with a blank line unless the cProfile tables close it.
    return section if cprofile is not None else section + "\n"


def _per_notification(results: Results) -> str:
    limit = Spread.of(values(results.get("limit-stdio", []), "elapsed_s"))
    client = Spread.of(values(results.get("chat_once-stdio", []), "elapsed_s"))
    events = values(results.get("chat_once-stdio", []), "events")
    if not (limit and client and events):
        return ""
    per = 1e6 / events[0]
    return fill(
        "per_notification",
        limit=f"{limit.median * per:.1f}",
        client=f"{client.median * per:.1f}",
        added=f"{(client.median - limit.median) * per:.1f}",
    )


def _sampled(sampled: dict[str, Any]) -> str:
    total = sampled["total"]
    layers = [f"| {layer} | {count / total:.0%} |" for layer, count in sampled["layers"]]
    functions = [f"| `{name}` | {count / total:.1%} |" for name, count in sampled["rows"]]
    return fill("sampled", layers="\n".join(layers), functions="\n".join(functions))


def _cprofile(cprofile: dict[str, Any]) -> str:
    total = cprofile["total"]
    layers = [f"| {layer} | {seconds / total:.0%} |" for layer, seconds in cprofile["layers"]]
    functions = [
        f"| `{name}` | {tottime:.3f} | {cumtime:.3f} | {calls:,} |"
        for tottime, cumtime, calls, name in cprofile["rows"]
    ]
    return fill("cprofile", layers="\n".join(layers), functions="\n".join(functions))
