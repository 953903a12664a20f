"""What one invocation of bench/run.py measures, and the places and constants its modules share."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MIB = 1024  # the measurements report KiB
JOB_CONNECTIONS = 4  # the overhead cases: connections x thread slots = concurrent jobs
JOB_THREADS = 4

# Each size in quick mode and in a full run; quick mode is CI's smoke test, under a minute.
# fmt: off
SIZES = {
    # setting:           (quick,  full)
    "repeat":              (1,     5),  # rounds, unless --repeat says
    "notifications":       (2_000, 100_000),
    "turns":               (200,   10_000),
    "window":              (20,    100),
    "large_every":         (25,    500),  # quick: a few 64 KiB-4 MiB items in the small turn
    "fleet":               (10,    100),
    "fleet_notifications": (1_000, 10_000),
    "jobs":                (100,   1_000),
    "request_every":       (200,   1_000),
    "soak_jobs":           (500,   10_000),
    "soak_window":         (100,   1_000),
    "log_steps":           (5_000, 100_000),
    "best_of":             (1,     5),
}
# fmt: on


@attrs.frozen(kw_only=True)
class Settings:
    """What one invocation measures."""

    quick: bool
    repeat: int
    notifications: int
    turns: int
    window: int
    large_every: int
    fleet: int  # connections in one process
    fleet_notifications: int  # per connection
    jobs: int
    request_every: int  # lines of the streamed turn between two approval requests
    soak_jobs: int  # through a serving scheduler, as the daemon runs them
    soak_window: int
    log_steps: int
    best_of: int  # runs per throughput measurement; the fastest counts
    seed: bool
    profile: bool
    output: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """Quick mode shrinks everything and skips the seed and the profile."""
        sizes = {name: both[0 if args.quick else 1] for name, both in SIZES.items()}
        return cls(
            quick=args.quick,
            **{**sizes, "repeat": args.repeat or sizes["repeat"]},
            seed=not args.quick and not args.no_seed,
            profile=not args.quick and not args.no_profile,
            output=BENCH / ("RESULTS-quick.md" if args.quick else "RESULTS.md"),
        )

    @property
    def early_turns(self) -> str:
        """The trivial case's early window: from turn 10, as the first turns warm up."""
        return f"10-{9 + self.window}"

    @property
    def soak_second_window(self) -> str:
        """The soak's reference window, the second (the first warms up)."""
        return f"{self.soak_window + 1:,}-{2 * self.soak_window:,}"

    @property
    def soak_warm_up(self) -> int:
        """Jobs done once the soak's reference window has closed."""
        return 2 * self.soak_window

    def workload(self, *, large: bool = True) -> list[str]:
        """fake_server.py options of the streamed turn (without large items: `large=False`)."""
        return [
            "--notifications",
            str(self.notifications),
            "--large-every",
            str(self.large_every if large else 0),
        ]

    def fleet_workload(self) -> list[str]:
        """Each connection's turn in the many-connections cases: the usual shape, shorter,
        no large items (their transient copies are per connection, measured above)."""
        return ["--notifications", str(self.fleet_notifications), "--large-every", "0"]

    def steps_workload(self) -> list[str]:
        """A turn of exactly `log_steps` completed items and nothing else between them:
        the opening three notifications, then `item/started` + `item/completed` per step,
        then the closing two."""
        return [
            "--notifications",
            str(2 * self.log_steps + 5),
            "--deltas-per-item",
            "0",
            "--unrelated-every",
            "0",
            "--large-every",
            "0",
        ]
