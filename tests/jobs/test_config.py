"""Config files load into a frozen OrchestratorConfig; mistakes are reported all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import (
    ConnectionSpec,
    OrchestratorConfig,
    Transport,
    load_config,
)
from orchestrator.errors import ConfigError
from orchestrator.jobs import load_task_files
from orchestrator.jobs.load import validate_jobs_against_config
from tests.jobs.conftest import WriteFile, assert_problems_start_with


def test_no_config_file_gives_the_default(write: WriteFile, tmp_path: Path) -> None:
    """Without a file: one stdio `local` connection running `codex app-server`, paths in CWD."""
    config = load_config(None)
    assert config.source is None
    assert config.results_dir == tmp_path / "results"
    assert config.state_dir == tmp_path / "state"
    assert config.inbox_dir == tmp_path / "inbox"
    assert config.max_concurrent_jobs == 8
    assert config.shutdown_grace == 30.0
    (local,) = config.connections
    assert local == ConnectionSpec(
        name="local", transport=Transport.STDIO, command=("codex", "app-server"), max_threads=4
    )
    assert local.cwd is None and dict(local.env) == {} and local.url is None
    assert config.connection("local") is local
    assert config.connection("other") is None


def test_full_config(write: WriteFile, tmp_path: Path) -> None:
    """Every key is read; relative paths are relative to the config file's directory."""
    (tmp_path / "conf" / "srv").mkdir(parents=True)
    name = write(
        "conf/orchestrator.toml",
        """
        [orchestrator]
        results_dir = "out"
        state_dir = "/var/tmp/orch-state"
        max_concurrent_jobs = 2
        inbox_dir = "../inbox"
        shutdown_grace = 0

        [[connections]]
        name = "local"
        command = ["python", "-m", "fake"]
        cwd = "srv"
        env = { A = "1", B = "" }
        max_threads = 3

        [[connections]]
        name = "remote.1"
        transport = "websocket"
        url = "wss://example.test:8765/x"
        token_env = "REMOTE_TOKEN"
        """,
    )
    config = load_config(name)
    assert config.source == Path(name)
    assert config.results_dir == tmp_path / "conf" / "out"
    assert config.state_dir == Path("/var/tmp/orch-state")
    assert config.inbox_dir == tmp_path / "inbox"
    assert config.max_concurrent_jobs == 2
    assert config.shutdown_grace == 0.0
    local, remote = config.connections
    assert local.command == ("python", "-m", "fake")
    assert local.cwd == tmp_path / "conf" / "srv"
    assert dict(local.env) == {"A": "1", "B": ""}
    assert local.max_threads == 3
    assert remote.transport is Transport.WEBSOCKET
    assert remote.url == "wss://example.test:8765/x"
    assert remote.token_env == "REMOTE_TOKEN"
    assert remote.command == ("codex", "app-server")
    assert hash(config) == hash(config)


def test_empty_config_file_is_the_default_relative_to_the_file(
    write: WriteFile, tmp_path: Path
) -> None:
    """An empty file means defaults, with paths relative to the file."""
    config = load_config(write("c/empty.toml", ""))
    assert config.results_dir == tmp_path / "c" / "results"
    assert [c.name for c in config.connections] == ["local"]


CONFIG_CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown-keys",
        "[orchestrator]\nresult_dir = 'x'\n[server]\n",
        [
            "c.toml:2: orchestrator.result_dir: unknown key; allowed keys are inbox_dir, "
            "max_concurrent_jobs, results_dir, scripted_model, scripted_rules, shutdown_grace, "
            "state_dir "
            '(did you mean "results_dir"?)',
            "c.toml:3: server: unknown key; allowed keys are connections, orchestrator",
        ],
    ),
    (
        "bad-numbers",
        "[orchestrator]\nmax_concurrent_jobs = 0\nshutdown_grace = -1\n"
        "[[connections]]\nname = 'a'\nmax_threads = true\n",
        [
            "c.toml:2: orchestrator.max_concurrent_jobs: must be at least 1 (got 0)",
            "c.toml:3: orchestrator.shutdown_grace: must not be negative (got -1)",
            "c.toml:6: connections[0].max_threads: must be an integer (got true)",
        ],
    ),
    (
        "token-in-file",
        "[[connections]]\nname = 'r'\ntransport = 'websocket'\nurl = 'ws://h'\ntoken = 's3'\n",
        ["c.toml:5: connections[0].token: never put the token in a file; set token_env"],
    ),
    (
        "websocket-needs-a-good-url",
        "[[connections]]\nname = 'r'\ntransport = 'websocket'\n"
        "[[connections]]\nname = 's'\ntransport = 'websocket'\nurl = 'http://h'\n",
        [
            "c.toml:1: connections[0].url: missing: a websocket connection needs a url",
            'c.toml:7: connections[1].url: must start with ws:// or wss:// (got "http://h")',
        ],
    ),
    (
        "keys-of-the-other-transport",
        "[[connections]]\nname = 'r'\ntransport = 'websocket'\nurl = 'ws://h'\ncommand = ['x']\n"
        "[[connections]]\nname = 's'\ntoken_env = 'T'\n",
        [
            "c.toml:5: connections[0].command: applies only to stdio connections",
            "c.toml:8: connections[1].token_env: applies only to websocket connections",
        ],
    ),
    (
        "duplicate-and-bad-names",
        "[[connections]]\nname = 'a'\n\n[[connections]]\nname = 'a'\n"
        "[[connections]]\nname = 'a b'\n[[connections]]\nmax_threads = 1\n",
        [
            'c.toml:5: connections[1].name: duplicate connection name "a" '
            "(first defined at line 2)",
            "c.toml:7: connections[2].name: may only contain letters",
            "c.toml:8: connections[3].name: missing: every connection needs a name",
        ],
    ),
    (
        "bad-transport-command-env",
        "[[connections]]\nname = 'a'\ntransport = 'pigeon'\n"
        "[[connections]]\nname = 'b'\ncommand = []\nenv = { X = 1 }\ncwd = 'nowhere'\n",
        [
            'c.toml:3: connections[0].transport: must be one of stdio, websocket (got "pigeon")',
            "c.toml:6: connections[1].command: must not be empty",
            "c.toml:7: connections[1].env.X: must be a string (got 1)",
            "c.toml:8: connections[1].cwd: directory does not exist",
        ],
    ),
    (
        "connections-shape",
        "connections = 'local'\norchestrator = 3\n",
        [
            "c.toml:1: connections: must be an array of tables",
            "c.toml:2: orchestrator: must be a table (got 3)",
        ],
    ),
    (
        "syntax",
        "[orchestrator\n",
        ["c.toml:1: syntax: "],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in CONFIG_CASES]
)
@pytest.mark.fault(
    "config",
    "an invalid config file (each kind of mistake)",
    "a ConfigError naming file:line: key path",
)
def test_invalid_config_files(write: WriteFile, text: str, expected: list[str]) -> None:
    """Each kind of mistake in a config file is named with file, line and key path."""
    name = write("c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(name)
    assert_problems_start_with(caught.value, expected)


def test_missing_config_file(write: WriteFile) -> None:
    """A config path that does not exist is a ConfigError, not a FileNotFoundError."""
    with pytest.raises(ConfigError, match=r"^nope\.toml:1: file: does not exist$"):
        load_config("nope.toml")


def test_jobs_must_name_configured_connections(write: WriteFile) -> None:
    """A job pinned to an unknown connection is named at the line of its `connection` key."""
    config = load_config(
        write("c.toml", "[[connections]]\nname = 'a'\n[[connections]]\nname = 'b'\n")
    )
    tasks = write(
        "t.toml",
        "[defaults]\nconnection = 'zz'\n"
        "[[jobs]]\nid = 'one'\nprompt = 'p'\n"
        "[[jobs]]\nid = 'two'\nprompt = 'p'\nconnection = 'a'\n"
        "[[jobs]]\nid = 'three'\nprompt = 'p'\n\nconnection = 'c'\n",
    )
    jobs = load_task_files([tasks])
    with pytest.raises(ConfigError) as caught:
        validate_jobs_against_config(jobs, config)
    assert caught.value.problems == (
        't.toml:2: defaults.connection: unknown connection "zz"; configured in c.toml: a, b',
        't.toml:14: jobs[2].connection: unknown connection "c"; configured in c.toml: a, b',
    )
    validate_jobs_against_config(jobs[1:2], config)
    validate_jobs_against_config(jobs[:1] * 0, OrchestratorConfig.default())
    with pytest.raises(ConfigError, match=r"configured: local$"):
        validate_jobs_against_config(jobs[1:2], load_config(None))
