"""One measurement of the seed client, `codex-app-server-sdk==0.4.1`, in a fresh process.

    bench/.venv-seed/bin/python bench/seed_measure.py --server-python PY -- [fake_server.py options]

Runs under the seed's own virtual environment (Python >= 3.12, asyncio) and imports nothing
from the project: it drives one turn with the seed's `chat_once` against bench/fake_server.py
(run by `--server-python`, the interpreter every other measurement uses for the server) and
prints one JSON line shaped like bench/measure.py's. The timed window is the same: from just
before the turn starts to `chat_once` returning.

A turn the seed cannot finish (for example a line over its 64 KiB reader limit) is reported
as `{"error": ...}` with exit status 3, so that the driver can record it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from codex_app_server_sdk import CodexClient, __version__
from rss import peak_rss_kib

SERVER = Path(__file__).resolve().parent / "fake_server.py"


async def seed_turn(server_python: str, workload: list[str]) -> dict[str, Any]:
    """One prepared turn through the seed's `chat_once`, timed."""
    client = CodexClient.connect_stdio(
        command=[server_python, str(SERVER), *workload],
        inactivity_timeout=None,
        request_timeout=600.0,
    )
    async with client:
        init = await client.initialize()
        stats = init.raw["bench"]
        started = await client.request("thread/start", {})
        thread_id = started["thread"]["id"]
        before = peak_rss_kib()
        start = time.perf_counter()
        # With a thread id the seed sends thread/resume first; the fake server answers at once.
        result = await client.chat_once("go", thread_id=thread_id)
        elapsed = time.perf_counter() - start
    if not result.final_text:
        raise RuntimeError("the seed's turn ended without a final text")
    events = stats["notifications"]
    return {
        "events": events,
        "steps": None,
        "seed_raw_events": len(result.raw_events),
        "bytes": stats["bytes"],
        "elapsed_s": elapsed,
        "events_per_s": events / elapsed,
        "mib_per_s": stats["bytes"] / elapsed / 2**20,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
        "seed_version": __version__,
    }


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its JSON line."""
    raw = sys.argv[1:] if argv is None else argv
    cut = raw.index("--") if "--" in raw else len(raw)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-python", default=sys.executable)
    args = parser.parse_args(raw[:cut])
    try:
        result = asyncio.run(seed_turn(args.server_python, raw[cut + 1 :]))
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(exc).__name__}: {exc}"
        if cause is not None:
            detail += f" (caused by {type(cause).__name__}: {cause})"
        print(json.dumps({"mode": "seed-stdio", "error": detail}))
        return 3
    result["mode"] = "seed-stdio"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
