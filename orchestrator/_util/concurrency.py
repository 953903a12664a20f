"""Structured-concurrency helpers shared by the transports, the client and the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def open_background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a context manager's background tasks around its `yield`.

    When the body ends, the background tasks are cancelled. An exception from the body comes
    out as itself, not wrapped in an ExceptionGroup, so callers can `except CodexError`.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:  # re-raised below, outside the nursery
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
