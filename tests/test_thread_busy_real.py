"""The real server's refusal of a thread another app-server process holds, and its release
when that process exits (the runner's waiting is tested on the fake: tests/test_thread_busy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.client import CodexClient, CodexThreadBusyError, ThreadOptions
from orchestrator.scripted import open_scripted_provider, write_codex_home
from tests.real_server import codex_command

pytestmark = pytest.mark.real_server


@pytest.mark.fault(
    "client (real server)",
    "thread/resume of a thread another app-server process holds",
    "CodexThreadBusyError (already has an active writer); resume works once that process exits",
)
async def test_resume_is_refused_while_another_process_holds_the_thread(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    async with open_scripted_provider() as provider:
        env = write_codex_home(tmp_path / "home", base_url=provider.base_url)
        options = ThreadOptions(cwd=str(work), approval_policy="never")
        async with CodexClient.connect_stdio(codex_command(), env=env, cwd=str(work)) as holder:
            first = await holder.chat_once("hello", thread_options=options)
            async with CodexClient.connect_stdio(codex_command(), env=env, cwd=str(work)) as other:
                with pytest.raises(CodexThreadBusyError, match="already has an active writer"):
                    await other.request("thread/resume", {"threadId": first.thread_id})
        async with CodexClient.connect_stdio(codex_command(), env=env, cwd=str(work)) as after:
            await after.request("thread/resume", {"threadId": first.thread_id})
            second = await after.chat_once("again", thread_id=first.thread_id)
    assert second.status == "completed" and second.final_text == "ECHO: again"
