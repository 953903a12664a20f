"""The JSON-RPC session of one app-server connection, sans-IO.

`RpcSession` owns what a connection's requests need and nothing that waits: the next request
id and the text to send, the table of requests awaiting an answer (each with the caller's
waiter, an object this module never looks into), initialize-once, the classification of every
message that is not a notification, and what an answer means: a result, "retry after this
delay" (-32001, overloaded), or the error to raise (thread busy, any other refusal).

The client does the I/O: it writes the texts built here, hands over each parsed message that
is not a notification, and waits on its waiters. Notifications are most of the traffic; the
client gives them to the router (`router.py`) directly, never through here.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from orchestrator.errors import (
    THREAD_BUSY_MESSAGE,
    BadMessage,
    CodexOverloadedError,
    CodexProtocolError,
    CodexThreadBusyError,
)
from orchestrator.protocol import jsonrpc
from orchestrator.protocol.router import ids_of
from orchestrator.protocol.values import InitializeResult, ServerRequest

W = TypeVar("W")

OVERLOAD_RETRIES = 6
OVERLOAD_BASE_DELAY = 0.2
OVERLOAD_MAX_DELAY = 8.0
INITIALIZE = "initialize"


def backoff_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """`base * 2**failures` seconds, at most `cap`, times a jitter of 0.5 to 1.5.

    The jitter keeps many retrying callers from coming back in lockstep. The exponent is
    capped: 2**failures overflows a float after ~1,000 failures, which a daemon facing a
    long outage reaches in hours.
    """
    delay: float = min(cap, base * 2 ** min(failures, 32))
    return delay * jitter(0.5, 1.5)


# -- what the peer sent ----------------------------------------------------------------------


@attrs.frozen
class ResponseArrived(Generic[W]):
    """The answer to one of our requests; `waiter` is what the caller registered with it."""

    waiter: W
    response: jsonrpc.Response | jsonrpc.ErrorResponse


@attrs.frozen
class StrayResponse:
    """A response to no request of ours (already timed out, or the peer's mistake)."""

    id: jsonrpc.RequestId | None


@attrs.frozen
class ServerRequestArrived:
    """The server asks us something (an approval, a question): it must be answered."""

    request: ServerRequest


@attrs.frozen
class Malformed:
    """A message we cannot use. `refusal` is the error text to send back when it was a
    request with a usable id (the server must never be left waiting), else None."""

    reason: str
    refusal: str | None


RpcEvent = (
    ResponseArrived[W] | StrayResponse | ServerRequestArrived | Malformed | jsonrpc.Notification
)


# -- what an answer means --------------------------------------------------------------------


@attrs.frozen
class Answered:
    """The request succeeded with this result."""

    result: Any


@attrs.frozen
class RetryAfter:
    """The server is overloaded: send the same request again after `delay` seconds."""

    delay: float


class RpcSession(Generic[W]):
    """Request ids, pending requests and initialize state of one connection."""

    def __init__(
        self,
        *,
        client_info: Mapping[str, Any],
        capabilities: Mapping[str, Any] | None = None,
        overload_retries: int = OVERLOAD_RETRIES,
    ) -> None:
        self.client_info = dict(client_info)
        self.capabilities = dict(capabilities) if capabilities else None
        self.overload_retries = overload_retries
        self.initialize_result: InitializeResult | None = None
        self.pending: dict[jsonrpc.RequestId, W] = {}
        self._ids = itertools.count(1)

    # -- our requests ------------------------------------------------------------------

    def needs_initialize(self, method: str) -> bool:
        """Whether `initialize` must go first (it is sent once, before any other request)."""
        return self.initialize_result is None and method != INITIALIZE

    def initialize_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `initialize` params: our client info, capabilities, then the caller's."""
        body: dict[str, Any] = {"clientInfo": dict(self.client_info)}
        if self.capabilities is not None:
            body["capabilities"] = self.capabilities
        if params:
            body.update(params)
        return body

    def initialized(self, result: Any) -> tuple[InitializeResult, str]:
        """Record the server's answer to `initialize`; returns it and the `initialized`
        notification to send next."""
        raw = result if isinstance(result, dict) else {}
        self.initialize_result = InitializeResult(
            user_agent=raw.get("userAgent"),
            codex_home=raw.get("codexHome"),
            platform_os=raw.get("platformOs"),
            raw=raw,
        )
        return self.initialize_result, jsonrpc.encode_notification("initialized")

    def open_request(
        self, method: str, params: Mapping[str, Any] | None, waiter: W
    ) -> tuple[jsonrpc.RequestId, str]:
        """A new request: its id and text. It stays pending until `close_request`."""
        msg_id = next(self._ids)
        self.pending[msg_id] = waiter
        text = jsonrpc.encode_request(msg_id, method, dict(params) if params is not None else None)
        return msg_id, text

    def close_request(self, msg_id: jsonrpc.RequestId) -> None:
        """The caller is done with this request (answered, timed out or cancelled)."""
        self.pending.pop(msg_id, None)

    def outcome(
        self,
        method: str,
        response: jsonrpc.Response | jsonrpc.ErrorResponse,
        attempt: int,
    ) -> Answered | RetryAfter | CodexProtocolError:
        """What the answer to attempt number `attempt` (from 0) of `method` means."""
        if isinstance(response, jsonrpc.Response):
            return Answered(response.result)
        if response.code == jsonrpc.SERVER_OVERLOADED:
            if attempt < self.overload_retries:
                return RetryAfter(
                    backoff_delay(attempt, base=OVERLOAD_BASE_DELAY, cap=OVERLOAD_MAX_DELAY)
                )
            return CodexOverloadedError(
                f"{method}: {response.message or 'server overloaded'} "
                f"(after {attempt + 1} attempts)",
                code=response.code,
                data=response.data,
            )
        error_type = (
            CodexThreadBusyError
            if THREAD_BUSY_MESSAGE in (response.message or "")
            else CodexProtocolError
        )
        return error_type(f"{method}: {response.message}", code=response.code, data=response.data)

    # -- what the peer sends -----------------------------------------------------------

    def receive(self, obj: Any, text: str | bytes) -> RpcEvent[W]:
        """Classify one parsed message (the client routes notifications before this)."""
        try:
            message = jsonrpc.decode_parsed(obj, text)
        except BadMessage as exc:
            return Malformed(str(exc), _refusal(obj, str(exc)))
        if isinstance(message, jsonrpc.Request):
            thread_id, turn_id = ids_of(message.params)
            return ServerRequestArrived(
                ServerRequest(
                    id=message.id,
                    method=message.method,
                    params=message.params,
                    thread_id=thread_id,
                    turn_id=turn_id,
                )
            )
        if isinstance(message, jsonrpc.Notification):
            return message  # the client's fast path usually takes these before they get here
        waiter = self.pending.get(message.id) if message.id is not None else None
        if waiter is None:
            return StrayResponse(message.id)
        return ResponseArrived(waiter, message)

    @staticmethod
    def answer(request: ServerRequest, result: Mapping[str, Any] | None) -> str:
        """Our answer to a server request: the result, or (None) a method-not-found error."""
        if result is None:
            return jsonrpc.encode_error(
                request.id,
                jsonrpc.METHOD_NOT_FOUND,
                f"codex-orchestrator does not handle {request.method}",
            )
        return jsonrpc.encode_result(request.id, dict(result))


def _refusal(obj: Any, reason: str) -> str | None:
    """The error answer to a server request we cannot use (its params are not an object
    ...), when it has a method and an id we can answer to."""
    if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
        return None
    msg_id = obj.get("id")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
        return None
    return jsonrpc.encode_error(
        msg_id, jsonrpc.INVALID_REQUEST, f"malformed request: {reason:.200}"
    )
