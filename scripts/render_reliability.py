"""Render RELIABILITY.md from the JSON lines `pytest -m fault --reliability-report` writes.

    python scripts/render_reliability.py REPORT.jsonl RELIABILITY.md [--command "..."]

One table per area (fault or input, what must happen, result, test id), failed rows first in
their table and flagged at the top, then every figure the tests recorded. The run is described
by the date (UTC), the commit and the machine, all read here: run this right after the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_COMMAND = (
    ".venv/bin/python -m pytest -q -p no:cacheprovider -m fault --reliability-report <tmpfile>"
)
RESULT_TEXT = {
    "passed": "passed",
    "failed": "**FAILED**",
    "xfail": "xfail (known bug)",
    "skipped": "skipped",
}
# Failed rows first: they are what a reader must not miss.
RESULT_ORDER = {"failed": 0, "xfail": 1, "skipped": 2, "passed": 3}


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The report's rows, in the order the tests ran."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def git(*args: str) -> str:
    """A read-only git query's output, or "" when git is not there."""
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def commit_text() -> str:
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"`{commit}`" + (" with uncommitted changes" if dirty else "")


def machine_text() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}){memory}, "
        f"Python {platform.python_version()}"
    )


def summary_line(rows: list[dict[str, Any]]) -> str:
    counts = {outcome: 0 for outcome in RESULT_ORDER}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    seconds = sum(row.get("seconds", 0.0) for row in rows)
    parts = [f"{len(rows)} faults and inputs: {counts['passed']} passed"]
    parts.append(f"{counts['failed']} failed")
    parts.append(f"{counts['xfail']} xfail (known bugs, each a strict xfail test)")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    return ", ".join(parts) + f"; {seconds:.0f} s of test time."


def area_table(rows: Iterable[dict[str, Any]]) -> list[str]:
    lines = [
        "| fault or input | what happens | result | test |",
        "|---|---|---|---|",
    ]
    ordered = sorted(rows, key=lambda row: RESULT_ORDER.get(row["outcome"], 9))
    for row in ordered:
        happens = cell(row.get("expected", ""))
        if row["outcome"] == "xfail" and row.get("reason"):
            happens += f" **Known bug:** {cell(row['reason'])}"
        result = RESULT_TEXT.get(row["outcome"], cell(row["outcome"]))
        lines.append(
            f"| {cell(row.get('fault', ''))} | {happens} | {result} | `{cell(row['test'])}` |"
        )
    return lines


def figure_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| test | figure | value |", "|---|---|---|"]
    found = False
    for row in rows:
        for figure in row.get("figures", []):
            found = True
            value = f"{figure['value']} {figure.get('unit', '')}".strip()
            lines.append(f"| `{cell(row['test'])}` | {cell(figure['name'])} | {cell(value)} |")
    return lines if found else ["No test recorded a figure."]


def render(rows: list[dict[str, Any]], *, command: str, now: datetime.datetime) -> str:
    """The whole RELIABILITY.md."""
    out = [
        "# Reliability",
        "",
        "Every fault and hostile input the test suite injects, what must happen, and whether "
        "it does. This file is generated: `scripts/reliability` runs "
        f"`{command}` over the whole `tests/` tree, then "
        "`scripts/render_reliability.py` turns the report into these tables. "
        f"Run on {now:%Y-%m-%d %H:%M} UTC at commit {commit_text()}, on {machine_text()}. "
        f"{summary_line(rows)} A row marked xfail is a known bug: its test states the right "
        "behaviour and is expected to fail until the bug is fixed (the fix is its reason).",
        "",
    ]
    failed = [row for row in rows if row["outcome"] == "failed"]
    if failed:
        out += [f"**{len(failed)} FAILED:** " + ", ".join(f"`{cell(r['test'])}`" for r in failed)]
        out += [""]
    areas: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        areas.setdefault(row.get("area") or "other", []).append(row)
    for area in sorted(areas):
        out += [f"## {area}", "", *area_table(areas[area]), ""]
    out += ["## Figures", "", *figure_lines(rows), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the --reliability-report JSON lines")
    parser.add_argument("output", type=Path, help="the Markdown file to write")
    parser.add_argument("--command", default=DEFAULT_COMMAND, help="how the report was made")
    args = parser.parse_args(argv)
    rows = load_rows(args.report)
    now = datetime.datetime.now(datetime.UTC)
    args.output.write_text(render(rows, command=args.command, now=now), encoding="utf-8")
    print(f"{args.output}: {summary_line(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
