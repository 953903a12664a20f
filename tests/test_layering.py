"""The layers import only downwards: app -> runtime -> client -> transport -> protocol.

Each rule is checked two ways for every module of the package it covers: what importing the
module loads, in a fresh interpreter (everything it pulls in at import time, transitively),
and every import statement in its source, functions included (a lazy import runs later, but
it is a dependency all the same). A synthetic package with one violation per rule proves that
each rule can fail.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

import orchestrator

PACKAGE_DIR = Path(orchestrator.__file__).parent
IO_LIBRARIES = ("trio", "trio_websocket", "wsproto", "h11")
PURE_LAYERS = ("protocol", "jobs", "config", "store", "errors")
# The scripted provider loads its (trio) server lazily, so its pure modules import without it.
# ("=x": the module x itself, not the modules below it.)
PURE_SCRIPTED = ("=scripted", "=scripted.script", "=scripted.sse")


@attrs.frozen
class Rule:
    """Modules under `layers` (dotted, relative to the package; "=x" for the module x alone;
    "*" for all but `exempt`) must not depend on anything `forbidden` names (top-level
    libraries, or layers of the package given as ".layer")."""

    name: str
    layers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()


RULES = (
    Rule(
        "the pure layers import no trio and no I/O layer",
        (*PURE_LAYERS, *PURE_SCRIPTED),
        (*IO_LIBRARIES, ".transport", ".client", ".runtime", ".app"),
    ),
    Rule(
        "protocol/ and transport/ never import the client", ("protocol", "transport"), (".client",)
    ),
    Rule("client/ never imports runtime/ or app/", ("client",), (".runtime", ".app")),
    Rule("runtime/ never imports app/", ("runtime",), (".app",)),
    Rule("nothing imports app/ except __main__", ("*",), (".app",), exempt=("app", "__main__")),
)

PROBE = """
import json, sys
__import__(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def modules_of(package_dir: Path, package: str) -> dict[str, Path]:
    """Every module of the package (`pkg.a.b` -> its file), found on disk."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((package, *parts))] = path
    return found


def loaded_by(module: str, path_entry: Path) -> set[str]:
    """The modules that importing `module` loads, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(path_entry)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def imported_in(path: Path, module: str) -> set[str]:
    """Every module an import statement of the source names, wherever the statement is."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _covers(rule: Rule, package: str, module: str) -> bool:
    relative = module.removeprefix(package).removeprefix(".")

    def under(layer: str) -> bool:
        return relative == layer or relative.startswith(f"{layer}.")

    if any(under(layer) for layer in rule.exempt):
        return False
    if rule.layers == ("*",):
        return True
    return any(
        relative == layer[1:] if layer.startswith("=") else under(layer) for layer in rule.layers
    )


def _forbidden(rule: Rule, package: str, name: str) -> bool:
    for item in rule.forbidden:
        target = f"{package}{item}" if item.startswith(".") else item
        if name == target or name.startswith(f"{target}."):
            return True
    return False


def violations(package_dir: Path, package: str) -> dict[str, list[str]]:
    """For each rule, the `module: dependency` pairs that break it."""
    modules = modules_of(package_dir, package)
    path_entry = package_dir.parent
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = dict(
            zip(modules, pool.map(lambda m: loaded_by(m, path_entry), modules), strict=True)
        )
    found: dict[str, list[str]] = {rule.name: [] for rule in RULES}
    for module, path in modules.items():
        dependencies = loaded[module] | imported_in(path, module)
        for rule in RULES:
            if _covers(rule, package, module):
                found[rule.name].extend(
                    f"{module}: {name}"
                    for name in sorted(dependencies)
                    if name != module and _forbidden(rule, package, name)
                )
    return found


def test_the_package_keeps_every_rule() -> None:
    """No module of the package depends on a layer above it, and the pure layers on no I/O."""
    assert violations(PACKAGE_DIR, "orchestrator") == {rule.name: [] for rule in RULES}


def test_every_layer_is_found() -> None:
    """The rules are not vacuous: each covers modules of the real package."""
    modules = modules_of(PACKAGE_DIR, "orchestrator")
    for rule in RULES:
        assert any(_covers(rule, "orchestrator", m) for m in modules), rule.name
    assert "orchestrator.protocol.rpc" in modules
    assert "orchestrator.jobs.recovery" in modules


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "fakeorch"


BROKEN: dict[str, str] = {
    "fakeorch/__init__.py": "",
    "fakeorch/__main__.py": "from fakeorch.app import cli\n",
    "fakeorch/errors.py": "",
    "fakeorch/protocol/__init__.py": "",
    "fakeorch/protocol/wire.py": "import trio\n",
    "fakeorch/transport/__init__.py": "",
    "fakeorch/transport/pipe.py": "from fakeorch.client import session\n",
    "fakeorch/client/__init__.py": "",
    "fakeorch/client/session.py": "from fakeorch.runtime import engine\n",
    "fakeorch/runtime/__init__.py": "",
    "fakeorch/runtime/engine.py": """\
        def later():
            from fakeorch.app import cli
        """,
    "fakeorch/jobs/__init__.py": "",
    "fakeorch/jobs/model.py": "from ..app import cli\n",
    "fakeorch/app/__init__.py": "",
    "fakeorch/app/cli.py": "from fakeorch.runtime import engine\n",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            RULES[0],
            [
                "fakeorch.jobs.model: fakeorch.app",
                "fakeorch.jobs.model: fakeorch.runtime",  # what app/cli.py imports in turn
                "fakeorch.protocol.wire: trio",
            ],
        ),
        (RULES[1], ["fakeorch.transport.pipe: fakeorch.client"]),
        (RULES[2], ["fakeorch.client.session: fakeorch.runtime"]),
        (RULES[3], ["fakeorch.runtime.engine: fakeorch.app"]),
        (
            RULES[4],
            ["fakeorch.jobs.model: fakeorch.app", "fakeorch.runtime.engine: fakeorch.app"],
        ),
    ],
    ids=[rule.name for rule in RULES],
)
def test_each_rule_can_fail(tmp_path: Path, rule: Rule, expected: Sequence[str]) -> None:
    """In a package built to break every rule once (a relative import and a lazy one among
    them), each rule names exactly the modules that break it."""
    package_dir = _write_package(tmp_path, BROKEN)
    found = violations(package_dir, "fakeorch")[rule.name]
    offenders = sorted(
        {f"{entry.split(': ')[0]}: {_layer(entry.split(': ')[1])}" for entry in found}
    )
    assert offenders == sorted(expected)


def _layer(name: str) -> str:
    """`fakeorch.app.cli` -> `fakeorch.app`; a library stays its top-level name."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "fakeorch" else parts[0]
