"""`python -m orchestrator` runs the command-line interface."""

from __future__ import annotations

import sys

from orchestrator.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
