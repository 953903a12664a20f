"""The throwaway CODEX_HOME: config contents, permissions and returned environment."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from orchestrator.scripted import SCRIPTED_APP_SERVER_ARGS, write_codex_home

BASE_URL = "http://127.0.0.1:4321/v1"


def test_writes_the_documented_config(tmp_path: Path) -> None:
    """config.toml selects the scripted provider with retries off and network features off."""
    home = tmp_path / "codex-home"
    env = write_codex_home(home, base_url=BASE_URL)
    assert env == {"CODEX_HOME": str(home), "SCRIPTED_API_KEY": "scripted"}
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["model"] == "fake-model"
    assert config["model_provider"] == "scripted"
    assert config["check_for_update_on_startup"] is False
    assert config["analytics"] == {"enabled": False}
    assert config["features"] == {
        "plugins": False,
        "apps": False,
        "remote_plugin": False,
        "enable_request_compression": False,
    }
    assert config["model_providers"]["scripted"] == {
        "name": "Scripted",
        "base_url": BASE_URL,
        "wire_api": "responses",
        "env_key": "SCRIPTED_API_KEY",
        "request_max_retries": 0,
        "stream_max_retries": 0,
        "stream_idle_timeout_ms": 300000,
    }


def test_home_is_private_even_if_it_existed(tmp_path: Path) -> None:
    """The directory ends up mode 0700 and the config 0600."""
    home = tmp_path / "existing"
    home.mkdir(mode=0o755)
    write_codex_home(home, base_url=BASE_URL)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "config.toml").stat().st_mode) == 0o600


def test_extra_config_and_overrides(tmp_path: Path) -> None:
    """extra_config lands at top level (with its own tables); model and idle timeout are set."""
    extra = 'approval_policy = "never"\n\n[shell_environment_policy]\ninherit = "core"\n'
    write_codex_home(
        tmp_path,
        base_url=BASE_URL,
        model='odd "model"',
        extra_config=extra,
        stream_idle_timeout_ms=1500,
    )
    config = tomllib.loads((tmp_path / "config.toml").read_text())
    assert config["approval_policy"] == "never"
    assert config["shell_environment_policy"] == {"inherit": "core"}
    assert config["model"] == 'odd "model"'
    assert config["model_providers"]["scripted"]["stream_idle_timeout_ms"] == 1500


def test_invalid_extra_config_is_refused(tmp_path: Path) -> None:
    """extra_config that breaks the TOML (here a duplicate table) raises ValueError."""
    with pytest.raises(ValueError, match="not valid TOML"):
        write_codex_home(tmp_path / "h", base_url=BASE_URL, extra_config="[features]\nx = 1\n")
    assert not (tmp_path / "h").exists()


def test_app_server_args_disable_unbounded_retries() -> None:
    """The app-server is meant to start with unbounded connection retries disabled."""
    assert SCRIPTED_APP_SERVER_ARGS == ("app-server", "--disable", "unbounded_connection_retries")
