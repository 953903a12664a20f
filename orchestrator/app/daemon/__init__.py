"""The daemon: a long-running scheduler fed by a watched inbox, safe against crashes."""

from __future__ import annotations

from orchestrator.app.daemon.service import (
    Daemon,
    DaemonError,
    Inbox,
    collect_status,
    daemon_lock,
    format_status,
    json_dumps,
    request_cancel,
    running_daemon_pid,
)

__all__ = [
    "Daemon",
    "DaemonError",
    "Inbox",
    "collect_status",
    "daemon_lock",
    "format_status",
    "json_dumps",
    "request_cancel",
    "running_daemon_pid",
]
