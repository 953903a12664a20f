"""`orchestrator chat`: turns on one thread from the terminal, each completed step printed.

On inactivity the turn is resumed (or, asked to, cancelled) and the wait goes on; approvals
get one fixed answer. `--offline` runs the real app-server against the scripted model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from orchestrator.client import (
    ApprovalHandler,
    CodexClient,
    CodexTurnInactiveError,
    ConversationStep,
    ServerRequest,
    ThreadOptions,
    TurnStatus,
    TurnStream,
)
from orchestrator.protocol.server_requests import APPROVAL_METHODS, decision_result
from orchestrator.scripted import SCRIPTED_APP_SERVER_ARGS, open_scripted_provider
from orchestrator.scripted.home import write_codex_home
from orchestrator.transport.stdio import find_codex


@attrs.frozen(kw_only=True)
class ChatOptions:
    """What `orchestrator chat` was asked for."""

    transport: str = "stdio"  # stdio | websocket
    command: str | None = None  # stdio; default CODEX_APP_SERVER_CMD
    url: str | None = None  # websocket
    token: str | None = None  # websocket
    offline: bool = False  # stdio against the scripted model
    inactivity_timeout: float | None = None
    cancel_on_timeout: bool = False
    show_data: bool = False
    approve: str = "decline"  # the answer to every approval request
    thread: ThreadOptions = attrs.field(factory=ThreadOptions)


async def run_chat(options: ChatOptions, prompts: Sequence[str], out: TextIO) -> bool:
    """Run each prompt as a turn on one thread, printing steps as they complete; True when
    every turn completed."""
    all_completed = True
    async with _connect(options) as client:
        thread_id: str | None = None
        for prompt in prompts:
            print(f"\n>>> {prompt}", file=out, flush=True)
            stream = client.chat(
                prompt,
                thread_id=thread_id,
                thread_options=options.thread,
                inactivity_timeout=options.inactivity_timeout,
            )
            status = await _print_turn(client, stream, options, out)
            thread_id = stream.thread_id
            all_completed = all_completed and status is TurnStatus.COMPLETED
    return all_completed


@asynccontextmanager
async def _connect(options: ChatOptions) -> AsyncIterator[CodexClient]:
    handler = _approval_answerer(options.approve)
    if options.transport == "websocket":
        async with CodexClient.connect_websocket(
            options.url, token=options.token, approval_handler=handler
        ) as client:
            yield client
        return
    if not options.offline:
        async with CodexClient.connect_stdio(options.command, approval_handler=handler) as client:
            yield client
        return
    async with open_scripted_provider() as provider:
        with tempfile.TemporaryDirectory(prefix="codex-home-") as home:
            env = write_codex_home(Path(home), base_url=provider.base_url)
            command = [find_codex(), *SCRIPTED_APP_SERVER_ARGS]
            async with CodexClient.connect_stdio(
                command, env=env, approval_handler=handler
            ) as client:
                yield client


def _approval_answerer(decision: str) -> ApprovalHandler:
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


async def _print_turn(
    client: CodexClient, stream: TurnStream, options: ChatOptions, out: TextIO
) -> TurnStatus:
    """Print the turn's steps as they complete, resuming or cancelling on inactivity."""
    while True:
        try:
            async for step in stream:
                _print_step(step, show_data=options.show_data, out=out)
            break
        except CodexTurnInactiveError as exc:
            continuation = exc.continuation
            if options.cancel_on_timeout:
                print(f"[inactive for {options.inactivity_timeout} s: cancelling]", file=out)
                cancelled = await client.cancel(continuation)
                for step in cancelled.steps:
                    _print_step(step, show_data=options.show_data, out=out)
                print(f"[turn {cancelled.status}]", file=out, flush=True)
                return cancelled.status or TurnStatus.INTERRUPTED
            print(f"[inactive for {options.inactivity_timeout} s: still waiting]", file=out)
            stream = client.chat(
                continuation=continuation, inactivity_timeout=options.inactivity_timeout
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
