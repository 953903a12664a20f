"""Whatever is in a task or config file, loading ends in a value or a ConfigError, never else."""

from __future__ import annotations

import datetime
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.config import load_config
from orchestrator.errors import ConfigError
from orchestrator.jobs import load_task_files
from orchestrator.jobs.model import DEFAULTS_KEYS, JOB_KEYS

FRAGMENTS = [
    "[[jobs]]",
    "[defaults]",
    "[jobs.approvals]",
    "[[connections]]",
    "[orchestrator]",
    'id = "a"',
    'id = "b"',
    'id = "../x"',
    'prompt = "p"',
    'turns = ["x", ""]',
    "turns = [",
    '  "multi",',
    "]",
    'depends_on = ["a", "b"]',
    'depends_on = ["a"]',
    'cwd = "."',
    'cwd = "nope"',
    "retries = true",
    "retries = 3",
    "inactivity_timeout = nan",
    "inactivity_timeout = 1e400",
    "max_duration = -0.0",
    'on_inactivity = "fail"',
    'approvals = { commands = "accept", allow_commands = [["ls"]], user_input = { q = "a" } }',
    "approvals = 3",
    'commands = "maybe"',
    'name = "local"',
    'transport = "websocket"',
    'url = "ws://x"',
    'token = "t"',
    "env = { A = 1 }",
    "max_threads = 0",
    "jobs = 1",
    "x.y.z = 1979-05-27T07:32:00Z",
    '"quoted key" = """multi',
    'line"""',
    "# comment [[jobs]] =",
    "",
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([".", "..", "../x", "a/b", "", " ", "\x00", "ws://h", "accept", "never"]),
    st.datetimes(),
    st.dates(),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*sorted(JOB_KEYS), "x", "commands"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@contextmanager
def _file(text: str | bytes) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        yield str(path)


def _loads_or_config_error(text: str | bytes) -> None:
    with _file(text) as name:
        for load in (lambda: load_task_files([name]), lambda: load_config(name)):
            try:
                load()
            except ConfigError as error:
                assert error.problems
                assert all(problem.startswith(name + ":") for problem in error.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
@pytest.mark.fault(
    "config",
    "random text as a task or config file (hypothesis)",
    "loaded, or a ConfigError whose every problem names file:line; never another exception",
)
def test_random_text(text: str) -> None:
    """Random text is either loaded or rejected with a ConfigError."""
    _loads_or_config_error(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
@pytest.mark.fault(
    "config",
    "random bytes (not UTF-8, NULs) as a task or config file (hypothesis)",
    "loaded, or a ConfigError whose every problem names file:line; never another exception",
)
def test_random_bytes(data: bytes) -> None:
    """Random bytes (not UTF-8, NULs ...) are either loaded or rejected with a ConfigError."""
    _loads_or_config_error(data)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25))
@pytest.mark.fault(
    "config",
    'TOML-like lines in any order, incl. id = "../x" (hypothesis)',
    "loaded, or a ConfigError whose every problem names file:line; never another exception",
)
def test_random_toml_fragments(lines: list[str]) -> None:
    """TOML-ish lines in any order are either loaded or rejected with a ConfigError."""
    _loads_or_config_error("\n".join(lines) + "\n")


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from([*sorted(JOB_KEYS), "junk"]), _values, max_size=6),
    st.dictionaries(st.sampled_from([*sorted(DEFAULTS_KEYS), "id"]), _values, max_size=3),
)
@pytest.mark.fault(
    "config",
    "any value of any type for any job or defaults key (hypothesis)",
    "accepted, or a ConfigError whose every problem names file:line; never another exception",
)
def test_random_values_for_job_keys(job: dict[str, object], defaults: dict[str, object]) -> None:
    """Any value for any job or defaults key is either accepted or a ConfigError."""
    text = ""
    if defaults:
        text += "[defaults]\n" + "".join(f"{_key(k)} = {_value(v)}\n" for k, v in defaults.items())
    text += "[[jobs]]\n" + "".join(f"{_key(k)} = {_value(v)}\n" for k, v in job.items())
    _loads_or_config_error(text)


def _key(key: str) -> str:
    return '"' + key + '"'


def _value(value: object) -> str:
    """Render a value as TOML (None becomes an empty inline table)."""
    if value is None:
        return "{}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return '"' + "".join(_char(c) for c in value) + '"'
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"


def _char(char: str) -> str:
    if char.isprintable() and char not in '"\\':
        return char
    return f"\\U{ord(char):08x}" if not 0xD800 <= ord(char) <= 0xDFFF else "?"
