"""The pool of connection actors, and fair leasing of their thread slots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from orchestrator.runtime.actor import ActorState, ConnectionActor


class ActorPool:
    """The connection actors, by name; jobs lease a thread slot on one of them."""

    def __init__(self, actors: Sequence[ConnectionActor]) -> None:
        self.actors = {actor.name: actor for actor in actors}
        self._released = trio.Event()

    @asynccontextmanager
    async def lease(self, name: str | None) -> AsyncIterator[ConnectionActor]:
        """A thread slot on the named connection, or on the least busy live one."""
        actor = await self._acquire(name)
        try:
            yield actor
        finally:
            actor.release_slot()
            self._notify()

    def add(self, actor: ConnectionActor) -> None:
        """A new connection (config reload): jobs may lease it from now on."""
        self.actors[actor.name] = actor
        self._notify()

    def remove(self, name: str) -> ConnectionActor | None:
        """Take a connection out of the pool: no new leases; running ones go on."""
        actor = self.actors.pop(name, None)
        self._notify()
        return actor

    def _notify(self) -> None:
        self._released.set()
        self._released = trio.Event()

    async def _acquire(self, name: str | None) -> ConnectionActor:
        while True:
            if name is not None:
                # A pinned connection removed by a reload may come back with the next one.
                candidates = [self.actors[name]] if name in self.actors else []
            else:
                live = [a for a in self.actors.values() if a.state is ActorState.UP]
                candidates = sorted(live or self.actors.values(), key=lambda a: -a.free_slots)
            for actor in candidates:
                if actor.free_slots > 0:
                    actor.take_slot_nowait()
                    return actor
            await self._released.wait()
