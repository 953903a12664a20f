"""Fault 3: an app-server that writes 200 MB to stderr in the middle of a turn, then dies.

The server writes like a real logger: blocking, so if the client stopped draining stderr the
server would stall and the turn would never end. What must happen: the client keeps reading
stdout, the turn completes, its memory stays flat (only a bounded tail is kept), and when the
process then dies the error quotes the tail's last lines.
"""

from __future__ import annotations

import time

import pytest
import trio

from orchestrator.transport.stdio import STDERR_TAIL_BYTES, StdioTransport
from tests.faults.harness import PeakMemory, bystander, open_endpoint
from tests.faults.hostile_server import LOG_LINE
from tests.reliability import Figures

FLOOD = 200_000_000
LAST_WORDS = "FATAL: hostile app-server: giving up after the flood\n"
MIB = 1024 * 1024


@pytest.mark.fault(
    "client: stderr",
    "stdio: 200 MB of stderr during a turn, then the process exits 70",
    "the turn completes; memory flat (bounded tail); the exit error quotes the tail",
)
async def test_two_hundred_megabytes_of_stderr(figures: Figures) -> None:
    """200 MB of stderr mid-turn neither stalls the turn nor grows memory, and the error of
    the process's death ends with its last stderr line."""
    half = FLOOD // 2
    plan = {
        "turn": [
            ["accept"],
            ["message", "before"],
            ["stderr", half],
            ["message", "halfway"],
            ["stderr", half],
            ["message", "after"],
            ["complete"],
            ["stderr_text", LAST_WORDS],
            ["die", "exit", 70],
        ]
    }
    memory = PeakMemory()
    with trio.fail_after(60):
        async with open_endpoint("stdio", plan) as endpoint, bystander(endpoint) as other:
            with memory.tracing():
                async with endpoint.connect() as client:
                    started = time.perf_counter()
                    result = await client.chat_once("flood")
                    elapsed = time.perf_counter() - started
                    await client.reader_done.wait()
                    transport = client.transport
            await other.finish()
    assert [s.text for s in result.steps] == ["before", "halfway", "after"]
    assert result.status == "completed"
    assert isinstance(transport, StdioTransport)
    assert transport.stderr_tail.total_bytes == FLOOD + len(LAST_WORDS)
    error = client.close_error
    assert error is not None and error.exit_status == 70
    assert "exited with status 70" in str(error)
    assert error.stderr_tail.endswith(LAST_WORDS)
    assert len(error.stderr_tail.encode()) <= STDERR_TAIL_BYTES
    assert set(error.stderr_tail.removesuffix(LAST_WORDS).splitlines(keepends=True)) == {
        LOG_LINE.decode()
    }
    assert memory.growth < 16 * MIB  # the flood is 190 MiB; keeping it would show here
    figures.record("stderr written", FLOOD // 1_000_000, "MB")
    figures.record("turn wall time", round(elapsed, 2), "s")
    figures.record("stderr throughput", round(FLOOD / MIB / elapsed), "MiB/s")
    figures.record("peak Python memory", round(memory.growth / MIB, 1), "MiB")
