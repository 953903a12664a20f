"""The daemon: a long-running scheduler fed by a watched inbox, safe against crashes.

lock.py (one daemon per state dir), inbox.py (task files in), control.py (requests from
outside), status.py (daemon.json and `status`), service.py (the daemon itself).
"""

from __future__ import annotations

from orchestrator.app.daemon.control import request_cancel
from orchestrator.app.daemon.inbox import Inbox
from orchestrator.app.daemon.lock import daemon_lock, running_daemon_pid
from orchestrator.app.daemon.service import Daemon
from orchestrator.app.daemon.status import collect_status, format_status, json_dumps

__all__ = [
    "Daemon",
    "Inbox",
    "collect_status",
    "daemon_lock",
    "format_status",
    "json_dumps",
    "request_cancel",
    "running_daemon_pid",
]
