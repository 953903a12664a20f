"""codex-orchestrator: drive OpenAI Codex `app-server` from Python, unattended.

`orchestrator.client` is the trio-native client; the orchestrator, batch CLI and daemon are
built on it.
"""

from __future__ import annotations

__version__ = "0.1.0"
