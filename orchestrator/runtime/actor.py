"""A connection actor: one supervised app-server connection shared by many jobs' threads.

The actor keeps a `CodexClient` connected: when the app-server dies or the socket drops, it
reconnects with exponential backoff and jitter while other actors go on. Each (re)connection
is a new *generation*; a job that sees its generation end knows its threads must be resumed.
Jobs take one of `max_threads` slots to run a thread here (the pool hands them out). Server
requests are dispatched to the job that registered the thread.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import structlog
import trio

from orchestrator._util.logs import register_secret
from orchestrator.client import ApprovalHandler, CodexClient
from orchestrator.config.model import DEFAULT_ENV_PASSTHROUGH, ConnectionSpec, Transport
from orchestrator.errors import CodexError, ConnectionDown
from orchestrator.protocol.rpc import backoff_delay
from orchestrator.protocol.values import ServerRequest
from orchestrator.transport.stdio import find_codex

log = structlog.get_logger("orchestrator.runtime.actor")

BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0


class ActorState(enum.StrEnum):
    """Whether a connection is usable now."""

    STARTING = "starting"  # the first attempt has not ended yet
    UP = "up"
    DOWN = "down"  # lost or never made; reconnecting with backoff


@attrs.frozen(kw_only=True)
class ConnectionSnapshot:
    """A connection's health, for status displays (`daemon.json`, `status`)."""

    name: str
    state: ActorState
    generation: int
    restarts: int
    threads_in_use: int
    max_threads: int
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to daemon.json."""
        return attrs.asdict(self)


class ConnectionActor:
    """Keeps one app-server connection alive and lends its threads to jobs."""

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        extra_env: Mapping[str, str] | None = None,
        client_options: Mapping[str, Any] | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        connector: Callable[[ApprovalHandler], AbstractAsyncContextManager[CodexClient]]
        | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.generation = 0
        self.restarts = 0
        self.state = ActorState.STARTING
        self.last_error: str | None = None
        self.down_since: float | None = None  # trio time the connection went down
        self._slots = trio.Semaphore(spec.max_threads)
        self._thread_handlers: dict[str, ApprovalHandler] = {}
        self._extra_env = dict(extra_env or {})
        self._client_options = dict(client_options or {})
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._connector = connector  # tests connect to fakes through this
        self._client: CodexClient | None = None
        self._changed = trio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect whenever the connection ends, until cancelled.

        `task_status.started()` is called after the first attempt, successful or not, so a
        dead connection does not hold up the others.
        """
        started = False
        failures = 0
        bound = log.bind(connection=self.name)
        self.down_since = trio.current_time()
        while True:
            try:
                async with self._connect() as client:
                    await client.initialize()
                    self._client = client
                    self.generation += 1
                    self.state = ActorState.UP
                    self.down_since = None
                    failures = 0
                    self._notify()
                    bound.info("connection up", generation=self.generation)
                    if not started:
                        task_status.started()
                        started = True
                    await client.reader_done.wait()
                    self.last_error = str(client.close_error or "connection ended")
            except CodexError as exc:
                self.last_error = str(exc)
            finally:
                self._client = None
                self.state = ActorState.DOWN
                if self.down_since is None:
                    self.down_since = trio.current_time()
                self._notify()
            if not started:
                task_status.started()
                started = True
            self.restarts += 1
            delay = backoff_delay(failures, base=self._backoff_base, cap=self._backoff_max)
            failures += 1
            bound.warning("connection down; restarting", error=self.last_error, delay=delay)
            await trio.sleep(delay)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _connect(self) -> AbstractAsyncContextManager[CodexClient]:
        if self._connector is not None:
            return self._connector(self._dispatch)
        options: dict[str, Any] = {"approval_handler": self._dispatch, **self._client_options}
        if self.spec.transport is Transport.WEBSOCKET:
            token = os.environ.get(self.spec.token_env) if self.spec.token_env else None
            register_secret(token)
            return CodexClient.connect_websocket(self.spec.url, token=token, **options)
        command = list(self.spec.command)
        if command and command[0] == "codex":
            command[0] = find_codex()
        return CodexClient.connect_stdio(
            command, env=self.child_env(), inherit_env=False, cwd=self.spec.cwd, **options
        )

    def child_env(self) -> dict[str, str]:
        """The whole environment of a stdio app-server: the allowed part of ours, then the
        orchestrator's own additions (the scripted model's CODEX_HOME), then the config's."""
        allowed = (*DEFAULT_ENV_PASSTHROUGH, *self.spec.env_passthrough)
        env = {name: os.environ[name] for name in allowed if name in os.environ}
        env.update(self._extra_env)
        env.update(self.spec.env)
        return env

    # -- for jobs ----------------------------------------------------------------------

    async def wait_client(self) -> tuple[CodexClient, int]:
        """The connected client and its generation, waiting for a (re)connection if needed.

        Raises:
            ConnectionDown: the connection has been down for `max_down_time` (a broken
                command or an unreachable server must not hold jobs forever).
        """
        # A client whose connection just died may still be set until the actor notices.
        while self._client is None or self._client.closed:
            now = trio.current_time()
            since = now if self.down_since is None else self.down_since
            deadline = since + self.spec.max_down_time
            if now >= deadline:
                raise ConnectionDown(
                    f"connection {self.name!r} has been down for more than "
                    f"{self.spec.max_down_time:g} s (last error: {self.last_error or 'none yet'})"
                )
            with trio.move_on_at(deadline):
                await self._changed.wait()
        return self._client, self.generation

    def register_thread(self, thread_id: str, handler: ApprovalHandler) -> None:
        """Server requests on this thread go to `handler` (its job's policy)."""
        self._thread_handlers[thread_id] = handler

    def forget_thread(self, thread_id: str) -> None:
        """The thread's job is done here: its requests get the client's refusal."""
        self._thread_handlers.pop(thread_id, None)

    @property
    def registered_threads(self) -> int:
        """Threads whose server requests go to a job now."""
        return len(self._thread_handlers)

    async def _dispatch(self, request: ServerRequest) -> Mapping[str, Any] | None:
        handler = self._thread_handlers.get(request.thread_id or "")
        if handler is None:
            return None  # not a thread of ours: the client's refusal
        return await handler(request)

    # -- thread slots (taken through the pool) -----------------------------------------

    @property
    def free_slots(self) -> int:
        """Thread slots not held by a job."""
        return self._slots.value

    def take_slot_nowait(self) -> None:
        """Take a free slot (the caller checked `free_slots`)."""
        self._slots.acquire_nowait()

    def release_slot(self) -> None:
        """Give a slot back."""
        self._slots.release()

    @asynccontextmanager
    async def all_slots(self) -> AsyncIterator[None]:
        """Hold every thread slot: returns once no job uses this connection."""
        taken = 0
        try:
            for _ in range(self.spec.max_threads):
                await self._slots.acquire()
                taken += 1
            yield
        finally:
            for _ in range(taken):
                self._slots.release()

    def snapshot(self) -> ConnectionSnapshot:
        """Health of this connection, for status displays."""
        return ConnectionSnapshot(
            name=self.name,
            state=self.state,
            generation=self.generation,
            restarts=self.restarts,
            threads_in_use=self.spec.max_threads - self._slots.value,
            max_threads=self.spec.max_threads,
            last_error=self.last_error,
        )
