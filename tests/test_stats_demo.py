"""`tracing demo` replays an operation shaped like TRIGGER III through the real workflow."""

from __future__ import annotations

import httpx

from tests.conftest import Tokens
from tracing.config import Settings
from tracing.demo import load_demo


async def test_demo_replays_trigger_iii_with_past_timestamps(
    client: httpx.AsyncClient, tokens: Tokens, settings: Settings
) -> None:
    summary = await load_demo(settings)
    assert "130 firearms recovered (49 Kalashnikov-type), 50 trace requests" in summary
    interpol = tokens.headers("INTERPOL", "FR", "operations")
    stats = (await client.get("/v1/operations/TRIGGER-III/stats", headers=interpol)).json()
    assert stats["total_requests"] == 50
    assert stats["by_state"] == {"submitted": 6, "forwarded": 12, "answered": 9, "closed": 23}
    assert sum(stats["by_resolution"].values()) == 23
    assert stats["operation"]["countries"] == ["BJ", "BF", "TD", "GN", "ML", "MR", "NE", "NG"]
    assert stats["operation"]["recovered"]["total"] == 130
    # answers take weeks, not the milliseconds a replay at today's time would give
    assert stats["time_to_answer_hours"]["median"] > 24 * 7
    assert [week["week"] for week in stats["weekly"]][0] == "2017-11-20"

    trail = await client.get(
        "/v1/trace-requests", params={"operation": "TRIGGER-III"}, headers=tokens.ncp("NE")
    )
    assert trail.status_code == 200 and trail.json()["items"]
    assert all(item["created_at"].startswith("2017") for item in trail.json()["items"])
    assert "not loaded" in await load_demo(settings)
