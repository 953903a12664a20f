"""Run every benchmark and write bench/RESULTS.md.

    .venv/bin/python bench/run.py [--quick] [--repeat N]

Each measurement is a fresh process (bench/measure.py, or bench/seed_measure.py under the
seed's own virtual environment) that prints one JSON line; its peak RSS is its own. Every
repeat runs every case once, in the same order, so that a noisy moment hits a whole round
rather than one case. A figure is a ratio against a reference measured in the same round; the
report gives the median over rounds with min-max.

`--quick` (1 round, 2,000 notifications, 200 turns, 10 connections, 100 jobs, 5,000 logged
steps, no seed, no profile) finishes in under a minute and writes bench/RESULTS-quick.md
(git-ignored): CI runs it to catch a benchmark that crashes, without asserting on time. The
exit status is 1 when a measurement of the project's code failed, 0 otherwise (the seed
failing is recorded, not fatal).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import figures
import seed
from cases import Case, build_cases, seed_case, show_command
from profiles import run_profiles
from rounds import crashed, run_case, run_rounds
from settings import JOB_CONNECTIONS, JOB_THREADS, MIB, ROOT, Settings
from spread import Spread, last_success, values
from spread import cell as _cell

IMPORT_PROBES = (
    ("the interpreter alone", "pass"),
    ("`import trio`", "import trio"),
    ("`import trio, wsproto`", "import trio, wsproto"),
    ("`import orchestrator.client`", "import orchestrator.client"),
    (
        "`import orchestrator.transport.websocket`",
        "import orchestrator.client, orchestrator.transport.websocket",
    ),
)


# What bench/measure.py's peak_rss_kib does, without importing anything else.
PRINT_PEAK_RSS = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(line.split()[1])
"""


def import_baselines() -> str:
    """Peak RSS of interpreters that only import, for scale next to the RSS figures."""
    shown = []
    for what, code in IMPORT_PROBES:
        probe = f"{code}\n{PRINT_PEAK_RSS}"
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
        )
        value = done.stdout.strip()
        shown.append(f"{what} {int(value) / MIB:.1f} MiB" if value.isdigit() else f"{what} ?")
    return (
        "Peak RSS of a Python process that only imports (same interpreter): "
        + ", ".join(shown)
        + ". The client's RSS before its turn starts is this plus the connection."
    )


# -- report ---------------------------------------------------------------------------------


def machine() -> list[str]:
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem_text = f"{int(memory) / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        mem_text = "RAM unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- {platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} CPUs, {mem_text}",
        f"- load average at the start: {load}",
    ]


def versions(seed_note: str) -> list[str]:
    """Interpreters and libraries involved."""

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain", "--", "orchestrator"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    libs = ", ".join(
        f"{name} {version(name)}"
        for name in ("trio", "trio-websocket", "wsproto", "attrs", "structlog")
    )
    return [
        f"- Python {platform.python_version()} ({sys.executable.replace(str(ROOT) + '/', '')}),"
        f" {libs}",
        f"- codex-orchestrator {version('codex-orchestrator')} at commit {commit or '?'}"
        + (" with uncommitted changes in orchestrator/" if dirty else ""),
        f"- seed: {seed_note}",
    ]


def write_report(
    settings: Settings,
    cases: list[Case],
    results: dict[str, list[dict[str, Any]]],
    seed_note: str,
    extra_notes: list[str],
    profiles: tuple[dict[str, Any] | None, dict[str, Any] | None, str] | None,
    started: datetime.datetime,
) -> list[tuple[str, str, str, str]]:
    """Write the markdown report; return the summary rows for the terminal."""
    command = ".venv/bin/python bench/run.py" + (" --quick" if settings.quick else "")
    if settings.repeat != (1 if settings.quick else 5):
        command += f" --repeat {settings.repeat}"
    rounds = "1 round" if settings.repeat == 1 else f"{settings.repeat} rounds"
    out = [
        "# Benchmark results" + (" (quick mode: a smoke test only)" if settings.quick else ""),
        "",
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, {rounds}. Each measurement is a fresh "
        "process; a ratio compares two measurements of the same round, and each figure is the "
        "median over rounds with the min-max in brackets. Generated by bench/run.py; "
        "bench/README.md explains the method and reads the profile."
        + (
            f" The throughput cases (limit-*, chat-*, chat_once-* but the seed comparison's) "
            f"run their turn {settings.best_of} times in their process, each time with a "
            "fresh server, and count the fastest run (memory: the first run's)."
            if settings.best_of > 1
            else ""
        ),
        "",
        "## Figures",
        "",
        "| figure | result | target | |",
        "| --- | --- | --- | --- |",
    ]
    summary = figures.summary(settings, results)
    out += [f"| {' | '.join(row)} |" for row in summary]
    out += [
        "",
        "## Measurements",
        "",
        "| case | what | events/s | elapsed s | RSS before turn MiB | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        runs = results[case.name]
        failures = [r["error"] for r in runs if "error" in r]
        if case.name in ("trivial", "idle", "idle-ws"):
            continue  # described below the table
        cells = [
            _cell(values(runs, "events_per_s"), "{:,.0f}"),
            _cell(values(runs, "elapsed_s"), "{:.2f}"),
            _cell(values(runs, "rss_before_mib"), "{:.1f}"),
            _cell(values(runs, "peak_rss_mib"), "{:.1f}"),
        ]
        what = case.what + (f" ({len(failures)} failed: {failures[0]})" if failures else "")
        out.append(f"| {case.name} | {what} | " + " | ".join(cells) + " |")
    trivial = results.get("trivial", [])
    if values(trivial, "median_ms"):
        last = last_success(trivial)
        out += [
            "",
            f"Trivial turns ({settings.turns:,} `chat_once` turns on one thread and one "
            f"connection; windows of {settings.window} turns): turn latency "
            f"{_cell(values(trivial, 'early_ms'), '{:.3f}')} ms at turns 10-{9 + settings.window},"
            f" {_cell(values(trivial, 'late_ms'), '{:.3f}')} ms over the last {settings.window};"
            f" median of all turns {_cell(values(trivial, 'median_ms'), '{:.3f}')} ms, p99 "
            f"{_cell(values(trivial, 'p99_ms'), '{:.3f}')} ms; "
            f"{_cell(values(trivial, 'turns_per_s'), '{:,.0f}')} turns/s; peak RSS "
            f"{_cell(values(trivial, 'peak_rss_mib'), '{:.1f}')} MiB. Client state after "
            f"the last turn: `{json.dumps(last['client_state'])}`.",
        ]
    out += scale_paragraphs(settings, results)
    failed = [r["error"] for runs in results.values() for r in runs if "error" in r]
    if failed:
        extra_notes = [*extra_notes, f"{len(failed)} measurement(s) failed; see the table."]
    if extra_notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in extra_notes]
    out += [
        "",
        "## Workload",
        "",
        f"`bench/fake_server.py {' '.join(settings.workload())}` with its defaults: one turn of "
        f"exactly {settings.notifications:,} notifications: items of rotating type (agent "
        "message, reasoning, command), each `item/started`, 20 deltas of 24 characters, "
        "`item/completed` with 480 characters of text; after every 5th item "
        "`thread/tokenUsage/updated` and `account/rateLimits/updated` (no thread or turn id, "
        "as the real server sends it); "
        + (
            f"every {settings.large_every}th item is a command whose output is 64 KiB-4 MiB "
            "(64 KiB, 128 KiB, ... 4 MiB, then again); "
            if settings.large_every
            else ""
        )
        + "mixed ASCII and non-ASCII text. The `-small` cases use `--large-every 0`: the seed "
        "reads stdout with asyncio's `readline`, whose default 64 KiB limit makes it fail on "
        "the first larger line. The server encodes the whole turn before it answers "
        "`initialize` and writes it in 1 MiB batches, so it is never the bottleneck.",
        "",
        f"Many connections: each of the {settings.fleet} servers streams "
        f"`{' '.join(settings.fleet_workload())}`, the same shape without large items. "
        "Jobs and idle connections: `--trivial`, every turn a `turn/started`, one agent message "
        "(started, one delta, completed), usage, rate limits, `turn/completed`. Step log: "
        f"`{' '.join(settings.steps_workload())}`, exactly {settings.log_steps:,} completed "
        "items of 480 characters and their `item/started`, nothing else.",
        "",
        "## Machine and versions",
        "",
        *machine(),
        *versions(seed_note),
        "",
        "## Exact commands (from the checkout's root)",
        "",
    ]
    out += [f"- {case.name}: `{show_command(case.argv)}`" for case in cases]
    if profiles is not None:
        out += profile_section(profiles, results)
    settings.output.write_text("\n".join(out) + "\n")
    return summary


def scale_paragraphs(settings: Settings, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What the table does not show of the many-connection, job and step-log cases."""

    def cell(case: str, key: str, fmt: str, scale: float = 1.0) -> str:
        return _cell([v * scale for v in values(results.get(case, []), key)], fmt)

    out = []
    if values(results.get("idle", []), "per_connection_kib"):
        out += [
            "",
            f"Idle connections: resident set {cell('idle', 'rss_none_kib', '{:.1f}', 1 / MIB)}"
            f" MiB with none (one connection opened and closed before, to pay one-time costs),"
            f" {cell('idle', 'rss_idle_kib', '{:.1f}', 1 / MIB)} MiB with {settings.fleet} "
            "initialized idle ones: "
            f"{cell('idle', 'per_connection_kib', '{:.1f}')} KiB each. The pipes and the "
            "app-servers' own memory are outside this process.",
        ]
    if values(results.get("idle-ws", []), "per_connection_kib"):
        out += [
            "",
            "Idle websocket connections (all to one server, a keepalive task each): resident "
            f"set {cell('idle-ws', 'rss_none_kib', '{:.1f}', 1 / MIB)} MiB with none, "
            f"{cell('idle-ws', 'rss_idle_kib', '{:.1f}', 1 / MIB)} MiB with {settings.fleet}: "
            f"{cell('idle-ws', 'per_connection_kib', '{:.1f}')} KiB each.",
        ]
    if values(results.get("many-chat", []), "elapsed_s"):
        out += [
            "",
            f"Many connections ({settings.fleet} x {settings.fleet_notifications:,} "
            "notifications): the clients read "
            f"{cell('many-chat', 'events_per_s', '{:,.0f}')} events/s in "
            f"{cell('many-chat', 'elapsed_s', '{:.2f}')} s using "
            f"{cell('many-chat', 'cpu_s', '{:.2f}')} s of CPU; the bare readers "
            f"{cell('many-limit', 'events_per_s', '{:,.0f}')} events/s in "
            f"{cell('many-limit', 'elapsed_s', '{:.2f}')} s using "
            f"{cell('many-limit', 'cpu_s', '{:.2f}')} s of CPU.",
        ]
    if values(results.get("jobs-scheduler", []), "elapsed_s"):
        out += [
            "",
            f"Jobs ({settings.jobs:,} one-turn jobs, {JOB_CONNECTIONS} connections x "
            f"{JOB_THREADS} threads): bare `chat_once` {cell('jobs-bare', 'ms_per_job', '{:.2f}')}"
            f" ms per job of wall time ({cell('jobs-bare', 'cpu_s', '{:.2f}')} s of CPU in all); "
            f"the scheduler {cell('jobs-scheduler', 'ms_per_job', '{:.2f}')} ms "
            f"({cell('jobs-scheduler', 'cpu_s', '{:.2f}')} s of CPU), with results on tmpfs "
            f"{cell('jobs-scheduler-tmpfs', 'ms_per_job', '{:.2f}')} ms "
            f"({cell('jobs-scheduler-tmpfs', 'cpu_s', '{:.2f}')} s of CPU). Per job the "
            "scheduler makes the job's directory, writes `steps.jsonl` (four records) and "
            "`result.json` (a temporary file renamed), on the event loop's thread, and the run "
            "syncs once at its end (an `orchestrator run` does not fsync per job). Those files "
            "written alone, with the same functions and no turn, take "
            f"{cell('jobs-records', 'ms_per_job', '{:.2f}')} ms per job on disk and "
            f"{cell('jobs-records-tmpfs', 'ms_per_job', '{:.2f}')} ms on tmpfs: creating a "
            "directory and two files costs this machine's disk more than a trivial turn costs "
            "the client.",
        ]
    soak = results.get("soak", [])
    if values(soak, "elapsed_s"):
        last = last_success(soak)
        out += [
            "",
            f"Daemon jobs ({settings.soak_jobs:,} one-turn jobs submitted to `Scheduler.serve` "
            "while fewer than two per slot are in it, each journaled and its records fsynced, "
            f"{JOB_CONNECTIONS} connections x {JOB_THREADS} threads): "
            f"{_cell(values(soak, 'ms_per_job_second_window'), '{:.2f}')} ms per job over jobs "
            f"{settings.soak_window + 1:,}-{2 * settings.soak_window:,}, "
            f"{_cell(values(soak, 'ms_per_job_last_window'), '{:.2f}')} ms over the last "
            f"{settings.soak_window:,}; resident set "
            f"{cell('soak', 'rss_second_window_kib', '{:.1f}', 1 / MIB)} MiB after the "
            f"second window, {cell('soak', 'rss_last_window_kib', '{:.1f}', 1 / MIB)} "
            "MiB after the last. Jobs left in memory at the end: "
            f"{last['states_kept']}; journal files: {last['journal_files']:,} (one per job). "
            "Per window (last round): "
            + ", ".join(
                f"{w['ms_per_job']:.2f} ms/{w['rss_kib'] / MIB:.1f} MiB" for w in last["windows"]
            )
            + ".",
        ]
    if values(results.get("approvals-stdio", []), "answer_p50_ms"):
        out += [
            "",
            f"Approval requests mid-stream (`chat` over stdio, a request after every "
            f"{settings.request_every:,} lines of the turn, "
            f"{cell('approvals-stdio', 'requests', '{:.0f}')} in all, each accepted by an "
            "approval handler; the server streams on without waiting, and ends the turn once "
            "every answer is in): every request answered; "
            f"{cell('approvals-stdio', 'events_per_s', '{:,.0f}')} events/s. From the moment "
            "the server has written a request to the moment it reads the answer: median "
            f"{cell('approvals-stdio', 'answer_p50_ms', '{:.1f}')} ms, p99 "
            f"{cell('approvals-stdio', 'answer_p99_ms', '{:.1f}')} ms, max "
            f"{cell('approvals-stdio', 'answer_max_ms', '{:.1f}')} ms. Most of it is the "
            "stream ahead of the request: the client reads in order, and the server's stdout "
            "pipe holds up to 1 MiB (the client enlarges it for throughput), a few "
            "milliseconds of reading at this rate. A real server waits for the answer and "
            "sends little meanwhile.",
        ]
    if values(results.get("steplog-jsonl", []), "elapsed_s"):
        out += [
            "",
            f"Step log ({settings.log_steps:,} steps): dropped, "
            f"{cell('steplog-null', 'steps_per_s', '{:,.0f}')} steps/s "
            f"({cell('steplog-null', 'cpu_s', '{:.2f}')} s of CPU); written, "
            f"{cell('steplog-jsonl', 'steps_per_s', '{:,.0f}')} steps/s "
            f"({cell('steplog-jsonl', 'cpu_s', '{:.2f}')} s of CPU), "
            f"{cell('steplog-jsonl', 'log_bytes', '{:.1f}', 1 / 2**20)} MiB of `steps.jsonl`, "
            f"whose closing fsync took {cell('steplog-jsonl', 'close_s', '{:.3f}')} s "
            "(after the timed window).",
        ]
    return out


def profile_section(
    profiles: tuple[dict[str, Any] | None, dict[str, Any] | None, str],
    results: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """'Where time goes': the per-event budget, then the layers and functions."""
    cprofile, sampled, commands = profiles
    out = ["", "## Where time goes", ""]
    limit = Spread.of(values(results.get("limit-stdio", []), "elapsed_s"))
    client = Spread.of(values(results.get("chat_once-stdio", []), "elapsed_s"))
    events = values(results.get("chat_once-stdio", []), "events")
    if limit and client and events:
        per = 1e6 / events[0]
        out += [
            f"Per notification (medians): the bare reader spends {limit.median * per:.1f} µs, "
            f"`chat_once` {client.median * per:.1f} µs; the client adds "
            f"{(client.median - limit.median) * per:.1f} µs on top of reading and parsing.",
            "",
        ]
    out += [f"Profiles of one `chat_once` run of the stdio turn: {commands}.", ""]
    if sampled is not None:
        total = sampled["total"]
        out += [
            "Sampled (py-spy, 1 kHz, no overhead on the measured code), self time by layer, "
            "samples inside `trio.run` only:",
            "",
            "| layer | share |",
            "| --- | --- |",
        ]
        out += [f"| {layer} | {count / total:.0%} |" for layer, count in sampled["layers"]]
        out += ["", "| function (sampled self time) | share |", "| --- | --- |"]
        out += [f"| `{name}` | {count / total:.1%} |" for name, count in sampled["rows"]]
        out.append("")
    if cprofile is not None:
        total = cprofile["total"]
        out += [
            "Deterministic (cProfile, the timed window only; it inflates functions that are "
            "called often), self time by layer:",
            "",
            "| layer | share |",
            "| --- | --- |",
        ]
        out += [f"| {layer} | {seconds / total:.0%} |" for layer, seconds in cprofile["layers"]]
        out += ["", "| function | self s | cumulative s | calls |", "| --- | --- | --- | --- |"]
        out += [
            f"| `{name}` | {tottime:.3f} | {cumtime:.3f} | {calls:,} |"
            for tottime, cumtime, calls, name in cprofile["rows"]
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, write the report, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test in under a minute")
    parser.add_argument("--repeat", type=int, default=0, help="rounds (default 5; quick: 1)")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed client")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    settings = Settings.from_args(parser.parse_args(argv))
    started = datetime.datetime.now(datetime.UTC)
    notes: list[str] = []
    seed_python, seed_note = seed.prepare(settings)
    if settings.seed and seed_python is None:
        notes.append(f"The seed could not be set up, so it was not measured: {seed_note}.")
    print(f"seed: {seed_note}", flush=True)
    cases = build_cases(settings, seed_python)
    notes.append(import_baselines())
    results = run_rounds(settings, cases)
    if seed_python is not None:
        what = "seed on the full workload"
        large = seed_case("seed-stdio-large", seed_python, settings.workload(), what)
        probe = run_case(large)
        outcome = probe.get("error") or f"{probe['events_per_s']:,.0f} events/s"
        notes.append(
            f"The seed on the full workload (with items over 64 KiB), run once: {outcome}. "
            "It reads stdout with asyncio's `StreamReader.readline` and its default 64 KiB "
            "limit: the first longer line ends its reader and fails the turn."
        )
        print(f"seed on the full workload: {outcome}", flush=True)
    profiles = run_profiles(settings) if settings.profile else None
    summary = write_report(settings, cases, results, seed_note, notes, profiles, started)
    width = max(len(row[0]) for row in summary)
    print()
    for title, shown, target, verdict in summary:
        print(f"{title:<{width}}  {shown:<28} {target:<22} {verdict}")
    print(f"\nwrote {settings.output.relative_to(ROOT)}")
    failed = crashed(cases, results)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
