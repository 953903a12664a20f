"""The pure layers never import trio or the I/O layers, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator

PACKAGE_DIR = Path(orchestrator.__file__).parent

# Every protocol module, found on disk so that new ones are covered too.
PROTOCOL_MODULES = sorted(
    f"orchestrator.protocol.{path.stem}"
    for path in (PACKAGE_DIR / "protocol").glob("*.py")
    if path.stem != "__init__"
)
PURE_MODULES = [
    "orchestrator",
    "orchestrator.protocol",
    *PROTOCOL_MODULES,
    "orchestrator.errors",
    "orchestrator.protocol.values",
    # Named pure in STYLE.md.
    "orchestrator.jobs.model",
    "orchestrator.jobs.policy",
    "orchestrator.store.layout",
    # The package loads its (trio) server lazily, so its pure modules import without it.
    "orchestrator.scripted",
    "orchestrator.scripted.script",
    "orchestrator.scripted.sse",
]

PROBE = """
import json, sys
module = sys.argv[1]
__import__(module)
forbidden = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("trio", "trio_websocket", "wsproto", "h11")
    or name.startswith(("orchestrator.transport", "orchestrator.client"))
)
print(json.dumps(forbidden))
"""


def forbidden_imports(module: str) -> list[str]:
    """The trio / I/O modules loaded by importing `module` in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_trio(module: str) -> None:
    """Importing a pure module in a fresh interpreter loads no trio and no I/O layer."""
    assert forbidden_imports(module) == []


@pytest.mark.parametrize(
    "module", ["orchestrator.transport.base", "orchestrator.scripted.provider"]
)
def test_probe_sees_trio_in_io_modules(module: str) -> None:
    """The probe is not blind: an I/O module is reported as loading trio."""
    assert "trio" in forbidden_imports(module)


def test_protocol_modules_are_found() -> None:
    """The module list is not silently empty (the glob found the protocol package)."""
    assert "orchestrator.protocol.framing" in PROTOCOL_MODULES
    assert "orchestrator.protocol.jsonrpc" in PROTOCOL_MODULES
