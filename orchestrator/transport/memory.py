"""An in-memory transport pair: a client end and a peer end, for tests and fakes."""

from __future__ import annotations

import trio

from orchestrator.errors import CodexMessageTooLargeError, CodexTransportError
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from orchestrator.transport.base import MessageTransport


class MemoryTransport(MessageTransport):
    """One end of an in-memory connection."""

    description = "memory app-server"

    def __init__(
        self,
        send_channel: trio.MemorySendChannel[str],
        receive_channel: trio.MemoryReceiveChannel[str],
        *,
        max_message_bytes: int,
    ) -> None:
        self._send_channel = send_channel
        self._receive_channel = receive_channel
        self.max_message_bytes = max_message_bytes
        self.close_reason: str | None = None

    async def send(self, value: str) -> None:
        if len(value) > self.max_message_bytes:
            raise CodexMessageTooLargeError(
                f"{self.description}: outgoing message of {len(value)} bytes is over the limit"
            )
        try:
            await self._send_channel.send(value)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise CodexTransportError(f"{self.description}: connection closed") from exc

    async def receive(self) -> str:
        try:
            text = await self._receive_channel.receive()
        except trio.ClosedResourceError as exc:
            raise CodexTransportError(f"{self.description}: connection closed") from exc
        if len(text) > self.max_message_bytes:
            await self.aclose()
            raise CodexMessageTooLargeError(
                f"{self.description}: incoming message of {len(text)} bytes is over the limit "
                f"of {self.max_message_bytes}; connection closed"
            )
        return text

    async def aclose(self) -> None:
        await self._send_channel.aclose()
        await self._receive_channel.aclose()

    async def closed_error(self) -> CodexTransportError:
        await trio.lowlevel.checkpoint()
        reason = self.close_reason or "the peer closed the connection"
        return CodexTransportError(f"{self.description}: {reason}", close_reason=reason)


def memory_transport_pair(
    *, max_message_bytes: int = MAX_MESSAGE_BYTES, buffer: float = 4096
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends: (client side, server side)."""
    to_server_send, to_server_receive = trio.open_memory_channel[str](buffer)
    to_client_send, to_client_receive = trio.open_memory_channel[str](buffer)
    client = MemoryTransport(to_server_send, to_client_receive, max_message_bytes=max_message_bytes)
    server = MemoryTransport(to_client_send, to_server_receive, max_message_bytes=max_message_bytes)
    return client, server
