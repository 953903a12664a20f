"""Diagnostic logging through structlog: to stderr, console lines on a TTY, JSON otherwise.

Secrets never reach a log line: any value under a key that names a secret is masked, and any
registered secret value (a websocket token, an API key) is masked wherever it appears.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEY = re.compile(r"(token|secret|password|api[_-]?key|authorization)", re.IGNORECASE)
MASK = "***"
_secret_values: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value in every log line from now on."""
    if value and len(value) >= 4:
        _secret_values.add(value)


def redact(text: str) -> str:
    """The text with every registered secret masked."""
    for secret in _secret_values:
        text = text.replace(secret, MASK)
    return text


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if SECRET_KEY.search(key) and value is not None:
            event[key] = MASK
        elif isinstance(value, str) and _secret_values:
            event[key] = redact(value)
    return event


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time (it may be swapped after setup)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _open_log(path: str) -> TextIO:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


def configure_logging(
    log_format: str | None = None, *, level: int = logging.INFO, log_file: str | None = None
) -> None:
    """Set up structlog for a command: `console` or `json` (default: console on a TTY),
    to stderr or appended to `log_file` (always JSON)."""
    if log_file is not None:
        log_format = "json"
    elif log_format is None:
        log_format = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(
            file=_open_log(log_file) if log_file else _CurrentStderr()  # type: ignore[arg-type]
        ),
        cache_logger_on_first_use=False,
    )
