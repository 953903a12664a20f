"""The real server's refusal of a thread another app-server process holds, and its release
when that process exits (the runner's waiting is tested on the fake: tests/test_thread_busy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.client import CodexClient, CodexThreadBusyError, ThreadOptions
from tests.real_server import codex_command, scripted_codex_home, work_dir

pytestmark = pytest.mark.real_server


@pytest.mark.fault(
    "client (real server)",
    "thread/resume of a thread another app-server process holds",
    "CodexThreadBusyError (already has an active writer); resume works once that process exits",
)
async def test_resume_is_refused_while_another_process_holds_the_thread(tmp_path: Path) -> None:
    """Resuming a thread another app-server process holds raises `CodexThreadBusyError`; once
    that process exits, the resume works and the thread takes another turn."""
    work = work_dir(tmp_path)
    async with scripted_codex_home(tmp_path / "home") as env:
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
