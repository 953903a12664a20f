"""Where the time of one `chat_once` stdio turn goes: a cProfile of the timed window, and a
py-spy sample of the whole run when py-spy is installed, each summarized per function and
per layer of the stack (LAYERS)."""

from __future__ import annotations

import collections
import os
import pstats
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cases import Case, measure, show_command
from rounds import run_case
from settings import BENCH, ROOT, Settings

PROFILE_DIR = BENCH / ".profile"
# The cProfile summary, the py-spy summary (None where not taken), and the commands run.
Profiles = tuple[dict[str, Any] | None, dict[str, Any] | None, str]

# The first needle found in a file's path (or a py-spy frame) names its layer.
LAYERS = (
    ("json/decoder.py", "JSON parsing (jsoncodec.loads: msgspec)"),
    ("jsoncodec.py", "JSON parsing (jsoncodec.loads: msgspec)"),
    ("protocol/framing.py", "line framing (LineFramer.feed)"),
    ("protocol/jsonrpc.py", "message classification (jsonrpc.decode, Notification)"),
    ("orchestrator.protocol.jsonrpc", "message classification (jsonrpc.decode, Notification)"),
    ("protocol/router.py", "turn bookkeeping (router, tracker, steps)"),
    ("protocol/turn.py", "turn bookkeeping (router, tracker, steps)"),
    ("protocol/steps.py", "turn bookkeeping (router, tracker, steps)"),
    ("protocol/values.py", "turn bookkeeping (router, tracker, steps)"),
    ("orchestrator.protocol.values", "turn bookkeeping (router, tracker, steps)"),
    ("protocol/rpc.py", "client shell (reader loop, dispatch, waits)"),
    ("orchestrator/client/", "client shell (reader loop, dispatch, waits)"),
    ("orchestrator/transport/", "transport (stdio receive)"),
    ("trio/_unix_pipes.py", "pipe reads and epoll (syscalls)"),
    ("trio/_core/_io_epoll.py", "pipe reads and epoll (syscalls)"),
    ("trio/", "trio scheduling"),
    ("structlog/", "logging"),
)


def run_profiles(settings: Settings) -> Profiles:
    """cProfile of the timed window, and py-spy of the whole run when py-spy is installed."""
    PROFILE_DIR.mkdir(exist_ok=True)
    pstats_path = PROFILE_DIR / "chat_once-stdio.pstats"
    argv = measure(
        "client-stdio", "--api", "chat_once", "--profile", str(pstats_path),
        workload=settings.workload(),
    )  # fmt: skip
    result = run_case(Case("profile", argv, "cProfile"))
    cprofile = summarize_cprofile(pstats_path) if "error" not in result else None
    commands = [f"`{show_command(argv)}`"]
    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    sampled = None
    if pyspy is not None:
        raw = PROFILE_DIR / "chat_once-stdio.pyspy.txt"
        plain = measure("client-stdio", "--api", "chat_once", workload=settings.workload())
        spy = (pyspy, "record", "-r", "1000", "-f", "raw", "-o", str(raw), "--", *plain)
        subprocess.run(spy, cwd=ROOT, capture_output=True, timeout=600, check=False)
        sampled = summarize_pyspy(raw)
        commands.append(f"`{show_command(spy)}`")
    return cprofile, sampled, " and ".join(commands)


def layer_of(location: str) -> str:
    """The layer a file (or py-spy frame) belongs to."""
    for needle, layer in LAYERS:
        if needle in location:
            return layer
    return "other"


def short_path(path: str) -> str:
    """A path relative to site-packages, the lib directory or the checkout."""
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", f"{ROOT}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize_cprofile(path: Path) -> dict[str, Any]:
    """Self time per function and per layer; built-ins are charged to their main caller."""
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    rows = []
    layers: collections.Counter[str] = collections.Counter()
    for (filename, line, func), (_cc, calls, tottime, cumtime, callers) in table.items():
        if filename == "~" and callers:
            main_caller = max(callers.items(), key=lambda item: item[1][2])[0]
            where = short_path(main_caller[0])
            name = f"{func} (mostly from {where}:{main_caller[2]})"
        else:
            where = short_path(filename)
            name = f"{where}:{line} {func}"
        layers[layer_of(where)] += tottime
        rows.append((tottime, cumtime, calls, name))
    rows.sort(reverse=True)
    return {"total": total, "rows": rows[:15], "layers": layers.most_common()}


def summarize_pyspy(path: Path) -> dict[str, Any] | None:
    """Sampled self time per function and per layer, inside trio.run, imports excluded."""
    if not path.exists():
        return None
    per_function: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "trio/_core/_run.py" not in stack or "_find_and_load" in stack:
            continue
        count = int(count_text)
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        where = where.rstrip(")").rsplit(":", 1)[0]
        per_function[f"{where} {name}"] += count
        layers[layer_of(leaf)] += count
        total += count
    if not total:
        return None
    return {"total": total, "rows": per_function.most_common(15), "layers": layers.most_common()}
