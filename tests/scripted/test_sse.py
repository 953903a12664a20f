"""SSE encoding of reply plans: event order, payload shapes and pauses (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.scripted.script import (
    HttpError,
    ItemIds,
    Script,
    StreamFailure,
    StreamReply,
)
from orchestrator.scripted.sse import SseStep, encode_event, error_body, split_text, stream_steps

from .helpers import body_for, user

# How every stream starts, whatever the reply.
STARTED = ["response.created", "response.in_progress"]


def steps_for(prompt: str) -> list[SseStep]:
    reply = Script().plan(body_for(user(prompt)), ItemIds())
    assert isinstance(reply, StreamReply | StreamFailure)
    return stream_steps(reply, created_at=1_700_000_000)


def decode(step: SseStep) -> dict[str, Any]:
    head, data, blank = step.data.decode().split("\n", 2)
    assert head == f"event: {step.event}"
    assert blank == "\n"
    assert data.startswith("data: ")
    payload: dict[str, Any] = json.loads(data.removeprefix("data: "))
    assert payload["type"] == step.event
    return payload


def of_type(steps: list[SseStep], event_type: str) -> list[dict[str, Any]]:
    return [decode(s) for s in steps if s.event == event_type]


def test_encode_event_is_one_sse_record() -> None:
    """A record is `event:` and one `data:` line of JSON, ended by a blank line."""
    assert encode_event("response.created", {"a": "x\ny"}) == (
        b'event: response.created\ndata: {"type":"response.created","a":"x\\ny"}\n\n'
    )


@pytest.mark.parametrize(("text", "count"), [("hello world", 3), ("ab", 5), ("", 2), ("xyz", 1)])
def test_split_text_keeps_every_character(text: str, count: int) -> None:
    """The pieces concatenate to the text, there are `count` of them, near-equal in size."""
    pieces = split_text(text, count)
    assert "".join(pieces) == text
    assert len(pieces) == count
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_echo_stream_has_the_events_codex_needs() -> None:
    """A message reply goes created, item added, deltas, item done, completed with usage."""
    steps = steps_for("hello world")
    assert [s.event for s in steps] == [
        *STARTED,
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [decode(s)["sequence_number"] for s in steps] == list(range(len(steps)))
    deltas = of_type(steps, "response.output_text.delta")
    assert "".join(d["delta"] for d in deltas) == "ECHO: hello world"
    (done,) = of_type(steps, "response.output_item.done")
    assert done["item"]["type"] == "message"
    assert done["item"]["role"] == "assistant"
    assert done["item"]["content"] == [
        {"type": "output_text", "text": "ECHO: hello world", "annotations": []}
    ]
    assert "phase" not in done["item"]
    (completed,) = of_type(steps, "response.completed")
    response = completed["response"]
    assert response["status"] == "completed"
    assert response["created_at"] == 1_700_000_000
    assert response["output"] == [done["item"]]
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert all(s.delay == 0 for s in steps)


def test_reasoning_stream_has_summary_part_and_deltas() -> None:
    """Reasoning uses reasoning_summary_part.added and reasoning_summary_text.delta."""
    steps = steps_for("reason: sky")
    (part,) = of_type(steps, "response.reasoning_summary_part.added")
    assert part["summary_index"] == 0
    deltas = of_type(steps, "response.reasoning_summary_text.delta")
    assert {d["item_id"] for d in deltas} == {part["item_id"]}
    assert "".join(d["delta"] for d in deltas) == "Thinking about: sky"
    reasoning, message = (d["item"] for d in of_type(steps, "response.output_item.done"))
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Thinking about: sky"}]
    assert message["content"][0]["text"] == "REASONED: sky"


def test_tool_call_stream_carries_the_arguments() -> None:
    """A function call item is added empty and done with its name, call id and arguments."""
    steps = steps_for("shell: ls")
    (added,) = of_type(steps, "response.output_item.added")
    (done,) = of_type(steps, "response.output_item.done")
    assert added["item"]["arguments"] == ""
    item = done["item"]
    assert (item["type"], item["name"]) == ("function_call", "exec_command")
    assert json.loads(item["arguments"]) == {"cmd": "ls", "yield_time_ms": 10000}
    assert item["call_id"].startswith("call_")


def test_slow_pauses_before_every_message_delta() -> None:
    """`slow 2x4` puts a 2 s delay before each of 4 deltas and nowhere else."""
    steps = steps_for("slow 2x4: hi")
    delayed = [s.event for s in steps if s.delay]
    assert delayed == ["response.output_text.delta"] * 4
    assert {s.delay for s in steps if s.delay} == {2.0}


def test_think_pauses_once_before_the_first_output() -> None:
    """`think 1.5: reason: x` is silent 1.5 s after the response starts, before any item."""
    steps = steps_for("think 1.5: reason: x")
    delayed = [(index, s.event, s.delay) for index, s in enumerate(steps) if s.delay]
    assert delayed == [(2, "response.output_item.added", 1.5)]
    assert [s.event for s in steps[:2]] == STARTED


def test_final_sets_phase_on_both_messages() -> None:
    """Each message item carries its phase, both when added and when done."""
    steps = steps_for("final: a | b")
    for event_type in ("response.output_item.added", "response.output_item.done"):
        phases = [e["item"]["phase"] for e in of_type(steps, event_type)]
        assert phases == ["commentary", "final_answer"]


def test_failure_stream_ends_with_response_failed() -> None:
    """`fail:` starts the response, then fails it with the scripted message."""
    steps = steps_for("fail: meltdown")
    assert [s.event for s in steps] == [*STARTED, "response.failed"]
    (failed,) = of_type(steps, "response.failed")
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["message"] == "meltdown"


def test_error_body_is_openai_shaped_json() -> None:
    """An HTTP error body is `{"error": {"message", "type": "scripted_error"}}`."""
    body = json.loads(error_body(HttpError(status=400, message="bad thing")))
    assert body == {"error": {"message": "bad thing", "type": "scripted_error"}}
