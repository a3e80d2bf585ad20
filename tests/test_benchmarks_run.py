"""The benchmarks in bench/ still run against the current code, at a size that takes seconds.

They measure, they do not judge (no timing is asserted here): these tests fail when a benchmark
crashes, when a request it sends is refused, or when what it checks afterwards (row counts,
verified chains) does not hold. A benchmark left broken would otherwise be found only when someone
needs its figure.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _admin_connection

ROOT = Path(__file__).resolve().parent.parent

RUNS = {
    "submit_throughput[sqlite]": (
        ["bench.submit_throughput", "--database", "sqlite", "--requests", "60", "--warmup", "10",
         "--concurrency", "4"],
        "ratio submit/baseline",
    ),
    "submit_throughput[postgresql]": (
        ["bench.submit_throughput", "--database", "postgresql", "--requests", "60", "--warmup", "10",
         "--concurrency", "4"],
        "ratio submit/baseline",
    ),
    "audit_append_concurrency": (
        ["bench.audit_append_concurrency", "--appends-per-chain", "3", "--concurrency", "4", "--rounds", "1"],
        "verification:",
    ),
    "audit_verify": (["bench.audit_verify", "--entries", "2000", "--rounds", "1"], "ratio"),
    "registry_lookup": (
        ["bench.registry_lookup", "--records", "3000", "--small", "1000", "--queries", "10",
         "--scan-queries", "1"],
        "import",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RUNS))
async def test_benchmark_runs(name: str) -> None:
    arguments, expected = RUNS[name]
    if "sqlite" not in name:
        (await _admin_connection()).terminate()  # PostgreSQL reachable (or skipped / failed in CI)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert expected in result.stdout, result.stdout[-4000:]
