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
        self._buffer = bytearray()  # the start of a line whose newline has not come yet
        self._limit = max_message_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete line held back."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Add received bytes; return every line completed by them, in order."""
        first_newline = data.find(b"\n")
        if first_newline < 0:
            # No line ends here: keep the bytes (a long message arrives in many chunks; each
            # chunk is appended once, never rescanned).
            self._buffer += data
            if len(self._buffer) > self._limit:
                raise MessageTooLarge(len(self._buffer), self._limit, [])
            return []
        if self._buffer:
            self._buffer += data[:first_newline]
            head = bytes(self._buffer)
            self._buffer.clear()
        else:
            head = bytes(data[:first_newline])
        # One C-level split for everything after the first newline; the last piece is the
        # start of a line not complete yet.
        pieces = bytes(data[first_newline + 1 :]).split(b"\n")
        tail = pieces.pop()
        lines: list[str] = []
        limit = self._limit
        for raw in (head, *pieces):
            if len(raw) > limit:
                raise MessageTooLarge(len(raw), limit, lines)
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if raw and not raw.isspace():
                lines.append(raw.decode("utf-8", errors="replace"))
        if tail:
            if len(tail) > limit:
                raise MessageTooLarge(len(tail), limit, lines)
            self._buffer += tail
        return lines

    def eof(self) -> str | None:
        """The stream ended: return an unterminated last line, if any."""
        rest = bytes(self._buffer).strip()
        self._buffer.clear()
        return rest.decode("utf-8", errors="replace") if rest else None


def encode_line(text: str) -> bytes:
    """One message as a JSONL line."""
    return text.encode("utf-8") + b"\n"
