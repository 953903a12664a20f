"""A turn whose `turn/completed` never arrives although every item completed: the client asks
`thread/read` after a silence (the completion gap) and ends the turn from what the server
stored, without losing or repeating a step. A turn still running is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from orchestrator.client import CodexClient, CodexTurnInactiveError
from orchestrator.transport.memory import MemoryTransport
from tests.fake_app_server import FakeAppServer, FakeTurn

GAP = 5.0


@pytest.fixture
async def gap_client(fake_server: FakeAppServer) -> AsyncIterator[CodexClient]:
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(client_end, completion_gap=GAP) as connected:
        yield connected


class StoredTurns:
    """What the fake's `thread/read` reports, per turn id; counts the reads."""

    def __init__(self, server: FakeAppServer) -> None:
        self.turns: dict[str, dict[str, Any]] = {}
        self.reads = 0
        server.handlers["thread/read"] = self.read

    def read(self, params: dict[str, Any]) -> dict[str, Any]:
        self.reads += 1
        return {"thread": {"id": params["threadId"], "turns": list(self.turns.values())}}


def _lose_completion(stored: StoredTurns, status: str = "completed") -> Any:
    """A turn script: every item completes, the server stores the turn as ended, but
    `turn/completed` is never sent."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("reasoning", "thinking")
        await turn.item("agentMessage", "first")
        await turn.item("agentMessage", "the answer")
        stored.turns[turn.turn_id] = {"id": turn.turn_id, "items": turn.items, "status": status}
        await trio.sleep_forever()

    return script


@pytest.mark.fault(
    "client",
    "turn/completed never comes although every item completed",
    "after the completion gap, thread/read shows the turn ended: the turn ends with its "
    "stored status, every step delivered once",
)
async def test_lost_turn_completed_is_closed_from_thread_read(
    gap_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    stored = StoredTurns(fake_server)
    fake_server.turn_script = _lose_completion(stored)
    start = trio.current_time()
    with trio.fail_after(GAP * 10):
        result = await gap_client.chat_once("hi")
    assert result.status == "completed"
    assert [s.text for s in result.steps] == ["thinking", "first", "the answer"]
    assert result.final_text == "the answer"
    assert GAP <= trio.current_time() - start < GAP + 1
    assert stored.reads == 1
    assert gap_client.statistics().completion_gaps_closed == 1
    assert gap_client.statistics().turns == 0


async def test_streamed_steps_are_not_repeated_after_the_gap(
    gap_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """A `chat` reader that had read some steps gets only the rest."""
    stored = StoredTurns(fake_server)
    fake_server.turn_script = _lose_completion(stored, status="failed")
    with trio.fail_after(GAP * 10):
        async with gap_client.chat("hi") as stream:
            texts = [step.text async for step in stream]
            result = await stream.result()
    assert texts == ["thinking", "first", "the answer"]
    assert result.status == "failed"


async def test_a_running_turn_is_left_alone_and_checked_once_per_gap(
    gap_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """thread/read says inProgress: keep waiting; the real turn/completed ends it."""
    stored = StoredTurns(fake_server)

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "working")
        stored.turns[turn.turn_id] = {"id": turn.turn_id, "items": [], "status": "inProgress"}
        await trio.sleep(GAP * 3.5)  # a model thinking quietly
        await turn.item("agentMessage", "done")
        await turn.complete()

    fake_server.turn_script = script
    result = await gap_client.chat_once("hi")
    assert result.status == "completed"
    assert [s.text for s in result.steps] == ["working", "done"]
    assert stored.reads == 3  # one per quiet gap, no busy loop
    assert gap_client.statistics().completion_gaps_closed == 0


async def test_an_open_item_or_a_pending_approval_is_not_a_gap(
    fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """A long command (item started, not completed) or an approval in progress explains a
    silence: no thread/read is sent while one is open."""
    stored = StoredTurns(fake_server)
    approved = trio.Event()

    async def handler(request: Any) -> dict[str, Any]:
        await trio.sleep(GAP * 4)
        approved.set()
        return {"decision": "accept"}

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.notify("item/started", item={"type": "commandExecution", "id": "c1"})
        await trio.sleep(GAP * 4)
        await turn.notify(
            "item/completed",
            item={"type": "commandExecution", "id": "c1", "aggregatedOutput": "ok"},
        )
        await turn.request("item/commandExecution/requestApproval", itemId="c2")
        await turn.item("agentMessage", "done")
        await turn.complete()

    fake_server.turn_script = script
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(client_end, completion_gap=GAP, approval_handler=handler) as client:
        result = await client.chat_once("hi")
    assert approved.is_set()
    assert result.status == "completed"
    assert stored.reads == 0


async def test_completion_gap_none_never_asks(
    fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """`completion_gap=None` turns the check off: the turn just waits (here until inactive)."""
    stored = StoredTurns(fake_server)
    fake_server.turn_script = _lose_completion(stored)
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(client_end, completion_gap=None) as client:
        with pytest.raises(CodexTurnInactiveError):
            await client.chat_once("hi", inactivity_timeout=GAP * 10)
    assert stored.reads == 0


async def test_a_failing_check_keeps_waiting_and_other_turns_go_on(
    gap_client: CodexClient, fake_server: FakeAppServer, autojump_clock: Any
) -> None:
    """thread/read refused (an error answer): the turn keeps waiting, retried next gap; a
    turn on another thread completes meanwhile."""
    stored = StoredTurns(fake_server)
    refusals = 2

    def flaky_read(params: dict[str, Any]) -> dict[str, Any]:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return {"thread": None}  # not a thread: read_turn finds nothing
        return stored.read(params)

    fake_server.handlers["thread/read"] = flaky_read
    fake_server.scripts.append(_lose_completion(stored))
    results: dict[str, Any] = {}

    async def lost() -> None:
        results["lost"] = await gap_client.chat_once("lost")

    with trio.fail_after(GAP * 10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lost)
            await trio.sleep(1)
            results["other"] = await gap_client.chat_once("other")  # the default echo script
    assert results["other"].final_text == "ECHO: other"
    assert results["lost"].status == "completed"
    assert stored.reads == 1
