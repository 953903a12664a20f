"""What the orchestrator cases share: jobs from a real task file, stdio connections to
bench/fake_server.py, and logging set up as `orchestrator run` sets it up off a terminal.

The project is imported inside the functions, so that importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common import server_argv

if TYPE_CHECKING:
    from orchestrator.config import ConnectionSpec
    from orchestrator.jobs.model import JobSpec

PROMPT = "hi"  # the fake server's trivial turn answers "ECHO: hi"


def make_jobs(directory: Path, count: int) -> tuple[JobSpec, ...]:
    """`count` one-turn jobs, written to a task file and loaded the way `orchestrator run`
    loads them (validated, `cwd` resolved)."""
    from orchestrator.jobs.load import load_task_files

    lines = [
        "[defaults]",
        'cwd = "."',
        'sandbox = "read-only"',
        'approval_policy = "never"',
        f'prompt = "{PROMPT}"',
        "",
    ]
    for number in range(count):
        lines += ["[[jobs]]", f'id = "job-{number:05d}"', ""]
    task_file = directory / "jobs.toml"
    task_file.write_text("\n".join(lines))
    return load_task_files([task_file])


def connection_spec(name: str, workload: list[str], threads: int) -> ConnectionSpec:
    """A stdio connection whose app-server is the fake server with this workload."""
    from orchestrator.config import ConnectionSpec

    return ConnectionSpec(name=name, command=tuple(server_argv(workload)), max_threads=threads)


def log_like_the_cli() -> None:
    """JSON log lines on stderr, as `orchestrator run` writes them when stderr is no terminal
    (bench/run.py reads the measurement's stderr through a pipe)."""
    from orchestrator._util.logs import configure_logging

    configure_logging("json")
