"""Crash and fault runs under load, short enough for CI: SIGKILL the server mid-load and restart it
(on both databases); stop and start a private PostgreSQL under a running server. Each starts real
`tracing serve` processes on loopback ports. The longer runs with their figures are
`python -m bench.faults kill9|pgrestart` (docs/reliability.md). `-m "not faults"` leaves them out.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from bench.faults import FaultOutcome, kill9_scenario, pgrestart_scenario
from bench.harness import private_cluster_unavailable

pytestmark = pytest.mark.faults


def _report(outcome: FaultOutcome) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        outcome.print()
    return printed.getvalue()


async def test_killed_server_loses_nothing_it_acknowledged(database_url: str, tmp_path: Path) -> None:
    outcome = await kill9_scenario(database_url, tmp_path, users=8, before=3.0, after=3.0, kills=1)
    assert outcome.ok, _report(outcome)
    assert outcome.ledger.created, "no request was submitted"
    assert outcome.recorder.transport_errors, "the kill cut off no request"


async def test_database_restart_gives_503_and_the_service_recovers_by_itself(tmp_path: Path) -> None:
    reason = private_cluster_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start a private PostgreSQL cluster: {reason}")
        pytest.skip(reason)
    outcome = await pgrestart_scenario(tmp_path, users=8, before=2.0, down=3.0, after=3.0)
    assert outcome.ok, _report(outcome)
    assert any(s.status == 503 for s in outcome.recorder.samples)
