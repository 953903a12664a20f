"""The cases of one round: a table of measurement processes, each printing one JSON line.

A row names the case, when it runs, its command (`measure.py MODE OPTIONS` or the seed's
`seed_measure.py`), the fake server's workload and what it measures. `{...}` in a command or
a description stands for a setting (`{s.turns}`) or one of `_words`; a command is split on
spaces after that, which is safe because no value in it has one.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from seed import SEED_REQUIREMENT
from settings import JOB_CONNECTIONS, JOB_THREADS, ROOT, Settings

# Where a results directory costs no disk flushes, if present. The measurement makes its
# directory there with mkdtemp (0700, unpredictable name), hence the noqa.
TMPFS = Path("/dev/shm")  # noqa: S108
SEED_TIMEOUT = 1800.0  # the seed's turn takes about a minute where ours take a fraction of a second

# Rows run in this order. When: "always", "tmpfs" (TMPFS exists) or "seed" (the seed's
# environment could be set up).
# fmt: off
CASES = (
    # name, when, command, workload (see _workloads), what
    ("limit-stdio", "always", "measure.py limit-stdio {best}", "full",
     "bare reader: 256 KiB reads, split lines, jsoncodec.loads"),
    ("chat_once-stdio", "always", "measure.py client-stdio --api chat_once {best}", "full",
     "CodexClient.connect_stdio + chat_once"),
    ("chat-stdio", "always", "measure.py client-stdio --api chat {best}", "full",
     "CodexClient.connect_stdio + chat (steps not kept)"),
    ("approvals-stdio", "always", "measure.py client-approvals --api chat {best}", "approvals",
     "chat, the same turn with a command approval request after every {s.request_every:,}th "
     "line, each accepted by the approval handler"),
    ("limit-ws", "always", "measure.py limit-ws {best}", "full",
     "bare trio-websocket reader + jsoncodec.loads"),
    ("limit-wsproto", "always", "measure.py limit-wsproto {best}", "full",
     "bare wsproto reader on a trio stream + jsoncodec.loads"),
    ("chat_once-ws", "always", "measure.py client-ws --api chat_once {best}", "full",
     "CodexClient.connect_websocket + chat_once"),
    ("chat-ws", "always", "measure.py client-ws --api chat {best}", "full",
     "CodexClient.connect_websocket + chat (steps not kept)"),
    ("trivial", "always", "measure.py trivial --turns {s.turns} --window {s.window}", "none",
     "{s.turns:,} trivial turns, chat_once, one thread, one connection"),
    ("many-limit", "always", "measure.py many-limit --connections {s.fleet}", "fleet",
     "{s.fleet} bare readers in one process, one turn each at once"),
    ("many-chat", "always", "measure.py many-client --connections {s.fleet} --api chat", "fleet",
     "{s.fleet} connect_stdio clients in one process, one chat turn each at once"),
    ("idle", "always", "measure.py idle --connections {s.fleet}", "trivial",
     "{s.fleet} initialized idle connections vs none"),
    ("idle-ws", "always", "measure.py idle-ws --connections {s.fleet}", "trivial",
     "{s.fleet} initialized idle websocket connections (keepalive on) vs none"),
    ("jobs-bare", "always", "measure.py scheduler-bare --jobs {s.jobs} {slots}", "trivial",
     "{s.jobs:,} trivial turns, one chat_once each, {shape}"),
    ("jobs-scheduler", "always", "measure.py scheduler --jobs {s.jobs} {slots}", "trivial",
     "the same {s.jobs:,} jobs through the scheduler, results on disk, {shape}"),
    ("jobs-records", "always", "measure.py records --jobs {s.jobs}", "trivial",
     "the files the scheduler writes for {s.jobs:,} jobs, written alone on disk (no turns)"),
    ("jobs-scheduler-tmpfs", "tmpfs",
     "measure.py scheduler --jobs {s.jobs} {slots} --results-in {tmpfs}", "trivial",
     "the same, results on tmpfs ({tmpfs}): no disk flushes"),
    ("jobs-records-tmpfs", "tmpfs", "measure.py records --jobs {s.jobs} --results-in {tmpfs}",
     "trivial", "the same files written alone on tmpfs"),
    ("soak", "always",
     "measure.py soak --jobs {s.soak_jobs} --window {s.soak_window} {slots} {soak_results}",
     "trivial", "{s.soak_jobs:,} trivial jobs through a serving scheduler as the daemon runs "
     "them (journals, durable records{soak_on_tmpfs}), {shape}"),
    ("steplog-null", "always", "measure.py steplog --log null", "steps",
     "JobRunner, one turn of {s.log_steps:,} steps, step log dropped"),
    ("steplog-jsonl", "always", "measure.py steplog --log jsonl", "steps",
     "JobRunner, one turn of {s.log_steps:,} steps, steps.jsonl written"),
    # The seed cannot read lines over 64 KiB: its comparison is on the turn without them.
    ("chat_once-stdio-small", "seed", "measure.py client-stdio --api chat_once", "small",
     "CodexClient.connect_stdio + chat_once, no large items"),
    ("seed-stdio-small", "seed", "seed_measure.py", "small",
     "seed {seed} chat_once, no large items"),
)
# fmt: on


@attrs.frozen
class Case:
    """One kind of measurement: a command that prints one JSON line."""

    name: str
    argv: tuple[str, ...]
    what: str
    timeout: float = 600.0
    project: bool = True  # False for the seed: its failures are findings, not crashes


def build_cases(settings: Settings, seed_python: Path | None) -> list[Case]:
    """Every case of one round, in the order they run."""
    runs = {"always": True, "tmpfs": TMPFS.is_dir(), "seed": seed_python is not None}
    words = _words(settings)
    workloads = _workloads(settings)
    cases = []
    for name, when, command, workload, what in CASES:
        if not runs[when]:
            continue
        script, *options = command.format(**words).split()
        if script == "seed_measure.py":
            assert seed_python is not None  # the row runs only when there is one
            cases.append(seed_case(name, seed_python, workloads[workload], what.format(**words)))
        else:
            argv = measure(*options, workload=workloads[workload])
            cases.append(Case(name, argv, what.format(**words)))
    return cases


def _words(settings: Settings) -> dict[str, Any]:
    """What the table's `{...}` stand for."""
    on_tmpfs = TMPFS.is_dir()
    return {
        "s": settings,
        "best": f"--best-of {settings.best_of}",
        "slots": f"--connections {JOB_CONNECTIONS} --threads {JOB_THREADS}",
        "shape": f"{JOB_CONNECTIONS} connections x {JOB_THREADS} threads",
        "tmpfs": TMPFS,
        "soak_results": f"--results-in {TMPFS}" if on_tmpfs else "",
        "soak_on_tmpfs": " on tmpfs" if on_tmpfs else "",
        "seed": SEED_REQUIREMENT,
    }


def _workloads(settings: Settings) -> dict[str, list[str]]:
    """The fake server's options, by the name the table gives them."""
    return {
        "full": settings.workload(),
        "small": settings.workload(large=False),
        "approvals": [*settings.workload(), "--request-every", str(settings.request_every)],
        "fleet": settings.fleet_workload(),
        "steps": settings.steps_workload(),
        "trivial": ["--trivial"],
        "none": [],  # the mode adds what it needs
    }


def measure(mode: str, *options: str, workload: Sequence[str] = ()) -> tuple[str, ...]:
    """A bench/measure.py command line."""
    return (sys.executable, "bench/measure.py", mode, *options, "--", *workload)


def seed_case(name: str, seed_python: Path, workload: Sequence[str], what: str) -> Case:
    """The seed's client on a workload, under its own interpreter; the server runs under ours."""
    argv = (str(seed_python), "bench/seed_measure.py", "--server-python", sys.executable)
    return Case(name, (*argv, "--", *workload), what, timeout=SEED_TIMEOUT, project=False)


def show_command(argv: Sequence[str]) -> str:
    """A command as typed from the checkout's root."""
    shown = []
    for part in argv:
        if part.startswith(f"{ROOT}/"):
            part = part[len(str(ROOT)) + 1 :]
        shown.append(part)
    return shlex.join(shown)
