"""Fixtures for the scripted provider tests: a running provider and loopback HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from orchestrator.scripted import ScriptedProvider, open_scripted_provider

from .helpers import Connect, HttpClient


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """A factory of `HttpClient`s to 127.0.0.1:<port>; every connection is closed afterwards."""
    streams: list[trio.SocketStream] = []

    async def _connect(port: int) -> HttpClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        streams.append(stream)
        return HttpClient(stream)

    yield _connect
    for stream in streams:
        await stream.aclose()


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    """A scripted provider with no rules, listening on a free loopback port."""
    async with open_scripted_provider() as running:
        yield running


@pytest.fixture
async def client(provider: ScriptedProvider, connect: Connect) -> HttpClient:
    """One keep-alive connection to `provider`."""
    return await connect(provider.port)
