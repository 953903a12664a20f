"""A fast stand-in for `codex app-server`, for benchmarks only.

It answers `initialize`, `thread/start`, `thread/resume`, `thread/read` and `turn/start`, and
streams each turn as fast as it can: the whole turn is encoded before the first request is
read, then written in batches of about 1 MiB. The shape follows what codex-cli 0.169.0 sends
(shared/protocol/README.md): `turn/started`, the echoed user message, then items of rotating
types (`item/started`, N deltas, `item/completed`), `thread/tokenUsage/updated` and the
unrelated `account/rateLimits/updated` (no thread or turn id) every few items, occasionally an
item of 64 KiB to 4 MiB, and `thread/status/changed` plus `turn/completed` at the end.

Two modes of turn: `stream` (default) sends one prepared turn of exactly `--notifications`
notifications; `--trivial` answers every `turn/start` with a small complete turn (for latency
over many turns, and for many jobs). Every `thread/start` gets a thread id of its own (the
first one is the prepared turn's), and a turn runs on the thread `turn/start` names, so that
concurrent threads on one connection route apart.

Server requests (stdio only): `--request-every N` puts a command approval request (as codex
sends `item/commandExecution/requestApproval`) after every Nth line of the prepared turn, and
goes on streaming without waiting for the answer; only the turn's two closing notifications
wait for every answer (as codex does not end a turn with a request open). A thread reads the
client's messages as they come and notes when each answer arrives; at the end of input the
server writes, to `--report FILE`, how long each answer took from the moment its request was
written.

Transports: stdio (JSONL on stdin/stdout) by default; `--listen ws://127.0.0.1:PORT` serves a
websocket instead (port 0 picks one) and prints `listening ws://HOST:PORT` on stdout first.

The script is standalone (stdlib; trio and trio-websocket only in websocket mode) so that any
client can run it as its app-server child: `python bench/fake_server.py [options]`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

THREAD_ID = "019a0000-bench-7000-8000-000000000001"
BATCH_BYTES = 1024 * 1024
LARGE_MIN = 64 * 1024
LARGE_MAX = 4 * 1024 * 1024
LARGE_STEPS = (LARGE_MAX // LARGE_MIN).bit_length()  # 64 KiB << 0 .. 6
BASE_MS = 1_760_000_000_000

_PROSE = (
    "the of and to in is that for it as with was on be by this are from or an at which "
    "function return value error file line test client server turn thread item delta "
    "passed failed import self none true false read write open close start stop time"
)
WORDS = _PROSE.split()
# Now and then a word of accented, typographic or CJK text, as in real agent messages.
_RARE = "résumé naïve — “quoted” → ✓ 数据"
RARE_WORDS = _RARE.split()


def encode(message: dict[str, Any]) -> bytes:
    """One message as a compact JSONL line (UTF-8 kept as is, like the real server)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class Text:
    """Deterministic text of a requested size, cheap to make in bulk.

    Prose (deltas, messages) is mostly ASCII with about one non-ASCII word in 40; a large
    item is ASCII log output, as a big command output or diff usually is (in memory that
    is one byte per character; one non-ASCII character would make it two or four).
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        words = [
            rng.choice(RARE_WORDS) if rng.random() < 1 / 40 else rng.choice(WORDS)
            for _ in range(8000)
        ]
        self._prose = " ".join(words)
        log = [f"line {n}: {' '.join(rng.choice(WORDS) for _ in range(8))}" for n in range(2000)]
        self._log = "\n".join(log) + "\n"

    def make(self, size: int) -> str:
        """`size` characters of prose."""
        if size <= 0:
            return ""
        start = self._rng.randrange(0, len(self._prose) // 2)
        if size <= len(self._prose) - start:
            return self._prose[start : start + size]
        reps = size // len(self._prose) + 1
        return (self._prose * reps)[:size]

    def make_log(self, size: int) -> str:
        """`size` characters (and bytes) of ASCII log lines."""
        reps = size // len(self._log) + 1
        return (self._log * reps)[:size]


def _note(method: str, params: dict[str, Any], seq: int) -> dict[str, Any]:
    return {"method": method, "params": params, "emittedAtMs": BASE_MS + seq}


ITEM_KINDS = ("agentMessage", "reasoning", "commandExecution")


def stream_turn(
    args: argparse.Namespace, turn_id: str, thread_id: str = THREAD_ID
) -> Iterator[dict[str, Any]]:
    """The notifications of one prepared turn: exactly `args.notifications` of them."""
    rng = random.Random(args.seed)
    text = Text(rng)
    total = args.notifications
    ids = {"threadId": thread_id, "turnId": turn_id}
    seq = 0

    def note(method: str, params: dict[str, Any]) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return _note(method, params, seq)

    # The two closing notifications are always sent; everything else fits in the rest.
    budget = total - 2
    opening = [
        note(
            "turn/started",
            {"threadId": thread_id, "turn": {"id": turn_id, "status": "inProgress", "items": []}},
        ),
        note(
            "item/started",
            {**ids, "item": {"type": "userMessage", "id": "user-1", "content": []}},
        ),
        note(
            "item/completed",
            {
                **ids,
                "item": {
                    "type": "userMessage",
                    "id": "user-1",
                    "content": [{"type": "text", "text": "go", "text_elements": []}],
                },
            },
        ),
    ]
    yield from opening[:budget]
    budget -= min(budget, len(opening))
    index = 0
    while budget >= 2:
        index += 1
        large = args.large_every > 0 and index % args.large_every == 0
        # A large item is a command's output (a big diff or log is the real-world case).
        kind = "commandExecution" if large else ITEM_KINDS[index % len(ITEM_KINDS)]
        item_id = f"item_{index:06d}"
        deltas = min(args.deltas_per_item, budget - 2)
        started: dict[str, Any]
        if kind == "agentMessage":
            started = {"type": "agentMessage", "id": item_id, "text": "", "phase": None}
            delta_method = "item/agentMessage/delta"
        elif kind == "reasoning":
            started = {"type": "reasoning", "id": item_id, "summary": [], "content": []}
            delta_method = "item/reasoning/summaryTextDelta"
        else:
            started = {
                "type": "commandExecution",
                "id": item_id,
                "command": "/bin/bash -lc 'pytest -q tests/test_client.py'",
                "cwd": "/work/project",
                "processId": "35711",
                "status": "inProgress",
                "commandActions": [{"type": "unknown", "command": "pytest -q"}],
                "aggregatedOutput": None,
                "exitCode": None,
                "durationMs": None,
            }
            delta_method = "item/commandExecution/outputDelta"
        yield note("item/started", {**ids, "item": started})
        pieces = []
        for _ in range(deltas):
            piece = text.make(args.delta_bytes)
            pieces.append(piece)
            params: dict[str, Any] = {**ids, "itemId": item_id, "delta": piece}
            if kind == "reasoning":
                params["summaryIndex"] = 0
            yield note(delta_method, params)
        if large:
            # Sizes climb 64 KiB, 128 KiB ... 4 MiB and start over, so that a turn with seven
            # large items covers the whole range.
            size = LARGE_MIN << (index // args.large_every - 1) % LARGE_STEPS
            body = text.make_log(size)
        else:
            body = "".join(pieces)[: args.item_bytes] or text.make(args.item_bytes)
        completed: dict[str, Any]
        if kind == "agentMessage":
            phase = "final_answer" if budget - deltas - 2 < 2 else None
            completed = {"type": "agentMessage", "id": item_id, "text": body, "phase": phase}
        elif kind == "reasoning":
            completed = {"type": "reasoning", "id": item_id, "summary": [body], "content": []}
        else:
            completed = dict(started)
            completed.update(status="completed", aggregatedOutput=body, exitCode=0, durationMs=1094)
        yield note("item/completed", {**ids, "item": completed, "completedAtMs": BASE_MS + seq})
        budget -= deltas + 2
        if args.unrelated_every > 0 and index % args.unrelated_every == 0 and budget >= 2:
            yield note("thread/tokenUsage/updated", {**ids, "tokenUsage": _usage(index)})
            yield note("account/rateLimits/updated", {"rateLimits": _rate_limits()})
            budget -= 2
    for _ in range(budget):
        # Fill a remainder too small for an item with more unrelated notifications.
        yield note("account/rateLimits/updated", {"rateLimits": _rate_limits()})
    yield note("thread/status/changed", {"threadId": thread_id, "status": {"type": "idle"}})
    yield note(
        "turn/completed",
        {
            "threadId": thread_id,
            "turn": {"id": turn_id, "status": "completed", "error": None, "items": []},
        },
    )


def trivial_turn(turn_id: str, number: int, thread_id: str = THREAD_ID) -> Iterator[dict[str, Any]]:
    """A short complete turn: one agent message, usage, rate limits, completion."""
    ids = {"threadId": thread_id, "turnId": turn_id}
    item_id = f"msg_{number:06d}"
    yield _note(
        "turn/started",
        {"threadId": thread_id, "turn": {"id": turn_id, "status": "inProgress", "items": []}},
        0,
    )
    yield _note(
        "item/started",
        {**ids, "item": {"type": "agentMessage", "id": item_id, "text": "", "phase": None}},
        1,
    )
    yield _note("item/agentMessage/delta", {**ids, "itemId": item_id, "delta": "ECHO: hi"}, 2)
    message = {"type": "agentMessage", "id": item_id, "text": "ECHO: hi", "phase": "final_answer"}
    yield _note("item/completed", {**ids, "item": message}, 3)
    yield _note("thread/tokenUsage/updated", {**ids, "tokenUsage": _usage(number)}, 4)
    yield _note("account/rateLimits/updated", {"rateLimits": _rate_limits()}, 5)
    yield _note("thread/status/changed", {"threadId": thread_id, "status": {"type": "idle"}}, 6)
    yield _note(
        "turn/completed",
        {
            "threadId": thread_id,
            "turn": {"id": turn_id, "status": "completed", "error": None, "items": [message]},
        },
        7,
    )


def _usage(n: int) -> dict[str, Any]:
    last = {
        "totalTokens": 1200,
        "inputTokens": 1000,
        "cachedInputTokens": 800,
        "outputTokens": 200,
        "reasoningOutputTokens": 50,
    }
    total = {key: value * n for key, value in last.items()}
    return {"total": total, "last": last, "modelContextWindow": 258400}


def _rate_limits() -> dict[str, Any]:
    return {"limitId": "codex", "primary": None, "secondary": None, "credits": None}


def batches(lines: list[bytes]) -> list[bytes]:
    """Join encoded lines into chunks of about BATCH_BYTES (a large line goes alone)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        current.append(line)
        size += len(line)
        if size >= BATCH_BYTES:
            chunks.append(b"".join(current))
            current, size = [], 0
    if current:
        chunks.append(b"".join(current))
    return chunks


class Session:
    """The protocol of one connection: client messages in, transport-ready bytes out.

    `frame` turns one encoded line into what the transport writes (the line itself for
    stdio, a text frame for websocket); the prepared turn is framed ahead of time.
    """

    def __init__(self, args: argparse.Namespace, prepared: Prepared) -> None:
        self.args = args
        self.prepared = prepared
        self.turns = 0
        self.threads = 0

    def handle(self, message: dict[str, Any]) -> list[bytes]:
        """The chunks to write in answer to one client message (none for notifications)."""
        method = message.get("method")
        msg_id = message.get("id")
        if method is None or msg_id is None:
            return []  # `initialized`, or a response to a server request
        params = message.get("params") or {}
        lines, tail = self._answer(method, msg_id, params)
        return [*batches([self.prepared.frame(line) for line in lines]), *tail]

    def _answer(
        self, method: str, msg_id: Any, params: dict[str, Any]
    ) -> tuple[list[bytes], list[bytes]]:
        stats = self.prepared.stats
        if method == "initialize":
            result = {
                "userAgent": "bench_fake_server/0.169.0 (bench)",
                "codexHome": "/nonexistent",
                "platformFamily": "unix",
                "platformOs": "linux",
                "bench": stats,
            }
            status = _note("remoteControl/status/changed", {"status": "disabled"}, 0)
            return [encode({"id": msg_id, "result": result}), encode(status)], []
        if method in ("thread/start", "thread/resume", "thread/read"):
            if method == "thread/start":
                # Every thread its own id (the first is THREAD_ID, the prepared turn's), so
                # that concurrent threads on one connection route apart.
                self.threads += 1
                thread_id = f"{THREAD_ID[:-12]}{self.threads:012d}"
            else:
                thread_id = params.get("threadId") or THREAD_ID
            thread = {"id": thread_id, "status": {"type": "idle"}, "turns": [], "cwd": "/"}
            out = [encode({"id": msg_id, "result": {"thread": thread, "bench": stats}})]
            if method == "thread/start":
                out.append(encode(_note("thread/started", {"thread": thread}, 0)))
            return out, []
        if method == "turn/start":
            self.turns += 1
            turn_id = f"turn-{self.turns}"
            response = encode(
                {"id": msg_id, "result": {"turn": {"id": turn_id, "status": "inProgress"}}}
            )
            thread_id = params.get("threadId") or THREAD_ID
            if self.args.trivial:
                return [response, *map(encode, trivial_turn(turn_id, self.turns, thread_id))], []
            if self.turns == 1:
                return [response], self.prepared.chunks
            return [response, *map(encode, stream_turn(self.args, turn_id, thread_id))], []
        error = {"code": -32600, "message": f"unknown variant `{method}`"}
        return [encode({"id": msg_id, "error": error})], []


class Prepared:
    """The stream turn (`turn-1`), encoded, framed and batched before serving starts.

    With `--request-every`, each approval request ends a chunk: `request_ids` maps such a
    chunk (by identity) to its request's id, so that the writer notes when it went out; and
    the closing notifications are chunks of their own, `closing` (by identity).
    """

    def __init__(self, args: argparse.Namespace, frame: Callable[[bytes], bytes]) -> None:
        self.frame = frame
        self.request_ids: dict[int, int] = {}
        self.closing: set[int] = set()
        if args.trivial:
            self.chunks: list[bytes] = []
            self.stats = {"notifications": 8, "steps": 1, "bytes": 0}
            return
        lines = prepared_lines(args)
        completed = sum(1 for line in lines if line.startswith(b'{"method":"item/completed"'))
        self.stats = {
            "notifications": len(lines),
            "steps": completed - 1,  # the echoed user message is not a step
            "bytes": sum(len(line) for line in lines),
            "largest": max(len(line) for line in lines),
            "requests": 0,
        }
        if not args.request_every:
            self.chunks = batches([frame(line) for line in lines])
            return
        self.chunks = []
        for part, request_id in _split_for_requests(lines, args.request_every):
            chunks = batches([frame(line) for line in part])
            self.chunks += chunks
            if request_id is None:
                self.closing.update(id(chunk) for chunk in chunks)
            else:
                request = frame(approval_request(request_id))
                self.chunks.append(request)
                self.request_ids[id(request)] = request_id
        self.stats["requests"] = len(self.request_ids)


def _split_for_requests(lines: list[bytes], every: int) -> Iterator[tuple[list[bytes], int | None]]:
    """The turn's lines in runs of `every`, each but the closing one followed by the id of
    the request that goes after it (none after the last two lines: the turn ends there)."""
    body, closing = lines[:-2], lines[-2:]
    for request_id, start in enumerate(range(0, len(body), every)):
        yield body[start : start + every], request_id
    yield closing, None


def approval_request(request_id: int) -> bytes:
    """A command approval request of the prepared turn, shaped as codex sends it."""
    command = f"/bin/bash -c 'echo {request_id}'"
    return encode(
        {
            "id": request_id,
            "method": "item/commandExecution/requestApproval",
            "params": {
                "kind": "command",
                "threadId": THREAD_ID,
                "turnId": "turn-1",
                "itemId": f"call_{request_id:04d}",
                "startedAtMs": BASE_MS,
                "environmentId": "local",
                "command": command,
                "cwd": "/",
                "commandActions": [{"type": "unknown", "command": command}],
                "availableDecisions": ["accept", "cancel"],
            },
        }
    )


def prepared_lines(args: argparse.Namespace) -> list[bytes]:
    """The stream turn's JSONL lines: read from `--turn-cache` when that file exists, else
    encoded (and written there, atomically, for the next server with the same workload)."""
    cache = args.turn_cache
    if cache and os.path.exists(cache):
        with open(cache, "rb") as cached:
            return cached.read().splitlines(keepends=True)
    lines = [encode(note) for note in stream_turn(args, "turn-1")]
    if cache:
        partial = f"{cache}.{os.getpid()}.tmp"
        with open(partial, "wb") as out:
            out.write(b"".join(lines))
        os.replace(partial, cache)
    return lines


def serve_stdio(args: argparse.Namespace) -> None:
    """JSONL on stdin/stdout until stdin closes."""
    prepared = Prepared(args, frame=lambda line: line)
    session = Session(args, prepared)
    out = sys.stdout.buffer
    if prepared.request_ids:
        serve_stdio_with_requests(args, session, prepared)
        return
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        for chunk in session.handle(json.loads(raw)):
            out.write(chunk)
        out.flush()


def serve_stdio_with_requests(
    args: argparse.Namespace, session: Session, prepared: Prepared
) -> None:
    """As `serve_stdio`, with a thread reading stdin, so that an answer is timed when it
    arrives, not when the writer gets round to reading it."""
    incoming: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    sent: dict[int, float] = {}
    answered: dict[int, tuple[float, Any]] = {}
    all_answered = threading.Event()

    def read() -> None:
        for raw in sys.stdin.buffer:
            if not raw.strip():
                continue
            message = json.loads(raw)
            if "method" not in message and message.get("id") in prepared.request_ids.values():
                answered[message["id"]] = (time.perf_counter(), message.get("result"))
                if len(answered) == len(prepared.request_ids):
                    all_answered.set()
            else:
                incoming.put(message)
        incoming.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out = sys.stdout.buffer
    while (message := incoming.get()) is not None:
        for chunk in session.handle(message):
            if id(chunk) in prepared.closing:
                out.flush()
                all_answered.wait(timeout=60)  # the client's failure shows in the report
            out.write(chunk)
            request_id = prepared.request_ids.get(id(chunk))
            if request_id is not None:
                out.flush()
                sent[request_id] = time.perf_counter()
        out.flush()
    reader.join()
    latencies = sorted((answered[rid][0] - sent[rid]) * 1000 for rid in sent if rid in answered)
    report = {
        "requests": len(prepared.request_ids),
        "sent": len(sent),
        "answered": len(answered),
        "accepted": sum(1 for _, r in answered.values() if (r or {}).get("decision") == "accept"),
        "latencies_ms": latencies,
    }
    if args.report:
        with open(args.report, "w") as file:
            json.dump(report, file)


def serve_websocket(args: argparse.Namespace) -> None:
    """One JSON text per frame over trio-websocket, until killed."""
    import trio
    import trio_websocket

    host, _, port = args.listen.removeprefix("ws://").rstrip("/").rpartition(":")
    prepared = Prepared(args, frame=lambda line: _text_frame(line[:-1]))

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        connection = await request.accept()
        session = Session(args, prepared)
        while True:
            try:
                text = await connection.get_message()
            except trio_websocket.ConnectionClosed:
                return
            chunks = session.handle(json.loads(text))
            # Written straight to the stream, bypassing trio-websocket's per-message framing,
            # so that the server is never what limits a client's throughput. Server frames
            # are unmasked, so a pre-built frame is exactly what send_message would write.
            # The stream lock keeps these writes apart from the library's own (pongs).
            async with connection._stream_lock:
                for chunk in chunks:
                    await connection._stream.send_all(chunk)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            servers = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    handler,
                    host,
                    int(port),
                    None,
                    max_message_size=64 * 1024 * 1024,
                    task_status=task_status,
                )
            )
            bound = servers.port
            sys.stdout.write(f"listening ws://{host}:{bound}\n")
            sys.stdout.flush()

    trio.run(main)


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Workload and transport options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--deltas-per-item", type=int, default=20)
    parser.add_argument("--delta-bytes", type=int, default=24, help="characters per delta")
    parser.add_argument("--item-bytes", type=int, default=480, help="text of a completed item")
    parser.add_argument(
        "--large-every", type=int, default=500, help="every Nth item is 64 KiB-4 MiB (0: never)"
    )
    parser.add_argument(
        "--unrelated-every",
        type=int,
        default=5,
        help="usage + account/rateLimits/updated after every Nth item (0: never)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trivial", action="store_true", help="answer every turn/start small")
    parser.add_argument("--listen", default="stdio://", help="stdio:// or ws://HOST:PORT")
    parser.add_argument(
        "--request-every",
        type=int,
        default=0,
        help="stdio: a command approval request after every Nth line of the stream turn",
    )
    parser.add_argument("--report", help="with --request-every: write answer times here")
    parser.add_argument(
        "--turn-cache",
        help="file holding the encoded stream turn: read if present, else written (for many "
        "servers of one workload; the caller picks a fresh path per workload)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until the client goes away."""
    args = parse_args(argv)
    if args.listen.startswith("ws://"):
        serve_websocket(args)
    else:
        serve_stdio(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
