"""Many stdio connections in one trio process: aggregate throughput and idle cost.

`many-client`: N `CodexClient.connect_stdio` connections, each to a fake server child of its
own, each running one turn with `chat` (steps not kept) or `chat_once`, all at once.
`many-limit`: the same N turns read by N bare readers (bench/bare.py), the reference.
The timed window opens once every connection is initialized and has its thread, just before
the N turns start together, and closes when the last turn has been read. The first server
encodes the turn into a `--turn-cache` file that the other N - 1 read, which saves seconds
of start-up CPU.

`idle`: the resident set (VmRSS) with N initialized, idle connections, minus the resident
set with none, over N. One connection is opened, initialized and closed before the "none"
reading, so that what only the first connection pays (lazy imports, trio's process
machinery, allocator arenas) is not charged to the N. The pipes and the children's memory
are not in this process and not counted.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import trio
from bare import BareStdio
from common import TIMEOUT, Timer, as_dict, read_turn, server_argv, ws_server
from rss import current_rss_kib, peak_rss_kib

if TYPE_CHECKING:
    from orchestrator.client import CodexClient

SETTLE_S = 0.5  # after the last initialize: let every reader park and stderr drain


async def many_limit(workload: list[str], connections: int, timer: Timer) -> dict[str, Any]:
    """N bare readers, one turn each, read concurrently."""
    readers: list[BareStdio] = []
    stats: list[dict[str, Any]] = []
    counts: list[int] = []

    async def set_up(bare: BareStdio) -> None:
        stats.append(await bare.set_up())

    async def read(bare: BareStdio) -> None:
        counts.append(await bare.read_turn())

    with _shared_turn(workload) as shared:
        try:
            # The first server encodes the turn into the cache; the others read it.
            readers.append(await BareStdio.start(shared))
            await set_up(readers[0])
            for _ in range(connections - 1):
                readers.append(await BareStdio.start(shared))
            async with trio.open_nursery() as nursery:
                for bare in readers[1:]:
                    nursery.start_soon(set_up, bare)
            before = peak_rss_kib()
            with timer:
                async with trio.open_nursery() as nursery:
                    for bare in readers:
                        nursery.start_soon(read, bare)
        finally:
            for bare in readers:
                await bare.aclose()
    expected = sum(s["notifications"] for s in stats)
    return _aggregate(connections, sum(counts), expected, None, timer, before)


async def many_client(
    workload: list[str], connections: int, api: str, timer: Timer
) -> dict[str, Any]:
    """N clients, one turn each through `chat` or `chat_once`, read concurrently."""
    threads: dict[int, str] = {}
    stats: list[dict[str, Any]] = []
    steps: list[int] = []

    async def set_up(number: int, client: CodexClient) -> None:
        stats.append((await client.initialize()).raw["bench"])
        threads[number] = await client.start_thread()

    async def run_turn(number: int, client: CodexClient) -> None:
        steps.append(await _turn(client, threads[number], api))

    with _shared_turn(workload) as shared:
        async with AsyncExitStack() as stack:
            # The first server encodes the turn into the cache; the others read it.
            clients = [await stack.enter_async_context(_connect(shared))]
            await set_up(0, clients[0])
            for _ in range(connections - 1):
                clients.append(await stack.enter_async_context(_connect(shared)))
            async with trio.open_nursery() as nursery:
                for number, client in enumerate(clients[1:], start=1):
                    nursery.start_soon(set_up, number, client)
            before = peak_rss_kib()
            with timer:
                async with trio.open_nursery() as nursery:
                    for number, client in enumerate(clients):
                        nursery.start_soon(run_turn, number, client)
    expected_steps = sum(s["steps"] for s in stats)
    if sum(steps) != expected_steps:
        raise RuntimeError(f"read {sum(steps)} steps, expected {expected_steps}")
    expected = sum(s["notifications"] for s in stats)
    return _aggregate(connections, expected, expected, sum(steps), timer, before)


async def idle(workload: list[str], connections: int, transport: str = "stdio") -> dict[str, Any]:
    """RSS per idle, initialized connection: (with N - with none) / N. Over websocket the
    connections go to one server and keep their default keepalive (a ping every 20 s)."""
    if transport == "stdio":
        return await _idle(lambda: _connect(workload), connections)
    async with ws_server(workload) as url:
        return await _idle(lambda: _connect_ws(url), connections)


async def _idle(
    connect: Callable[[], AbstractAsyncContextManager[CodexClient]], connections: int
) -> dict[str, Any]:
    async with connect() as warm_up:
        await warm_up.initialize()
    none = _settled_rss()
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect()) for _ in range(connections)]
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client.initialize)
        await trio.sleep(SETTLE_S)
        with_idle = _settled_rss()
        if any(client.closed for client in clients):
            raise RuntimeError("an idle connection closed")
        state = as_dict(clients[0].statistics())
    return {
        "connections": connections,
        "rss_none_kib": none,
        "rss_idle_kib": with_idle,
        "per_connection_kib": (with_idle - none) / connections,
        "client_state": state,
        "rss_before_kib": none,
        "peak_rss_kib": peak_rss_kib(),
    }


@contextmanager
def _shared_turn(workload: list[str]) -> Iterator[list[str]]:
    """The workload with a `--turn-cache` in a fresh directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        yield [*workload, "--turn-cache", os.path.join(tmp, "turn.jsonl")]


def _connect(workload: list[str]) -> AbstractAsyncContextManager[CodexClient]:
    from orchestrator.client import CodexClient

    return CodexClient.connect_stdio(
        server_argv(workload), inactivity_timeout=None, request_timeout=TIMEOUT
    )


def _connect_ws(url: str) -> AbstractAsyncContextManager[CodexClient]:
    from orchestrator.client import CodexClient

    return CodexClient.connect_websocket(url, inactivity_timeout=None, request_timeout=TIMEOUT)


async def _turn(client: CodexClient, thread_id: str, api: str) -> int:
    """One turn read to its end; the steps read."""
    result, steps = await read_turn(client, thread_id, api)
    if result.status != "completed":
        raise RuntimeError(f"a turn ended {result.status}: {result.error_message}")
    return steps


def _settled_rss() -> int:
    gc.collect()
    return current_rss_kib()


def _aggregate(
    connections: int,
    events: int,
    expected: int,
    steps: int | None,
    timer: Timer,
    before: int,
) -> dict[str, Any]:
    if events != expected:
        raise RuntimeError(f"read {events} notifications, expected {expected}")
    return {
        "connections": connections,
        "events": events,
        "steps": steps,
        "elapsed_s": timer.elapsed,
        "cpu_s": timer.cpu,
        "events_per_s": events / timer.elapsed,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }
