"""The client against the real `codex app-server` 0.169.0, behind the scripted model provider.

Every test runs over stdio and over websocket, with a fresh server, CODEX_HOME and working
directory. Prompts are directives of the scripted provider (`orchestrator.scripted.script`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from orchestrator.client import (
    ChatContinuation,
    ChatResult,
    CodexClient,
    CodexTransportError,
    CodexTurnInactiveError,
    ServerRequest,
    ThreadOptions,
)
from orchestrator.scripted import ScriptedProvider, open_scripted_provider, write_codex_home
from orchestrator.transport.stdio import StdioTransport
from tests.real_server import codex_command, kill_group, open_ws_app_server

pytestmark = pytest.mark.real_server

Connect = Callable[..., AbstractAsyncContextManager[CodexClient]]


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    async with open_scripted_provider() as running:
        yield running


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def codex_env(tmp_path: Path, provider: ScriptedProvider) -> dict[str, str]:
    return write_codex_home(tmp_path / "home", base_url=provider.base_url)


@pytest.fixture(params=["stdio", "websocket"])
def connect(request: pytest.FixtureRequest, codex_env: dict[str, str], workdir: Path) -> Connect:
    """A factory of clients connected to a fresh real app-server over the transport."""

    @asynccontextmanager
    async def factory(**options: Any) -> AsyncIterator[CodexClient]:
        if request.param == "stdio":
            async with CodexClient.connect_stdio(
                codex_command(), env=codex_env, cwd=str(workdir), **options
            ) as client:
                yield client
        else:
            async with open_ws_app_server(codex_env, cwd=workdir) as url:
                async with CodexClient.connect_websocket(url, **options) as client:
                    yield client

    return factory


def never(workdir: Path) -> ThreadOptions:
    return ThreadOptions(cwd=str(workdir), approval_policy="never")


async def test_plain_reply(connect: Connect, workdir: Path) -> None:
    """A plain prompt completes with the model's reply, its step and token usage."""
    async with connect() as client:
        result = await client.chat_once("hello there", thread_options=never(workdir))
    assert result.status == "completed"
    assert result.final_text == "ECHO: hello there"
    assert [s.step_type for s in result.steps] == ["codex"]
    assert result.usage is not None and result.usage.total_tokens > 0


async def test_reasoning_then_reply(connect: Connect, workdir: Path) -> None:
    """Reasoning arrives as a thinking step with its summary, then the reply."""
    async with connect() as client:
        result = await client.chat_once("reason: the sky", thread_options=never(workdir))
    assert [s.step_type for s in result.steps] == ["thinking", "codex"]
    assert result.steps[0].text == "Thinking about: the sky"
    assert result.final_text == "REASONED: the sky"


async def test_shell_command_is_an_exec_step(connect: Connect, workdir: Path) -> None:
    """A shell command runs for real and its output is the exec step's text."""
    async with connect() as client:
        result = await client.chat_once(
            "shell: echo hello-from-shell", thread_options=never(workdir)
        )
    assert [s.step_type for s in result.steps] == ["exec", "codex"]
    exec_step = result.steps[0]
    assert "hello-from-shell" in exec_step.text
    assert exec_step.data["exitCode"] == 0
    assert result.final_text is not None and result.final_text.startswith("SHELL DONE: exit=0")


async def test_two_turns_on_one_thread(
    connect: Connect, workdir: Path, provider: ScriptedProvider
) -> None:
    """A second turn on the same thread sees the first in its history."""
    async with connect() as client:
        first = await client.chat_once("first words", thread_options=never(workdir))
        second = await client.chat_once("second words", thread_id=first.thread_id)
    assert second.thread_id == first.thread_id and second.turn_id != first.turn_id
    assert second.final_text == "ECHO: second words"
    assert "ECHO: first words" in str(provider.requests[-1]["input"])


async def test_slow_turn_resumed_by_continuation(connect: Connect, workdir: Path) -> None:
    """A slow turn times out on inactivity and is resumed to completion, nothing lost."""
    async with connect() as client:
        continuation: ChatContinuation | None = None
        steps = []
        timeouts = 0
        while True:
            try:
                if continuation is None:
                    result = await client.chat_once(
                        "slow 1.5x2: patience",
                        thread_options=never(workdir),
                        inactivity_timeout=0.6,
                    )
                else:
                    result = await client.chat_once(
                        continuation=continuation, inactivity_timeout=0.6
                    )
                steps.extend(result.steps)
                break
            except CodexTurnInactiveError as exc:
                timeouts += 1
                steps.extend(exc.steps)
                continuation = exc.continuation
    assert timeouts >= 2
    assert [s.text for s in steps] == ["SLOW: patience"]
    assert result.status == "completed" and result.continuations == timeouts


async def test_cancel_slow_turn_then_thread_is_reusable(connect: Connect, workdir: Path) -> None:
    """cancel interrupts a slow turn; the same thread then completes another turn."""
    async with connect() as client:
        stream = client.chat(
            "slow 3x4: never finishes", thread_options=never(workdir), inactivity_timeout=1.0
        )
        with pytest.raises(CodexTurnInactiveError) as info:
            async for _ in stream:
                pass
        cancelled = await client.cancel(info.value.continuation, timeout=30)
        assert cancelled.was_interrupted and not cancelled.was_completed
        assert cancelled.status == "interrupted"
        after = await client.chat_once("after cancel", thread_id=info.value.continuation.thread_id)
    assert after.status == "completed" and after.final_text == "ECHO: after cancel"


def _untrusted(workdir: Path) -> ThreadOptions:
    return ThreadOptions(cwd=str(workdir), approval_policy="untrusted", sandbox="workspace-write")


def _answering(decision: str, seen: list[ServerRequest]) -> Any:
    async def handler(request: ServerRequest) -> dict[str, Any]:
        seen.append(request)
        await trio.sleep(0.2)  # a deliberating human: must not count as inactivity
        return {"decision": decision}

    return handler


async def _touch(client: CodexClient, workdir: Path, name: str) -> ChatResult:
    return await client.chat_once(
        f"shell: touch {name} && echo touched",
        thread_options=_untrusted(workdir),
        inactivity_timeout=30,
    )


async def test_approval_accepted_runs_the_command(connect: Connect, workdir: Path) -> None:
    """Under `untrusted`, an accepted command runs and the handler saw the request."""
    seen: list[ServerRequest] = []
    async with connect(approval_handler=_answering("accept", seen)) as client:
        result = await _touch(client, workdir, "accepted.txt")
    assert [r.method for r in seen] == ["item/commandExecution/requestApproval"]
    assert seen[0].thread_id == result.thread_id and seen[0].turn_id == result.turn_id
    assert (workdir / "accepted.txt").exists()
    assert result.status == "completed"
    assert result.steps[0].data["status"] == "completed"


async def test_approval_declined_by_handler(connect: Connect, workdir: Path) -> None:
    """A declined command does not run; the turn still completes."""
    seen: list[ServerRequest] = []
    async with connect(approval_handler=_answering("decline", seen)) as client:
        result = await _touch(client, workdir, "declined.txt")
    assert len(seen) == 1
    assert not (workdir / "declined.txt").exists()
    assert result.status == "completed"
    assert result.steps[0].step_type == "exec" and result.steps[0].data["status"] == "declined"


async def test_approval_cancel_interrupts_the_turn(connect: Connect, workdir: Path) -> None:
    """Answering `cancel` declines the command and ends the turn interrupted."""
    seen: list[ServerRequest] = []
    async with connect(approval_handler=_answering("cancel", seen)) as client:
        result = await _touch(client, workdir, "cancelled.txt")
    assert not (workdir / "cancelled.txt").exists()
    assert result.status == "interrupted"


async def test_approval_declined_by_default(connect: Connect, workdir: Path) -> None:
    """With no handler, the approval request is declined and nothing runs."""
    async with connect() as client:
        result = await _touch(client, workdir, "default.txt")
    assert not (workdir / "default.txt").exists()
    assert result.status == "completed"
    assert result.steps[0].data["status"] == "declined"


async def test_command_output_over_one_mebibyte(connect: Connect, workdir: Path) -> None:
    """An exec item carrying about 1 MiB of output (codex caps aggregatedOutput there) arrives
    whole, in one message far over the 64 KiB that line-limited clients choke on."""
    size = 1_500_000
    async with connect() as client:
        result = await client.chat_once(
            f"shell: head -c {size} /dev/zero | tr '\\0' a",
            thread_options=never(workdir),
            inactivity_timeout=60,
        )
    exec_step = result.steps[0]
    assert exec_step.step_type == "exec"
    assert exec_step.text.count("a") > 1_000_000
    assert result.status == "completed"


async def test_provider_http_error_fails_the_turn(connect: Connect, workdir: Path) -> None:
    """A provider HTTP 500 ends the turn `failed` with the error text."""
    async with connect() as client:
        result = await client.chat_once("error 500: meltdown", thread_options=never(workdir))
    assert result.status == "failed"
    assert result.error_message


@pytest.mark.fault(
    "client: server stops",
    "real app-server (stdio) killed (SIGKILL) mid-turn, two turns in flight",
    "both turns fail at once with CodexTransportError naming SIGKILL",
)
@pytest.mark.parametrize("transport", ["stdio"])
async def test_app_server_killed_mid_turn(
    transport: str, codex_env: dict[str, str], workdir: Path
) -> None:
    """Killing the app-server mid-turn fails every waiting call promptly, naming the exit."""
    errors: list[CodexTransportError] = []
    async with CodexClient.connect_stdio(
        codex_command(), env=codex_env, cwd=str(workdir)
    ) as client:
        assert isinstance(client.transport, StdioTransport)
        started = trio.Event()

        async def slow_turn() -> None:
            try:
                stream = client.chat("slow 5x4: long", thread_options=never(workdir))
                async for _ in stream:
                    pass
            except CodexTransportError as exc:
                errors.append(exc)

        async def watch() -> None:
            await client.initialize()
            started.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await started.wait()
            nursery.start_soon(slow_turn)
            nursery.start_soon(slow_turn)
            with trio.fail_after(30):
                while len(client.router.turns) < 2:
                    await trio.sleep(0.05)
            killed_at = trio.current_time()
            kill_group(client.transport.process.pid)
        elapsed = trio.current_time() - killed_at
    assert len(errors) == 2
    assert elapsed < 5
    for error in errors:
        assert error.exit_status == -9
        assert "killed by signal SIGKILL" in str(error)


async def test_websocket_capability_token(
    codex_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    """With `--ws-auth capability-token`, the token connects and its absence is refused."""
    token = "s3cret-capability-token"
    token_file = tmp_path / "ws-token"
    token_file.write_text(token)
    extra = ("--ws-auth", "capability-token", "--ws-token-file", str(token_file))
    async with open_ws_app_server(codex_env, cwd=workdir, extra_args=extra) as url:
        async with CodexClient.connect_websocket(url, token=token) as client:
            result = await client.chat_once("with token", thread_options=never(workdir))
        assert result.final_text == "ECHO: with token"
        with pytest.raises(CodexTransportError) as info:
            async with CodexClient.connect_websocket(url, token=None) as client:
                await client.initialize()
        assert "401" in str(info.value)
        with pytest.raises(CodexTransportError) as wrong:
            async with CodexClient.connect_websocket(url, token="wrong-token") as client:
                await client.initialize()
        assert "401" in str(wrong.value) and "wrong-token" not in str(wrong.value)


async def test_completion_gap_checks_leave_a_quiet_running_turn_alone(
    connect: Connect, workdir: Path
) -> None:
    """With a tiny completion gap, the client asks `thread/read` during the model's silences;
    the real server reports the turn still running, so the turn goes on and completes with
    its whole reply."""
    async with connect(completion_gap=0.2) as client:
        read_turn = client.read_turn
        answers: list[Any] = []

        async def counting_read_turn(
            thread_id: str, turn_id: str, **options: Any
        ) -> dict[str, Any] | None:
            turn = await read_turn(thread_id, turn_id, **options)
            answers.append(turn.get("status") if turn else None)
            return turn

        client.read_turn = counting_read_turn  # type: ignore[method-assign]
        result = await client.chat_once("think 1.0: quiet", thread_options=never(workdir))
    assert result.status == "completed"
    assert result.final_text == "ECHO: quiet"
    assert answers and all(status in ("inProgress", None) for status in answers), answers
    assert client.completion_gaps_closed == 0
