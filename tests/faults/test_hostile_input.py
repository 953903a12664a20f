"""Fault 1: messages from the server that are not JSON-RPC we can use.

Each is injected in the middle of a turn while another turn, on another thread of the same
connection, is in flight (its server waits on our approval). What must happen: the message is
counted (`bad_messages`) or ignored, and skipped; both turns complete with exactly their own
steps; the connection stays up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from orchestrator.client import CodexClient, ServerRequest
from orchestrator.transport.memory import memory_transport_pair
from tests.fake_app_server import FakeAppServer, FakeTurn
from tests.faults.harness import bystander, known_bug, open_endpoint
from tests.faults.hostile_server import APPROVAL

AREA = "client: hostile input"


def _case(
    case_id: str,
    text: str,
    bad: int | None,
    fault: str,
    *,
    bug: str = "",
    raises: type[BaseException] = TypeError,
) -> Any:
    """One hostile message: `bad` is how many bad messages it must count (0: ignored; None:
    counted or ignored, as the parser sees it)."""
    expected = {0: "ignored", None: "skipped"}.get(bad, "counted, skipped")
    marks = [pytest.mark.fault(AREA, fault, f"{expected}; both turns complete")]
    if bug:
        marks.append(known_bug(bug, raises))
    return pytest.param(text, bad, id=case_id, marks=marks)


def _note(method: str, params: Any) -> str:
    return json.dumps({"method": method, "params": params})


ITEM = {"type": "agentMessage", "id": "ghost", "text": "must not become a step"}
CRASHES_READER = "the reader task dies on it: every call fails and an ExceptionGroup escapes"

CASES = [
    _case("not-json", "this is not JSON", 1, "a line that is not JSON"),
    _case("truncated", '{"method": "item/completed", "params": {', 1, "truncated JSON"),
    _case("huge-garbage", "x" * 1_000_000, 1, "1 MB of garbage in one message"),
    _case("number", "42", 1, "JSON that is a number"),
    _case("string", '"hello"', 1, "JSON that is a string"),
    _case("null", "null", 1, "JSON null"),
    _case("boolean", "true", 1, "JSON true"),
    _case(
        "batch",
        "["
        + _note("item/completed", {"threadId": "$thread", "turnId": "$turn", "item": ITEM})
        + "]",
        1,
        "a batch (JSON array) holding an item of the turn",
    ),
    _case("empty-batch", "[]", 1, "an empty batch"),
    _case("no-method-no-id", '{"what": 1}', 1, "an object that is neither request nor answer"),
    _case("method-int", '{"method": 7, "params": {}}', 1, "a method that is a number"),
    _case("huge-int-id", '{"id": 1' + "0" * 5000 + ', "result": {}}', None, "a 5000-digit id"),
    _case("response-bad-id", '{"id": [1], "result": {}}', 1, "a response whose id is an array"),
    _case("response-unknown-id", '{"id": 987654, "result": {}}', 0, "a response to no request"),
    _case(
        "error-unknown-id",
        '{"id": "nope", "error": {"code": -32600, "message": "?"}}',
        0,
        "an error response to no request",
    ),
    _case(
        "error-null-id",
        '{"id": null, "error": {"code": -32700, "message": "Parse error"}}',
        0,
        "an error response with a null id",
    ),
    _case("params-array", '{"method": "item/completed", "params": [1]}', 1, "params an array"),
    _case("params-string", '{"method": "item/completed", "params": "x"}', 1, "params a string"),
    _case(
        "thread-id-int",
        _note("item/completed", {"threadId": 1, "turnId": 2, "item": ITEM}),
        0,
        "threadId and turnId that are numbers",
    ),
    _case(
        "item-string",
        _note("item/completed", {"threadId": "$thread", "turnId": "$turn", "item": "x"}),
        0,
        "item/completed of the turn whose item is a string",
    ),
    _case(
        "item-null",
        _note("item/completed", {"threadId": "$thread", "turnId": "$turn", "item": None}),
        0,
        "item/completed of the turn whose item is null",
    ),
    _case(
        "item-started-array",
        _note("item/started", {"threadId": "$thread", "turnId": "$turn", "item": [1]}),
        0,
        "item/started of the turn whose item is an array",
    ),
    _case(
        "turn-completed-without-turn",
        _note("turn/completed", {"threadId": "$thread"}),
        0,
        "turn/completed without turn",
    ),
    _case(
        "turn-completed-turn-string",
        _note("turn/completed", {"threadId": "$thread", "turn": "done"}),
        0,
        "turn/completed whose turn is a string",
    ),
    _case(
        "turn-completed-other-turn",
        _note("turn/completed", {"threadId": "$thread", "turn": {"id": "ghost", "status": 3}}),
        0,
        "turn/completed of an unknown turn on the thread, status a number",
    ),
    _case(
        "usage-wrong-types",
        _note(
            "thread/tokenUsage/updated",
            {
                "threadId": "$thread",
                "turnId": "$turn",
                "tokenUsage": {
                    "last": {"totalTokens": "many"},
                    "total": [],
                    "modelContextWindow": {},
                },
            },
        ),
        0,
        "token usage with strings, arrays and objects for numbers",
    ),
    _case(
        "usage-nan",
        '{"method": "thread/tokenUsage/updated", "params": {"threadId": "$thread", '
        '"turnId": "$turn", "tokenUsage": {"last": {"totalTokens": NaN}}}}',
        0,
        "token usage of NaN",
    ),
    _case(
        "error-event-string",
        _note("error", {"threadId": "$thread", "turnId": "$turn", "error": "boom"}),
        0,
        "an error notification whose error is a string",
    ),
    _case(
        "delta-unknown-turn",
        _note("item/agentMessage/delta", {"threadId": "$thread", "turnId": "ghost", "delta": 1}),
        0,
        "a delta for an unknown turn, delta a number",
    ),
    _case(
        "resolved-unknown",
        _note("serverRequest/resolved", {"threadId": "$thread", "requestId": 999}),
        0,
        "serverRequest/resolved of no request",
    ),
    _case(
        "deeply-nested",
        "[" * 100_000 + "]" * 100_000,
        1,
        "JSON nested 100,000 deep",
    ),
    _case(
        "method-array",
        '{"method": ["item/completed"], "params": {}}',
        1,
        "a method that is an array",
    ),
    _case(
        "delta-turn-id-array",
        _note("item/agentMessage/delta", {"threadId": "$thread", "turnId": ["$turn"], "delta": ""}),
        1,
        "a delta whose turnId is an array",
    ),
    _case(
        "item-type-array",
        _note(
            "item/started",
            {"threadId": "$thread", "turnId": "$turn", "item": {"id": "x", "type": []}},
        ),
        1,
        "item/started of the turn whose item type is an array",
    ),
    _case(
        "resolved-id-array",
        _note("serverRequest/resolved", {"threadId": "$thread", "requestId": [0]}),
        1,
        "serverRequest/resolved whose requestId is an array",
    ),
]


@pytest.mark.parametrize(("text", "bad"), CASES)
async def test_hostile_message_mid_turn_is_skipped(text: str, bad: int | None) -> None:
    """A hostile message in the middle of a turn is counted or ignored and skipped; that turn
    and a concurrent turn on another thread complete with exactly their own steps."""
    client_end, server_end = memory_transport_pair()
    server = FakeAppServer(server_end)
    asked, release = trio.Event(), trio.Event()

    async def approve(request: ServerRequest) -> Mapping[str, Any]:
        asked.set()
        await release.wait()
        return {"decision": "accept"}

    async def other_turn(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "other: before")
        await turn.request(APPROVAL, itemId="c1", command="true")
        await turn.item("agentMessage", "other: after")
        await turn.complete()

    async def hurt_turn(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "before")
        await server.send_raw(
            text.replace("$thread", turn.thread_id).replace("$turn", turn.turn_id)
        )
        await turn.item("agentMessage", "after")
        await turn.complete()

    server.scripts.extend([other_turn, hurt_turn])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            async with CodexClient.over(client_end, approval_handler=approve) as client:
                other = client.chat("other")
                assert (await other.__anext__()).text == "other: before"
                await asked.wait()
                counted_before = client.bad_messages
                hurt = await client.chat_once("hurt")
                counted = client.bad_messages - counted_before
                release.set()
                other_rest = [step.text async for step in other]
                other_result = await other.result()
                assert not client.closed
                assert client.statistics().pending_requests == 0
            nursery.cancel_scope.cancel()
    assert [s.text for s in hurt.steps] == ["before", "after"]
    assert hurt.status == "completed" and hurt.final_text == "after"
    assert other_rest == ["other: after"] and other_result.status == "completed"
    assert bad is None or counted == bad


@pytest.mark.fault(
    AREA,
    "a server request whose params are not an object",
    "answered with a JSON-RPC error (never left unanswered)",
)
async def test_malformed_server_request_still_gets_an_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server request the client cannot decode is still answered, with an error."""
    client_end, server_end = memory_transport_pair()
    server = FakeAppServer(server_end)
    answered = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with CodexClient.over(client_end) as client:
            await client.initialize()
            server._waiting[77] = answered  # the fake records the client's answer to id 77
            await server.send_raw(json.dumps({"id": 77, "method": APPROVAL, "params": [1]}))
            with trio.move_on_after(30):
                await answered.wait()
            assert client.bad_messages == 1
        nursery.cancel_scope.cancel()
    assert answered.is_set()
    refusal = server.responses.get(77)  # the fake keeps an error answer's error object
    assert isinstance(refusal, dict) and refusal["code"] == -32600


@pytest.mark.fault(
    AREA,
    "items whose text fields have the wrong types (reasoning summary 5, fileChange changes 7)",
    "steps with empty text; the turn completes",
)
async def test_items_with_wrong_typed_fields_become_steps_with_empty_text(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """An item whose text fields have the wrong types is a step with empty text."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.notify("item/completed", item={"type": "reasoning", "id": "r", "summary": 5})
        await turn.notify("item/completed", item={"type": "fileChange", "id": "f", "changes": 7})
        await turn.item("agentMessage", "after")
        await turn.complete()

    fake_server.turn_script = script
    with trio.fail_after(10):
        result = await client.chat_once("q")
    assert [(s.step_type, s.text) for s in result.steps] == [
        ("thinking", ""),
        ("file", ""),
        ("codex", "after"),
    ]
    assert result.status == "completed"


STDIO_GARBAGE = [
    ["raw_bytes", "\xff\xfe{not UTF-8 at all}\n"],
    ["raw_bytes", "\x00\x00\x00\n"],
    ["raw_bytes", "\n\n   \n"],  # blank lines: not messages at all
    ["raw_bytes", '{"id": 424242, "result": {}}\r\n'],  # CRLF: a (useless) message
    ["raw", "y", 1_000_000],
    # Invalid UTF-8 inside a string of a real item: replaced, the item kept.
    [
        "raw_bytes",
        '{"method": "item/completed", "params": {"threadId": "$thread", '
        '"turnId": "$turn", "item": {"type": "agentMessage", "id": "u", "text": "caf\xe9"}}}\n',
    ],
]
WEBSOCKET_GARBAGE = [
    ["raw", ""],
    ["raw", "this is not JSON"],
    ["raw", "[]"],
    ["raw", '{"id": 424242, "result": {}}'],
    ["raw_bytes", "\x00binary frame"],  # binary frames are dropped, like the server does
    ["raw", "y", 1_000_000],
]


@pytest.mark.parametrize(
    ("transport", "garbage", "bad", "steps"),
    [
        pytest.param(
            "stdio",
            STDIO_GARBAGE,
            3,
            ["before", "caf\ufffd", "after"],
            id="stdio",
            marks=pytest.mark.fault(
                AREA,
                "stdio: invalid UTF-8, NUL bytes, blank and CRLF lines, 1 MB of garbage",
                "bad lines counted and skipped, bad UTF-8 in a string replaced; the turn "
                "and another connection's turn complete",
            ),
        ),
        pytest.param(
            "websocket",
            WEBSOCKET_GARBAGE,
            4,
            ["before", "after"],
            id="websocket",
            marks=pytest.mark.fault(
                AREA,
                "websocket: empty, non-JSON and batch frames, a binary frame, 1 MB of garbage",
                "bad frames counted and skipped, the binary frame dropped; the turn and "
                "another connection's turn complete",
            ),
        ),
    ],
)
async def test_garbage_over_a_real_transport(
    transport: str, garbage: list[list[Any]], bad: int, steps: list[str]
) -> None:
    """Garbage on the wire of a real transport is skipped; the turn completes and another
    connection with a turn in flight is unaffected."""
    plan = {
        "turn": [["accept"], ["message", "before"], *garbage, ["message", "after"], ["complete"]]
    }
    with trio.fail_after(20):
        async with open_endpoint(transport, plan) as endpoint, bystander(endpoint) as other:
            async with endpoint.connect() as client:
                result = await client.chat_once("hurt")
                assert client.bad_messages == bad
                assert not client.closed
            await other.finish()
    assert [s.text for s in result.steps] == steps
    assert result.status == "completed"


@pytest.mark.fault(
    AREA,
    "20,000 notifications for threads nobody watches, in the middle of a turn",
    "ignored, only a bounded ring of 256 kept; the turn completes",
)
async def test_flood_of_unrouted_notifications_is_bounded(
    client: CodexClient, fake_server: FakeAppServer
) -> None:
    """Notifications for unknown threads are dropped into a bounded ring, however many come."""
    flood = 20_000

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.item("agentMessage", "before")
        for n in range(flood):
            await fake_server.send(
                {
                    "method": "item/completed",
                    "params": {"threadId": f"stranger-{n}", "turnId": f"t-{n}", "item": ITEM},
                }
            )
        await turn.item("agentMessage", "after")
        await turn.complete()

    fake_server.turn_script = script
    with trio.fail_after(30):
        result = await client.chat_once("q")
    assert [s.text for s in result.steps] == ["before", "after"]
    stats = client.statistics()
    assert stats.unrouted_total >= flood  # (thread/started is unrouted too)
    assert stats.unrouted_kept <= 256
    assert stats.turns == 0
