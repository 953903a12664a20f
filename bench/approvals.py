"""Approval requests mid-stream: does `chat` answer them while the turn floods in?

`client-approvals`: the prepared turn of `fake_server.py` with `--request-every N` (a
command approval request after every Nth line; the server streams on without waiting and
ends the turn once every answer is in), read with `chat` over stdio by a client whose
approval handler accepts every request. The server times each answer from the moment it
wrote the request and reports at its exit; the throughput is that of the whole turn.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from common import TIMEOUT, Timer, server_argv

if TYPE_CHECKING:
    from orchestrator.client import CodexClient, ServerRequest

TurnRunner = Callable[["CodexClient", str, Timer], Awaitable[dict[str, Any]]]


async def client_approvals(
    workload: list[str], api: str, timer: Timer, client_turn: TurnRunner
) -> dict[str, Any]:
    """The turn through `client_turn` (measure.py's), every request accepted."""
    from orchestrator.client import CodexClient

    async def accept(request: ServerRequest) -> dict[str, Any]:
        return {"decision": "accept"}

    with tempfile.TemporaryDirectory(prefix="bench-approvals-") as tmp:
        report_path = f"{tmp}/report.json"
        async with CodexClient.connect_stdio(
            server_argv([*workload, "--report", report_path]),
            approval_handler=accept,
            inactivity_timeout=None,
            request_timeout=TIMEOUT,
        ) as client:
            result = await client_turn(client, api, timer)
        # Written by the server as it exits.
        report = json.loads(await trio.Path(report_path).read_text())
    latencies = report["latencies_ms"]
    if not latencies or report["accepted"] != report["requests"]:
        raise RuntimeError(f"of {report['requests']} requests: {report}")
    return {
        **result,
        "requests": report["requests"],
        "answer_p50_ms": statistics.median(latencies),
        "answer_p99_ms": latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)],
        "answer_max_ms": latencies[-1],
    }
