"""A pytest plugin that turns the hardening tests into the table of RELIABILITY.md.

A test joins the table with a marker saying what it tries and what must happen:

    @pytest.mark.fault("stdio", "a line that is not JSON", "logged and skipped; the turn completes")
    async def test_garbage_line(...): ...

and may record figures (load test wall time, peak memory, ...) with the `figures` fixture:

    def test_load(figures): figures.record("wall time", 12.3, "s")

`pytest -m fault --reliability-report PATH` writes one JSON object per marked test to PATH
(`scripts/reliability` runs it and renders RELIABILITY.md). Without the option nothing is
written, so the marked tests are ordinary tests in the normal run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_ROWS = pytest.StashKey[dict[str, Any]]()
_FIGURES = pytest.StashKey[list[dict[str, Any]]]()


class Figures:
    """Figures a test measured, reported next to its row."""

    def __init__(self, store: list[dict[str, Any]]) -> None:
        self._store = store

    def record(self, name: str, value: float | int | str, unit: str = "") -> None:
        self._store.append({"name": name, "value": value, "unit": unit})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the fault-marked tests' outcomes and figures to PATH (JSON lines)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fault(area, fault, expected): a fault or hostile input this test injects, and what "
        "must happen; listed in RELIABILITY.md",
    )
    config.stash[_ROWS] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    store = request.node.stash.setdefault(_FIGURES, [])
    return Figures(store)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    marker = item.get_closest_marker("fault")
    if marker is None:
        return report
    rows: dict[str, Any] = item.config.stash[_ROWS]
    row = rows.setdefault(
        item.nodeid,
        {
            "test": item.nodeid,
            "area": marker.args[0] if marker.args else "",
            "fault": marker.args[1] if len(marker.args) > 1 else item.name,
            "expected": marker.args[2] if len(marker.args) > 2 else "",
            "outcome": "passed",
            "seconds": 0.0,
            "figures": [],
        },
    )
    row["seconds"] += report.duration
    if report.failed:
        row["outcome"] = "failed"
    elif report.skipped and row["outcome"] == "passed":
        if hasattr(report, "wasxfail"):
            # A known bug, written down as the strict xfail test that will pass once fixed.
            row["outcome"] = "xfail"
            row["reason"] = report.wasxfail
        else:
            row["outcome"] = "skipped"
    if report.when == "teardown":
        row["figures"] = item.stash.get(_FIGURES, [])
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = session.config.getoption("--reliability-report")
    if not target:
        return
    rows = session.config.stash[_ROWS].values()
    Path(target).write_text(
        "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8"
    )
