"""One measurement, in a fresh process: prints one JSON line on stdout.

    python bench/measure.py MODE [options] -- [fake_server.py options]

Modes:
    limit-stdio    the reference: a bare trio reader that only splits lines and parses each
                   with `orchestrator.protocol.jsoncodec.loads`
    client-stdio   `CodexClient.connect_stdio` + `chat_once` or `chat` (`--api`)
    limit-ws       the reference: a bare trio-websocket reader + `jsoncodec.loads`
    client-ws      `CodexClient.connect_websocket` + `chat_once` or `chat`
    trivial        `--turns` small turns on one connection and one thread; per-turn latency

Every mode talks to `bench/fake_server.py` as its app-server (a child process; over websocket
the child listens on 127.0.0.1 and port 0). The timed window opens just before `turn/start`
is sent and closes once `turn/completed` has been handled (for the client: when `chat_once`
returns or `chat` ends). `peak_rss_kib` is this process's peak resident set (VmHWM), which
is why each measurement gets a process of its own.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trio
from rss import peak_rss_kib  # bench/rss.py: bench/ is on sys.path when run as a script

# The same parser the client uses; this module imports nothing else from the project, so
# that a reference's peak RSS does not include the client's modules.
from orchestrator.protocol.jsoncodec import dumps, loads

if TYPE_CHECKING:
    from orchestrator.client import CodexClient

BENCH = Path(__file__).resolve().parent
SERVER = BENCH / "fake_server.py"
READ_CHUNK = 256 * 1024  # what the stdio transport reads at a time
WS_MAX_MESSAGE = 64 * 1024 * 1024
WS_RECEIVE_BUFFER = 256 * 1024  # what the websocket transport uses
WS_QUEUE = 16
TIMEOUT = 600.0


def server_argv(workload: list[str]) -> list[str]:
    """The fake app-server command for a workload."""
    return [sys.executable, str(SERVER), *workload]


class Timer:
    """The timed window, with an optional cProfile of exactly that window."""

    def __init__(self, profile_path: str | None) -> None:
        self._profile = cProfile.Profile() if profile_path else None
        self._path = profile_path
        self.start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Timer:
        if self._profile is not None:
            self._profile.enable()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.perf_counter() - self.start
        if self._profile is not None and self._path is not None:
            self._profile.disable()
            self._profile.dump_stats(self._path)


def _request(msg_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    return dumps({"id": msg_id, "method": method, "params": params or {}}).encode()


INIT_PARAMS = {"clientInfo": {"name": "bench_limit", "version": "0"}}


# -- the references -------------------------------------------------------------------------


async def limit_stdio(workload: list[str], timer: Timer) -> dict[str, Any]:
    """Bare reader: read 256 KiB chunks, split lines, `loads` each; nothing else."""
    process = await trio.lowlevel.open_process(
        server_argv(workload), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    parts: list[bytes] = []

    async def messages() -> list[Any]:
        """The messages completed by the next chunk (possibly none)."""
        nonlocal parts
        chunk = cast(bytes, await stdout.receive_some(READ_CHUNK))  # trio's pipes give bytes
        if not chunk:
            raise RuntimeError("the fake server closed its stdout")
        if b"\n" not in chunk:
            parts.append(chunk)
            return []
        lines = chunk.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
        tail = lines.pop()
        parts = [tail] if tail else []
        return [loads(line) for line in lines if line]

    async def response(msg_id: int) -> Any:
        while True:
            for message in await messages():
                if message.get("id") == msg_id:
                    return message["result"]

    try:
        # Set-up messages come one exchange at a time: a chunk never holds two of them.
        await stdin.send_all(_request(1, "initialize", INIT_PARAMS) + b"\n")
        stats = (await response(1))["bench"]
        await stdin.send_all(b'{"method":"initialized"}\n' + _request(2, "thread/start") + b"\n")
        thread_id = (await response(2))["thread"]["id"]
        before = peak_rss_kib()
        events = 0
        with timer:
            await stdin.send_all(_request(3, "turn/start", {"threadId": thread_id}) + b"\n")
            started = done = False
            while not done:
                for message in await messages():
                    if "id" in message:
                        started = started or message["id"] == 3
                        continue
                    if not started:
                        continue  # a late set-up notification (thread/started)
                    events += 1
                    if message["method"] == "turn/completed":
                        done = True
    finally:
        await stdin.aclose()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    return _throughput(stats, events, None, timer, before)


async def limit_ws(workload: list[str], timer: Timer) -> dict[str, Any]:
    """Bare trio-websocket reader: `get_message`, `loads` each; nothing else."""
    import trio_websocket

    async with (
        _ws_server(workload) as url,
        trio_websocket.open_websocket_url(
            url,
            message_queue_size=WS_QUEUE,
            max_message_size=WS_MAX_MESSAGE,
            receive_buffer_size=WS_RECEIVE_BUFFER,
        ) as ws,
    ):

        async def response(msg_id: int) -> Any:
            while True:
                message = loads(await ws.get_message())
                if message.get("id") == msg_id:
                    return message["result"]

        await ws.send_message(_request(1, "initialize", INIT_PARAMS).decode())
        stats = (await response(1))["bench"]
        await ws.send_message('{"method":"initialized"}')
        await ws.send_message(_request(2, "thread/start").decode())
        thread_id = (await response(2))["thread"]["id"]
        before = peak_rss_kib()
        events = 0
        with timer:
            await ws.send_message(_request(3, "turn/start", {"threadId": thread_id}).decode())
            await response(3)
            while True:
                message = loads(await ws.get_message())
                events += 1
                if message["method"] == "turn/completed":
                    break
    return _throughput(stats, events, None, timer, before)


# -- the client -----------------------------------------------------------------------------


async def client_turn(client: CodexClient, api: str, timer: Timer) -> dict[str, Any]:
    """Run the prepared turn through `chat_once` or `chat`, timed."""
    init = await client.initialize()
    stats = init.raw["bench"]
    thread_id = await client.start_thread()
    before = peak_rss_kib()
    with timer:
        if api == "chat_once":
            result = await client.chat_once("go", thread_id=thread_id)
            steps = len(result.steps)
        else:
            steps = 0
            stream = client.chat("go", thread_id=thread_id)
            async for _step in stream:
                steps += 1
            result = await stream.result()
    if result.status != "completed" or steps != stats["steps"]:
        raise RuntimeError(
            f"turn ended {result.status} with {steps} steps, expected {stats['steps']}"
        )
    return _throughput(stats, stats["notifications"], steps, timer, before)


async def client_stdio(workload: list[str], api: str, timer: Timer) -> dict[str, Any]:
    """The client over stdio."""
    from orchestrator.client import CodexClient

    async with CodexClient.connect_stdio(
        server_argv(workload), inactivity_timeout=None, request_timeout=TIMEOUT
    ) as client:
        return await client_turn(client, api, timer)


async def client_ws(workload: list[str], api: str, timer: Timer) -> dict[str, Any]:
    """The client over websocket. Keepalive pings are off: the fake server writes its
    frames around trio-websocket, and a turn here lasts seconds, far below the 20 s
    default interval anyway."""
    from orchestrator.client import CodexClient

    async with (
        _ws_server(workload) as url,
        CodexClient.connect_websocket(
            url, ping_interval=None, inactivity_timeout=None, request_timeout=TIMEOUT
        ) as client,
    ):
        return await client_turn(client, api, timer)


async def trivial(workload: list[str], turns: int, window: int) -> dict[str, Any]:
    """`turns` small turns with `chat_once` on one thread; latency of each."""
    from orchestrator.client import CodexClient

    latencies: list[float] = []
    async with CodexClient.connect_stdio(
        server_argv([*workload, "--trivial"]), inactivity_timeout=None, request_timeout=TIMEOUT
    ) as client:
        thread_id = await client.start_thread()
        before = peak_rss_kib()
        for _ in range(turns):
            start = time.perf_counter()
            result = await client.chat_once("hi", thread_id=thread_id)
            latencies.append(time.perf_counter() - start)
            if result.final_text != "ECHO: hi":
                raise RuntimeError(f"unexpected turn result {result!r}")
        state = client.statistics()
    # Turn 10 (not turn 1) is the reference: the first turns pay for warm-up.
    early = latencies[9 : 9 + window]
    late = latencies[-window:]
    ordered = sorted(latencies)
    return {
        "turns": turns,
        "window": window,
        "early_ms": statistics.median(early) * 1000,
        "late_ms": statistics.median(late) * 1000,
        "late_over_early": statistics.median(late) / statistics.median(early),
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "elapsed_s": sum(latencies),
        "turns_per_s": turns / sum(latencies),
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
        "client_state": state,
    }


# -- helpers --------------------------------------------------------------------------------


def _throughput(
    stats: dict[str, Any], events: int, steps: int | None, timer: Timer, before: int
) -> dict[str, Any]:
    if events != stats["notifications"]:
        raise RuntimeError(f"read {events} notifications, expected {stats['notifications']}")
    return {
        "events": events,
        "steps": steps,
        "bytes": stats["bytes"],
        "elapsed_s": timer.elapsed,
        "events_per_s": events / timer.elapsed,
        "mib_per_s": stats["bytes"] / timer.elapsed / 2**20,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }


class _ws_server:  # lower case: used like a function, `async with _ws_server(...) as url`
    """Start fake_server.py in websocket mode on a free port; yield its URL; stop it."""

    def __init__(self, workload: list[str]) -> None:
        self._argv = server_argv([*workload, "--listen", "ws://127.0.0.1:0"])
        self._process: trio.Process | None = None

    async def __aenter__(self) -> str:
        self._process = await trio.lowlevel.open_process(self._argv, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        seen = b""
        with trio.fail_after(120):  # the server encodes the whole turn before listening
            while b"\n" not in seen:
                chunk = await self._process.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError("the websocket fake server exited before listening")
                seen += chunk
        line = seen.split(b"\n", 1)[0].decode()
        return line.removeprefix("listening ").strip()

    async def __aexit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--`; fake_server.py options after it."""
    if "--" in argv:
        cut = argv.index("--")
        own, workload = argv[:cut], argv[cut + 1 :]
    else:
        own, workload = argv, []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode", choices=["limit-stdio", "client-stdio", "limit-ws", "client-ws", "trivial"]
    )
    parser.add_argument("--api", choices=["chat_once", "chat"], default="chat_once")
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100, help="turns per latency window")
    parser.add_argument("--profile", help="write a cProfile of the timed window here")
    return parser.parse_args(own), workload


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its JSON line."""
    args, workload = parse_args(sys.argv[1:] if argv is None else argv)
    timer = Timer(args.profile)
    if args.mode == "limit-stdio":
        result = trio.run(limit_stdio, workload, timer)
    elif args.mode == "limit-ws":
        result = trio.run(limit_ws, workload, timer)
    elif args.mode == "client-stdio":
        result = trio.run(client_stdio, workload, args.api, timer)
    elif args.mode == "client-ws":
        result = trio.run(client_ws, workload, args.api, timer)
    else:
        result = trio.run(trivial, workload, args.turns, args.window)
    result["mode"] = args.mode
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
