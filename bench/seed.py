"""The seed client's virtual environment, bench/.venv-seed: found, or created on first use.

The seed, `codex-app-server-sdk`, needs Python 3.12 or later and is imported by nothing in
the project; bench/seed_measure.py runs under this environment's interpreter.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from settings import BENCH, Settings

SEED_VENV = BENCH / ".venv-seed"
SEED_PYTHON = SEED_VENV / "bin" / "python"
SEED_REQUIREMENT = "codex-app-server-sdk==0.4.1"


def prepare(settings: Settings) -> tuple[Path | None, str]:
    """The seed's interpreter when this invocation measures the seed (or None), and the
    report's line on it."""
    if settings.quick:
        return None, "skipped in quick mode"
    if not settings.seed:
        return None, "skipped (--no-seed)"
    return ensure_seed()


def ensure_seed() -> tuple[Path | None, str]:
    """The seed's interpreter, creating bench/.venv-seed if needed; or None and why not."""
    if _seed_works():
        return SEED_PYTHON, f"{SEED_REQUIREMENT} in bench/.venv-seed (existing)"
    python, env = _find_python312()
    if python is None:
        return None, "no Python >= 3.12 found (tried python3.12, python3.13, python3.14, pyenv)"
    steps = [
        [python, "-m", "venv", "--clear", str(SEED_VENV)],
        [str(SEED_PYTHON), "-m", "pip", "install", "-q", SEED_REQUIREMENT],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, env=env, capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{shlex.join(step)}` failed: {exc}"
        if done.returncode != 0:
            tail = " / ".join(done.stderr.strip().splitlines()[-2:])
            return None, f"`{shlex.join(step)}` failed: {tail}"
    if not _seed_works():
        return None, "bench/.venv-seed was created but cannot import codex_app_server_sdk"
    return SEED_PYTHON, f"{SEED_REQUIREMENT} installed into bench/.venv-seed with {python}"


def _seed_works() -> bool:
    if not SEED_PYTHON.exists():
        return False
    check = [str(SEED_PYTHON), "-c", "import codex_app_server_sdk"]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def _find_python312() -> tuple[str | None, dict[str, str]]:
    """An interpreter >= 3.12 and the environment to run it in (pyenv shims need a version)."""
    env = dict(os.environ)
    names = [env.get("BENCH_SEED_PYTHON", ""), "python3.12", "python3.13", "python3.14"]
    probe = "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"
    pyenv_versions: list[str] = []
    if shutil.which("pyenv"):
        listed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        )
        pyenv_versions = listed.stdout.split()
    for name in filter(None, names):
        path = shutil.which(name) or (name if Path(name).exists() else None)
        if path is None:
            continue
        for version in [None, *pyenv_versions]:
            trial = dict(env)
            if version is not None:
                if not name.endswith(version.rsplit(".", 1)[0]):
                    continue
                trial["PYENV_VERSION"] = version
            ok = subprocess.run([path, "-c", probe], env=trial, capture_output=True, check=False)
            if ok.returncode == 0:
                return path, trial
    return None, env
