"""The figures the issue asks for, with their targets, and how each is worked out per round.

A figure is one case's value, or its ratio to a reference case measured in the same round,
summarized over the rounds. Its target is text that also decides the verdict: "≥ N" or
"≤ N" (with a unit or a remark after it), or, in brackets, a remark with no verdict.
"""

from __future__ import annotations

import re

import attrs
from settings import Settings
from spread import Results, Spread, values

_THRESHOLD = re.compile(r"([≥≤]) ([0-9][0-9,.]*)")


def _checkable(figure: Figure, attribute: attrs.Attribute[str], target: str) -> None:
    if not target.startswith("(") and _THRESHOLD.match(target) is None:
        raise ValueError(f"{figure.title}: a target is '≥ N...', '≤ N...' or '(...)': {target}")


@attrs.frozen
class Figure:
    """A ratio of one case's value to a reference case's, per round."""

    title: str  # `{...}`: see build_figures
    case: str
    key: str
    reference: str | None  # None: the value is already a ratio (or an absolute figure)
    target: str = attrs.field(validator=_checkable)
    unit: str = "x"
    fmt: str = ""  # default: two decimals for a ratio, one otherwise
    minus: str | None = None  # a case whose value is taken off the case's first

    def format(self) -> str:
        """How the value is shown."""
        return self.fmt or ("{:.2f}" if self.unit == "x" else "{:.1f}")

    def has_verdict(self) -> bool:
        """Whether the target is one to meet (not a remark in brackets)."""
        return not self.target.startswith("(")

    def passes(self, value: float) -> bool:
        """Whether the value meets the target's threshold."""
        match = _THRESHOLD.match(self.target)
        assert match is not None, self.target  # checked when the figure was made
        sign, number = match.groups()
        threshold = float(number.replace(",", ""))
        return value >= threshold if sign == "≥" else value <= threshold


# In the order of the report's table.
# fmt: off
FIGURES = (
    # title; case, key, reference; target; unit, fmt, minus
    Figure("stdio events/s, chat_once, {n} notifications vs bare reader",
           "chat_once-stdio", "events_per_s", "limit-stdio", "≥ 0.9x"),
    Figure("stdio events/s, chat, {n} notifications vs bare reader",
           "chat-stdio", "events_per_s", "limit-stdio", "≥ 0.9x"),
    Figure("stdio events/s, chat_once vs seed (no large items: the seed cannot read them)",
           "chat_once-stdio-small", "events_per_s", "seed-stdio-small", "≥ 10x"),
    Figure("websocket events/s, chat_once vs bare trio-websocket reader",
           "chat_once-ws", "events_per_s", "limit-ws", "≥ 0.9x"),
    Figure("websocket events/s, chat vs bare trio-websocket reader",
           "chat-ws", "events_per_s", "limit-ws", "≥ 0.9x"),
    Figure("websocket events/s, chat_once vs bare wsproto reader (the transport's parser)",
           "chat_once-ws", "events_per_s", "limit-wsproto", "(no target)"),
    Figure("trivial-turn latency, last {s.window} turns vs turns {s.early_turns} "
           "(of {s.turns:,})",
           "trivial", "late_over_early", None, "≤ 1.2x"),
    Figure("aggregate events/s, {fleet}, chat",
           "many-chat", "events_per_s", None, "≥ 60,000", unit="", fmt="{:,.0f}"),
    Figure("aggregate events/s, {fleet}, chat vs bare readers",
           "many-chat", "events_per_s", "many-limit", "(no target)"),
    Figure("peak RSS, {fleet}, chat",
           "many-chat", "peak_rss_mib", None, "≤ 200 MiB", unit=" MiB"),
    Figure("idle connection cost (RSS with {s.fleet} idle connections - none) / {s.fleet}",
           "idle", "per_connection_kib", None, "≤ 32 KiB", unit=" KiB"),
    Figure("idle websocket connection cost, the same with {s.fleet} websocket connections "
           "(keepalive on)",
           "idle-ws", "per_connection_kib", None, "≤ 32 KiB", unit=" KiB"),
    Figure("wall time, {jobs} through the scheduler vs bare chat_once",
           "jobs-scheduler", "elapsed_s", "jobs-bare", "≤ 1.3x"),
    Figure("wall time, {jobs} through the scheduler, results on tmpfs, vs bare chat_once",
           "jobs-scheduler-tmpfs", "elapsed_s", "jobs-bare", "(no disk flushes)"),
    Figure("wall time, the records of {jobs} written alone on disk (no turns) vs bare chat_once",
           "jobs-records", "elapsed_s", "jobs-bare",
           "(the disk's share: the scheduler needs at least 1 + this)"),
    Figure("wall time, {jobs} through the scheduler less their records written alone, vs bare "
           "chat_once, on disk",
           "jobs-scheduler", "elapsed_s", "jobs-bare", "(the scheduler's own cost)",
           minus="jobs-records"),
    Figure("wall time, {jobs} through the scheduler less their records written alone, vs bare "
           "chat_once, on tmpfs",
           "jobs-scheduler-tmpfs", "elapsed_s", "jobs-bare", "(the scheduler's own cost)",
           minus="jobs-records-tmpfs"),
    Figure("wall time per job, {s.soak_jobs:,} jobs through a serving scheduler (the daemon's), "
           "last {s.soak_window:,} vs jobs {s.soak_second_window}",
           "soak", "slowdown", None, "≤ 1.2x (set here, as for turns)"),
    Figure("RSS growth per 1,000 jobs through a serving scheduler, after the first "
           "{s.soak_warm_up:,}",
           "soak", "rss_growth_per_1000_jobs_kib", None, "(no target)", unit=" KiB"),
    Figure("stdio events/s, chat, {n} notifications with an approval request answered every "
           "{s.request_every:,} lines, vs the same turn without",
           "approvals-stdio", "events_per_s", "chat-stdio", "(no target)"),
    Figure("time from a request written to its answer read, seen by the server, approval "
           "requests mid-stream (median)",
           "approvals-stdio", "answer_p50_ms", None, "(no target)", unit=" ms"),
    Figure("events/s, one turn of {s.log_steps:,} steps through JobRunner, step log written vs "
           "dropped",
           "steplog-jsonl", "events_per_s", "steplog-null", "≥ 0.7x"),
    Figure("peak RSS, chat_once, {n} notifications",
           "chat_once-stdio", "peak_rss_mib", None, "≤ 40 MiB", unit=" MiB"),
    Figure("peak RSS, chat, {n} notifications",
           "chat-stdio", "peak_rss_mib", None, "≤ 40 MiB", unit=" MiB"),
    Figure("peak RSS, chat_once, {n} notifications, no large items",
           "chat_once-stdio-small", "peak_rss_mib", None, "≤ 40 MiB", unit=" MiB"),
    Figure("peak RSS, seed chat_once, {n} notifications, no large items",
           "seed-stdio-small", "peak_rss_mib", None, "(seed: about 220 MiB)", unit=" MiB"),
)
# fmt: on


def build_figures(settings: Settings) -> list[Figure]:
    """The figures with their titles filled in for these settings."""
    words = {
        "s": settings,
        "n": f"{settings.notifications:,}",
        "fleet": f"{settings.fleet} stdio connections in one process",
        "jobs": f"{settings.jobs:,} trivial jobs",
    }
    return [attrs.evolve(figure, title=figure.title.format(**words)) for figure in FIGURES]


def figure_spread(figure: Figure, results: Results) -> Spread | None:
    """Per-round ratios (or values), summarized."""
    mine = results.get(figure.case)
    if mine is None:
        return None
    if figure.reference is None:
        return Spread.of(values(mine, figure.key))
    theirs = results.get(figure.reference)
    if theirs is None:
        return None
    if figure.minus is not None:
        taken = results.get(figure.minus)
        if taken is None:
            return None
        mine = [
            {**a, figure.key: a[figure.key] - c[figure.key]} if "error" not in c else c
            for a, c in zip(mine, taken, strict=True)
        ]
    ratios = [
        a[figure.key] / b[figure.key]
        for a, b in zip(mine, theirs, strict=True)
        if "error" not in a and "error" not in b
    ]
    return Spread.of(ratios)


def summary(settings: Settings, results: Results) -> list[tuple[str, str, str, str]]:
    """Per figure: its title, its value shown, its target and the verdict (none in quick
    mode, which is a smoke test)."""
    rows = []
    for figure in build_figures(settings):
        spread = figure_spread(figure, results)
        if spread is None:
            shown, verdict = "not measured", ""
        else:
            shown = spread.show(figure.format(), figure.unit)
            verdict = (
                ""
                if not figure.has_verdict() or settings.quick
                else ("met" if figure.passes(spread.median) else "**missed**")
            )
        rows.append((figure.title, shown, figure.target, verdict))
    return rows
