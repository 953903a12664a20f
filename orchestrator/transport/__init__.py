"""Transports move whole JSON texts between the client and an app-server.

Each is a `MessageTransport` (a `trio.abc.Channel[str]`): one message per `send`/`receive`,
`trio.EndOfChannel` at a clean end, `CodexTransportError` for everything else. trio, OS and
wsproto exceptions are converted here and never escape upward.
"""

from orchestrator.transport.base import MessageTransport

__all__ = ["MessageTransport"]
