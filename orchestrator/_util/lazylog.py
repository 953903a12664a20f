"""A structlog logger that imports structlog when it first logs.

Importing structlog costs about 3 MiB of resident memory (it brings in asyncio). A program that
only uses the client, and logs nothing, should not pay that; one that logs gets exactly what
`structlog.get_logger(name)` gives, configuration included.
"""

from __future__ import annotations

from typing import Any


class LazyLogger:
    """Stands in for `structlog.get_logger(name)` until the first attribute is used."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        logger = self._logger
        if logger is None:
            import structlog

            logger = self._logger = structlog.get_logger(self._name)
        return getattr(logger, attribute)


def get_logger(name: str) -> LazyLogger:
    """A logger named `name` that costs nothing until it logs."""
    return LazyLogger(name)
