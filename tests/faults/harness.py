"""What the fault tests share: clients of a hostile server over either transport, a bystander
connection that must not notice another connection's trouble, a witness of a server's death,
and a memory gauge."""

from __future__ import annotations

import functools
import re
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from orchestrator.client import CodexClient, CodexTransportError, ServerRequest, TurnStream
from tests.faults.hostile_server import (
    APPROVAL,
    BYSTANDER_PLAN,
    Plan,
    WebsocketServer,
    open_websocket_server,
    stdio_command,
)


def known_bug(reason: str, raises: type[BaseException]) -> pytest.MarkDecorator:
    """A strict xfail for a bug of the client that fails the test with `raises` (pytest-trio
    reports every test failure inside an ExceptionGroup, hence the group matcher)."""
    matcher = pytest.RaisesGroup(raises, allow_unwrapped=True, flatten_subgroups=True)
    return pytest.mark.xfail(strict=True, reason=reason, raises=matcher)


# A bound for what must happen "at once"; far from any timeout of the client (120 s) and loose
# enough for a loaded two-core machine.
PROMPTLY = 2.0


class Endpoint:
    """Where a test's clients connect: a fresh process per client (stdio) or one websocket
    server process for all of them (each connection may follow its own plan)."""

    def __init__(self, transport: str, plan: Plan, server: WebsocketServer | None) -> None:
        self.transport = transport
        self.plan = plan
        self.server = server

    def connect(
        self, plan: Plan | None = None, **options: Any
    ) -> AbstractAsyncContextManager[CodexClient]:
        """A client of a server following `plan` (default: the endpoint's)."""
        if self.server is None:
            chosen = self.plan if plan is None else plan
            return CodexClient.connect_stdio(stdio_command(chosen), **options)
        url = self.server.url if plan is None else self.server.url_for(plan)
        return CodexClient.connect_websocket(url, **options)


@asynccontextmanager
async def open_endpoint(transport: str, plan: Plan | None = None) -> AsyncIterator[Endpoint]:
    """An endpoint of hostile servers following `plan` over `transport`."""
    if transport == "stdio":
        yield Endpoint(transport, plan or {}, None)
    else:
        async with open_websocket_server(plan) as server:
            yield Endpoint(transport, plan or {}, server)


class Bystander:
    """A connection with a turn in flight while a test hurts another connection.

    Its server is waiting on our approval in the middle of the turn, so the turn is surely
    still running during the fault; `finish()` then answers and proves the turn completes
    and the connection takes another turn.
    """

    def __init__(self) -> None:
        self.asked = trio.Event()
        self.release = trio.Event()
        self.client: CodexClient | None = None
        self.stream: TurnStream | None = None

    async def approve(self, request: ServerRequest) -> Mapping[str, Any]:
        self.asked.set()
        await self.release.wait()
        return {"decision": "accept"}

    async def finish(self) -> None:
        """Let the turn go on; it must end `completed`, and the next turn too."""
        assert self.client is not None and self.stream is not None
        self.release.set()
        rest = [step.text async for step in self.stream]
        result = await self.stream.result()
        assert rest == ["after"] and result.status == "completed"
        again = await self.client.chat_once("still there?")
        assert [s.text for s in again.steps] == ["before", "after"]
        assert again.status == "completed"


@asynccontextmanager
async def bystander(endpoint: Endpoint) -> AsyncIterator[Bystander]:
    """A bystander connected through `endpoint`, its turn started and waiting on approval."""
    watcher = Bystander()
    async with endpoint.connect(BYSTANDER_PLAN, approval_handler=watcher.approve) as client:
        watcher.client = client
        watcher.stream = client.chat("bystander turn")
        first = await watcher.stream.__anext__()
        assert first.text == "before"
        await watcher.asked.wait()
        yield watcher


# A request the dying servers never answer: a call surely pending when they die.
PENDING = "hostile/neverAnswered"


def dying_plan(phase: str, death: list[list[Any]]) -> dict[str, Any]:
    """A plan whose server runs `death` actions at `phase`: "initialize" (before answering
    it), "mid-turn" (after the first step), "approval" (after asking for an approval) or
    "idle" (after turn/completed)."""
    if phase == "initialize":
        return {"init": death, "silent": [PENDING]}
    turn: list[list[Any]] = [["accept"]]
    if phase == "idle":
        turn += [["message", "done"], ["complete"]]
    else:
        turn += [["message", "partial"]]
        if phase == "approval":
            turn += [["request_nowait", APPROVAL]]
    return {"turn": [*turn, *death], "silent": [PENDING]}


class Death:
    """What a client saw of its server's death: when it became certain, and the failures of
    the calls that were waiting then, with their times."""

    def __init__(self) -> None:
        self.at = 0.0
        self.failures: list[tuple[float, CodexTransportError]] = []

    @property
    def latency(self) -> float:
        """From the death to the last waiting call failing."""
        return max(at for at, _ in self.failures) - self.at

    async def expect_failure(self, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            await call()
        except CodexTransportError as exc:
            self.failures.append((trio.current_time(), exc))


async def witness_death(client: CodexClient, phase: str, asked: trio.Event | None = None) -> Death:
    """Drive `client` through a `dying_plan` phase and collect what fails.

    Before the death, a request the server never answers is pending (and, but at
    "initialize", a turn is being read); both must fail. At "idle" the turn completes first
    and the failure is the connection's `close_error`. At "approval", `asked` is set by the
    client's approval handler.
    """
    death = Death()
    if phase == "idle":
        result = await client.chat_once("last turn")
        assert result.status == "completed" and result.final_text == "done"
        death.at = trio.current_time()
        with trio.fail_after(PROMPTLY):
            await client.reader_done.wait()
        assert client.close_error is not None
        death.failures.append((trio.current_time(), client.close_error))
        return death
    async with trio.open_nursery() as nursery:
        if phase == "initialize":
            death.at = trio.current_time()
            nursery.start_soon(death.expect_failure, client.initialize)
            nursery.start_soon(death.expect_failure, functools.partial(client.request, PENDING))
            return death
        await client.initialize()
        nursery.start_soon(
            death.expect_failure, functools.partial(client.request, PENDING, timeout=60)
        )
        await trio.testing.wait_all_tasks_blocked()  # the request is on the wire, pending
        stream = client.chat("hurt")
        first = await stream.__anext__()
        assert first.text == "partial"
        if phase == "approval":
            assert asked is not None
            await asked.wait()
        death.at = trio.current_time()

        async def read_on() -> None:
            async for _ in stream:
                raise AssertionError("no step can follow the server's death")

        nursery.start_soon(death.expect_failure, read_on)
    return death


class Deliberation:
    """An approval handler that never decides: it records each request, sets `asked`, and
    sets `ended` once it is cancelled."""

    def __init__(self) -> None:
        self.asked = trio.Event()
        self.ended = trio.Event()
        self.requests: list[ServerRequest] = []

    async def __call__(self, request: ServerRequest) -> Mapping[str, Any]:
        """Deliberate on `request` until cancelled."""
        self.requests.append(request)
        self.asked.set()
        try:
            await trio.sleep_forever()
        finally:
            self.ended.set()
        raise AssertionError("unreachable")


def user_sees(error: BaseException) -> str:
    """An error's first line as a user reads it, with pids and ports made stable."""
    first = str(error).splitlines()[0] if str(error) else repr(error)
    first = re.sub(r"pid \d+", "pid N", first)
    return re.sub(r"127\.0\.0\.1:\d+(/\?plan=[^:\s]*)?", "127.0.0.1:PORT", first)


class PeakMemory:
    """The peak of Python memory allocated while a block runs, above the level at its start
    (tracemalloc: unlike the resident size, blind to what earlier tests left in the pools)."""

    def __init__(self) -> None:
        self.growth = 0

    @contextmanager
    def tracing(self) -> Iterator[PeakMemory]:
        already = tracemalloc.is_tracing()
        if not already:
            tracemalloc.start()
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        try:
            yield self
        finally:
            _, peak = tracemalloc.get_traced_memory()
            self.growth = peak - baseline
            if not already:
                tracemalloc.stop()
