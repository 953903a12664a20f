"""The faults the real `codex app-server` 0.169.0 can be made to produce, over stdio and
websocket, behind the scripted model provider.

The server is killed (SIGKILL, its whole process group) mid-turn, while our approval handler
deliberates on its request, and while idle; it is stopped with SIGTERM mid-turn; and it sends
an item over a lowered `max_message_bytes`. What must happen: every waiting call fails at once
with a `CodexTransportError` saying how the server ended; a bystander connection (the hostile
test server over stdio, in this same process) completes its turn meanwhile.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from orchestrator.client import (
    CodexClient,
    CodexMessageTooLargeError,
    CodexTransportError,
    ThreadOptions,
)
from orchestrator.scripted import ScriptedProvider, open_scripted_provider, write_codex_home
from orchestrator.transport.stdio import StdioTransport
from tests.faults.harness import PROMPTLY, Deliberation, bystander, open_endpoint, user_sees
from tests.real_server import codex_command, open_ws_app_server
from tests.reliability import Figures

pytestmark = pytest.mark.real_server

AREA_STOPS = "client: server stops"
# 50 deltas 0.1 s apart: 5 s of streaming, surely mid-turn when killed. (`slow <pause>x<count>`:
# "slow 50x0.1:" is no directive and would be answered at once with an echo.)
SLOW = "slow 0.1x50: a long answer"


class RealServer:
    """A real app-server of one test: a client of it, and a way to signal its processes."""

    def __init__(self, transport: str, env: dict[str, str], workdir: Path) -> None:
        self.transport = transport
        self.env = env
        self.workdir = workdir
        self.url: str | None = None

    @asynccontextmanager
    async def connect(self, **options: Any) -> AsyncIterator[CodexClient]:
        if self.transport == "stdio":
            async with CodexClient.connect_stdio(
                codex_command(), env=self.env, cwd=str(self.workdir), **options
            ) as client:
                yield client
        else:
            async with open_ws_app_server(self.env, cwd=self.workdir) as url:
                self.url = url
                async with CodexClient.connect_websocket(url, **options) as client:
                    yield client

    def signal(self, client: CodexClient, sig: signal.Signals) -> None:
        """Send `sig` to the server's whole process group (the npm launcher and the native
        server)."""
        if isinstance(client.transport, StdioTransport):
            pgid = client.transport.process.pid
        else:
            assert self.url is not None
            pgid = _process_group_listening_on(self.url)
        os.killpg(pgid, sig)

    def options(self, approval_policy: str = "never") -> ThreadOptions:
        sandbox = "workspace-write" if approval_policy != "never" else None
        return ThreadOptions(
            cwd=str(self.workdir), approval_policy=approval_policy, sandbox=sandbox
        )


def _process_group_listening_on(url: str) -> int:
    """The process group of the app-server started with `--listen <url>`."""
    needle = url.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in argv:
            return os.getpgid(int(entry))
    raise LookupError(f"no process listens on {url}")


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    async with open_scripted_provider() as running:
        yield running


@pytest.fixture(params=["stdio", "websocket"])
def real(request: pytest.FixtureRequest, tmp_path: Path, provider: ScriptedProvider) -> RealServer:
    """A real app-server over the transport, with a fresh CODEX_HOME and working directory."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = write_codex_home(tmp_path / "home", base_url=provider.base_url)
    return RealServer(request.param, env, workdir)


def _check_killed(real: RealServer, error: CodexTransportError) -> None:
    if real.transport == "stdio":
        assert error.exit_status == -9 and "killed by signal SIGKILL" in str(error)
        assert error.stderr_tail  # codex's own log lines, quoted for the user
    else:
        assert error.close_reason is not None and "1006" in error.close_reason


@pytest.mark.fault(
    AREA_STOPS,
    "real app-server (websocket) killed (SIGKILL) mid-turn, two turns in flight",
    "both turns fail at once with CodexTransportError naming 1006 (abnormal closure); "
    "another connection unaffected",
)
# Over stdio: tests/test_real_server.py::test_app_server_killed_mid_turn.
@pytest.mark.parametrize("real", ["websocket"], indirect=True)
async def test_killed_mid_turn(real: RealServer, figures: Figures) -> None:
    """Killing the real server mid-turn fails both running turns at once."""
    errors: list[tuple[float, CodexTransportError]] = []
    with trio.fail_after(60):
        async with open_endpoint("stdio") as endpoint, bystander(endpoint) as other:
            async with real.connect() as client:
                streams = [client.chat(SLOW, thread_options=real.options()) for _ in range(2)]
                for stream in streams:
                    await stream.start()  # acknowledged: the turn runs on the server

                async def read(stream: Any) -> None:
                    try:
                        async for _ in stream:
                            raise AssertionError("the reply was to come after the kill")
                    except CodexTransportError as exc:
                        errors.append((trio.current_time(), exc))

                killed_at = trio.current_time()
                real.signal(client, signal.SIGKILL)
                async with trio.open_nursery() as nursery:
                    for stream in streams:
                        nursery.start_soon(read, stream)
            await other.finish()
    assert len(errors) == 2
    for _, error in errors:
        _check_killed(real, error)
    latency = max(at for at, _ in errors) - killed_at
    assert latency < PROMPTLY
    figures.record("failure latency", round(latency * 1000), "ms")
    figures.record("user sees", user_sees(errors[0][1]))


@pytest.mark.fault(
    AREA_STOPS,
    "real app-server killed (SIGKILL) while our approval handler deliberates (escalate:, "
    "on-request)",
    "the turn fails at once with CodexTransportError; the handler is cancelled on leaving; "
    "the command never ran",
)
async def test_killed_during_a_pending_approval(real: RealServer, figures: Figures) -> None:
    """Killing the real server while its approval request is with our handler fails the turn
    at once, cancels the handler when the client is left, and runs nothing."""
    deliberate = Deliberation()
    failures: list[CodexTransportError] = []
    with trio.fail_after(60):
        async with open_endpoint("stdio") as endpoint, bystander(endpoint) as other:
            async with real.connect(approval_handler=deliberate) as client:

                async def turn() -> None:
                    try:
                        await client.chat_once(
                            "escalate: touch escalated.txt",
                            thread_options=real.options("on-request"),
                        )
                    except CodexTransportError as exc:
                        failures.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(turn)
                    await deliberate.asked.wait()
                    killed_at = trio.current_time()
                    real.signal(client, signal.SIGKILL)
                latency = trio.current_time() - killed_at
                leaving = trio.current_time()
            left_after = trio.current_time() - leaving
            await other.finish()
    assert [r.method for r in deliberate.requests] == ["item/commandExecution/requestApproval"]
    [error] = failures
    _check_killed(real, error)
    assert latency < PROMPTLY and left_after < PROMPTLY
    assert deliberate.ended.is_set()
    assert not (real.workdir / "escalated.txt").exists()
    figures.record("failure latency", round(latency * 1000), "ms")


@pytest.mark.fault(
    AREA_STOPS,
    "real app-server killed (SIGKILL) while idle, after a completed turn",
    "the connection is marked closed at once; the next request fails at once with "
    "CodexTransportError",
)
async def test_killed_while_idle(real: RealServer, figures: Figures) -> None:
    """Killing the real server between turns closes the connection at once; the next call
    fails at once instead of timing out."""
    with trio.fail_after(60):
        async with real.connect() as client:
            result = await client.chat_once("hello", thread_options=real.options())
            assert result.status == "completed"
            killed_at = trio.current_time()
            real.signal(client, signal.SIGKILL)
            with trio.fail_after(PROMPTLY):
                await client.reader_done.wait()
            noticed = trio.current_time() - killed_at
            with pytest.raises(CodexTransportError) as caught:
                await client.chat_once("anyone?", thread_id=result.thread_id)
    _check_killed(real, caught.value)
    figures.record("noticed after", round(noticed * 1000), "ms")
    figures.record("user sees", user_sees(caught.value))


@pytest.mark.fault(
    AREA_STOPS,
    "real app-server stopped with SIGTERM mid-turn",
    "the turn fails with CodexTransportError saying how it ended: at once, or promptly after "
    "codex lets the running turn go on (its graceful drain; a drained turn may complete), and "
    "every later call fails the same way",
)
async def test_terminated_mid_turn(real: RealServer, figures: Figures) -> None:
    """SIGTERM mid-turn ends the turn with the way the server ended: over stdio its exit
    status (0: codex exits cleanly), over websocket an abnormal closure (codex sends no close
    frame).

    codex either exits at once or first lets the running turn finish (a graceful drain: it
    seems to depend on whether the npm launcher's forwarded copy of the signal arrives as a
    second signal). Drained, the turn's steps are delivered (the turn may even complete), and
    the error comes as promptly after the server's last message."""
    with trio.fail_after(60):
        async with real.connect() as client:
            stream = client.chat(SLOW, thread_options=real.options())
            await stream.start()
            last_message = trio.current_time()
            real.signal(client, signal.SIGTERM)
            drained = []
            try:
                async for step in stream:
                    drained.append(step)
                    last_message = trio.current_time()
            except CodexTransportError:
                completed = False
            else:
                # Drained to its end: the turn completed, and the connection's end follows.
                completed = True
                assert (await stream.result()).status == "completed"
                last_message = trio.current_time()
            await client.reader_done.wait()
            latency = trio.current_time() - last_message
            # Whichever way it ended, every later call fails with how the connection ended.
            with pytest.raises(CodexTransportError) as caught:
                await client.request("thread/start", {})
    for step in drained:
        assert step.turn_id == stream.turn_id and step.text == "SLOW: a long answer"
    figures.record(
        "behaviour",
        "drained the turn to its end, then exited"
        if completed
        else "drained the turn, then exited"
        if drained
        else "exited at once",
    )
    if real.transport == "stdio":
        assert caught.value.exit_status is not None
        assert f"status {caught.value.exit_status}" in str(caught.value)
    else:
        assert caught.value.close_reason is not None and "1006" in caught.value.close_reason
    assert latency < PROMPTLY
    figures.record("failure latency", round(latency * 1000), "ms")
    figures.record("user sees", user_sees(caught.value))


@pytest.mark.fault(
    "client: message size",
    "real app-server: a 1 MiB command output item over max_message_bytes = 256 KiB",
    "CodexMessageTooLargeError naming the limit; that connection closed; another connection "
    "(to the same websocket server) completes a turn",
)
async def test_item_over_a_lowered_limit(real: RealServer, figures: Figures) -> None:
    """An item over the limit fails its connection with an error naming the limit, while
    another connection keeps working."""
    limit = 256 * 1024
    with trio.fail_after(60):
        async with open_endpoint("stdio") as endpoint, bystander(endpoint) as other:
            async with real.connect(max_message_bytes=limit) as client:
                with pytest.raises(CodexMessageTooLargeError) as caught:
                    await client.chat_once(
                        "shell: head -c 1500000 /dev/zero | tr '\\0' a",
                        thread_options=real.options(),
                    )
                assert client.closed
                if real.url is not None:  # a second connection to the same server
                    async with CodexClient.connect_websocket(real.url) as again:
                        after = await again.chat_once("after", thread_options=real.options())
                    assert after.final_text == "ECHO: after"
            await other.finish()
    assert str(limit) in str(caught.value)
    figures.record("user sees", user_sees(caught.value))
