"""Every exception the orchestrator raises, in one tree.

    OrchestratorError
    ├── CodexError                   talking to an app-server went wrong
    │   ├── CodexTransportError          the peer is gone: EOF, exit status, close reason,
    │   │   │                            stderr tail
    │   │   └── CodexMessageTooLargeError    a message over the size limit; connection closed
    │   ├── CodexTimeoutError            a request or a wait ran out of time
    │   │   └── CodexTurnInactiveError       a turn was silent too long; carries a continuation
    │   ├── CodexProtocolError           the peer answered with a JSON-RPC error, or sent garbage
    │   │   ├── CodexOverloadedError         -32001: overloaded, still so after our retries
    │   │   └── CodexThreadBusyError         the thread "already has an active writer": another
    │   │                                    app-server process holds it until that one exits
    │   └── ConnectionDown               a job waited `max_down_time` for its connection
    ├── ConfigError                  a task or config file is wrong: file, line, key, what
    ├── JobFailed                    a job cannot go on (retries used up, connection down)
    ├── DaemonError                  the daemon cannot start (another one holds the state dir)
    ├── UnsafePath (an OSError)      a symbolic link where a record was to be written
    ├── UnsafeJobId (a ValueError)   a job id that could name a path outside its directory
    ├── MessageTooLarge              the framer's: a line over the limit (the transport maps it)
    └── BadMessage                   the decoder's: a message that is not JSON-RPC we can use

"The peer refused" (`CodexProtocolError` with the peer's code) is kept apart from "the peer is
gone" (`CodexTransportError`). Bugs in this package are not wrapped: they crash loudly.
Pure: no trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.protocol.values import ChatContinuation, ConversationStep


class OrchestratorError(Exception):
    """Base of every exception this package raises on purpose."""


class CodexError(OrchestratorError):
    """Base of every error raised while talking to a Codex app-server."""


class CodexTransportError(CodexError):
    """The connection to the app-server is gone or unusable.

    Attributes:
        exit_status: the process's exit status (stdio), if it exited.
        close_reason: the websocket close code and reason, if it closed.
        stderr_tail: the last lines the process wrote to stderr (stdio).
    """

    def __init__(
        self,
        message: str,
        *,
        exit_status: int | None = None,
        close_reason: str | None = None,
        stderr_tail: str = "",
    ) -> None:
        self.exit_status = exit_status
        self.close_reason = close_reason
        self.stderr_tail = stderr_tail
        full = message
        if stderr_tail:
            full += "\n--- app-server stderr (tail) ---\n" + stderr_tail.rstrip("\n")
        super().__init__(full)
        self.message = message


class CodexMessageTooLargeError(CodexTransportError):
    """The peer sent (or we tried to send) a message over the size limit."""


class CodexTimeoutError(CodexError):
    """A request, or a wait for an event, ran out of time."""


class CodexTurnInactiveError(CodexTimeoutError):
    """A turn produced no event for `inactivity_timeout` seconds.

    `continuation` resumes the same running turn with nothing lost or repeated;
    `steps` are the completed steps that `chat_once` had buffered before the timeout.
    """

    def __init__(
        self,
        message: str,
        *,
        continuation: ChatContinuation,
        steps: tuple[ConversationStep, ...] = (),
    ) -> None:
        super().__init__(message)
        self.continuation = continuation
        self.steps = steps


class CodexProtocolError(CodexError):
    """The peer answered with a JSON-RPC error, or sent something we cannot use.

    `code` is the JSON-RPC error code (None when the peer sent garbage rather than an error).
    """

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})")
        self.message = message
        self.code = code
        self.data = data


class CodexOverloadedError(CodexProtocolError):
    """The server kept answering -32001 (overloaded) after every retry."""


class CodexThreadBusyError(CodexProtocolError):
    """`thread/resume` refused: another app-server process is the thread's writer.

    codex releases a thread's writer only when the process holding it exits (for example an
    app-server whose client died and that is still shutting down), so waiting may help.
    """


# How codex words the refusal (code -32600, like most of its errors).
THREAD_BUSY_MESSAGE = "already has an active writer"


class ConnectionDown(CodexError):
    """A job waited `max_down_time` for its connection to come (back) up."""


class ConfigError(OrchestratorError):
    """A task or config file is invalid. The message says `file:line: key: what is wrong`."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class JobFailed(OrchestratorError):
    """The job cannot go on (retries exhausted, its connection down): the job fails."""


class DaemonError(OrchestratorError):
    """The daemon cannot start (another one runs on the state dir, ...)."""


class UnsafePath(OrchestratorError, OSError):
    """A symbolic link where a record is to be written: refused, never followed."""


class UnsafeJobId(OrchestratorError, ValueError):
    """A job id that could name a path outside the results directory."""


class MessageTooLarge(OrchestratorError):
    """A line is longer than the limit (raised by the framer; the transport maps it)."""

    def __init__(self, size: int, limit: int, lines: list[bytes] | None = None) -> None:
        super().__init__(f"message of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        # Whole lines that came before the oversized one in the same feed, still valid.
        self.lines = lines or []


class BadMessage(OrchestratorError):
    """A message that is not JSON-RPC we can use. `text` is a bounded excerpt of it."""

    def __init__(self, reason: str, excerpt: str) -> None:
        super().__init__(f"{reason}: {excerpt!r}")
        self.reason = reason
        self.text = excerpt
