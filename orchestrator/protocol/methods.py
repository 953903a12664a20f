"""The shapes of the app-server methods we call: params we build, results we read.

One place knows that `turn/start` wants `input` items and answers `{"turn": {"id"}}`, that a
thread's status is `{"type": "active"}`, and so on (`shared/protocol/schema` is the truth).
A result without what we need raises `CodexProtocolError` naming the method; pure otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.errors import CodexProtocolError
from orchestrator.protocol.values import ThreadOptions

THREAD_START = "thread/start"
THREAD_RESUME = "thread/resume"
THREAD_READ = "thread/read"
TURN_START = "turn/start"
TURN_INTERRUPT = "turn/interrupt"
# The cheapest request there is: a hang probe asks it (any answer proves the server alive).
LIVENESS_PROBE = "thread/loaded/list"


def thread_start_params(options: ThreadOptions | None) -> dict[str, Any]:
    """`thread/start` params for these options."""
    return (options or ThreadOptions()).to_params()


def started_thread_id(result: Any) -> str:
    """The thread id in a `thread/start` result."""
    try:
        thread_id = result["thread"]["id"]
    except (KeyError, TypeError):
        raise CodexProtocolError(f"{THREAD_START}: no thread id in {result!r:.200}") from None
    if not isinstance(thread_id, str):
        raise CodexProtocolError(f"{THREAD_START}: bad thread id {thread_id!r}")
    return thread_id


def thread_resume_params(thread_id: str, options: ThreadOptions) -> dict[str, Any]:
    """`thread/resume` params: the thread's options again (not its cwd: a resumed thread
    keeps its own), without its turns (we read those with `thread/read` when needed)."""
    params = {"threadId": thread_id, "excludeTurns": True, **options.to_params()}
    params.pop("cwd", None)
    return params


def turn_start_params(
    thread_id: str, text: str | None, input_items: Sequence[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """`turn/start` params: the text (if any) as the first input item, then the others."""
    items: list[dict[str, Any]] = []
    if text is not None:
        items.append({"type": "text", "text": text, "text_elements": []})
    items.extend(dict(item) for item in input_items or ())
    return {"threadId": thread_id, "input": items}


def started_turn_id(result: Any) -> str:
    """The turn id in a `turn/start` result."""
    turn_id = result["turn"]["id"] if isinstance(result, dict) else None
    if not isinstance(turn_id, str):
        raise CodexProtocolError(f"{TURN_START}: no turn id in {result!r:.200}")
    return turn_id


def turn_interrupt_params(thread_id: str, turn_id: str) -> dict[str, Any]:
    """`turn/interrupt` params."""
    return {"threadId": thread_id, "turnId": turn_id}


def thread_read_params(thread_id: str, *, include_turns: bool) -> dict[str, Any]:
    """`thread/read` params, with or without the thread's turns and their items."""
    if include_turns:
        return {"threadId": thread_id, "includeTurns": True}
    return {"threadId": thread_id}


def thread_turns(result: Any) -> list[Any]:
    """The turns of a `thread/read` result (empty when it has none, or no thread)."""
    thread = result.get("thread") if isinstance(result, dict) else None
    turns = thread.get("turns") if isinstance(thread, dict) else None
    return turns if isinstance(turns, list) else []


def turn_of(result: Any, turn_id: str) -> dict[str, Any] | None:
    """The turn `turn_id` in a `thread/read` result, or None."""
    for turn in thread_turns(result):
        if isinstance(turn, dict) and turn.get("id") == turn_id:
            return turn
    return None


def newest_turn_id(result: Any) -> str | None:
    """The id of the thread's last turn in a `thread/read` result, or None."""
    turns = thread_turns(result)
    if turns and isinstance(turns[-1], dict):
        last = turns[-1].get("id")
        return last if isinstance(last, str) else None
    return None


def thread_is_active(result: Any) -> bool:
    """Whether a `thread/read` result shows the thread running a turn now."""
    thread = result.get("thread") if isinstance(result, dict) else None
    status = thread.get("status") if isinstance(thread, dict) else None
    return isinstance(status, Mapping) and status.get("type") == "active"
