"""Helpers for task-file and config tests: write TOML files into a temporary working directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError

WriteFile = Callable[[str, str], str]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteFile:
    """Write a dedented file under a temporary CWD; return its relative name (as messages show)."""
    monkeypatch.chdir(tmp_path)

    def write_file(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return name

    return write_file


def assert_problems_start_with(error: ConfigError, expected: list[str]) -> None:
    """`error` lists exactly one problem per prefix of `expected`, each starting with it, in
    order."""
    problems = error.problems
    assert len(problems) == len(expected), problems
    for problem, prefix in zip(problems, expected, strict=True):
        assert problem.startswith(prefix), (problem, prefix)
