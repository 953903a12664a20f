"""The `orchestrator` command line. Argument parsing and printing only; the work is elsewhere."""

from __future__ import annotations

import argparse
import functools
import sys

import trio

from orchestrator import __version__
from orchestrator._util.logs import configure_logging, register_secret
from orchestrator.app.batch import print_summary, run_batch
from orchestrator.app.chat import ChatOptions, run_chat
from orchestrator.app.daemon import (
    Daemon,
    collect_status,
    daemon_lock,
    format_status,
    json_dumps,
    request_cancel,
    running_daemon_pid,
)
from orchestrator.app.daemon.control import wait_for_result
from orchestrator.client import CodexError, ThreadOptions
from orchestrator.config.model import OrchestratorConfig, load_config
from orchestrator.errors import ConfigError, DaemonError, UnsafeJobId
from orchestrator.jobs.load import load_jobs_and_config
from orchestrator.jobs.model import JobSpec
from orchestrator.scripted import main as scripted_provider_main

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="orchestrator", description="Drive OpenAI Codex app-server agent jobs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser(
        "chat",
        help="talk to an app-server from the terminal",
        description="Run one or more turns on one thread and print each completed step.",
    )
    chat.add_argument("--transport", choices=["stdio", "websocket"], default="stdio")
    chat.add_argument("--cmd", help="app-server command (stdio); default CODEX_APP_SERVER_CMD")
    chat.add_argument("--url", help="websocket URL; default CODEX_APP_SERVER_WS_URL")
    chat.add_argument("--token", help="websocket bearer token; default CODEX_APP_SERVER_TOKEN")
    chat.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="a turn's text (repeat for several turns); without it, one prompt per stdin line",
    )
    chat.add_argument(
        "--inactivity-timeout", type=float, help="seconds without an event before acting"
    )
    chat.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        help="interrupt a turn that times out (default: keep waiting)",
    )
    chat.add_argument(
        "--show-data", action="store_true", help="print each step's item JSON as well"
    )
    chat.add_argument("--cwd", help="the thread's working directory")
    chat.add_argument("--model", help="the thread's model")
    chat.add_argument("--sandbox", help="read-only | workspace-write | danger-full-access")
    chat.add_argument("--approval-policy", help="never | on-request | untrusted ...")
    chat.add_argument(
        "--approve",
        choices=["accept", "decline", "cancel"],
        default="decline",
        help="answer to command and file-change approval requests (default decline)",
    )
    chat.add_argument(
        "--offline",
        action="store_true",
        help="run codex against the built-in scripted model (no network, no credentials)",
    )
    chat.add_argument("--log-format", choices=["console", "json"], default=None)

    run = commands.add_parser(
        "run",
        help="run the jobs of task files over the configured connections",
        description="Run every job of the task files; results go to the results directory.",
    )
    run.add_argument("taskfiles", nargs="+", metavar="TASKFILE")
    run.add_argument("-c", "--config", help="config file (default: one stdio connection)")
    run.add_argument("--force", action="store_true", help="rerun jobs that already completed")
    run.add_argument("--log-format", choices=["console", "json"], default=None)
    run.add_argument(
        "--no-progress", action="store_true", help="no live progress line, even on a terminal"
    )

    validate = commands.add_parser(
        "validate", help="check task files (and a config) without running anything"
    )
    validate.add_argument("taskfiles", nargs="+", metavar="TASKFILE")
    validate.add_argument("-c", "--config", help="config file to check the jobs against")

    daemon = commands.add_parser(
        "daemon",
        help="run as a service: take task files dropped into the inbox",
        description="Run until SIGTERM/SIGINT, taking task files renamed into inbox_dir.",
    )
    daemon.add_argument("-c", "--config", help="config file (default: one stdio connection)")
    daemon.add_argument("--log-format", choices=["console", "json"], default=None)
    daemon.add_argument("--log-file", help="append JSON log lines to this file, not stderr")

    status = commands.add_parser("status", help="jobs and connections of a daemon's state dir")
    status.add_argument("-c", "--config", help="config file (default: one stdio connection)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    cancel = commands.add_parser("cancel", help="ask the running daemon to cancel a job")
    cancel.add_argument("job_id", metavar="JOB-ID")
    cancel.add_argument("-c", "--config", help="config file (default: one stdio connection)")
    cancel.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the result (0: do not)"
    )

    provider = commands.add_parser(
        "scripted-provider",
        help="serve the scripted model provider on 127.0.0.1",
        add_help=False,
    )
    provider.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `orchestrator` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scripted-provider"]:
        # It has its own parser: hand it every argument, --help included.
        return scripted_provider_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_format", None), log_file=getattr(args, "log_file", None))
    if args.command in ("daemon", "status", "cancel"):
        return _service_command(args)
    if args.command in ("validate", "run"):
        return _jobs_command(args)
    if args.command == "chat":
        return _chat(args)
    raise AssertionError(f"unhandled command {args.command}")


def _print_problems(problems: tuple[str, ...]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _service_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return EXIT_USAGE
    if args.command == "status":
        status = collect_status(config)
        print(json_dumps(status) if args.json else format_status(status))
        return EXIT_OK
    if args.command == "cancel":
        return _cancel(config, args.job_id, args.wait)
    try:
        with daemon_lock(config.state_dir):
            trio.run(Daemon(config, args.config).run)
    except DaemonError as exc:
        print(f"orchestrator daemon: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cancel(config: OrchestratorConfig, job_id: str, wait: float) -> int:
    if running_daemon_pid(config.state_dir) is None:
        print(f"orchestrator cancel: no daemon is running on {config.state_dir}", file=sys.stderr)
        return EXIT_FAILED
    try:
        request_cancel(config.state_dir, job_id)
    except UnsafeJobId as exc:
        print(f"orchestrator cancel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = wait_for_result(config.results_dir, job_id, wait)
    print(f"{job_id}: {status or 'cancel requested'}")
    return EXIT_OK


def _load_or_report(
    args: argparse.Namespace,
) -> tuple[OrchestratorConfig, tuple[JobSpec, ...]] | None:
    """Config and jobs; or None after printing every problem to stderr."""
    try:
        return load_jobs_and_config(args.config, args.taskfiles)
    except ConfigError as exc:
        _print_problems(exc.problems)
        print(f"{len(exc.problems)} problem(s); nothing was run", file=sys.stderr)
        return None


def _jobs_command(args: argparse.Namespace) -> int:
    """`validate` and `run`: both load and check every file first."""
    loaded = _load_or_report(args)
    if loaded is None:
        return EXIT_USAGE
    config, jobs = loaded
    if args.command == "validate":
        print(
            f"ok: {len(jobs)} jobs in {len(args.taskfiles)} file(s), "
            f"{len(config.connections)} connection(s)"
        )
        return EXIT_OK
    progress = sys.stderr.isatty() and not args.no_progress
    try:
        summary = trio.run(
            functools.partial(run_batch, config, jobs, force=args.force, progress=progress)
        )
    except KeyboardInterrupt:
        print("stopped at once; results of finished jobs are on disk", file=sys.stderr)
        return 130
    print_summary(summary, sys.stdout)
    print(f"results: {config.results_dir}", file=sys.stdout)
    totals = summary["totals"]
    return EXIT_OK if totals["completed"] == totals["jobs"] else EXIT_FAILED


def _chat(args: argparse.Namespace) -> int:
    register_secret(args.token)
    prompts = list(args.prompt) or [line.strip() for line in sys.stdin if line.strip()]
    if not prompts:
        print("orchestrator chat: no prompt given (--prompt or stdin)", file=sys.stderr)
        return EXIT_USAGE
    if args.transport == "websocket" and args.offline:
        print("orchestrator chat: --offline runs codex over stdio", file=sys.stderr)
        return EXIT_USAGE
    options = ChatOptions(
        transport=args.transport,
        command=args.cmd,
        url=args.url,
        token=args.token,
        offline=args.offline,
        inactivity_timeout=args.inactivity_timeout,
        cancel_on_timeout=args.cancel_on_timeout,
        show_data=args.show_data,
        approve=args.approve,
        thread=ThreadOptions(
            cwd=args.cwd,
            model=args.model,
            sandbox=args.sandbox,
            approval_policy=args.approval_policy,
        ),
    )
    try:
        completed = trio.run(run_chat, options, prompts, sys.stdout)
    except CodexError as exc:
        print(f"orchestrator chat: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if completed else EXIT_FAILED
