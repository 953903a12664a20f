"""JSONL framing and JSON-RPC decoding, without I/O."""

from __future__ import annotations

import pytest

from orchestrator.protocol import jsonrpc
from orchestrator.protocol.framing import LineFramer, MessageTooLarge


def test_partial_lines_are_kept_until_complete() -> None:
    """A line split over several chunks comes out whole, once."""
    framer = LineFramer()
    assert framer.feed(b'{"a":') == []
    assert framer.feed(b" 1}") == []
    assert framer.feed(b'\n{"b"') == [b'{"a": 1}']
    assert framer.feed(b": 2}\n") == [b'{"b": 2}']
    assert framer.pending_bytes == 0


def test_many_lines_in_one_chunk_crlf_and_blank_lines() -> None:
    """Several lines per chunk, CRLF endings and blank lines are handled."""
    framer = LineFramer()
    assert framer.feed(b"one\r\n\n  \ntwo\nthr") == [b"one", b"two"]
    assert framer.eof() == b"thr"


def test_multibyte_character_split_across_chunks() -> None:
    """A UTF-8 character cut between two reads comes out whole."""
    data = '{"t":"héllo ✓"}\n'.encode()
    framer = LineFramer()
    cut = data.index("✓".encode()) + 1
    assert framer.feed(data[:cut]) == []
    assert framer.feed(data[cut:]) == ['{"t":"héllo ✓"}'.encode()]


def test_line_at_the_limit_passes_and_over_it_fails() -> None:
    """A message of exactly the limit is accepted; one byte more is refused."""
    framer = LineFramer(max_message_bytes=10)
    assert framer.feed(b"x" * 10 + b"\n") == [b"x" * 10]
    with pytest.raises(MessageTooLarge):
        LineFramer(max_message_bytes=10).feed(b"x" * 11 + b"\n")


def test_unterminated_line_over_the_limit_fails_before_newline() -> None:
    """A peer that never sends a newline cannot make the buffer grow past the limit."""
    framer = LineFramer(max_message_bytes=100)
    framer.feed(b"x" * 60)
    with pytest.raises(MessageTooLarge):
        framer.feed(b"x" * 60)


def test_large_message_in_many_chunks_is_linear() -> None:
    """A 16 MiB line arriving in 64 KiB chunks is framed once (no rescanning blowup)."""
    framer = LineFramer()
    chunk = b"a" * 65536
    for _ in range(256):
        assert framer.feed(chunk) == []
    [line] = framer.feed(b"\n")
    assert len(line) == 256 * 65536


def test_decode_messages_without_jsonrpc_field_and_string_ids() -> None:
    """The server omits "jsonrpc"; ids may be ints or strings."""
    assert jsonrpc.decode('{"id":1,"result":{}}') == jsonrpc.Response(1, {})
    assert jsonrpc.decode('{"id":"a","result":null}') == jsonrpc.Response("a", None)
    request = jsonrpc.decode('{"id":0,"method":"item/x","params":{"k":1}}')
    assert request == jsonrpc.Request(0, "item/x", {"k": 1})
    note = jsonrpc.decode('{"method":"warning"}')
    assert isinstance(note, jsonrpc.Notification) and note.params == {}
    error = jsonrpc.decode('{"id":3,"error":{"code":-32600,"message":"Not initialized"}}')
    assert error == jsonrpc.ErrorResponse(3, -32600, "Not initialized")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        '{"foo": 1}',
        '{"method": 5}',
        '{"method": "x", "params": [1]}',
        '{"id": true, "result": 1}',
        '{"id": 1, "error": "boom"}',
    ],
)
def test_garbage_is_a_bad_message(text: str) -> None:
    """Anything that is not usable JSON-RPC raises BadMessage with an excerpt."""
    with pytest.raises(jsonrpc.BadMessage):
        jsonrpc.decode(text)


def test_bad_message_excerpt_is_bounded() -> None:
    """The error for a huge garbage line quotes only its beginning."""
    with pytest.raises(jsonrpc.BadMessage) as info:
        jsonrpc.decode("x" * 100_000)
    assert len(str(info.value)) < 400
