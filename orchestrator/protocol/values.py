"""Values the client hands to its callers: steps, results, continuations, options.

Pure data (attrs, frozen); no I/O. `step.data` and `raw_events` hold the server's JSON exactly
as it arrived, so nothing the server said is hidden behind our summaries. They live in the
protocol layer because its sans-IO turn tracker builds them; `orchestrator.client` re-exports
every one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

JsonObject = dict[str, Any]


class TurnStatus(enum.StrEnum):
    """How a turn stands: the server's `TurnStatus`, and `cancelled` (ours, never the
    server's: the orchestrator stopped the turn and recorded it so)."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    IN_PROGRESS = "inProgress"
    CANCELLED = "cancelled"

    @classmethod
    def of(cls, value: object) -> TurnStatus | None:
        """The status a server's value names (`completed`, `interrupted`, `failed`,
        `inProgress`), else None."""
        return _SERVERS.get(value) if isinstance(value, str) else None

    @classmethod
    def ended(cls, value: object) -> TurnStatus | None:
        """The terminal status a server's value names (`completed`, `interrupted`,
        `failed`), else None."""
        return _TERMINAL.get(value) if isinstance(value, str) else None


_TERMINAL = {
    status.value: status
    for status in (TurnStatus.COMPLETED, TurnStatus.INTERRUPTED, TurnStatus.FAILED)
}
_SERVERS = {**_TERMINAL, TurnStatus.IN_PROGRESS.value: TurnStatus.IN_PROGRESS}


@attrs.frozen(kw_only=True)
class ConversationStep:
    """One completed item of a turn (one `item/completed`), in order.

    `step_type` is `thinking` (reasoning), `exec` (commandExecution), `codex` (agentMessage),
    `tool` (mcpToolCall), `file` (fileChange), or the item's own type for anything else.
    """

    step_type: str
    item_type: str
    item_id: str | None
    text: str
    thread_id: str
    turn_id: str
    data: JsonObject = attrs.field(repr=False, eq=False)
    index: int = 0  # position among this turn's steps, from 0


@attrs.frozen(kw_only=True)
class TokenUsage:
    """Tokens spent: `last` model call sums over this turn; `thread_total` is the thread's."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0
    thread_total_tokens: int = 0
    model_context_window: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        """A JSON-ready copy."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class ChatContinuation:
    """Where a reader of a running turn stopped: resume with `chat(continuation=...)`.

    `cursor` counts the steps of the turn already handed to the caller.
    """

    thread_id: str
    turn_id: str
    cursor: int = 0


@attrs.frozen(kw_only=True)
class ChatResult:
    """The outcome of one turn. `status` is `completed`, `interrupted` or `failed`.

    `final_text` is the agent message of phase `final_answer` when there is one, else the last
    agent message; `completion_source` says where it came from: `items` (the item stream),
    `turn_completed` (the summary in `turn/completed`), `thread_read` (a `thread/read`
    fallback) or `none`. `steps` are the steps this call read (after a continuation, only the
    ones not read before).
    """

    thread_id: str
    turn_id: str
    status: TurnStatus
    final_text: str | None
    steps: tuple[ConversationStep, ...] = ()
    usage: TokenUsage | None = None
    error: JsonObject | None = None
    completion_source: str = "items"
    continuations: int = 0
    unfinished_items: tuple[JsonObject, ...] = attrs.field(default=(), repr=False)

    @property
    def error_message(self) -> str | None:
        """The turn error's message, if the turn failed with one."""
        if self.error is None:
            return None
        message = self.error.get("message")
        return str(message) if message is not None else None


@attrs.frozen(kw_only=True)
class CancelResult:
    """What `cancel` found: the steps and raw events the caller had not read yet."""

    steps: tuple[ConversationStep, ...]
    raw_events: tuple[JsonObject, ...] = attrs.field(repr=False)
    was_completed: bool
    was_interrupted: bool
    status: TurnStatus | None = None


@attrs.frozen(kw_only=True)
class ThreadOptions:
    """Options for `thread/start`; `config` holds anything else the server accepts."""

    cwd: str | None = None
    model: str | None = None
    sandbox: str | None = None  # read-only | workspace-write | danger-full-access
    approval_policy: str | None = None  # never | on-request | untrusted ...
    config: Mapping[str, Any] = attrs.field(factory=dict)

    def to_params(self) -> JsonObject:
        """The `thread/start` params these options stand for."""
        params: JsonObject = {}
        if self.cwd is not None:
            params["cwd"] = str(self.cwd)
        if self.model is not None:
            params["model"] = self.model
        if self.sandbox is not None:
            params["sandbox"] = self.sandbox
        if self.approval_policy is not None:
            params["approvalPolicy"] = self.approval_policy
        params.update(self.config)
        return params


@attrs.frozen(kw_only=True)
class ServerRequest:
    """A request the server sent us (an approval, a question), to be answered by policy."""

    id: int | str
    method: str
    params: JsonObject = attrs.field(repr=False)
    thread_id: str | None = None
    turn_id: str | None = None

    @property
    def item_id(self) -> str | None:
        """The item the request is about, when it names one."""
        value = self.params.get("itemId")
        return value if isinstance(value, str) else None


@attrs.frozen(kw_only=True)
class InitializeResult:
    """The server's answer to `initialize`."""

    user_agent: str | None
    codex_home: str | None
    platform_os: str | None
    raw: JsonObject = attrs.field(repr=False)
