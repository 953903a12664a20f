"""A hung app-server (stopped, deadlocked) is told from a slow one: after a request times out,
a cheap liveness probe is sent; no answer to it either closes the connection with a
`CodexTransportError`, so callers and supervisors treat it as the lost connection it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from orchestrator.client import (
    CodexClient,
    CodexTimeoutError,
    CodexTransportError,
)
from orchestrator.protocol.methods import LIVENESS_PROBE
from orchestrator.transport.memory import MemoryTransport
from tests.fake_app_server import FakeAppServer, FakeTurn

PROBE = 5.0
REQUEST = 20.0


@pytest.fixture
async def probing_client(fake_server: FakeAppServer) -> AsyncIterator[CodexClient]:
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(
        client_end, request_timeout=REQUEST, hang_probe_timeout=PROBE, completion_gap=10.0
    ) as connected:
        yield connected


def hang(server: FakeAppServer) -> None:
    """From now on the fake reads requests but answers none (like a SIGSTOPped process)."""
    server.silent_methods.update({"thread/start", "thread/read", "turn/start", LIVENESS_PROBE})


@pytest.mark.fault(
    "client",
    "the server stops answering (hung, e.g. SIGSTOP): a request gets no response",
    "after request_timeout a liveness probe goes unanswered too: CodexTransportError "
    "'stopped answering', the connection is closed and everything pending fails at once",
)
async def test_a_hung_server_closes_the_connection(
    probing_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    await probing_client.initialize()
    hang(fake_server)
    start = trio.current_time()
    with pytest.raises(CodexTransportError, match="stopped answering") as caught:
        await probing_client.request("thread/start", {})
    assert "liveness probe" in str(caught.value)
    assert trio.current_time() - start == pytest.approx(REQUEST + PROBE)
    assert probing_client.closed
    with trio.fail_after(1):
        await probing_client.reader_done.wait()
    assert fake_server.method_counts[LIVENESS_PROBE] == 1


async def test_a_slow_method_on_a_live_server_is_only_a_timeout(
    probing_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """The probe is answered: the request times out, the connection stays up and usable."""
    fake_server.silent_methods.add("thread/start")
    fake_server.handlers[LIVENESS_PROBE] = lambda params: {"data": []}
    with pytest.raises(CodexTimeoutError, match="no response within"):
        await probing_client.request("thread/start", {})
    assert not probing_client.closed
    assert await probing_client.request("thread/read", {"threadId": "t"})
    assert fake_server.method_counts[LIVENESS_PROBE] == 1


async def test_an_error_answer_to_the_probe_proves_life(
    probing_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """A server that does not know the probe's method still answered: alive."""
    fake_server.silent_methods.add("thread/start")  # the fake answers the probe -32600
    with pytest.raises(CodexTimeoutError):
        await probing_client.request("thread/start", {})
    assert not probing_client.closed


async def test_concurrent_timeouts_share_one_probe(
    probing_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    await probing_client.initialize()
    hang(fake_server)
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await probing_client.request("thread/start", {})
        except CodexTransportError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert len(errors) == 5
    assert fake_server.method_counts[LIVENESS_PROBE] == 1


async def test_probing_can_be_turned_off(fake_server: FakeAppServer, autojump_clock: Any) -> None:
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(client_end, hang_probe_timeout=None) as client:
        await client.initialize()
        hang(fake_server)
        with pytest.raises(CodexTimeoutError):
            await client.request("thread/start", {}, timeout=3)
        assert not client.closed
    assert fake_server.method_counts[LIVENESS_PROBE] == 0


@pytest.mark.fault(
    "client",
    "the server hangs mid-turn after every item completed (no event, no answer)",
    "the completion check's thread/read and the probe go unanswered: the turn fails with "
    "CodexTransportError instead of waiting forever",
)
async def test_a_turn_on_a_hung_server_fails_instead_of_waiting_forever(
    probing_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "partial")
        hang(fake_server)
        await trio.sleep_forever()

    fake_server.turn_script = script
    with trio.fail_after(120), pytest.raises(CodexTransportError, match="stopped answering"):
        await probing_client.chat_once("hi")
