"""Encode a reply plan as the Responses API's server-sent events, as bytes.

Pure: the plan's pauses become `SseStep.delay` values that `provider.py` sleeps through before
writing the step's bytes, so nothing here knows about time or sockets. Each step is one
`event: <type>\\ndata: <json>\\n\\n` record, and the event payloads follow the OpenAI Responses
API shapes that codex parses (`response.output_item.added`/`done`, text and reasoning-summary
deltas, `response.completed` with `usage`, `response.failed` with `error`).
"""

from __future__ import annotations

import json

import attrs

from orchestrator.scripted.script import (
    HttpError,
    Message,
    Output,
    Reasoning,
    StreamFailure,
    StreamReply,
    ToolCall,
    Usage,
)

__all__ = ["SseStep", "encode_event", "error_body", "split_text", "stream_steps"]

FAILURE_CODE = "scripted_failure"


@attrs.frozen
class SseStep:
    """One SSE record to write after `delay` seconds of silence."""

    event: str
    data: bytes
    delay: float = 0.0


def encode_event(event_type: str, payload: dict[str, object]) -> bytes:
    """One SSE record; `payload` gets `"type": event_type` in front."""
    body = json.dumps({"type": event_type, **payload}, separators=(",", ":"))
    return f"event: {event_type}\ndata: {body}\n\n".encode()


def error_body(reply: HttpError) -> bytes:
    """The JSON body that goes with an HTTP error status."""
    error = {"message": reply.message, "type": "scripted_error"}
    return json.dumps({"error": error}).encode()


def split_text(text: str, count: int) -> list[str]:
    """Cut `text` into `count` consecutive pieces of near-equal length (some may be empty)."""
    count = max(1, count)
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def stream_steps(reply: StreamReply | StreamFailure, *, created_at: int = 0) -> list[SseStep]:
    """Every SSE record of a streamed reply, in order; `created_at` is epoch seconds."""
    builder = _Builder()
    response: dict[str, object] = {
        "id": reply.response_id,
        "object": "response",
        "created_at": created_at,
        "model": reply.model,
        "output": [],
    }
    in_progress = {**response, "status": "in_progress"}
    builder.add("response.created", {"response": in_progress})
    builder.add("response.in_progress", {"response": in_progress})
    if isinstance(reply, StreamFailure):
        error = {"code": FAILURE_CODE, "message": reply.message}
        failed = {**response, "status": "failed", "error": error, "usage": None}
        builder.add("response.failed", {"response": failed})
        return builder.steps
    first_output = len(builder.steps)
    done = [
        builder.add_output(index, output, chunks=reply.chunks, pause=reply.pause)
        for index, output in enumerate(reply.outputs)
    ]
    if reply.think > 0 and first_output < len(builder.steps):
        step = builder.steps[first_output]
        builder.steps[first_output] = attrs.evolve(step, delay=step.delay + reply.think)
    completed = {**response, "status": "completed", "output": done, "usage": _usage(reply.usage)}
    builder.add("response.completed", {"response": completed})
    return builder.steps


def _usage(usage: Usage) -> dict[str, object]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _item(output: Output, *, done: bool) -> dict[str, object]:
    status = "completed" if done else "in_progress"
    match output:
        case Message(id=item_id, text=text, phase=phase):
            content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
            item: dict[str, object] = {
                "id": item_id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }
            if phase is not None:
                item["phase"] = phase
            return item
        case Reasoning(id=item_id, summary=summary):
            parts = [{"type": "summary_text", "text": summary}] if done else []
            return {"id": item_id, "type": "reasoning", "summary": parts}
        case ToolCall(id=item_id, call_id=call_id, name=name, arguments=arguments):
            return {
                "id": item_id,
                "type": "function_call",
                "status": status,
                "name": name,
                "call_id": call_id,
                "arguments": arguments if done else "",
            }


@attrs.define
class _Builder:
    steps: list[SseStep] = attrs.Factory(list)

    def add(self, event_type: str, payload: dict[str, object], *, delay: float = 0.0) -> None:
        payload = {**payload, "sequence_number": len(self.steps)}
        self.steps.append(SseStep(event_type, encode_event(event_type, payload), delay))

    def add_output(
        self, index: int, output: Output, *, chunks: int, pause: float
    ) -> dict[str, object]:
        added = {"output_index": index, "item": _item(output, done=False)}
        self.add("response.output_item.added", added)
        where: dict[str, object] = {"item_id": output.id, "output_index": index}
        match output:
            case Message(text=text):
                self._text(where, text, chunks=chunks, pause=pause)
            case Reasoning(summary=summary):
                self._summary(where, summary, chunks=chunks)
            case ToolCall(arguments=arguments):
                self.add("response.function_call_arguments.delta", {**where, "delta": arguments})
                self.add("response.function_call_arguments.done", {**where, "arguments": arguments})
        item = _item(output, done=True)
        self.add("response.output_item.done", {"output_index": index, "item": item})
        return item

    def _text(self, where: dict[str, object], text: str, *, chunks: int, pause: float) -> None:
        at = {**where, "content_index": 0}
        self.add("response.content_part.added", {**at, "part": _text_part("")})
        for piece in split_text(text, chunks):
            self.add("response.output_text.delta", {**at, "delta": piece}, delay=pause)
        self.add("response.output_text.done", {**at, "text": text})
        self.add("response.content_part.done", {**at, "part": _text_part(text)})

    def _summary(self, where: dict[str, object], summary: str, *, chunks: int) -> None:
        at = {**where, "summary_index": 0}
        part = {"type": "summary_text", "text": ""}
        self.add("response.reasoning_summary_part.added", {**at, "part": part})
        for piece in split_text(summary, chunks):
            self.add("response.reasoning_summary_text.delta", {**at, "delta": piece})
        self.add("response.reasoning_summary_text.done", {**at, "text": summary})
        done_part = {**part, "text": summary}
        self.add("response.reasoning_summary_part.done", {**at, "part": done_part})


def _text_part(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": []}
