"""One measurement, in a fresh process: prints one JSON line on stdout.

    python bench/measure.py MODE [options] -- [fake_server.py options]

Modes:
    limit-stdio    the reference: a bare trio reader that only splits lines and parses each
                   with `orchestrator.protocol.jsoncodec.loads`
    client-stdio   `CodexClient.connect_stdio` + `chat_once` or `chat` (`--api`)
    limit-ws       the reference: a bare trio-websocket reader + `jsoncodec.loads`
    limit-wsproto  a bare wsproto reader on a trio stream + `jsoncodec.loads` (what the
                   websocket transport is built on: the limit of its parser)
    client-ws      `CodexClient.connect_websocket` + `chat_once` or `chat`
    trivial        `--turns` small turns on one connection and one thread; per-turn latency
    many-limit     `--connections` bare stdio readers in one process, one turn each at once
    many-client    `--connections` clients in one process, one turn each at once (`--api`)
    idle           resident set per idle, initialized connection (`--connections` of them)
    idle-ws        the same over websocket, every connection to one server
    scheduler      `--jobs` trivial jobs through the scheduler, step logs and results on disk
    scheduler-bare the same jobs as bare `chat_once` turns, same connections and concurrency
    records        the files the scheduler writes for `--jobs` jobs, alone: no turns
    steplog        one turn through the job runner, step log written (`--log jsonl`) or not

The modes from many-limit on live in bench/fleet.py, bench/overhead.py and bench/steplog.py;
their docstrings say what each times.

Every mode talks to `bench/fake_server.py` as its app-server (a child process; over websocket
the child listens on 127.0.0.1 and port 0). The timed window opens just before `turn/start`
is sent and closes once `turn/completed` has been handled (for the client: when `chat_once`
returns or `chat` ends). `peak_rss_kib` is this process's peak resident set (VmHWM), which
is why each measurement gets a process of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from bare import INIT_PARAMS, BareStdio, request_line  # bench/ is on sys.path when run as a script
from common import TIMEOUT, Timer, as_dict, read_turn, server_argv, ws_server
from rss import peak_rss_kib

# The same parser the client uses; this module imports nothing else from the project, so
# that a reference's peak RSS does not include the client's modules.
from orchestrator.protocol.jsoncodec import loads

if TYPE_CHECKING:
    from orchestrator.client import CodexClient

WS_MAX_MESSAGE = 64 * 1024 * 1024
WS_RECEIVE_BUFFER = 256 * 1024  # what the websocket transport uses
WS_QUEUE = 16


# -- the references -------------------------------------------------------------------------


async def limit_stdio(workload: list[str], timer: Timer) -> dict[str, Any]:
    """Bare reader (bench/bare.py): read 256 KiB chunks, split lines, `loads` each."""
    bare = await BareStdio.start(workload)
    try:
        stats = await bare.set_up()
        before = peak_rss_kib()
        with timer:
            events = await bare.read_turn()
    finally:
        await bare.aclose()
    return _throughput(stats, events, None, timer, before)


async def limit_ws(workload: list[str], timer: Timer) -> dict[str, Any]:
    """Bare trio-websocket reader: `get_message`, `loads` each; nothing else."""
    import trio_websocket

    async with (
        ws_server(workload) as url,
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

        await ws.send_message(request_line(1, "initialize", INIT_PARAMS).decode())
        stats = (await response(1))["bench"]
        await ws.send_message('{"method":"initialized"}')
        await ws.send_message(request_line(2, "thread/start").decode())
        thread_id = (await response(2))["thread"]["id"]
        before = peak_rss_kib()
        events = 0
        with timer:
            await ws.send_message(request_line(3, "turn/start", {"threadId": thread_id}).decode())
            await response(3)
            while True:
                message = loads(await ws.get_message())
                events += 1
                if message["method"] == "turn/completed":
                    break
    return _throughput(stats, events, None, timer, before)


async def limit_wsproto(workload: list[str], timer: Timer) -> dict[str, Any]:
    """Bare wsproto reader: 256 KiB reads, every frame they complete, `loads` each."""
    import urllib.parse

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Ping, Request, TextMessage

    async with ws_server(workload) as url:
        parts = urllib.parse.urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        ws = WSConnection(ConnectionType.CLIENT)
        ready: list[str] = []
        fragments: list[str] = []

        async def read() -> None:
            ws.receive_data(await stream.receive_some(WS_RECEIVE_BUFFER) or None)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    fragments.append(event.data)
                    if event.message_finished:
                        ready.append("".join(fragments))
                        fragments.clear()
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                elif not isinstance(event, AcceptConnection):
                    raise RuntimeError(f"unexpected {event!r}")

        async def send(text: str) -> None:
            await stream.send_all(ws.send(TextMessage(data=text)))

        async def response(msg_id: int) -> Any:
            while True:
                while not ready:
                    await read()
                message = loads(ready.pop(0))
                if message.get("id") == msg_id:
                    return message["result"]

        async with stream:
            await stream.send_all(
                ws.send(Request(host=f"{parts.hostname}:{parts.port}", target="/"))
            )
            while ws.state.name != "OPEN":
                await read()
            await send(request_line(1, "initialize", INIT_PARAMS).decode())
            stats = (await response(1))["bench"]
            await send('{"method":"initialized"}')
            await send(request_line(2, "thread/start").decode())
            thread_id = (await response(2))["thread"]["id"]
            before = peak_rss_kib()
            events = 0
            with timer:
                await send(request_line(3, "turn/start", {"threadId": thread_id}).decode())
                await response(3)
                done = False
                while not done:
                    while not ready:
                        await read()
                    batch = ready[:]
                    ready.clear()
                    for text in batch:
                        message = loads(text)
                        events += 1
                        if message["method"] == "turn/completed":
                            done = True
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
        result, steps = await read_turn(client, thread_id, api)
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


async def client_approvals(workload: list[str], api: str, timer: Timer) -> dict[str, Any]:
    """`chat` on a turn with approval requests (bench/approvals.py, imported only when
    chosen: what a measurement imports is part of its RSS)."""
    import approvals

    return await approvals.client_approvals(workload, api, timer, client_turn)


async def client_ws(workload: list[str], api: str, timer: Timer) -> dict[str, Any]:
    """The client over websocket. Keepalive pings are off: the fake server writes its
    frames around trio-websocket, and a turn here lasts seconds, far below the 20 s
    default interval anyway."""
    from orchestrator.client import CodexClient

    async with (
        ws_server(workload) as url,
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
        state = as_dict(client.statistics())
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
        "cpu_s": timer.cpu,
        "events_per_s": events / timer.elapsed,
        "mib_per_s": stats["bytes"] / timer.elapsed / 2**20,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }


MODES = [
    "limit-stdio",
    "client-stdio",
    "client-approvals",
    "limit-ws",
    "limit-wsproto",
    "client-ws",
    "trivial",
    "many-limit",
    "many-client",
    "idle",
    "idle-ws",
    "scheduler",
    "scheduler-bare",
    "records",
    "steplog",
    "soak",
]


def _other_mode(
    args: argparse.Namespace, workload: list[str], timer: Timer
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The modes of bench/fleet.py, bench/overhead.py and bench/steplog.py, imported only
    when chosen (what a measurement imports is part of its RSS)."""
    if args.mode in ("many-limit", "many-client", "idle", "idle-ws"):
        import fleet

        if args.mode == "many-limit":
            return partial(fleet.many_limit, workload, args.connections, timer)
        if args.mode == "many-client":
            return partial(fleet.many_client, workload, args.connections, args.api, timer)
        transport = "ws" if args.mode == "idle-ws" else "stdio"
        return partial(fleet.idle, workload, args.connections, transport)
    if args.mode in ("scheduler", "scheduler-bare", "records"):
        import overhead

        if args.mode == "records":
            return partial(overhead.records, args.jobs, timer, args.results_in)

        if args.mode == "scheduler-bare":
            return partial(
                overhead.scheduler_bare, workload, args.jobs, args.connections, args.threads, timer
            )
        return partial(
            overhead.scheduler,
            workload,
            args.jobs,
            args.connections,
            args.threads,
            timer,
            args.results_in,
        )
    if args.mode == "soak":
        import soak

        return partial(
            soak.soak,
            workload,
            args.jobs,
            args.connections,
            args.threads,
            args.window,
            args.results_in,
        )
    import steplog

    return partial(steplog.steplog, workload, args.log, timer)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--`; fake_server.py options after it."""
    if "--" in argv:
        cut = argv.index("--")
        own, workload = argv[:cut], argv[cut + 1 :]
    else:
        own, workload = argv, []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--api", choices=["chat_once", "chat"], default="chat_once")
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument(
        "--window", type=int, default=100, help="trivial: turns per window; soak: jobs"
    )
    parser.add_argument("--connections", type=int, default=100, help="many-*, idle, scheduler*")
    parser.add_argument("--jobs", type=int, default=1_000, help="scheduler*, soak: jobs (turns)")
    parser.add_argument("--threads", type=int, default=4, help="scheduler*: slots per connection")
    parser.add_argument("--log", choices=["jsonl", "null"], default="jsonl", help="steplog")
    parser.add_argument(
        "--results-in", help="scheduler, records, soak: results under this directory"
    )
    parser.add_argument("--profile", help="write a cProfile of the timed window here")
    parser.add_argument(
        "--best-of", type=int, default=1, help="limit-*, client-*: runs, the fastest counts"
    )
    return parser.parse_args(own), workload


THROUGHPUT_MODES = {
    "limit-stdio": limit_stdio,
    "limit-ws": limit_ws,
    "limit-wsproto": limit_wsproto,
    "client-stdio": client_stdio,
    "client-approvals": client_approvals,
    "client-ws": client_ws,
}


def _best_of(args: argparse.Namespace, workload: list[str]) -> dict[str, Any]:
    """One turn `--best-of` times, each with a server of its own: the fastest run's rate,
    and the first run's memory (later runs start from whatever the earlier ones left).

    A turn of 100,000 notifications lasts a fraction of a second, and on a shared machine a
    single stall moves that by tens of percent; noise only ever slows a run down, so the
    fastest of a few is the steadiest estimate (as `timeit` takes the minimum)."""
    measure = THROUGHPUT_MODES[args.mode]
    extra = () if args.mode.startswith("limit") else (args.api,)
    runs = []
    for _ in range(1 if args.profile else args.best_of):
        runs.append(trio.run(measure, workload, *extra, Timer(args.profile)))
    best = dict(max(runs, key=lambda run: run["events_per_s"]))
    best["rss_before_kib"] = runs[0]["rss_before_kib"]
    best["peak_rss_kib"] = runs[0]["peak_rss_kib"]
    best["events_per_s_runs"] = [run["events_per_s"] for run in runs]
    return best


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its JSON line."""
    args, workload = parse_args(sys.argv[1:] if argv is None else argv)
    timer = Timer(args.profile)
    if args.mode in THROUGHPUT_MODES:
        result = _best_of(args, workload)
    elif args.mode == "trivial":
        result = trio.run(trivial, workload, args.turns, args.window)
    else:
        result = trio.run(_other_mode(args, workload, timer))
    result["mode"] = args.mode
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
