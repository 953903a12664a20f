"""Shared fixtures: a fake app-server wired to a client over an in-memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from orchestrator.client import CodexClient
from orchestrator.transport.memory import MemoryTransport, memory_transport_pair
from tests.fake_app_server import FakeAppServer

pytest_plugins = ["tests.reliability"]


@pytest.fixture
async def fake_server(nursery: trio.Nursery) -> FakeAppServer:
    client_end, server_end = memory_transport_pair()
    server = FakeAppServer(server_end)
    server.client_end = client_end  # type: ignore[attr-defined]
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def client(fake_server: FakeAppServer) -> AsyncIterator[CodexClient]:
    client_end: MemoryTransport = fake_server.client_end  # type: ignore[attr-defined]
    async with CodexClient.over(client_end) as connected:
        yield connected
