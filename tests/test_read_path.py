"""The reader's hot path: the parser, the short path for streaming deltas, batches of lines.

The short path (`Router.without_activity`) recognises a delta of a known turn without parsing
it into objects. It must change nothing but speed: the properties below generate lines (odd key
order, whitespace, escapes, unicode, duplicate keys, wrong types, corrupted bytes) and check that
whatever it takes, the full path (`jsoncodec.loads` + `Router.note_activity`) would have taken
the same way.
"""

from __future__ import annotations

import fcntl
import json
import math
import struct
import sys
import termios
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from orchestrator.client import CodexClient
from orchestrator.protocol import jsoncodec, jsonrpc
from orchestrator.protocol.framing import LineFramer, MessageTooLarge
from orchestrator.protocol.router import ACTIVITY_ONLY_METHODS, Router
from orchestrator.transport.base import MessageTransport
from orchestrator.transport.memory import MemoryTransport, memory_transport_pair
from orchestrator.transport.stdio import STDOUT_PIPE_BYTES, open_stdio_transport
from orchestrator.transport.websocket import open_websocket_transport
from tests.fake_app_server import FakeAppServer, FakeTurn, trickling_turn

THREAD = "thread-1"
KNOWN_TURNS = ("turn-a", "turn-é\u2028", 'turn-"q"')
UNWATCHED_THREAD = "thread-2"

# -- generated lines -------------------------------------------------------------------------


class Obj:
    """A JSON object as written: its pairs in order, duplicate keys allowed."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
methods = st.one_of(
    st.sampled_from(sorted(ACTIVITY_ONLY_METHODS)),
    st.sampled_from(["item/started", "item/completed", "turn/completed", "item/agentMessage"]),
    json_values,
)
turn_ids = st.one_of(st.sampled_from([*KNOWN_TURNS, "turn-unknown"]), json_values)
# Text with everything an encoder may have to escape, lone surrogates included.
wild_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)


@st.composite
def params_objects(draw: st.DrawFn) -> Obj:
    pairs: list[tuple[str, Any]] = [
        ("threadId", draw(st.sampled_from([THREAD, UNWATCHED_THREAD]) | json_values)),
        ("turnId", draw(turn_ids)),
        ("itemId", draw(st.text(max_size=10))),
        ("delta", draw(wild_text)),
    ]
    if draw(st.booleans()):
        pairs.append(("summaryIndex", draw(st.integers(0, 3))))
    if draw(st.integers(0, 5)) == 0:
        pairs.append(("turnId", draw(turn_ids)))  # a duplicate key: the last one counts
    if draw(st.integers(0, 5)) == 0:
        pairs.append((draw(st.text(max_size=8)), draw(json_values)))
    if draw(st.integers(0, 3)) == 0:
        pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 8)) == 0:
        pairs = [pair for pair in pairs if pair[0] != "turnId"]
    return Obj(pairs)


@st.composite
def notification_objects(draw: st.DrawFn) -> Obj:
    params = draw(params_objects() if draw(st.integers(0, 6)) else json_values)
    pairs: list[tuple[str, Any]] = [("method", draw(methods)), ("params", params)]
    pairs.append(("emittedAtMs", draw(st.integers(0, 2**53))))
    if draw(st.integers(0, 6)) == 0:
        pairs.append(("id", draw(json_values)))
    if draw(st.integers(0, 8)) == 0:
        pairs.append(("method", draw(methods)))
    if draw(st.integers(0, 8)) == 0:
        pairs.append(("params", draw(params_objects())))
    if draw(st.integers(0, 3)) == 0:
        pairs = draw(st.permutations(pairs))
    return Obj(pairs)


def render(value: Any, data: st.DataObject) -> str:
    """JSON text for `value`, written in one of the many ways JSON allows."""
    space = data.draw(st.sampled_from(["", "", "", " ", "\t", "\r\n "]))
    if isinstance(value, Obj):
        inner = f",{space}".join(
            f"{render_string(key, data)}{space}:{space}{render(item, data)}"
            for key, item in value.pairs
        )
        return f"{{{space}{inner}{space}}}"
    if isinstance(value, dict):
        return render(Obj(list(value.items())), data)
    if isinstance(value, list):
        return "[" + f",{space}".join(render(item, data) for item in value) + "]"
    if isinstance(value, str):
        return render_string(value, data)
    return json.dumps(value)  # NaN and Infinity come out as the standard library writes them


def render_string(text: str, data: st.DataObject) -> str:
    escape_all = data.draw(st.integers(0, 4)) == 0
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\' or code < 0x20 or 0xD800 <= code <= 0xDFFF or escape_all:
            out.append(
                json.dumps(char, ensure_ascii=True)[1:-1] if code > 0xFFFF else f"\\u{code:04x}"
            )
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def corrupt(line: bytes, data: st.DataObject) -> bytes:
    """Sometimes damage a line the way a broken peer would."""
    kind = data.draw(st.integers(0, 6))
    if kind > 3 or not line:
        return line
    at = data.draw(st.integers(0, len(line) - 1))
    if kind == 0:
        return line[:at]  # truncated
    if kind == 1:
        return line[:at] + line[at + 1 :]  # a byte lost
    noise = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b'"', b"\\", b"}", b",", b" "]))
    return line[:at] + noise + line[at:]


@st.composite
def wire_lines(draw: st.DrawFn) -> bytes:
    data = draw(st.data())
    text = render(draw(notification_objects()), data)
    return corrupt(text.encode("utf-8"), data)


@st.composite
def near_server_lines(draw: st.DrawFn) -> bytes:
    """Lines shaped like the server's deltas (compact, method first), each with something
    off now and then: another method or turn id of any type, duplicate or extra keys, an
    "id", params that are not an object, escapes, damaged bytes."""
    data = draw(st.data())
    params = draw(params_objects() if draw(st.integers(0, 8)) else json_values)
    pairs: list[tuple[str, Any]] = [("method", draw(methods)), ("params", params)]
    pairs.append(("emittedAtMs", draw(st.integers(0, 2**53))))
    if draw(st.integers(0, 4)) == 0:
        pairs.insert(
            draw(st.integers(1, 3)),
            (draw(st.sampled_from(["id", "method", "params"])), draw(json_values)),
        )
    compact = Obj(pairs)
    text = (
        "{"
        + ",".join(f"{json.dumps(key)}:{render(value, data)}" for key, value in compact.pairs)
        + "}"
    )
    return corrupt(text.encode("utf-8"), data)


def server_line(method: str, turn_id: str, delta: str, *, extra: bool = False) -> bytes:
    """A streaming notification as codex app-server writes it (compact, method first)."""
    params: dict[str, Any] = {"threadId": THREAD, "turnId": turn_id, "itemId": "msg_1"}
    params["delta"] = delta
    if extra:
        params["summaryIndex"] = 0
    message = {"method": method, "params": params, "emittedAtMs": 1_760_000_000_000}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


# -- the parser ---------------------------------------------------------------------------------


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN equal to itself and the types of numbers compared too."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def standard(data: bytes) -> Any:
    return json.loads(data.decode("utf-8", errors="replace"))


def check_loads_matches_the_standard_library(data: bytes) -> None:
    try:
        expected = standard(data)
    except ValueError:
        with pytest.raises(ValueError):
            jsoncodec.loads(data)
        return
    assert same(jsoncodec.loads(data), expected)
    assert same(jsoncodec.loads(data.decode("utf-8", errors="replace")), expected)


@given(st.data(), json_values)
def test_loads_reads_json_as_the_standard_library_does(data: st.DataObject, value: Any) -> None:
    """Any JSON text, however written, parses to the same values as with the json module."""
    check_loads_matches_the_standard_library(render(value, data).encode("utf-8"))


@given(st.one_of(wire_lines(), st.binary(max_size=60)))
@example(b'{"n": NaN}')
@example(b'"\\ud800"')
@example(b'{"t": "caf\xe9"}')
@example(b"1" + b"0" * 5000)
@example(b"1e400")
@example(b'{"a": 1, "a": 2}')
def test_loads_accepts_and_refuses_what_the_standard_library_does(data: bytes) -> None:
    """Damaged or odd texts (NaN, lone surrogates, invalid UTF-8, huge numbers) are accepted
    or refused exactly as by the json module, with the same values."""
    check_loads_matches_the_standard_library(data)


# -- the short path for deltas ------------------------------------------------------------------


def peek(text: bytes | str) -> Any:
    try:
        return jsoncodec.notification_peeker(ACTIVITY_ONLY_METHODS)(text)
    except (ValueError, RecursionError):
        return None


@given(st.one_of(wire_lines(), near_server_lines()))
@settings(max_examples=400)
@example(server_line("item/agentMessage/delta", "turn-a", 'a "quoted" \\ line\n'))
@example(b'{"method":"item/agentMessage/delta","params":{"turnId":"turn-a"},"id":null}')
@example(b'{"method":"item/agentMessage/delta","params":{"turnId":"turn-a","turnId":5}}')
@example(b'{"method":"item/agentMessage/delta","params":{"turnId":"x"},"params":[]}')
@example(b'{"\\u006dethod":"item/plan/delta","params":{"turn\\u0049d":"turn-a"}}')
@example(b'{"method":"item/plan/delta","params":{"turnId":"turn-a","d":"\xff"}}')
@example(b'{"method":"item/plan/delta","params":{"turnId":"turn-a"}} {}')
def test_a_peek_agrees_with_the_full_parse(line: bytes) -> None:
    """Whenever the peek reads a line, parsing it whole gives the same method and turn id, a
    dict of params, and no "id"."""
    for text in (line, line.decode("utf-8", errors="replace")):
        peeked = peek(text)
        if peeked is None:
            continue
        message = jsoncodec.loads(text)
        assert isinstance(message, dict)
        assert message["method"] == peeked.method and peeked.method in ACTIVITY_ONLY_METHODS
        assert "id" not in message
        assert isinstance(message["params"], dict)
        assert message["params"].get("turnId") == peeked.params.turnId


def router_with_turns() -> Router:
    router = Router()
    router.watch(THREAD)
    for turn_id in KNOWN_TURNS:
        router.attach(THREAD, turn_id, now=0.0)
    return router


def activity(router: Router) -> dict[str, float]:
    return {turn_id: tracker.last_activity for turn_id, tracker in router.turns.items()}


server_deltas = st.builds(
    server_line,
    st.sampled_from(sorted(ACTIVITY_ONLY_METHODS)),
    st.sampled_from(KNOWN_TURNS),
    wild_text.map(lambda text: text.encode("utf-8", "replace").decode()),
    extra=st.booleans(),
)


@given(st.one_of(wire_lines(), near_server_lines(), server_deltas))
@settings(max_examples=400)
def test_the_short_path_takes_only_what_the_full_path_takes_alike(line: bytes) -> None:
    """A line the short path takes is one the full path takes too (as a delta of the same
    known turn), and both leave every turn's inactivity clock the same."""
    for text in (line, line.decode("utf-8", errors="replace")):
        short, full = router_with_turns(), router_with_turns()
        passed_on = list(short.without_activity([text], now=5.0))
        if passed_on:
            assert passed_on == [text]
            assert activity(short) == activity(full)  # untouched
            continue
        message = jsoncodec.loads(text)
        assert isinstance(message, dict)
        assert full.note_activity(message, now=5.0)
        assert activity(short) == activity(full)


@given(server_deltas)
def test_server_written_deltas_of_known_turns_take_the_short_path(line: bytes) -> None:
    """The short path is not idle: deltas written as the server writes them are all taken,
    as bytes (stdio) and as str (websocket), and refresh their own turn only."""
    turn_id = json.loads(line)["params"]["turnId"]
    for text, other in ((line, b"{}"), (line.decode(), "{}")):
        router = router_with_turns()
        assert list(router.without_activity([text, other], now=7.0)) == [other]
        assert activity(router) == {t: (7.0 if t == turn_id else 0.0) for t in KNOWN_TURNS}


def test_the_short_path_leaves_unknown_turns_and_requests_to_the_full_path() -> None:
    """A delta of an unknown turn (it may be one about to be created), a request with a
    delta's method, and a line not written compactly all go on to the full path, in order."""
    lines = [
        server_line("item/agentMessage/delta", "turn-unknown", "x"),
        b'{"method":"item/agentMessage/delta","params":{"turnId":"turn-a"},"id":7}',
        b'{"method": "item/agentMessage/delta", "params": {"turnId": "turn-a"}}',
        server_line("item/agentMessage/delta", "turn-a", "taken"),
        b"not json",
    ]
    router = router_with_turns()
    assert list(router.without_activity(lines, now=3.0)) == [*lines[:3], lines[4]]
    assert router.turns["turn-a"].last_activity == 3.0


def test_notification_parts_agree_with_decode_object() -> None:
    """`notification_parts` takes exactly the notifications `decode_object` would build."""
    cases: list[dict[str, Any]] = [
        {"method": "m", "params": {"a": 1}},
        {"method": "m"},
        {"method": "m", "params": None},
        {"method": "m", "params": [1]},
        {"method": 5, "params": {}},
        {"method": "m", "params": {}, "id": 1},
        {"id": 1, "result": {}},
        {"what": 1},
    ]
    for obj in cases:
        parts = jsonrpc.notification_parts(obj)
        try:
            message: Any = jsonrpc.decode_object(obj)
        except jsonrpc.BadMessage:
            message = None
        if isinstance(message, jsonrpc.Notification):
            assert parts == (message.method, message.params)
        else:
            assert parts is None


# -- framing ------------------------------------------------------------------------------------


def expected_lines(lines: Sequence[bytes]) -> list[bytes]:
    cleaned = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return [line for line in cleaned if line and not line.isspace()]


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.lists(st.integers(1, 50), min_size=1, max_size=30),
    st.booleans(),
)
def test_framing_does_not_depend_on_where_reads_cut_the_stream(
    lines: list[bytes], cuts: list[int], terminated: bool
) -> None:
    """However the stream is cut into reads, the same lines come out, blank lines skipped
    and one trailing CR dropped; an unterminated last line comes out at EOF."""
    stream = b"\n".join(lines) + (b"\n" if terminated else b"")
    framer = LineFramer()
    out: list[bytes] = []
    position = 0
    for size in [*cuts, len(stream)]:
        out.extend(framer.feed(stream[position : position + size]))
        position += size
    rest = framer.eof()
    complete = lines if terminated else lines[:-1]
    assert out == expected_lines(complete)
    last = b"" if terminated or not lines else lines[-1].strip()
    assert rest == (last or None)


def test_a_crlf_split_between_reads_is_dropped() -> None:
    """A CR that ends one read and the LF that starts the next frame one line."""
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\r') == []
    assert framer.feed(b'\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']


def test_a_long_line_is_joined_once_from_its_reads() -> None:
    """A line arriving in many reads comes out as one bytes object, byte for byte."""
    framer = LineFramer(max_message_bytes=1 << 20)
    pieces = [bytes([65 + i % 26]) * 4096 for i in range(100)]
    for piece in pieces:
        assert framer.feed(piece) == []
    assert framer.pending_bytes == 409_600
    [line] = framer.feed(b"\n")
    assert line == b"".join(pieces) and framer.pending_bytes == 0


def test_lines_before_an_oversized_one_in_the_same_read_are_kept() -> None:
    """The error carries the whole lines that came before the oversized one."""
    framer = LineFramer(max_message_bytes=8)
    with pytest.raises(MessageTooLarge) as info:
        framer.feed(b"one\n\ntwo\r\n" + b"x" * 9 + b"\nthree\n")
    assert info.value.lines == [b"one", b"two"]


# -- the client over batches of compact lines ---------------------------------------------------


class CompactLines(MessageTransport):
    """The client end of a memory connection, delivering like the stdio transport does:
    compact JSON lines as bytes, in batches of whatever arrived together."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.batches = 0

    async def send(self, value: str) -> None:
        await self.inner.send(value)

    async def receive(self) -> str:
        raise AssertionError("the client reads batches")

    async def receive_batch(self) -> list[bytes]:
        texts = [await self.inner.receive()]
        while True:
            try:
                texts.append(self.inner._receive_channel.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self.batches += 1
        return [_compact(text) for text in texts]

    async def aclose(self) -> None:
        await self.inner.aclose()


def _compact(text: str) -> bytes:
    try:
        message = json.loads(text)
    except ValueError:
        return text.encode()
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.fixture
async def batch_server(nursery: trio.Nursery) -> FakeAppServer:
    client_end, server_end = memory_transport_pair()
    server = FakeAppServer(server_end)
    server.client_end = CompactLines(client_end)  # type: ignore[attr-defined]
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def batch_client(batch_server: FakeAppServer) -> AsyncIterator[CodexClient]:
    async with CodexClient.over(batch_server.client_end) as connected:  # type: ignore[attr-defined]
        yield connected


@pytest.fixture
def full_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes | str]:
    """Every text the client parses in full, recorded."""
    parsed: list[bytes | str] = []
    real_loads = jsoncodec.loads

    def recording_loads(text: Any) -> Any:
        parsed.append(text)
        return real_loads(text)

    monkeypatch.setattr(jsoncodec, "loads", recording_loads)
    return parsed


async def test_deltas_keep_a_turn_alive_without_being_parsed(
    autojump_clock: trio.testing.MockClock,
    batch_client: CodexClient,
    batch_server: FakeAppServer,
    full_parses: list[bytes | str],
) -> None:
    """Deltas on the short path still restart the inactivity timer, and none is parsed in
    full."""
    batch_server.turn_script = trickling_turn(6)
    result = await batch_client.chat_once("q", inactivity_timeout=3)
    assert result.final_text == "done"
    assert full_parses  # the other messages were parsed
    assert not [text for text in full_parses if b"/delta" in bytes(text)]


async def test_a_silent_turn_between_deltas_still_times_out(
    autojump_clock: trio.testing.MockClock, batch_client: CodexClient, batch_server: FakeAppServer
) -> None:
    """The short path refreshes the clock only when a delta comes: silence is still noticed."""

    async def script(turn: FakeTurn) -> None:
        await turn.accept()
        await turn.notify("item/agentMessage/delta", itemId="m", delta="x")
        await trio.sleep(10)
        await turn.item("agentMessage", "late")
        await turn.complete()

    batch_server.turn_script = script
    with pytest.raises(Exception, match="no event for 3"):
        await batch_client.chat_once("q", inactivity_timeout=3)


async def test_early_events_and_garbage_in_batches(
    batch_client: CodexClient, batch_server: FakeAppServer
) -> None:
    """Events that beat the turn/start response are kept, deltas among them included, and
    garbage lines between deltas are counted and skipped."""

    async def script(turn: FakeTurn) -> None:
        await turn.notify("item/agentMessage/delta", itemId="m", delta="early")
        await turn.item("agentMessage", "early")
        await batch_server.send_raw("not json")
        await turn.accept()
        await turn.notify("item/agentMessage/delta", itemId="m", delta="x")
        await batch_server.send_raw('{"method":"item/agentMessage/delta","params":{"turnId":')
        await turn.notify("item/agentMessage/delta", itemId="m", delta="y")
        await turn.item("agentMessage", "late")
        await turn.complete()

    batch_server.turn_script = script
    result = await batch_client.chat_once("q")
    assert [step.text for step in result.steps] == ["early", "late"]
    assert batch_client.bad_messages == 2
    assert batch_client.statistics().turns == 0


# -- transports ---------------------------------------------------------------------------------


async def test_stdio_batches_and_single_receives_share_one_stream() -> None:
    """`receive` and `receive_batch` take from the same lines, in order, none twice; the
    batch holds bytes, with invalid UTF-8 left for the parser."""
    code = (
        "import sys; out = sys.stdout.buffer; "
        "out.write(b'one\\n\\ntwo\\r\\nthr\\xffee\\n' + b'x' * 100000 + b'\\nlast'); out.flush()"
    )
    async with open_stdio_transport([sys.executable, "-c", code]) as transport:
        with trio.fail_after(20):
            assert await transport.receive() == "one"
            lines: list[bytes] = []
            while True:
                try:
                    lines.extend(await transport.receive_batch())
                except trio.EndOfChannel:
                    break
    assert lines == [b"two", b"thr\xffee", b"x" * 100000, b"last"]


def system_pipe_limit() -> int:
    """The largest pipe an unprivileged process may ask for (0 where there is no such limit
    to read: not Linux)."""
    try:
        return int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except OSError:
        return 0


@pytest.mark.skipif(
    system_pipe_limit() < STDOUT_PIPE_BYTES, reason="not Linux, or pipes capped below 1 MiB"
)
async def test_the_child_stdout_pipe_is_enlarged() -> None:
    """The app-server's stdout gets a 1 MiB pipe, so a burst is read 256 KiB at a time."""
    code = "import sys; sys.stdin.read()"
    async with open_stdio_transport([sys.executable, "-c", code]) as transport:
        stdout = transport.process.stdout
        assert isinstance(stdout, trio.lowlevel.FdStream)
        assert fcntl.fcntl(stdout.fileno(), fcntl.F_GETPIPE_SZ) == STDOUT_PIPE_BYTES


async def test_a_websocket_batch_is_every_message_of_one_read() -> None:
    """Frames that arrive together come back as one batch, in order: a fragmented text
    joined, a binary message dropped, a ping answered on the side."""
    burst = bytearray()
    peer_events: list[Any] = []
    peer_done = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(await stream.receive_some(65536))
        assert any(isinstance(event, Request) for event in ws.events())
        await stream.send_all(ws.send(AcceptConnection()))
        for message in (
            TextMessage("a"),
            TextMessage("b"),
            BytesMessage(b"binary"),
            TextMessage("fr", message_finished=False),
            TextMessage("ag", message_finished=False),
            TextMessage("ment"),
            Ping(b"are you there"),
            TextMessage("é ✓"),
        ):
            burst.extend(ws.send(message))
        # After the client's "go" (not with the handshake's answer, which the transport
        # reads itself), in one write: the client then finds it all in one read.
        while not any(isinstance(event, TextMessage) for event in peer_events):
            ws.receive_data(await stream.receive_some(65536))
            peer_events.extend(ws.events())
        await stream.send_all(burst)
        while data := await stream.receive_some(65536):
            ws.receive_data(data)
            for event in ws.events():
                peer_events.append(event)
                if isinstance(event, CloseConnection):
                    await stream.send_all(ws.send(event.response()))
                    peer_done.set()
                    return

    async with trio.open_nursery() as nursery:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        nursery.start_soon(partial(trio.serve_listeners, serve, [listener]))
        async with open_websocket_transport(
            f"ws://127.0.0.1:{port}", ping_interval=None
        ) as transport:
            sock = transport._stream.socket
            await transport.send("go")
            with trio.fail_after(10):
                # Wait (bounded) until the kernel holds the whole burst for us.
                while not burst or _unread_bytes(sock) < len(burst):
                    await trio.sleep(0.005)
                batch = await transport.receive_batch()
        with trio.fail_after(10):
            await peer_done.wait()
        nursery.cancel_scope.cancel()
    assert batch == ["a", "b", "fragment", "é ✓"]
    assert Pong(b"are you there") in peer_events


def _unread_bytes(sock: Any) -> int:
    """Bytes waiting in a socket's receive buffer."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def test_an_empty_batch_yields_nothing() -> None:
    """An empty batch yields nothing (and needs no text to tell bytes from str)."""
    assert list(Router().without_activity([], now=1.0)) == []
