"""A real app-server that stops (SIGSTOP) mid-turn is detected as hung and its connection
closed, instead of the turn waiting forever."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from orchestrator.client import CodexClient, CodexTransportError, ThreadOptions
from orchestrator.transport.stdio import StdioTransport
from tests.daemon_helpers import wait_until
from tests.real_server import codex_command, kill_group, scripted_codex_home, work_dir

pytestmark = pytest.mark.real_server


@pytest.mark.fault(
    "client (real server)",
    "the stdio app-server is stopped (SIGSTOP) mid-turn",
    "completion check + liveness probe unanswered: CodexTransportError 'stopped answering' "
    "within seconds; the stopped process group is killed, not left behind",
)
async def test_a_stopped_app_server_is_declared_hung(tmp_path: Path) -> None:
    """A stdio app-server stopped mid-turn fails the turn within seconds saying it stopped
    answering, and its process group is killed."""
    work = work_dir(tmp_path)
    async with scripted_codex_home(tmp_path / "home") as env:
        async with CodexClient.connect_stdio(
            codex_command(),
            env=env,
            cwd=str(work),
            completion_gap=0.5,
            request_timeout=2.0,
            hang_probe_timeout=1.0,
        ) as client:
            assert isinstance(client.transport, StdioTransport)
            pid = client.transport.process.pid
            options = ThreadOptions(cwd=str(work), approval_policy="never")
            try:
                async with client.chat("think 60: never mind", thread_options=options) as stream:
                    await stream.start()
                    os.killpg(pid, signal.SIGSTOP)
                    stopped_at = trio.current_time()
                    with trio.fail_after(30), pytest.raises(CodexTransportError) as caught:
                        async for _ in stream:
                            pass
                    elapsed = trio.current_time() - stopped_at
            finally:
                kill_group(pid)  # never leave a stopped process behind, whatever happened
            with trio.fail_after(30):
                await client.reader_done.wait()
    assert "stopped answering" in str(caught.value)
    assert elapsed < 10
    # SIGKILL is delivered at once, but the kernel tears a process down in its own time, and
    # the native server (a grandchild) is not ours to wait for: poll with a deadline.
    await wait_until(
        lambda: live_members_of_group(pid) == [],
        seconds=10,
        what=f"the killed process group {pid} to be gone",
    )


def live_members_of_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a container's init may not reap them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members
