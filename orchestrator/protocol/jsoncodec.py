"""The one place that chooses the JSON parser and serializer.

Everything that turns wire text into objects (client, benchmarks' reference reader) goes through
`loads` here, so the parser is chosen at one spot.

`loads` parses with msgspec: two to three times faster than the standard library, and straight
from bytes, so a line is never decoded to a str first. What msgspec refuses is handed to the
standard library, which accepts a little more (NaN, lone surrogate escapes, invalid UTF-8
replaced by U+FFFD as the reader always did). So `loads` accepts exactly what
`json.loads(data.decode("utf-8", "replace"))` accepts, with the same values, and refuses the
rest with a `ValueError` (tests/test_read_path.py checks both). Only nesting close to the
recursion limit differs: both raise RecursionError there, a few levels apart.

`notification_peeker` builds a parser that reads only a notification's method and turn id, for
the reader's short path for streaming deltas.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any, Literal, Protocol, cast

import msgspec

_decoder = msgspec.json.Decoder()
_fallback_decoder = json.JSONDecoder()
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

JSONDecodeError = json.JSONDecodeError


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """Parse one JSON document (bytes are read as UTF-8).

    Raises:
        ValueError: not JSON.
        RecursionError: nested deeper than the interpreter's recursion limit.
    """
    try:
        return _decoder.decode(text)
    except ValueError:  # msgspec.DecodeError, or UnicodeDecodeError for invalid UTF-8
        pass
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", errors="replace")
    return _fallback_decoder.decode(text)


def dumps(value: Any) -> str:
    """Serialize compactly, keeping non-ASCII text as is."""
    return _encoder.encode(value)


class PeekedParams(Protocol):
    """What a peek reads of a notification's params."""

    turnId: str | None  # the wire's spelling


class PeekedNotification(Protocol):
    """What a peek reads of a notification."""

    method: str
    params: PeekedParams


def notification_peeker(methods: Collection[str]) -> Callable[[str | bytes], PeekedNotification]:
    """A parser that reads only the method and turn id of notifications of `methods`.

    The parser returns `.method` and `.params.turnId` of a text, without building the message,
    or raises `ValueError` (or `RecursionError`) for any text that is not such a notification.
    When it returns, `loads(text)` gives a dict `d` with `d["method"] == .method`, one of
    `methods`; no `"id"` (a request would have one); `d["params"]` a dict; and
    `d["params"].get("turnId") == .params.turnId`, a str or None. That holds because msgspec
    parses the whole text, the fields it skips included: keys are unescaped and matched as
    `loads` matches them, the last of duplicate keys wins as in `loads`, and a field of another
    type fails the parse. What it does not check in skipped fields (valid UTF-8, numbers in
    range) `loads` accepts too, through its fallback. tests/test_read_path.py checks all this
    against `loads` on generated texts.
    """
    params = msgspec.defstruct("PeekedParams", [("turnId", str | None, None)], gc=False)
    notification = msgspec.defstruct(
        "PeekedNotification",
        [
            ("method", Literal[tuple(methods)]),
            ("params", params),
            # UnsetType: no JSON value decodes to it, so any "id" fails the parse.
            ("id", msgspec.UnsetType, msgspec.UNSET),
        ],
        gc=False,  # short-lived and never in a cycle: skip the garbage collector's tracking
    )
    # The struct has the protocols' attributes; mypy cannot see through defstruct.
    return cast(
        "Callable[[str | bytes], PeekedNotification]", msgspec.json.Decoder(notification).decode
    )
