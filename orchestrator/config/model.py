"""The orchestrator's configuration: where results go, and which app-servers to talk to.

`load_config(path)` reads one TOML file into a frozen `OrchestratorConfig`, or raises one
`ConfigError` naming every problem as `file:line: key.path: what is wrong`. Without a file
the default is one stdio connection, `local`, running `codex app-server`, with paths relative
to the current directory. Relative paths in a file are relative to the file's directory. A
websocket token never lives in the file: `token_env` names the variable that holds it.
Pure: no trio, no processes; resolving `codex` to an executable is the runner's business.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from orchestrator._util.frozen import FrozenMap, freeze_str_map
from orchestrator.config.readers import (
    Fields,
    Problems,
    TomlDocument,
    Where,
    check_keys,
    collect,
    describe,
    read_table,
    read_toml,
)

CONNECTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+\Z")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DEFAULT_COMMAND = ("codex", "app-server")
DEFAULT_CONNECTION_NAME = "local"
DEFAULT_MAX_THREADS = 4
# How long jobs wait for a connection that is down (never came up, or lost and not back)
# before they fail: long enough for an app-server restart, short enough that a broken
# command does not hang a batch forever.
DEFAULT_MAX_DOWN_TIME = 120.0
DEFAULT_MAX_CONCURRENT_JOBS = 8
DEFAULT_SHUTDOWN_GRACE = 30.0
MAX_COUNT = 10_000  # cap for max_threads and max_concurrent_jobs

TOP_LEVEL_KEYS = ("orchestrator", "connections")
ORCHESTRATOR_KEYS = (
    "results_dir",
    "state_dir",
    "inbox_dir",
    "max_concurrent_jobs",
    "shutdown_grace",
    "scripted_model",
    "scripted_rules",
)
STDIO_KEYS = ("command", "cwd", "env", "env_passthrough")
# What a stdio app-server inherits from the orchestrator's environment by default; anything
# else (API keys, tokens, cloud credentials...) must be named in `env_passthrough` or set in
# `env`. OPENAI_API_KEY is not inherited by default: codex hands its environment to the shell
# commands it runs, so a model running `env` would copy it into the step logs.
DEFAULT_ENV_PASSTHROUGH = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "TERM", "TMPDIR", "TZ", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
    "XDG_STATE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "CODEX_HOME", "OPENAI_BASE_URL",
    "RUST_LOG", "LOG_FORMAT",
)  # fmt: skip
WEBSOCKET_KEYS = ("url", "token_env")
CONNECTION_KEYS = (
    "name",
    "transport",
    "max_threads",
    "max_down_time",
    *STDIO_KEYS,
    *WEBSOCKET_KEYS,
)
_HINTS = {
    "token": "never put the token in a file; set token_env to the name of the environment "
    "variable that holds it"
}

StrPath = str | os.PathLike[str]


class Transport(enum.StrEnum):
    """How a connection reaches its app-server."""

    STDIO = "stdio"  # a child process speaking JSONL on stdin/stdout
    WEBSOCKET = "websocket"  # a running server at ws:// or wss://


@attrs.frozen(kw_only=True)
class ConnectionSpec:
    """One app-server connection: how to reach it and how many threads it may carry."""

    name: str = DEFAULT_CONNECTION_NAME
    transport: Transport = Transport.STDIO
    command: tuple[str, ...] = DEFAULT_COMMAND  # stdio
    cwd: Path | None = None  # stdio
    env: Mapping[str, str] = attrs.field(factory=FrozenMap, converter=freeze_str_map)  # stdio
    env_passthrough: tuple[str, ...] = ()  # stdio: more variables to inherit
    url: str | None = None  # websocket
    token_env: str | None = None  # websocket: the variable holding the bearer token
    max_threads: int = DEFAULT_MAX_THREADS
    max_down_time: float = DEFAULT_MAX_DOWN_TIME  # jobs fail after waiting this long for it


@attrs.frozen(kw_only=True)
class OrchestratorConfig:
    """The whole configuration; `source` is the file it came from (None: built-in default)."""

    results_dir: Path
    state_dir: Path
    inbox_dir: Path
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    connections: tuple[ConnectionSpec, ...] = (ConnectionSpec(),)
    source: Path | None = None
    # Offline rehearsal: stdio app-servers talk to the built-in scripted model provider.
    scripted_model: bool = False
    scripted_rules: Path | None = None

    @classmethod
    def default(cls, base_dir: Path | None = None) -> OrchestratorConfig:
        """The configuration used without a file: one local stdio connection."""
        base = Path(os.path.abspath(base_dir or Path.cwd()))
        return cls(results_dir=base / "results", state_dir=base / "state", inbox_dir=base / "inbox")

    def connection(self, name: str) -> ConnectionSpec | None:
        """The connection called `name`, if configured."""
        for spec in self.connections:
            if spec.name == name:
                return spec
        return None


def load_config(path: StrPath | None = None) -> OrchestratorConfig:
    """Load and validate a config file; None gives the built-in default.

    Raises:
        ConfigError: naming every problem found, as `file:line: key.path: what is wrong`.
    """
    if path is None:
        return OrchestratorConfig.default()

    def read(problems: Problems) -> OrchestratorConfig | None:
        document = read_toml(path, problems)
        return None if document is None else _read_config(document, problems)

    return collect(read)


# --- reading --------------------------------------------------------------------------------


def _read_config(document: TomlDocument, problems: Problems) -> OrchestratorConfig | None:
    """The config in a file; relative paths in it are relative to the file's directory."""
    data, top = document.data, document.where
    source = Path(document.file)
    base_dir = Path(os.path.abspath(document.file)).parent
    before = problems.reported
    check_keys(data, TOP_LEVEL_KEYS, top, problems)
    settings: Mapping[str, object] = {}
    if "orchestrator" in data:
        settings = read_table(data["orchestrator"], top.at("orchestrator"), problems) or {}
    fields = Fields.of(settings, top.at("orchestrator"), problems)
    fields.check_keys(ORCHESTRATOR_KEYS)
    results_dir, state_dir, inbox_dir = (
        fields.directory(key, base_dir, default=key.removesuffix("_dir"), must_exist=False)
        for key in ("results_dir", "state_dir", "inbox_dir")
    )
    max_jobs = fields.integer(
        "max_concurrent_jobs", DEFAULT_MAX_CONCURRENT_JOBS, minimum=1, maximum=MAX_COUNT
    )
    grace = fields.seconds("shutdown_grace", DEFAULT_SHUTDOWN_GRACE, allow_zero=True)
    scripted_model = fields.flag("scripted_model")
    scripted_rules = _read_rules_file(fields, base_dir)
    connections = _read_connections(data, top, base_dir, problems)
    if problems.reported > before:
        return None
    assert results_dir is not None and state_dir is not None and inbox_dir is not None
    return OrchestratorConfig(
        results_dir=results_dir,
        state_dir=state_dir,
        inbox_dir=inbox_dir,
        max_concurrent_jobs=max_jobs or DEFAULT_MAX_CONCURRENT_JOBS,
        shutdown_grace=DEFAULT_SHUTDOWN_GRACE if grace is None else grace,
        connections=connections,
        source=source,
        scripted_model=scripted_model,
        scripted_rules=scripted_rules,
    )


def _read_rules_file(fields: Fields, base_dir: Path) -> Path | None:
    found = fields.get("scripted_rules")
    if found is None:
        return None
    rules, where = found
    if not isinstance(rules, str) or not rules:
        fields.problems.add(where, f"must be a file path (got {rules!r})")
        return None
    path = Path(os.path.abspath(base_dir / Path(rules).expanduser()))
    if not path.is_file():
        fields.problems.add(where, f"no such file: {path}")
    return path


def _read_connections(
    data: Mapping[str, object], top: Where, base_dir: Path, problems: Problems
) -> tuple[ConnectionSpec, ...]:
    if "connections" not in data:
        return (ConnectionSpec(),)
    raw = data["connections"]
    here = top.at("connections")
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        problems.add(
            here,
            "must be an array of tables, one [[connections]] per connection "
            f"(got {describe(raw) if not isinstance(raw, list) else 'an array of other values'})",
        )
        return ()
    if not raw:
        problems.add(here, "must hold at least one connection (or leave it out for the default)")
        return ()
    specs: list[ConnectionSpec] = []
    first: dict[str, Where] = {}
    for index, table in enumerate(raw):
        where = here.at(index)
        spec = _read_connection(table, where, base_dir, problems)
        name = table.get("name")
        if isinstance(name, str):
            seen = first.setdefault(name, where.at("name"))
            if seen != where.at("name"):
                problems.add(
                    where.at("name"),
                    f'duplicate connection name "{name}" (first defined at line {seen.line})',
                )
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _read_connection(
    data: Mapping[str, object], where: Where, base_dir: Path, problems: Problems
) -> ConnectionSpec | None:
    before = problems.reported
    fields = Fields.of(data, where, problems)
    fields.check_keys(CONNECTION_KEYS, hints=_HINTS)
    name = None
    if "name" not in data:
        problems.add(where.at("name"), "missing: every connection needs a name")
    else:
        name = fields.text("name")
        if name is not None and not CONNECTION_NAME_PATTERN.match(name):
            problems.add(
                where.at("name"),
                f"may only contain letters, digits, '.', '_' and '-' (got {describe(name)})",
            )
    transport = fields.member("transport", Transport, Transport.STDIO)
    assert transport is not None
    for key in WEBSOCKET_KEYS if transport is Transport.STDIO else STDIO_KEYS:
        if key in data:
            problems.add(where.at(key), f"applies only to {_other(transport)} connections")
    max_threads = fields.integer("max_threads", DEFAULT_MAX_THREADS, minimum=1, maximum=MAX_COUNT)
    max_down_time = fields.seconds("max_down_time", DEFAULT_MAX_DOWN_TIME)
    reach = (
        _read_stdio(fields, base_dir)
        if transport is Transport.STDIO
        else {"url": _read_url(fields), "token_env": _read_env_name(fields, "token_env")}
    )
    if problems.reported > before or name is None:
        return None
    return ConnectionSpec(
        name=name,
        transport=transport,
        max_threads=max_threads or DEFAULT_MAX_THREADS,
        max_down_time=max_down_time or DEFAULT_MAX_DOWN_TIME,
        **reach,
    )


def _read_stdio(fields: Fields, base_dir: Path) -> dict[str, Any]:
    """How a stdio connection runs its app-server: command, cwd and environment."""
    passthrough = fields.texts("env_passthrough", ()) or ()
    for bad in (n for n in passthrough if not ENV_NAME_PATTERN.match(n)):
        fields.problems.add(
            fields.place("env_passthrough"),
            f"must be environment variable names (got {describe(bad)})",
        )
    return {
        "command": fields.texts("command", DEFAULT_COMMAND) or DEFAULT_COMMAND,
        "cwd": fields.directory("cwd", base_dir, must_exist=True),
        "env": _check_env(fields.text_map("env") or (), fields.place("env"), fields.problems),
        "env_passthrough": passthrough,
    }


def _read_env_name(fields: Fields, key: str) -> str | None:
    name = fields.text(key)
    if name is not None and not ENV_NAME_PATTERN.match(name):
        fields.problems.add(
            fields.place(key), f"must be an environment variable name (got {describe(name)})"
        )
    return name


def _other(transport: Transport) -> str:
    return "websocket" if transport is Transport.STDIO else "stdio"


def _check_env(
    pairs: tuple[tuple[str, str], ...], where: Where, problems: Problems
) -> tuple[tuple[str, str], ...]:
    for key, text in pairs:
        if not key or "=" in key or "\0" in key:
            problems.add(where.at(key), "is not a valid environment variable name")
        elif "\0" in text:
            problems.add(where.at(key), "must not contain a NUL character")
    return pairs


def _read_url(fields: Fields) -> str | None:
    if fields.get("url") is None:
        fields.problems.add(
            fields.place("url"), 'missing: a websocket connection needs a url ("ws://...")'
        )
        return None
    url = fields.text("url")
    if url is None:
        return None
    scheme, _, rest = url.partition("://")
    if scheme not in ("ws", "wss") or not rest.strip("/"):
        fields.problems.add(
            fields.place("url"), f"must start with ws:// or wss:// (got {describe(url)})"
        )
        return None
    return url
