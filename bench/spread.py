"""A case's values over the rounds, and how a sample of them is summarized: median (min-max)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import attrs

Results = dict[str, list[dict[str, Any]]]  # per case, one result per round, in round order


@attrs.frozen
class Spread:
    """Median, min and max of a sample."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """None for an empty sample."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, fmt: str = "{:,.0f}", unit: str = "") -> str:
        """`median (min-max)`."""
        middle = fmt.format(self.median) + unit
        if self.count == 1:
            return middle
        return f"{middle} ({fmt.format(self.low)}-{fmt.format(self.high)})"


def values(results: list[dict[str, Any]], key: str) -> list[float]:
    """The key's values over the rounds that succeeded."""
    return [r[key] for r in results if "error" not in r and key in r]


def last_success(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The last round's result among those that succeeded (there is one)."""
    return next(r for r in reversed(results) if "error" not in r)


def cell(sample: list[float], fmt: str) -> str:
    """A sample as the report shows it; "-" when no round measured it."""
    spread = Spread.of(sample)
    return spread.show(fmt) if spread else "-"
