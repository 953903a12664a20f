"""`orchestrator.client`: a trio-native client for `codex app-server` over stdio or websocket.

    from orchestrator.client import CodexClient, CodexTurnInactiveError, ThreadOptions

Everything a caller needs is importable from here: the client, its values and its errors.
"""

from __future__ import annotations

# Re-exported: each name is imported `as` itself.
from orchestrator.client._connection import ApprovalHandler as ApprovalHandler
from orchestrator.client._connection import ClientStatistics as ClientStatistics
from orchestrator.client._connection import CodexClient as CodexClient
from orchestrator.client._turns import TurnStream as TurnStream
from orchestrator.errors import CodexError as CodexError
from orchestrator.errors import CodexMessageTooLargeError as CodexMessageTooLargeError
from orchestrator.errors import CodexOverloadedError as CodexOverloadedError
from orchestrator.errors import CodexProtocolError as CodexProtocolError
from orchestrator.errors import CodexThreadBusyError as CodexThreadBusyError
from orchestrator.errors import CodexTimeoutError as CodexTimeoutError
from orchestrator.errors import CodexTransportError as CodexTransportError
from orchestrator.errors import CodexTurnInactiveError as CodexTurnInactiveError
from orchestrator.protocol.values import CancelResult as CancelResult
from orchestrator.protocol.values import ChatContinuation as ChatContinuation
from orchestrator.protocol.values import ChatResult as ChatResult
from orchestrator.protocol.values import ConversationStep as ConversationStep
from orchestrator.protocol.values import InitializeResult as InitializeResult
from orchestrator.protocol.values import ServerRequest as ServerRequest
from orchestrator.protocol.values import ThreadOptions as ThreadOptions
from orchestrator.protocol.values import TokenUsage as TokenUsage
from orchestrator.protocol.values import TurnStatus as TurnStatus
