"""Concurrent moves on one request: exactly one wins, the rest get 409, the history stays whole."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Tokens


async def test_two_concurrent_answers_exactly_one_wins(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    base = f"/v1/trace-requests/{submitted['id']}"
    await client.post(f"{base}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    answers = [
        {"outcome": "traced", "findings": f"answer {n}"}
        if n % 2
        else {"outcome": "not_traced", "reason": "no_record"}
        for n in range(6)
    ]
    responses = await asyncio.gather(
        *(client.post(f"{base}/answer", json=body, headers=tokens.ncp("RU")) for body in answers)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409], [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 200)

    exchanges = (await client.get(f"{base}/exchanges", headers=tokens.ncp("NE"))).json()["items"]
    assert [e["action"] for e in exchanges] == ["submit", "forward", "answer"]
    assert [e["seq"] for e in exchanges] == [1, 2, 3]
    stored = (await client.get(base, headers=tokens.ncp("NE"))).json()
    assert (stored["state"], stored["version"], stored["outcome"]) == ("answered", 3, winner["outcome"])


async def test_concurrent_close_and_forward_on_one_version_leave_one_consistent_history(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    """Both moves are legal one after the other; sent against the same version, exactly one wins."""
    base = f"/v1/trace-requests/{submitted['id']}"
    # Both moves name the version they were decided on: should the scheduler run one to completion
    # before the other starts, the late one is refused (412) instead of applying to a newer state.
    seen = {"If-Match": '"1"'}
    forward = client.post(f"{base}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE") | seen)
    close = client.post(f"{base}/close", json={"resolution": "withdrawn"}, headers=tokens.investigator | seen)
    results = await asyncio.gather(forward, close)
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([200, 409], [200, 412]), [r.text for r in results]
    stored = (await client.get(base, headers=tokens.ncp("NE"))).json()
    exchanges = (await client.get(f"{base}/exchanges", headers=tokens.ncp("NE"))).json()["items"]
    assert len(exchanges) == stored["version"] == 2
    assert exchanges[-1]["to_state"] == stored["state"]
