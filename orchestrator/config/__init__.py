"""The orchestrator's config file, and the validation kit task and config files share."""

from __future__ import annotations

from orchestrator.config.model import (
    ConnectionSpec,
    OrchestratorConfig,
    Transport,
    load_config,
)

__all__ = [
    "ConnectionSpec",
    "OrchestratorConfig",
    "Transport",
    "load_config",
]
