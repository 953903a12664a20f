"""Write a throwaway CODEX_HOME that points `codex app-server` at the scripted provider.

The config turns off everything that would reach the network at start-up (update checks,
analytics, remote plugins and apps), asks for plain JSON request bodies, and disables codex's
own retries so that a scripted failure reaches the client at once. No login is needed: codex
only requires the provider's `env_key` variable to be set.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

__all__ = ["SCRIPTED_API_KEY_ENV", "SCRIPTED_APP_SERVER_ARGS", "write_codex_home"]

SCRIPTED_API_KEY_ENV = "SCRIPTED_API_KEY"

# With `unbounded_connection_retries` on (the default), an unreachable provider makes the
# app-server retry forever and the turn never ends; with it off the turn fails at once.
SCRIPTED_APP_SERVER_ARGS = ("app-server", "--disable", "unbounded_connection_retries")

_CONFIG = """\
model = {model}
model_provider = "scripted"
check_for_update_on_startup = false
{extra_config}
[analytics]
enabled = false

[features]
plugins = false
apps = false
remote_plugin = false
enable_request_compression = false

[model_providers.scripted]
name = "Scripted"
base_url = {base_url}
wire_api = "responses"
env_key = "{env_key}"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {stream_idle_timeout_ms}
"""


def write_codex_home(
    home: Path,
    *,
    base_url: str,
    model: str = "fake-model",
    extra_config: str = "",
    stream_idle_timeout_ms: int = 300_000,
) -> dict[str, str]:
    """Create `home` (mode 0700) with a `config.toml` for the scripted provider at `base_url`.

    Args:
        home: the directory to use as CODEX_HOME; created if missing.
        base_url: the provider's URL ending in `/v1`, e.g. `ScriptedProvider.base_url`.
        model: the model name codex sends (unknown names only cause a `warning`).
        extra_config: TOML inserted after the top-level keys and before the first table, so it
            may set top-level keys (`approval_policy = "never"`) and add tables other than
            `analytics`, `features` and `model_providers.scripted`.
        stream_idle_timeout_ms: how long codex waits for the next SSE event before failing
            the turn with "idle timeout waiting for SSE".

    Returns:
        The environment variables the app-server process needs on top of the usual ones.

    Raises:
        ValueError: the resulting config is not valid TOML (usually `extra_config`).
    """
    text = _CONFIG.format(
        model=json.dumps(model, ensure_ascii=False),
        base_url=json.dumps(base_url, ensure_ascii=False),
        env_key=SCRIPTED_API_KEY_ENV,
        stream_idle_timeout_ms=int(stream_idle_timeout_ms),
        extra_config=extra_config.strip() + "\n" if extra_config.strip() else "",
    )
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the generated config.toml is not valid TOML: {exc}") from None
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask and ignored for an existing directory.
    home.chmod(0o700)
    config = home / "config.toml"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o600)
    return {"CODEX_HOME": os.fspath(home), SCRIPTED_API_KEY_ENV: "scripted"}
