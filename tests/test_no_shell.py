"""No Python file of the project hands a command line to a shell.

Commands run as argv lists (`subprocess`/`trio.run_process` without `shell=True`), so a job
id, a path or a prompt can never be read as shell syntax. The check parses every file (`ast`),
so comments and strings that mention `shell=True` do not count, and aliases (`import os as
o`, `from os import system`) do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED = ("orchestrator", "scripts", "bench", "examples")
# Functions that run their argument through /bin/sh.
SHELL_FUNCTIONS = {
    "os": {"system", "popen"},
    "subprocess": {"getoutput", "getstatusoutput"},
    "asyncio": {"create_subprocess_shell"},
}


def python_files() -> Iterator[Path]:
    """The project's Python files: `*.py`, and scripts whose first line names python. Hidden
    directories (virtualenvs such as bench/.venv-seed) are not the project's."""
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            relative = path.relative_to(REPO).parts
            if any(part.startswith(".") or part == "__pycache__" for part in relative):
                continue
            if not path.is_file():
                continue
            if path.suffix == ".py":
                yield path
            elif not path.suffix:
                with path.open("rb") as handle:
                    first = handle.readline()
                if first.startswith(b"#!") and b"python" in first:
                    yield path


def shell_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every place in the source that runs a shell: `shell=<anything but False>` in a call,
    and calls of (or imports of) `os.system`, `os.popen` and their kind."""
    tree = ast.parse(source, filename=filename)
    module_aliases: dict[str, str] = {}  # local name -> module it names
    function_aliases: set[str] = set()  # local names bound to a shell function
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SHELL_FUNCTIONS:
                    module_aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in SHELL_FUNCTIONS:
            for alias in node.names:
                if alias.name in SHELL_FUNCTIONS[node.module]:
                    function_aliases.add(alias.asname or alias.name)
                    found.append(f"{filename}:{node.lineno}: imports {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{filename}:{node.lineno}: shell={ast.unparse(keyword.value)}")
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.attr in SHELL_FUNCTIONS.get(module_aliases.get(func.value.id, ""), ())
        ):
            found.append(f"{filename}:{node.lineno}: calls {ast.unparse(func)}")
        elif isinstance(func, ast.Name) and func.id in function_aliases:
            found.append(f"{filename}:{node.lineno}: calls {func.id}")
    return found


def test_the_scan_covers_the_project() -> None:
    """The scan finds the package, the scripts, the benchmarks and the examples."""
    files = {path.relative_to(REPO).as_posix() for path in python_files()}
    assert {"orchestrator/client/_connection.py", "orchestrator/transport/stdio.py"} <= files
    assert "examples/client_offline.py" in files
    assert any(name.startswith("bench/") for name in files)
    assert any(name.startswith("scripts/") for name in files)
    assert not any("/." in f"/{name}" for name in files)


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("import subprocess\nsubprocess.run('ls', shell=True)\n", 1),
        ("import subprocess\nflag = True\nsubprocess.Popen(cmd, shell=flag)\n", 1),
        ("import trio\nawait trio.run_process('ls', shell=True)\n", 1),
        ("import os\nos.system('ls')\nos.popen('ls')\n", 2),
        ("import os as o\no.system('ls')\n", 1),
        ("from os import system as run\nrun('ls')\n", 2),
        ("import subprocess as sp\nsp.getoutput('ls')\n", 1),
        ("import asyncio\nasyncio.create_subprocess_shell('ls')\n", 1),
        ("import subprocess\nsubprocess.run(['ls'], shell=False)\n", 0),
        ("# subprocess.run('ls', shell=True)\nx = 'os.system(\"ls\")'\n", 0),
        ("import os\nos.getcwd()\nsystem = 1\nsystem()\n", 0),
    ],
)
def test_the_checker_sees_shells_and_only_shells(source: str, count: int) -> None:
    """The checker is not blind: it flags each way of reaching a shell, and not comments,
    strings, `shell=False` or unrelated names."""
    wrapped = "async def f():\n" + "".join(f"    {line}\n" for line in source.splitlines())
    assert len(shell_uses(wrapped)) == count, shell_uses(wrapped)


def test_no_python_file_of_the_project_uses_a_shell() -> None:
    """orchestrator/, scripts/, bench/ and examples/ never pass shell=True nor call
    os.system, os.popen or another shell-running function."""
    found = [
        use
        for path in python_files()
        for use in shell_uses(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert found == []
