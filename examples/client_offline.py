"""The client API end to end, offline: a real `codex app-server` behind the scripted model.

Run it from a checkout after `bash scripts/setup`:  .venv/bin/python examples/client_offline.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trio

from orchestrator.client import CodexClient, CodexTurnInactiveError, ServerRequest, ThreadOptions
from orchestrator.scripted import SCRIPTED_APP_SERVER_ARGS, open_scripted_provider
from orchestrator.scripted.home import write_codex_home
from orchestrator.transport.stdio import find_codex


async def approve(request: ServerRequest) -> dict[str, Any]:
    """Accept every command the agent wants to run (a real policy would look at it)."""
    print(f"  approving {request.method}: {request.params.get('command')}")
    return {"decision": "accept"}


async def main() -> None:
    async with open_scripted_provider() as provider:
        with tempfile.TemporaryDirectory() as tmp:
            env = write_codex_home(Path(tmp) / "home", base_url=provider.base_url)
            command = [find_codex(), *SCRIPTED_APP_SERVER_ARGS]
            async with CodexClient.connect_stdio(
                command, env=env, approval_handler=approve, inactivity_timeout=120.0
            ) as client:
                options = ThreadOptions(
                    cwd=tmp, sandbox="workspace-write", approval_policy="untrusted"
                )
                # chat_once: the whole turn at once.
                result = await client.chat_once("reason: what to do", thread_options=options)
                print(f"{result.status}: {result.final_text} ({result.usage.total_tokens} tokens)")

                # chat: completed steps as they happen, on the same thread.
                async for step in client.chat(
                    "shell: touch made-by-codex.txt && ls", thread_id=result.thread_id
                ):
                    print(f"  [{step.step_type}] {step.text.strip()}")

                # A slow turn: inactivity raises with a continuation that resumes it.
                continuation = None
                while True:
                    try:
                        slow = await client.chat_once(
                            "slow 1x2: take your time" if continuation is None else None,
                            thread_id=result.thread_id,
                            continuation=continuation,
                            inactivity_timeout=0.5,
                        )
                        break
                    except CodexTurnInactiveError as exc:
                        print("  quiet for 0.5 s; still waiting")
                        continuation = exc.continuation
                print(f"{slow.status}: {slow.final_text} after {slow.continuations} continuations")


if __name__ == "__main__":
    trio.run(main)
