"""Peak RSS of interpreters that only import, for scale next to the RSS figures."""

from __future__ import annotations

import subprocess
import sys

from settings import MIB, ROOT
from template import fill

IMPORT_PROBES = (
    ("the interpreter alone", "pass"),
    ("`import trio`", "import trio"),
    ("`import trio, wsproto`", "import trio, wsproto"),
    ("`import orchestrator.client`", "import orchestrator.client"),
    (
        "`import orchestrator.transport.websocket`",
        "import orchestrator.client, orchestrator.transport.websocket",
    ),
)


# What bench/measure.py's peak_rss_kib does, without importing anything else.
PRINT_PEAK_RSS = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(line.split()[1])
"""


def import_baselines() -> str:
    """The report's note on them."""
    shown = []
    for what, code in IMPORT_PROBES:
        probe = f"{code}\n{PRINT_PEAK_RSS}"
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
        )
        value = done.stdout.strip()
        shown.append(f"{what} {int(value) / MIB:.1f} MiB" if value.isdigit() else f"{what} ?")
    return fill("import_sizes", sizes=", ".join(shown))
