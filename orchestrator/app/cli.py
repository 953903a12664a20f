"""The `orchestrator` command line. Argument parsing and printing only; the work is elsewhere."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import trio

from orchestrator import __version__
from orchestrator._util.logs import configure_logging, register_secret
from orchestrator.app.batch import print_summary, run_batch
from orchestrator.app.daemon import (
    Daemon,
    collect_status,
    daemon_lock,
    format_status,
    json_dumps,
    request_cancel,
    running_daemon_pid,
)
from orchestrator.client import (
    ChatContinuation,
    CodexClient,
    CodexError,
    CodexTurnInactiveError,
    ConversationStep,
    ServerRequest,
    ThreadOptions,
    TurnStream,
)
from orchestrator.config.model import OrchestratorConfig, load_config, validate_jobs_against_config
from orchestrator.errors import ConfigError, DaemonError
from orchestrator.jobs.load import load_task_files
from orchestrator.jobs.model import JobSpec
from orchestrator.protocol.server_requests import APPROVAL_METHODS, decision_result
from orchestrator.scripted import SCRIPTED_APP_SERVER_ARGS, open_scripted_provider
from orchestrator.scripted import main as scripted_provider_main
from orchestrator.scripted.home import write_codex_home
from orchestrator.store.files import read_json
from orchestrator.store.layout import ResultsLayout
from orchestrator.transport.stdio import find_codex

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
    if args.command == "validate":
        return _validate(args)
    if args.command == "run":
        return _run(args)
    if args.command == "chat":
        register_secret(args.token)
        prompts = list(args.prompt)
        if not prompts:
            prompts = [line.strip() for line in sys.stdin if line.strip()]
        if not prompts:
            print("orchestrator chat: no prompt given (--prompt or stdin)", file=sys.stderr)
            return EXIT_USAGE
        if args.transport == "websocket" and args.offline:
            print("orchestrator chat: --offline runs codex over stdio", file=sys.stderr)
            return EXIT_USAGE
        try:
            return trio.run(_chat, args, prompts)
        except CodexError as exc:
            print(f"orchestrator chat: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return 130
    raise AssertionError(f"unhandled command {args.command}")


def _load(args: argparse.Namespace) -> tuple[OrchestratorConfig, tuple[JobSpec, ...]]:
    """Config and jobs, validated together; raises ConfigError naming every problem."""
    problems: list[str] = []
    config: OrchestratorConfig | None = None
    jobs: tuple[JobSpec, ...] = ()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        jobs = load_task_files(args.taskfiles)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if config is not None and jobs:
        try:
            validate_jobs_against_config(jobs, config)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError("\n".join(problems), problems=tuple(problems))
    assert config is not None
    return config, jobs


def _service_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
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
    except ValueError as exc:
        print(f"orchestrator cancel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result_path = ResultsLayout(config.results_dir).result_path(job_id)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        result = read_json(result_path)
        if isinstance(result, dict) and result.get("status") in (
            "cancelled",
            "completed",
            "failed",
        ):
            print(f"{job_id}: {result['status']}")
            return EXIT_OK
        time.sleep(0.2)
    print(f"{job_id}: cancel requested")
    return EXIT_OK


def _load_or_report(
    args: argparse.Namespace,
) -> tuple[OrchestratorConfig, tuple[JobSpec, ...]] | None:
    """Config and jobs; or None after printing every problem to stderr."""
    try:
        return _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing was run", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args)
    if loaded is None:
        return EXIT_USAGE
    config, jobs = loaded
    print(
        f"ok: {len(jobs)} jobs in {len(args.taskfiles)} file(s), "
        f"{len(config.connections)} connection(s)"
    )
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args)
    if loaded is None:
        return EXIT_USAGE
    config, jobs = loaded
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


@asynccontextmanager
async def _connect(args: argparse.Namespace) -> AsyncIterator[CodexClient]:
    options: dict[str, Any] = {"approval_handler": _approval_answerer(args.approve)}
    if args.transport == "websocket":
        async with CodexClient.connect_websocket(args.url, token=args.token, **options) as client:
            yield client
        return
    if not args.offline:
        async with CodexClient.connect_stdio(args.cmd, **options) as client:
            yield client
        return
    async with open_scripted_provider() as provider:
        with tempfile.TemporaryDirectory(prefix="codex-home-") as home:
            env = write_codex_home(Path(home), base_url=provider.base_url)
            command = [find_codex(), *SCRIPTED_APP_SERVER_ARGS]
            async with CodexClient.connect_stdio(command, env=env, **options) as client:
                yield client


def _approval_answerer(decision: str) -> Any:
    async def answer(request: ServerRequest) -> dict[str, Any] | None:
        await trio.lowlevel.checkpoint()
        if request.method in APPROVAL_METHODS:
            print(f"[approval] {request.method}: {decision}", flush=True)
            try:
                return decision_result(request.method, decision)
            except ValueError:
                return None
        return None  # anything else: the default refusal

    return answer


async def _chat(args: argparse.Namespace, prompts: Sequence[str]) -> int:
    options = ThreadOptions(
        cwd=args.cwd,
        model=args.model,
        sandbox=args.sandbox,
        approval_policy=args.approval_policy,
    )
    out = sys.stdout
    all_completed = True
    async with _connect(args) as client:
        thread_id: str | None = None
        for prompt in prompts:
            print(f"\n>>> {prompt}", file=out, flush=True)
            stream = client.chat(
                prompt,
                thread_id=thread_id,
                thread_options=options,
                inactivity_timeout=args.inactivity_timeout,
            )
            status = await _print_turn(client, stream, args, out)
            thread_id = stream.thread_id
            all_completed = all_completed and status == "completed"
    return EXIT_OK if all_completed else EXIT_FAILED


async def _print_turn(
    client: CodexClient, stream: TurnStream, args: argparse.Namespace, out: TextIO
) -> str:
    """Print the turn's steps as they complete, resuming or cancelling on inactivity."""
    continuation: ChatContinuation | None = None
    while True:
        try:
            async for step in stream:
                _print_step(step, show_data=args.show_data, out=out)
            break
        except CodexTurnInactiveError as exc:
            continuation = exc.continuation
            if args.cancel_on_timeout:
                print(f"[inactive for {args.inactivity_timeout} s: cancelling]", file=out)
                cancelled = await client.cancel(continuation)
                for step in cancelled.steps:
                    _print_step(step, show_data=args.show_data, out=out)
                print(f"[turn {cancelled.status}]", file=out, flush=True)
                return cancelled.status or "interrupted"
            print(f"[inactive for {args.inactivity_timeout} s: still waiting]", file=out)
            stream = client.chat(
                continuation=continuation, inactivity_timeout=args.inactivity_timeout
            )
    result = await stream.result()
    summary = f"[turn {result.status}"
    if result.usage is not None:
        summary += f" · {result.usage.total_tokens} tokens"
    if result.continuations:
        summary += f" · {result.continuations} continuations"
    if result.error_message:
        summary += f" · error: {result.error_message}"
    print(summary + "]", file=out, flush=True)
    return result.status


def _print_step(step: ConversationStep, *, show_data: bool, out: TextIO) -> None:
    label = step.step_type
    if step.step_type == "exec":
        command = step.data.get("command") or ""
        exit_code = step.data.get("exitCode")
        label += f" · {command} · exit {exit_code} · {step.data.get('status')}"
    print(f"--- {label} ---", file=out)
    if step.text:
        print(step.text.rstrip("\n"), file=out)
    if show_data:
        print(json.dumps(step.data, indent=2, ensure_ascii=False), file=out)
    out.flush()
