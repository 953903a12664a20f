"""`orchestrator.client`: a trio-native client for `codex app-server` over stdio or websocket.

    from orchestrator.client import CodexClient, CodexTurnInactiveError, ThreadOptions

Everything a caller needs is importable from here: the client, its values and its errors.
"""

from __future__ import annotations

from orchestrator.client._connection import ApprovalHandler, ClientStatistics, CodexClient
from orchestrator.client._turns import TurnStream
from orchestrator.errors import (
    CodexError,
    CodexMessageTooLargeError,
    CodexOverloadedError,
    CodexProtocolError,
    CodexThreadBusyError,
    CodexTimeoutError,
    CodexTransportError,
    CodexTurnInactiveError,
)
from orchestrator.protocol.values import (
    CancelResult,
    ChatContinuation,
    ChatResult,
    ConversationStep,
    InitializeResult,
    ServerRequest,
    ThreadOptions,
    TokenUsage,
    TurnStatus,
)

__all__ = [
    "ApprovalHandler",
    "CancelResult",
    "ChatContinuation",
    "ChatResult",
    "ClientStatistics",
    "CodexClient",
    "CodexError",
    "CodexMessageTooLargeError",
    "CodexOverloadedError",
    "CodexProtocolError",
    "CodexThreadBusyError",
    "CodexTimeoutError",
    "CodexTransportError",
    "CodexTurnInactiveError",
    "ConversationStep",
    "InitializeResult",
    "ServerRequest",
    "ThreadOptions",
    "TokenUsage",
    "TurnStatus",
    "TurnStream",
]
