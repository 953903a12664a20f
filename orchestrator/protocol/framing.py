"""JSONL framing: bytes in, whole lines out, partial lines kept for the next chunk.

The size limit applies to a line while it is still arriving, so a peer cannot make us buffer
more than `max_message_bytes` by never sending a newline.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class MessageTooLarge(Exception):
    """A line is longer than the limit (raised by the framer; the transport maps it)."""

    def __init__(self, size: int, limit: int, lines: list[str] | None = None) -> None:
        super().__init__(f"message of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        # Whole lines that came before the oversized one in the same feed, still valid.
        self.lines = lines or []


class LineFramer:
    """Split a byte stream into newline-terminated text lines.

    Blank lines are skipped and a trailing `\\r` is dropped. After `MessageTooLarge` the
    framer is unusable: the stream has lost its framing and the connection must close.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._limit = max_message_bytes
        self._scanned = 0  # bytes of _buffer already known to hold no newline

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete line held back."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Add received bytes; return every line completed by them, in order."""
        buffer = self._buffer
        buffer += data
        lines: list[str] = []
        start = 0
        search_from = self._scanned
        while True:
            end = buffer.find(b"\n", search_from)
            if end < 0:
                break
            if end - start > self._limit:
                raise MessageTooLarge(end - start, self._limit, lines)
            line = bytes(buffer[start:end])
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                lines.append(line.decode("utf-8", errors="replace"))
            start = end + 1
            search_from = start
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self._limit:
            raise MessageTooLarge(len(buffer), self._limit, lines)
        return lines

    def eof(self) -> str | None:
        """The stream ended: return an unterminated last line, if any."""
        rest = bytes(self._buffer).strip()
        self._buffer.clear()
        self._scanned = 0
        return rest.decode("utf-8", errors="replace") if rest else None


def encode_line(text: str) -> bytes:
    """One message as a JSONL line."""
    return text.encode("utf-8") + b"\n"
