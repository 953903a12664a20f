"""JSON-RPC 2.0 as codex app-server speaks it.

The server omits `"jsonrpc"`; ids may be ints or strings; server-to-client requests number
their own ids from 0. `decode` classifies one message text; `encode_*` build the texts we send.
Garbage from the peer raises `BadMessage`, which callers log and skip: the server does the same
with ours, and one bad line should not cost a connection.
"""

from __future__ import annotations

from typing import Any

import attrs

from orchestrator.errors import BadMessage as BadMessage  # raised here; callers catch it here
from orchestrator.protocol import jsoncodec

RequestId = int | str

# Codes the app-server uses or JSON-RPC reserves.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
SERVER_OVERLOADED = -32001

EXCERPT_CHARS = 200  # how much of a bad message errors and logs quote


@attrs.frozen
class Request:
    """A request from the peer: it expects a response with the same id."""

    id: RequestId
    method: str
    params: dict[str, Any]


class Notification:
    """A message that expects no answer.

    A plain slotted class rather than attrs: one is built for every message the server
    sends, and a frozen attrs class costs several times more to construct.
    """

    __slots__ = ("method", "params", "raw")

    def __init__(self, method: str, params: dict[str, Any], raw: dict[str, Any]) -> None:
        self.method = method
        self.params = params
        self.raw = raw

    def __repr__(self) -> str:
        return f"Notification(method={self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Notification):
            return NotImplemented
        return self.method == other.method and self.params == other.params

    __hash__ = None  # type: ignore[assignment]


@attrs.frozen
class Response:
    """A successful answer to one of our requests."""

    id: RequestId
    result: Any


@attrs.frozen
class ErrorResponse:
    """A failed answer; `id` is None when the peer could not tell which request failed."""

    id: RequestId | None
    code: int
    message: str
    data: Any = None


Message = Request | Notification | Response | ErrorResponse


def _valid_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def decode(text: str | bytes) -> Message:
    """Classify one JSON text as a request, notification, response or error response."""
    try:
        obj = jsoncodec.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON ({exc})", _excerpt(text)) from None
    if not isinstance(obj, dict):
        kind = "a batch (array)" if isinstance(obj, list) else type(obj).__name__
        raise BadMessage(f"not a JSON object but {kind}", _excerpt(text))
    return decode_object(obj, text)


def decode_parsed(obj: Any, text: str | bytes) -> Message:
    """Classify an already parsed JSON value (`text` is quoted in errors)."""
    if not isinstance(obj, dict):
        kind = "a batch (array)" if isinstance(obj, list) else type(obj).__name__
        raise BadMessage(f"not a JSON object but {kind}", _excerpt(text))
    return decode_object(obj, text)


def notification_parts(obj: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """`(method, params)` of a well-formed notification, else None (`decode_object` then
    tells what it is, or why it is bad).

    The reader's path for notifications, most of what the server sends: it builds nothing,
    where `decode_object` builds a `Notification`. Same rules: params absent or null are {}.
    """
    method = obj.get("method")
    if not isinstance(method, str) or "id" in obj:
        return None
    params = obj.get("params")
    if params is None:
        return method, {}
    return (method, params) if isinstance(params, dict) else None


def decode_object(obj: dict[str, Any], text: str | bytes = "") -> Message:
    """Classify an already parsed JSON object."""
    method = obj.get("method")
    has_id = "id" in obj
    if method is not None:
        if not isinstance(method, str):
            raise BadMessage("'method' is not a string", _excerpt(text or repr(obj)))
        params = obj.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            raise BadMessage(f"{method}: 'params' is not an object", _excerpt(text or repr(obj)))
        if has_id:
            if not _valid_id(obj["id"]):
                raise BadMessage(f"{method}: bad request id", _excerpt(text or repr(obj)))
            return Request(obj["id"], method, params)
        return Notification(method, params, obj)
    if not has_id:
        raise BadMessage("neither a request, a notification nor a response", _excerpt(text))
    msg_id = obj["id"]
    if "error" in obj:
        error = obj["error"]
        if not isinstance(error, dict):
            raise BadMessage("'error' is not an object", _excerpt(text or repr(obj)))
        code = error.get("code")
        return ErrorResponse(
            msg_id if _valid_id(msg_id) else None,
            code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
            str(error.get("message", "")),
            error.get("data"),
        )
    if "result" in obj and _valid_id(msg_id):
        return Response(msg_id, obj["result"])
    raise BadMessage("response without a usable id or result", _excerpt(text or repr(obj)))


def _excerpt(text: str | bytes) -> str:
    """The start of a bad message, for errors and logs (a huge garbage line is never
    decoded whole)."""
    unit = "bytes" if isinstance(text, bytes) else "chars"
    head = text[:EXCERPT_CHARS]
    if isinstance(head, bytes):
        head = head.decode("utf-8", errors="replace")
    return head if len(text) <= EXCERPT_CHARS else f"{head}... ({len(text)} {unit})"


def encode_request(msg_id: RequestId, method: str, params: dict[str, Any] | None) -> str:
    """A request text (params omitted when None)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return jsoncodec.dumps(message)


def encode_notification(method: str, params: dict[str, Any] | None = None) -> str:
    """A notification text."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return jsoncodec.dumps(message)


def encode_result(msg_id: RequestId, result: Any) -> str:
    """A successful response text."""
    return jsoncodec.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})


def encode_error(msg_id: RequestId | None, code: int, message: str, data: Any = None) -> str:
    """An error response text."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return jsoncodec.dumps({"jsonrpc": "2.0", "id": msg_id, "error": error})
