"""The transport interface and the seam where I/O exceptions become `CodexTransportError`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import trio

from orchestrator.errors import CodexTransportError


class MessageTransport(trio.abc.Channel[str]):
    """A channel of JSON texts to and from one app-server.

    `receive` raises `trio.EndOfChannel` when the peer ends cleanly and `CodexTransportError`
    when the connection breaks; `closed_error()` then describes the end for the caller.
    Only one task may call `send` and one task `receive` at a time.
    """

    description = "app-server"

    async def receive_batch(self) -> Sequence[str | bytes]:
        """The next messages: at least one, and every other one that is already here.

        A reader's fast path: a transport that receives many messages per read hands them
        over at once (stdio gives each JSONL line as bytes). Same errors as `receive`.
        """
        return [await self.receive()]

    async def send_batch(self, values: Sequence[str]) -> None:
        """Send these messages in order, in as few writes as the transport can (one for
        stdio and websocket). Same errors as `send`."""
        for value in values:
            await self.send(value)

    async def closed_error(self) -> CodexTransportError:
        """Why the peer is gone (exit status, close code, stderr tail), once it is."""
        await trio.lowlevel.checkpoint()
        return CodexTransportError(f"{self.description}: connection closed")


@contextmanager
def map_io_errors(description: str) -> Iterator[None]:
    """Turn trio's and the OS's I/O errors into `CodexTransportError`."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise CodexTransportError(f"{description}: connection broken ({exc!r})") from exc
    except OSError as exc:
        raise CodexTransportError(f"{description}: {exc}") from exc
