"""The environment stdio app-servers run in, beyond what their connection's config gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.config.model import OrchestratorConfig
from orchestrator.scripted import Script, open_scripted_provider, write_codex_home
from orchestrator.store.files import ensure_dir


@asynccontextmanager
async def open_actor_env(config: OrchestratorConfig) -> AsyncIterator[dict[str, str]]:
    """The extra environment for stdio app-servers: with `scripted_model`, a scripted
    provider on loopback and a CODEX_HOME under the state directory pointing at it."""
    if not config.scripted_model:
        yield {}
        return
    script = Script.from_toml(config.scripted_rules) if config.scripted_rules else None
    async with open_scripted_provider(script) as provider:
        home = ensure_dir(config.state_dir) / "codex-home"
        yield write_codex_home(home, base_url=provider.base_url)
