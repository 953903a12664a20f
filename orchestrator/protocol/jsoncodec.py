"""The one place that chooses the JSON parser and serializer.

Everything that turns wire text into objects (client, benchmarks' reference reader) goes through
`loads`/`dumps` here, so a faster parser can be swapped in at one spot.
"""

from __future__ import annotations

import json
from typing import Any

_decoder = json.JSONDecoder()
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

JSONDecodeError = json.JSONDecodeError


def loads(text: str | bytes) -> Any:
    """Parse one JSON document."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    return _decoder.decode(text)


def dumps(value: Any) -> str:
    """Serialize compactly, keeping non-ASCII text as is."""
    return _encoder.encode(value)
