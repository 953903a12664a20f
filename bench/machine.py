"""What the numbers were measured on: the machine, the interpreter, the libraries, the commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from settings import ROOT


def machine() -> dict[str, str]:
    """The system, CPU, memory and load average at the start."""
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
    return {
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "memory": mem_text,
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions() -> dict[str, str]:
    """The interpreter and the libraries involved, and the project's version and commit."""

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    libs = ", ".join(
        f"{name} {version(name)}"
        for name in ("trio", "trio-websocket", "wsproto", "attrs", "structlog")
    )
    return {
        "python": platform.python_version(),
        "executable": sys.executable.replace(str(ROOT) + "/", ""),
        "libraries": libs,
        "version": version("codex-orchestrator"),
        "commit": commit or "?",
    }


def uncommitted() -> bool:
    """Whether orchestrator/ has changes not committed (the commit is not all of the code)."""
    changes = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain", "--", "orchestrator"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return bool(changes)
