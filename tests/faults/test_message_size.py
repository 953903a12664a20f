"""Fault 2: messages at and over `max_message_bytes`, over stdio and websocket.

A message of exactly the limit is delivered; one byte more fails that connection with a
`CodexMessageTooLargeError` naming the limit, while another connection (a bystander with a
turn in flight) keeps working. The boundary logic runs with a 64 KiB limit; one true 64 MiB
case per transport and direction checks the default.
"""

from __future__ import annotations

import time

import pytest
import trio

from orchestrator.client import ChatResult, CodexError, CodexMessageTooLargeError
from orchestrator.protocol.framing import MAX_MESSAGE_BYTES
from tests.faults.harness import PROMPTLY, PeakMemory, bystander, known_bug, open_endpoint
from tests.reliability import Figures

AREA = "client: message size"
SMALL_LIMIT = 64 * 1024
MIB = 1024 * 1024


def _plan(size: int, char: str = "x") -> dict[str, object]:
    return {"turn": [["accept"], ["big", size, char], ["complete"]]}


def _size_case(transport: str, limit: int, over: bool, *, char: str = "x", bug: str = "") -> object:
    size_text = f"{limit // MIB} MiB" if limit >= MIB else f"{limit // 1024} KiB"
    what = "one byte over" if over else "exactly"
    text = "" if char == "x" else f" of 2-byte characters ({char!r})"
    fault = f"{transport}: a message{text} {what} the limit ({size_text})"
    expected = (
        "CodexMessageTooLargeError naming the limit; that connection closed; another "
        "connection's turn completes"
        if over
        else "delivered whole; the turn completes"
    )
    marks = [pytest.mark.fault(AREA, fault, expected)]
    if bug:
        marks.append(known_bug(bug, AssertionError))
    case_id = f"{transport}-{'over' if over else 'at'}-{size_text.replace(' ', '')}"
    if char != "x":
        case_id += "-multibyte"
    return pytest.param(transport, limit, over, char, id=case_id, marks=marks)


@pytest.mark.parametrize(
    ("transport", "limit", "over", "char"),
    [
        _size_case("stdio", SMALL_LIMIT, False),
        _size_case("stdio", SMALL_LIMIT, True),
        _size_case("websocket", SMALL_LIMIT, False),
        _size_case("websocket", SMALL_LIMIT, True),
        _size_case("stdio", SMALL_LIMIT, False, char="é"),
        _size_case("stdio", SMALL_LIMIT, True, char="é"),
        _size_case("websocket", SMALL_LIMIT, False, char="é"),
        _size_case("websocket", SMALL_LIMIT, True, char="é"),
        _size_case("stdio", MAX_MESSAGE_BYTES, False),
        _size_case("stdio", MAX_MESSAGE_BYTES, True),
        _size_case("websocket", MAX_MESSAGE_BYTES, False),
        _size_case("websocket", MAX_MESSAGE_BYTES, True),
    ],
)
async def test_message_at_the_limit_passes_and_one_byte_more_fails_only_its_connection(
    transport: str, limit: int, over: bool, char: str, figures: Figures
) -> None:
    """Exactly `max_message_bytes` bytes arrive whole; one byte more fails that connection
    with an error naming the limit, and another connection is unaffected."""
    size = limit + 1 if over else limit
    memory = PeakMemory()
    with trio.fail_after(60):
        async with open_endpoint(transport, _plan(size, char)) as endpoint:
            async with bystander(endpoint) as other:
                started = time.perf_counter()
                with memory.tracing():
                    async with endpoint.connect(max_message_bytes=limit) as client:
                        outcome: ChatResult | CodexError
                        try:
                            outcome = await client.chat_once("big")
                        except CodexError as exc:
                            outcome = exc
                        if over:
                            assert isinstance(outcome, CodexMessageTooLargeError), outcome
                            assert client.closed
                            with pytest.raises(CodexMessageTooLargeError):
                                await client.request("thread/start", {})
                elapsed = time.perf_counter() - started
                await other.finish()
    if over:
        assert str(limit) in str(outcome)
    else:
        assert isinstance(outcome, ChatResult), outcome
        [step] = outcome.steps
        assert step.text.startswith(char) and len(step.text.encode()) > size - 200
        assert outcome.status == "completed"
    figures.record("message size", size, "bytes")
    figures.record("wall time", round(elapsed, 2), "s")
    figures.record("peak Python memory", round(memory.growth / MIB, 1), "MiB")


@pytest.mark.fault(
    AREA,
    "stdio: a 4 MiB message over a 64 KiB limit from a server stalled writing it",
    "CodexMessageTooLargeError at once, not after the process's stop grace",
)
async def test_oversized_message_fails_at_once_even_when_the_server_is_stuck_writing(
    figures: Figures,
) -> None:
    """The connection fails as soon as the limit is crossed, even when the server, blocked on
    the rest of the oversized line, would take its time to stop."""
    # Larger than the stdout pipe (1 MiB), so that the server is still blocked writing it.
    plan = {"turn": [["accept"], ["message", "before"], ["big_stuck", 4 * MIB], ["complete"]]}
    with trio.fail_after(30):
        async with open_endpoint("stdio", plan) as endpoint:
            async with endpoint.connect(max_message_bytes=SMALL_LIMIT) as client:
                stream = client.chat("big")
                assert (await stream.__anext__()).text == "before"
                started = trio.current_time()
                with pytest.raises(CodexMessageTooLargeError):
                    await stream.__anext__()
                latency = trio.current_time() - started
    figures.record("failure latency", round(latency, 2), "s")
    assert latency < PROMPTLY
