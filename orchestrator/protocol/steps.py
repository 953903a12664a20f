"""From server items to the caller's steps, and the choice of a turn's final text."""

from __future__ import annotations

from typing import Any

from orchestrator.protocol.values import ConversationStep

STEP_TYPES = {
    "reasoning": "thinking",
    "commandExecution": "exec",
    "agentMessage": "codex",
    "mcpToolCall": "tool",
    "fileChange": "file",
}

# Item types that are echoes of our own input, not steps of the agent.
NOT_STEPS = frozenset({"userMessage"})

FINAL_ANSWER_PHASE = "final_answer"


def item_text(item: dict[str, Any]) -> str:
    """The human-readable text of an item (message, reasoning summary, command output...)."""
    item_type = item.get("type")
    if item_type == "agentMessage":
        return _str(item.get("text"))
    if item_type == "reasoning":
        parts = _list(item.get("summary")) or _list(item.get("content"))
        return "\n".join(_part_text(part) for part in parts if _part_text(part))
    if item_type == "commandExecution":
        return _str(item.get("aggregatedOutput"))
    if item_type == "fileChange":
        changes = _list(item.get("changes"))
        return "\n".join(_change_text(change) for change in changes if isinstance(change, dict))
    if item_type == "mcpToolCall":
        return _tool_text(item)
    return _str(item.get("text"))


def _list(value: Any) -> list[Any]:
    """A field that should be a list; anything else (a peer's mistake) reads as empty."""
    return value if isinstance(value, list) else []


def step_from_item(
    item: dict[str, Any], *, thread_id: str, turn_id: str, index: int
) -> ConversationStep | None:
    """The step for one completed item, or None for items that are not steps."""
    item_type = str(item.get("type", "unknown"))
    if item_type in NOT_STEPS:
        return None
    item_id = item.get("id")
    return ConversationStep(
        step_type=STEP_TYPES.get(item_type, item_type),
        item_type=item_type,
        item_id=item_id if isinstance(item_id, str) else None,
        text=item_text(item),
        thread_id=thread_id,
        turn_id=turn_id,
        data=item,
        index=index,
    )


class FinalTextChooser:
    """Remembers, in O(1) memory, the candidates for a turn's final text as items complete."""

    __slots__ = ("final_answer", "last_message")

    def __init__(self) -> None:
        self.final_answer: str | None = None
        self.last_message: str | None = None

    def observe(self, item: dict[str, Any]) -> None:
        """Note one completed item."""
        if item.get("type") != "agentMessage":
            return
        text = _str(item.get("text"))
        self.last_message = text
        if item.get("phase") == FINAL_ANSWER_PHASE:
            self.final_answer = text

    @property
    def text(self) -> str | None:
        """The final-answer message if any, else the last agent message."""
        return self.final_answer if self.final_answer is not None else self.last_message


def final_text_from_items(items: list[Any]) -> str | None:
    """The final text among a list of items (from `turn/completed` or `thread/read`)."""
    chooser = FinalTextChooser()
    for item in items:
        if isinstance(item, dict):
            chooser.observe(item)
    return chooser.text


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        return _str(part.get("text"))
    return ""


def _change_text(change: dict[str, Any]) -> str:
    path = _str(change.get("path"))
    diff = _str(change.get("diff"))
    return f"{path}\n{diff}".strip() if diff else path


def _tool_text(item: dict[str, Any]) -> str:
    result = item.get("result")
    if isinstance(result, dict):
        content = result.get("content")
        if isinstance(content, list):
            return "\n".join(_part_text(part) for part in content if _part_text(part))
    error = item.get("error")
    if isinstance(error, dict):
        return _str(error.get("message"))
    return _str(item.get("text"))
