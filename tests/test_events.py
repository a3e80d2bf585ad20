"""The outbox and the event feed: who receives which event, in order, long-polled, and nothing from
a change that did not happen."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from tests.conftest import Tokens, submission
from tracing.models.notify import EventType
from tracing.models.trace_request import TraceRequest
from tracing.models.types import utcnow
from tracing.notify import outbox


async def _feed(
    client: httpx.AsyncClient, headers: dict, after: str | None = None, **params: Any
) -> dict[str, Any]:
    query = {"timeout": 0, **params} | ({"after": after} if after else {})
    response = await client.get("/v1/events", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _types(feed: dict[str, Any]) -> list[str]:
    return [item["type"] for item in feed["items"]]


async def test_each_step_reaches_the_agencies_that_must_act_or_know(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    url = f"/v1/trace-requests/{submitted['id']}"
    ne, ru, investigator = tokens.ncp("NE"), tokens.ncp("RU"), tokens.investigator
    assert _types(await _feed(client, ne)) == ["request.submitted"]  # new work for the NE contact point
    assert _types(await _feed(client, ru)) == []

    await client.post(f"{url}/forward", json={"to_country": "RU"}, headers=ne)
    await client.post(f"{url}/acknowledge", json={}, headers=ru)
    await client.post(f"{url}/answer", json={"outcome": "not_traced", "reason": "no_record"}, headers=ru)
    await client.post(f"{url}/close", json={"resolution": "not_established"}, headers=investigator)

    assert _types(await _feed(client, ru)) == ["request.forwarded"]
    requesting_side = ["request.acknowledged", "request.answered", "request.closed"]
    assert _types(await _feed(client, ne)) == ["request.submitted", *requesting_side]
    assert _types(await _feed(client, investigator)) == requesting_side
    assert _types(await _feed(client, tokens.ncp("NG"))) == []


async def test_feed_items_are_thin_and_carry_the_step(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    await client.post(
        f"/v1/trace-requests/{submitted['id']}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
    )
    (item,) = (await _feed(client, tokens.ncp("RU")))["items"]
    assert set(item) == {"id", "type", "at", "trace_request_id", "data"}
    assert item["trace_request_id"] == submitted["id"]
    data = item["data"]
    assert (data["reference"], data["state"], data["holder_country"], data["to_country"]) == (
        submitted["reference"],
        "forwarded",
        "RU",
        "RU",
    )
    assert data["due"]["acknowledge_by"] and data["due"]["answer_by"]
    flattened = str(item)
    for detail in ("LX 10?3", "NE/2017/1142", "Niamey", "Izhmash"):
        assert detail not in flattened  # firearm and case details are fetched, not pushed


async def test_withdrawal_tells_the_contact_point_holding_the_request(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    url = f"/v1/trace-requests/{submitted['id']}"
    await client.post(f"{url}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    await client.post(f"{url}/close", json={"resolution": "withdrawn"}, headers=tokens.investigator)
    assert _types(await _feed(client, tokens.ncp("RU"))) == ["request.forwarded", "request.closed"]


async def test_cursor_pages_through_the_feed_without_repeats_or_gaps(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    for number in range(5):
        response = await client.post(
            "/v1/trace-requests", json=submission(case_reference=f"NE/{number}"), headers=tokens.investigator
        )
        assert response.status_code == 201
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = await _feed(client, tokens.ncp("NE"), cursor, limit=2)
        seen += [item["data"]["reference"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen)  # references are numbered in submission order
    again = await _feed(client, tokens.ncp("NE"), cursor)
    assert again["items"] == [] and again["next_cursor"] == cursor


async def test_long_poll_returns_as_soon_as_an_event_is_committed(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    start = await _feed(client, tokens.ncp("RU"))
    waiting = asyncio.create_task(
        client.get(
            "/v1/events", params={"after": start["next_cursor"], "timeout": 20}, headers=tokens.ncp("RU")
        )
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    forwarded = await client.post(
        f"/v1/trace-requests/{submitted['id']}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
    )
    assert forwarded.status_code == 200
    response = await asyncio.wait_for(waiting, 20)
    assert [item["type"] for item in response.json()["items"]] == ["request.forwarded"]


async def test_refused_or_losing_moves_emit_nothing(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    url = f"/v1/trace-requests/{submitted['id']}"
    not_traced = {"outcome": "not_traced", "reason": "no_record"}
    refused = await client.post(f"{url}/answer", json=not_traced, headers=tokens.ncp("NE"))
    assert refused.status_code == 409
    await client.post(f"{url}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    answers = await asyncio.gather(
        *(client.post(f"{url}/answer", json=not_traced, headers=tokens.ncp("RU")) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409]
    assert _types(await _feed(client, tokens.ncp("NE"))) == ["request.submitted", "request.answered"]


async def test_feed_refuses_bad_cursors_and_roles_without_events(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    bad = await client.get("/v1/events", params={"after": "not-a-cursor"}, headers=tokens.ncp("NE"))
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    negative = await client.get("/v1/events", params={"timeout": -1}, headers=tokens.ncp("NE"))
    assert negative.status_code == 422
    operations = tokens.headers("UNODC", "AT", "operations")
    assert (await client.get("/v1/events", headers=operations)).status_code == 403
    assert (await client.get("/v1/events")).status_code == 401


async def test_concurrent_submissions_keep_the_feed_gapless(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    bodies = [submission(case_reference=f"C/{n}") for n in range(8)]
    responses = await asyncio.gather(
        *(client.post("/v1/trace-requests", json=body, headers=tokens.investigator) for body in bodies)
    )
    assert all(r.status_code == 201 for r in responses)
    feed = await _feed(client, tokens.ncp("NE"), limit=200)
    assert len(feed["items"]) == 8
    assert len({item["id"] for item in feed["items"]}) == 8


async def test_crosscheck_hit_reaches_the_registry_owners_contact_point(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    async with app.state.sessionmaker() as session:
        request = await session.get(TraceRequest, await _number(session, submitted["id"]))
        assert request is not None
        await outbox.emit_crosscheck_hit(
            session,
            request,
            registry_owner_country="NG",
            hit={"registry": "NG lost and stolen", "record": "NG-LS-2016-0042", "confidence": 0.93},
            at=utcnow(),
        )
        await session.commit()
    (item,) = (await _feed(client, tokens.ncp("NG")))["items"]
    assert item["type"] == "crosscheck.hit"
    assert item["data"]["reference"] == submitted["reference"]
    assert item["data"]["record"] == "NG-LS-2016-0042"


async def _number(session: Any, request_id: str) -> int:
    statement = select(TraceRequest.number).where(TraceRequest.id == uuid.UUID(request_id))
    return (await session.execute(statement)).scalar_one()


async def test_long_poll_wait_is_capped_by_the_server(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    app.state.settings.feed_max_wait_seconds = 0
    response = await asyncio.wait_for(
        client.get("/v1/events", params={"timeout": 3600}, headers=tokens.ncp("RU")), 10
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_an_event_committed_late_is_placed_after_the_events_already_read(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, submitted: dict, backend: str
) -> None:
    """Writers to one agency's feed share no lock, so a transaction that began first can commit
    last. A reader that has already read the later event must still get the earlier one next."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one writing transaction at a time: the interleaving cannot happen")
    start = await _feed(client, tokens.ncp("NE"))
    async with app.state.sessionmaker() as slow:
        request = await slow.get(TraceRequest, await _number(slow, submitted["id"]))
        assert request is not None
        (early,) = await outbox.emit(
            slow,
            recipients=["NE-NCP"],
            type=EventType.request_overdue,
            trace_request_id=request.id,
            data={"reference": request.reference},
            at=utcnow(),
        )
        await slow.flush()  # written first, committed last
        later = await client.post(
            "/v1/trace-requests", json=submission(case_reference="NE/late"), headers=tokens.investigator
        )
        assert later.status_code == 201
        first = await _feed(client, tokens.ncp("NE"), start["next_cursor"])
        assert [item["data"]["reference"] for item in first["items"]] == [later.json()["reference"]]
        await slow.commit()
    second = await _feed(client, tokens.ncp("NE"), first["next_cursor"])
    assert [item["id"] for item in second["items"]] == [str(early.id)]
    assert (await _feed(client, tokens.ncp("NE"), second["next_cursor"]))["items"] == []
