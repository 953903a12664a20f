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

The steps live in modules of their own: settings.py (what an invocation measures), seed.py
(the seed's environment), cases.py (the table of cases), baselines.py (import-only RSS),
rounds.py (running the cases), profiles.py, figures.py (figures and targets), report.py with
report.md.tmpl (the report and its prose).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import seed
from baselines import import_baselines
from cases import build_cases, seed_case
from profiles import run_profiles
from report import write_report
from rounds import crashed, run_case, run_rounds
from settings import ROOT, Settings
from template import fill


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test in under a minute")
    parser.add_argument("--repeat", type=int, default=0, help="rounds (default 5; quick: 1)")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed client")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    return parser.parse_args(argv)


def seed_on_large_items(settings: Settings, seed_python: Path) -> str:
    """The seed once on the full workload, whose large items are lines over its reader's
    limit: the report's note on how it fares."""
    case = seed_case(
        "seed-stdio-large", seed_python, settings.workload(), "seed on the full workload"
    )
    probe = run_case(case)
    outcome = probe.get("error") or f"{probe['events_per_s']:,.0f} events/s"
    print(f"seed on the full workload: {outcome}", flush=True)
    return fill("seed_large", outcome=outcome)


def print_summary(summary: list[tuple[str, str, str, str]]) -> None:
    """The figures, one a line, for the terminal."""
    width = max(len(row[0]) for row in summary)
    print()
    for title, shown, target, verdict in summary:
        print(f"{title:<{width}}  {shown:<28} {target:<22} {verdict}")


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, write the report, print a summary."""
    settings = Settings.from_args(parse_args(argv))
    started = datetime.datetime.now(datetime.UTC)
    notes: list[str] = []
    seed_python, seed_note = seed.prepare(settings)
    if settings.seed and seed_python is None:
        notes.append(fill("seed_not_set_up", reason=seed_note))
    print(f"seed: {seed_note}", flush=True)
    cases = build_cases(settings, seed_python)
    notes.append(import_baselines())
    results = run_rounds(settings, cases)
    if seed_python is not None:
        notes.append(seed_on_large_items(settings, seed_python))
    profiles = run_profiles(settings) if settings.profile else None
    summary = write_report(settings, cases, results, seed_note, notes, profiles, started)
    print_summary(summary)
    print(f"\nwrote {settings.output.relative_to(ROOT)}")
    failed = crashed(cases, results)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
