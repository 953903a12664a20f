"""The client against the in-memory fake app-server: turns, routing, timeouts, requests."""

from __future__ import annotations

import gc
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from orchestrator.client import (
    ChatContinuation,
    CodexClient,
    CodexOverloadedError,
    CodexProtocolError,
    CodexTimeoutError,
    CodexTransportError,
    CodexTurnInactiveError,
    ServerRequest,
    ThreadOptions,
)
from orchestrator.transport.memory import memory_transport_pair
from tests.fake_app_server import FakeAppServer, FakeTurn, asking_turn, trickling_turn


def connect(fake_server: FakeAppServer, **options: Any) -> AbstractAsyncContextManager[CodexClient]:
    """A client with `options` on `fake_server`'s connection (in tests that do not take the
    `client` fixture, which would hold that end)."""
    return CodexClient.over(fake_server.client_end, **options)  # type: ignore[attr-defined]


async def test_chat_once_returns_steps_final_text_and_usage(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A plain turn gives its steps (no user echo), the final text and the token usage."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.notify("item/started", item={"type": "userMessage", "id": "u1"})
        await turn.notify("item/completed", item={"type": "userMessage", "id": "u1"})
        await turn.item("reasoning", "pondering")
        await turn.item("commandExecution", "out\n", command="ls")
        await turn.item("agentMessage", "done")
        await turn.usage(10)
        await turn.usage(15)
        await turn.complete()

    fake_server.turn_script = script
    result = await client.chat_once("hi", thread_options=ThreadOptions(cwd="/w", model="m"))
    assert [s.step_type for s in result.steps] == ["thinking", "exec", "codex"]
    assert [s.text for s in result.steps] == ["pondering", "out\n", "done"]
    assert [s.index for s in result.steps] == [0, 1, 2]
    assert result.status == "completed"
    assert result.final_text == "done"
    assert result.completion_source == "items"
    assert result.usage is not None and result.usage.total_tokens == 25
    assert result.thread_id == "thread-1" and result.turn_id == "turn-1"
    start = next(m for m in fake_server.recent if m.get("method") == "thread/start")
    assert start["params"] == {"cwd": "/w", "model": "m"}


async def test_initialize_happens_once_with_client_info(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """initialize is sent once, before the first request, followed by `initialized`."""
    await client.request("thread/start", {})
    await client.request("thread/start", {})
    info = await client.initialize()
    assert info.user_agent == "fake/0.0"
    assert fake_server.method_counts["initialize"] == 1
    assert fake_server.method_counts["initialized"] == 1
    first = fake_server.recent[0]
    assert first["method"] == "initialize"
    assert set(first["params"]["clientInfo"]) >= {"name", "version"}


async def test_final_answer_phase_wins_over_later_messages(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """final_text is the `final_answer` message even when another message follows it."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "thinking aloud", phase="commentary")
        await turn.item("agentMessage", "THE ANSWER", phase="final_answer")
        await turn.item("agentMessage", "ps: bye", phase="commentary")
        await turn.complete()

    fake_server.turn_script = script
    result = await client.chat_once("q")
    assert result.final_text == "THE ANSWER"


async def test_thread_read_fallback_when_no_item_arrived(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """With no agent message in the stream, final_text comes from thread/read."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        fake_server.completed_turns[turn.turn_id] = {
            "id": turn.turn_id,
            "items": [{"type": "agentMessage", "id": "m", "text": "from the log"}],
        }
        await turn.server.send(
            {
                "method": "turn/completed",
                "params": {
                    "threadId": turn.thread_id,
                    "turn": {"id": turn.turn_id, "status": "completed", "items": []},
                },
            }
        )

    fake_server.turn_script = script
    result = await client.chat_once("q")
    assert result.final_text == "from the log"
    assert result.completion_source == "thread_read"


async def test_failed_turn_is_a_value_with_the_error(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A failed turn returns status failed and the error, not an exception."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.notify("error", error={"message": "boom"}, willRetry=False)
        await turn.complete("failed", error={"message": "boom", "codexErrorInfo": "other"})

    fake_server.turn_script = script
    result = await client.chat_once("q")
    assert result.status == "failed"
    assert result.error_message == "boom"


async def test_events_before_the_turn_start_response_are_kept(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Items that arrive before the turn/start response are not lost."""

    async def script(turn: FakeTurn) -> None:
        await turn.item("agentMessage", "early")
        await turn.accept()
        await turn.item("agentMessage", "late")
        await turn.complete()

    fake_server.turn_script = script
    result = await client.chat_once("q")
    assert [s.text for s in result.steps] == ["early", "late"]


async def test_interleaved_turns_on_two_threads_are_routed_apart(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Two concurrent turns whose events interleave each get exactly their own steps."""
    both_started = trio.Event()
    started: list[FakeTurn] = []

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        started.append(turn)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()
        for n in range(50):
            await turn.item("agentMessage", f"{turn.thread_id}:{n}")
            await trio.lowlevel.checkpoint()
        await turn.complete()

    fake_server.turn_script = script
    results: dict[str, Any] = {}

    async def run(name: str) -> None:
        results[name] = await client.chat_once(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "a")
        nursery.start_soon(run, "b")
    for result in results.values():
        assert [s.text for s in result.steps] == [f"{result.thread_id}:{n}" for n in range(50)]
    assert {r.thread_id for r in results.values()} == {"thread-1", "thread-2"}


async def test_two_turns_on_one_thread(client: CodexClient, fake_server: FakeAppServer) -> None:
    """A second turn continues the same thread."""
    first = await client.chat_once("one")
    second = await client.chat_once("two", thread_id=first.thread_id)
    assert second.thread_id == first.thread_id
    assert second.turn_id != first.turn_id
    assert second.final_text == "ECHO: two"
    assert fake_server.method_counts["thread/start"] == 1


async def test_inactivity_then_continuation_delivers_every_step_once(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A silent turn raises with a continuation; resuming yields the rest, nothing twice."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "one")
        await trio.sleep(10)
        await turn.item("agentMessage", "two")
        await trio.sleep(10)
        await turn.item("agentMessage", "three")
        await turn.complete()

    fake_server.turn_script = script
    seen: list[str] = []
    continuation: ChatContinuation | None = None
    timeouts = 0
    while True:
        try:
            if continuation is None:
                result = await client.chat_once("q", inactivity_timeout=6)
            else:
                result = await client.chat_once(continuation=continuation, inactivity_timeout=6)
            seen.extend(s.text for s in result.steps)
            break
        except CodexTurnInactiveError as exc:
            timeouts += 1
            seen.extend(s.text for s in exc.steps)
            continuation = exc.continuation
    assert seen == ["one", "two", "three"]
    assert timeouts == 2
    assert result.final_text == "three"
    assert result.continuations == 2


async def test_inactivity_timer_restarts_on_deltas(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Deltas count as activity even though they are not steps."""
    fake_server.turn_script = trickling_turn(5)
    result = await client.chat_once("q", inactivity_timeout=3)
    assert result.final_text == "done"


async def test_pending_approval_is_not_inactivity(
    autojump_clock: trio.testing.MockClock, fake_server: FakeAppServer
) -> None:
    """While our approval handler deliberates, the turn does not time out."""
    decisions: list[ServerRequest] = []

    async def slow_handler(request: ServerRequest) -> dict[str, Any]:
        decisions.append(request)
        await trio.sleep(60)
        return {"decision": "accept"}

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        answer = await turn.request(
            "item/commandExecution/requestApproval", itemId="c1", command="touch x"
        )
        await turn.item("agentMessage", f"decided {answer['decision']}")
        await turn.complete()

    fake_server.turn_script = script
    async with connect(fake_server, approval_handler=slow_handler) as client:
        result = await client.chat_once("q", inactivity_timeout=5)
    assert result.final_text == "decided accept"
    assert decisions[0].method == "item/commandExecution/requestApproval"
    assert decisions[0].turn_id == result.turn_id and decisions[0].item_id == "c1"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("item/commandExecution/requestApproval", {"decision": "decline"}),
        ("item/fileChange/requestApproval", {"decision": "decline"}),
        ("item/tool/requestUserInput", {"answers": {}}),
        ("item/permissions/requestApproval", {"permissions": {}, "scope": "turn"}),
        ("execCommandApproval", {"decision": "denied"}),
    ],
)
async def test_requests_are_declined_without_a_handler(
    client: CodexClient, fake_server: FakeAppServer, method: str, expected: dict[str, Any]
) -> None:
    """With no handler, every known server request gets its refusal."""
    answers: list[Any] = []
    fake_server.turn_script = asking_turn(answers, method, itemId="i")
    await client.chat_once("q")
    assert answers == [expected]


async def test_unknown_server_request_gets_an_error(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A server request we do not know is answered with a JSON-RPC error."""
    answers: list[Any] = []
    fake_server.turn_script = asking_turn(answers, "something/new")
    await client.chat_once("q")
    assert answers[0]["code"] == -32601


async def test_raising_handler_declines(fake_server: FakeAppServer) -> None:
    """A handler that raises still answers: the request is declined."""

    async def broken(request: ServerRequest) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    answers: list[Any] = []
    fake_server.turn_script = asking_turn(answers, "item/fileChange/requestApproval", itemId="f")
    async with connect(fake_server, approval_handler=broken) as client:
        await client.chat_once("q")
    assert answers == [{"decision": "decline"}]


async def test_hanging_handler_is_declined_after_approval_timeout(
    autojump_clock: trio.testing.MockClock, fake_server: FakeAppServer
) -> None:
    """A handler that never returns is cut off and the request declined."""

    async def hangs(request: ServerRequest) -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    answers: list[Any] = []
    fake_server.turn_script = asking_turn(
        answers, "item/commandExecution/requestApproval", itemId="c"
    )
    async with connect(fake_server, approval_handler=hangs, approval_timeout=30) as client:
        start = trio.current_time()
        await client.chat_once("q")
    assert answers == [{"decision": "decline"}]
    assert trio.current_time() - start == pytest.approx(30, abs=1)


@pytest.mark.fault(
    "client: overload (-32001)",
    "thread/start answered -32001 three times",
    "retried with backoff; succeeds at the 4th attempt",
)
async def test_overloaded_requests_are_retried_with_backoff(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """-32001 answers are retried until the server accepts."""
    fake_server.overload["thread/start"] = 3
    start = trio.current_time()
    thread_id = await client.start_thread()
    assert thread_id == "thread-1"
    assert fake_server.method_counts["thread/start"] == 4
    assert trio.current_time() - start > 0.2  # it backed off


@pytest.mark.fault(
    "client: overload (-32001)",
    "thread/start answered -32001 forever",
    "CodexOverloadedError with code -32001",
)
async def test_overload_that_never_ends_raises(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """After the last retry, the overload is reported as CodexOverloadedError."""
    fake_server.overload["thread/start"] = 1000
    with pytest.raises(CodexOverloadedError) as info:
        await client.start_thread()
    assert info.value.code == -32001


async def test_error_response_is_a_protocol_error(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A JSON-RPC error answer raises CodexProtocolError with the peer's code."""
    with pytest.raises(CodexProtocolError) as info:
        await client.request("no/such/method")
    assert info.value.code == -32600


@pytest.mark.fault(
    "client: unanswered request",
    "a request never answered; timeout=5",
    "CodexTimeoutError; the next turn completes",
)
async def test_request_timeout(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A request that is never answered times out, and the client stays usable."""
    await client.initialize()
    fake_server.silent_methods.add("slow/method")
    with pytest.raises(CodexTimeoutError):
        await client.request("slow/method", timeout=5)
    assert (await client.chat_once("still here")).final_text == "ECHO: still here"


@pytest.mark.fault(
    "client: server stops",
    "memory transport: the server vanishes mid-turn with a request pending",
    "both fail at once with CodexTransportError; later calls too",
)
async def test_peer_gone_fails_every_waiting_call_at_once(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """When the server vanishes, pending requests and turn readers fail immediately."""
    await client.initialize()
    fake_server.silent_methods.add("slow/method")

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await trio.sleep_forever()

    fake_server.turn_script = script
    errors: list[BaseException] = []

    async def call(coro_fn: Any) -> None:
        try:
            await coro_fn()
        except CodexTransportError as exc:
            errors.append(exc)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, lambda: client.request("slow/method", timeout=None))
        nursery.start_soon(call, lambda: client.chat_once("q"))
        await trio.sleep(1)
        await fake_server.close()
    assert len(errors) == 2
    assert trio.current_time() - start < 2
    with pytest.raises(CodexTransportError):
        await client.request("thread/start")


async def test_cancel_interrupts_and_returns_unread_steps(
    autojump_clock: trio.testing.MockClock, client: CodexClient, fake_server: FakeAppServer
) -> None:
    """cancel interrupts a running turn and hands back what the caller had not read."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "one")
        await turn.item("agentMessage", "two")
        await trio.sleep(100)
        await turn.item("agentMessage", "never")

    fake_server.turn_script = script
    stream = client.chat("q", inactivity_timeout=5)
    first = await stream.__anext__()
    assert first.text == "one"
    await trio.sleep(10)  # "two" arrives meanwhile, unread
    continuation = stream.continuation
    await stream.aclose()
    cancelled = await client.cancel(continuation)
    assert cancelled.was_interrupted and not cancelled.was_completed
    assert [s.text for s in cancelled.steps] == ["two"]
    assert cancelled.raw_events[-1]["method"] == "turn/completed"
    fake_server.turn_script = FakeAppServer(fake_server.transport).turn_script
    again = await client.chat_once("after", thread_id=first.thread_id)
    assert again.status == "completed"


async def test_cancel_of_a_finished_turn_reports_completion(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Cancelling a turn that already ended sends no interrupt and says it completed."""
    stream = client.chat("q")
    await stream.__anext__()
    continuation = stream.continuation
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    result = await client.cancel(continuation)
    assert result.was_completed and not result.was_interrupted
    assert fake_server.method_counts["turn/interrupt"] == 0


@pytest.mark.fault(
    "client: hostile input",
    "between turns: not JSON, a batch, a response to no request, an object of neither kind",
    "the 3 malformed ones counted, all skipped; the next turn completes",
)
async def test_malformed_messages_are_skipped(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Garbage lines from the server are counted and skipped; the connection goes on."""
    await client.initialize()
    for garbage in ["not json", "[1,2]", '{"id": 999, "result": {}}', '{"what": 1}']:
        await fake_server.send_raw(garbage)
    result = await client.chat_once("ok")
    assert result.final_text == "ECHO: ok"
    assert client.bad_messages == 3


@pytest.mark.fault(
    "client: message size",
    "memory transport: a message over the limit",
    "CodexTransportError 'over the limit'; that connection closed; another connection's "
    "turn completes",
)
async def test_oversized_message_closes_only_that_connection() -> None:
    """A message over the limit fails that connection clearly; another is unaffected."""
    small_client, small_server = memory_transport_pair(max_message_bytes=1000)
    small_server.max_message_bytes = 10**9  # the fake may send what the client refuses
    other_client, other_server = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        big = FakeAppServer(small_server)
        fine = FakeAppServer(other_server)
        await nursery.start(big.serve)
        await nursery.start(fine.serve)
        async with CodexClient.over(small_client) as a, CodexClient.over(other_client) as b:
            await a.initialize()
            await big.send_raw('{"method":"x","params":{"p":"' + "y" * 2000 + '"}}')
            await a.reader_done.wait()
            with pytest.raises(CodexTransportError, match="over the limit"):
                await a.request("thread/start")
            assert (await b.chat_once("fine")).final_text == "ECHO: fine"
        nursery.cancel_scope.cancel()


async def test_memory_stays_flat_over_ten_thousand_turns(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Nothing the client keeps grows with the number of turns served."""
    thread_id = await client.start_thread()
    for _ in range(200):
        await client.chat_once("warm", thread_id=thread_id)
    gc.collect()
    baseline = len(gc.get_objects())
    for n in range(10_000):
        result = await client.chat_once(f"t{n}", thread_id=thread_id)
        assert result.status == "completed"
    gc.collect()
    stats = client.statistics()
    assert stats.turns == 0
    assert stats.watched_threads == 0
    assert stats.pending_requests == 0
    assert stats.parking_lots == 0
    assert stats.unrouted_kept <= 256
    assert len(gc.get_objects()) - baseline < 2000


async def test_abandoned_turn_is_cleaned_up(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A caller that stops reading a turn does not leave its state behind forever."""
    for n in range(300):
        stream = client.chat(f"t{n}")
        await stream.__anext__()
        await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    stats = client.statistics()
    assert stats.turns <= 256
    assert stats.parking_lots == 0


async def test_continuation_of_a_forgotten_turn_is_rebuilt_from_thread_read(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """A continuation for a turn the client no longer tracks resumes from thread/read."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        for text in ("a", "b", "c"):
            await turn.item("agentMessage", text)
        await turn.complete()

    fake_server.turn_script = script
    first = await client.chat_once("q")
    assert client.statistics().turns == 0
    late = ChatContinuation(thread_id=first.thread_id, turn_id=first.turn_id, cursor=1)
    rest = await client.chat_once(continuation=late)
    assert [s.text for s in rest.steps] == ["b", "c"]
    assert [s.index for s in rest.steps] == [1, 2]
    assert rest.final_text == "c" and rest.status == "completed"


@pytest.mark.fault(
    "client: server stops",
    "the server vanishes while idle; a request follows in the client's block",
    "CodexTransportError itself, not an ExceptionGroup",
)
async def test_errors_from_the_block_are_not_wrapped(fake_server: FakeAppServer) -> None:
    """An error raised inside `async with` comes out as itself, not in an ExceptionGroup."""
    with pytest.raises(CodexTransportError):
        async with connect(fake_server) as client:
            await client.initialize()
            await fake_server.close()
            await client.reader_done.wait()
            await client.request("thread/start")


async def test_answers_queued_behind_a_slow_write_go_out_in_one(
    fake_server: FakeAppServer,
) -> None:
    """While one write is slow (a busy reader leaves the writer few turns; here, a stalled
    peer), the answers queued behind it go out together in the next write, in order; none
    waits for a write of its own."""
    client_end = fake_server.client_end  # type: ignore[attr-defined]
    first_write_done = trio.Event()
    gate = trio.Event()
    writes: list[int] = []
    batching = False
    send, send_batch = client_end.send, client_end.send_batch

    async def stalled_send(value: str) -> None:
        if batching:  # the memory transport's batch is a loop of sends
            await send(value)
            return
        writes.append(1)
        if not first_write_done.is_set():
            await gate.wait()
            first_write_done.set()
        await send(value)

    async def recorded_send_batch(values: list[str]) -> None:
        nonlocal batching
        writes.append(len(values))
        batching = True
        await send_batch(values)
        batching = False

    client_end.send, client_end.send_batch = stalled_send, recorded_send_batch

    async def accept(request: ServerRequest) -> dict[str, Any]:
        return {"decision": "accept", "n": request.params["n"]}

    async with CodexClient.over(client_end, approval_handler=accept), trio.open_nursery() as n:
        for number in range(20):
            n.start_soon(
                fake_server.server_request, "item/commandExecution/requestApproval", {"n": number}
            )
            await trio.testing.wait_all_tasks_blocked()  # answered in the order asked
        gate.set()
    assert writes == [1, 19]
    assert fake_server.responses == {}  # every server_request got its answer
