"""JSONL framing: bytes in, whole lines out (as bytes), partial lines kept for the next chunk.

Lines stay bytes: the JSON parser reads UTF-8 itself, so a line is never decoded to a str
before it is parsed (for a 4 MiB line, one copy fewer). The size limit applies to a line while
it is still arriving, so a peer cannot make us buffer more than `max_message_bytes` by never
sending a newline.
"""

from __future__ import annotations

from orchestrator.errors import MessageTooLarge

__all__ = ["MAX_MESSAGE_BYTES", "LineFramer", "MessageTooLarge", "encode_line"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class LineFramer:
    """Split a byte stream into newline-terminated lines.

    Blank lines are skipped and a trailing `\\r` is dropped. After `MessageTooLarge` the
    framer is unusable: the stream has lost its framing and the connection must close.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        # The start of a line whose newline has not come yet, as the chunks it came in: each
        # is kept as received and joined once, when the line completes.
        self._parts: list[bytes] = []
        self._pending = 0
        self._limit = max_message_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete line held back."""
        return self._pending

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add received bytes; return every line completed by them, in order."""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray may change under us; bytes are kept as they are
        if b"\n" not in data:
            if data:
                self._parts.append(data)
                self._pending += len(data)
                if self._pending > self._limit:
                    raise MessageTooLarge(self._pending, self._limit, [])
            return []
        # One C-level split; the last piece is the start of a line not complete yet.
        lines = data.split(b"\n")
        tail = lines.pop()
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts = []
            self._pending = 0
        # A `\r` before a newline is in this chunk, or ends the pieces joined into lines[0].
        has_cr = b"\r" in data or lines[0].endswith(b"\r")
        limit = self._limit
        if len(lines[0]) > limit or len(data) > limit:
            # Only a line continued from earlier chunks, or one inside a chunk longer than
            # the limit, can be too long: check them all, keeping the good ones before it.
            for index, line in enumerate(lines):
                if len(line) > limit:
                    raise MessageTooLarge(len(line), limit, _clean(lines[:index], has_cr))
        if len(tail) > limit:
            raise MessageTooLarge(len(tail), limit, _clean(lines, has_cr))
        if tail:
            self._parts.append(tail)
            self._pending = len(tail)
        return _clean(lines, has_cr)

    def eof(self) -> bytes | None:
        """The stream ended: return an unterminated last line, if any."""
        rest = b"".join(self._parts).strip()
        self._parts = []
        self._pending = 0
        return rest or None


def _clean(lines: list[bytes], has_cr: bool) -> list[bytes]:
    """Drop one trailing `\\r` per line (when there may be one), then blank lines."""
    if has_cr:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return [line for line in lines if line and not line.isspace()]


def encode_line(text: str) -> bytes:
    """One message as a JSONL line."""
    return text.encode("utf-8") + b"\n"
