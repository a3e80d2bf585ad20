"""Submitting: validation of the firearm description, Idempotency-Key, and no partial records."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens, submission

BAD_SUBMISSIONS: dict[str, dict[str, Any]] = {
    "unknown_requested_country": {"requested_country": "QQ"},
    "unknown_seizure_country": {"seizure__country": "ZZ"},
    "unknown_import_mark_country": {"firearm__import_marks": [{"country": "XX", "year": 2009}]},
    "empty_serial": {"firearm__serial_number": "   "},
    "unreadable_serial_without_obliteration": {"firearm__serial_obliterated": "none"},
    "future_year_of_manufacture": {"firearm__year_of_manufacture": 2999},
    "future_seizure_date": {"seizure__date": "2999-01-01"},
    "future_import_year": {"firearm__import_marks": [{"country": "NG", "year": 2999}]},
    "unknown_kind": {"firearm__kind": "laser"},
    "urgent_without_justification": {"priority": "urgent"},
    "unknown_field": {"firearm__colour": "black"},
    "nul_in_text": {"case_reference": "NE/\u0000/1"},
    "lone_surrogate": {"firearm__make": "Izh\ud800mash"},
    "overlong_make": {"firearm__make": "x" * 201},
    "missing_firearm": {"firearm": None},
}


async def _count(client: httpx.AsyncClient, tokens: Tokens) -> int:
    response = await client.get("/v1/trace-requests", headers=tokens.ncp("NE"))
    return len(response.json()["items"])


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
async def test_invalid_submission_is_422_problem_and_writes_nothing(
    client: httpx.AsyncClient, tokens: Tokens, world: None, case: str
) -> None:
    body = submission(**BAD_SUBMISSIONS[case])
    response = await client.post(
        "/v1/trace-requests",
        content=_encode(body),
        headers={**tokens.investigator, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["errors"], problem
    assert await _count(client, tokens) == 0


async def test_invalid_utf8_body_is_400_problem(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    raw = _encode(submission()).replace(b"Niamey", b"Nia\xff\xfemey")
    response = await client.post(
        "/v1/trace-requests", content=raw, headers={**tokens.investigator, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert await _count(client, tokens) == 0


async def test_malformed_json_is_4xx_problem(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    response = await client.post(
        "/v1/trace-requests",
        content=b'{"firearm": ',
        headers={**tokens.investigator, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_body_over_one_mebibyte_is_413(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    body = submission(intended_use="x" * (1024 * 1024 + 10))
    response = await client.post("/v1/trace-requests", json=body, headers=tokens.investigator)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"

    async def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(20):
            yield b"x" * 65536

    streamed = await client.post(
        "/v1/trace-requests",
        content=chunks(),
        headers={**tokens.investigator, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert await _count(client, tokens) == 0


async def test_non_ascii_markings_are_kept_exactly(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    body = submission(
        firearm__make="Ижмаш", firearm__other_markings=["звезда", "نجمة"], firearm__serial_number="ЛХ 10?3"
    )
    created = await client.post("/v1/trace-requests", json=body, headers=tokens.investigator)
    assert created.status_code == 201, created.text
    fetched = (
        await client.get(f"/v1/trace-requests/{created.json()['id']}", headers=tokens.investigator)
    ).json()
    assert fetched["firearm"]["make"] == "Ижмаш"
    assert fetched["firearm"]["other_markings"] == ["звезда", "نجمة"]
    assert fetched["firearm"]["serial_number"] == "ЛХ 10?3"


async def test_submission_needs_a_registered_agency_and_contact_point(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    unregistered = tokens.headers("FR-PN", "FR", "investigator")
    response = await client.post("/v1/trace-requests", json=submission(), headers=unregistered)
    assert response.status_code == 403
    wrong_country = tokens.headers("NE-PJ", "BJ", "investigator")
    assert (
        await client.post("/v1/trace-requests", json=submission(), headers=wrong_country)
    ).status_code == 403
    not_investigator = tokens.ncp("NE")
    assert (
        await client.post("/v1/trace-requests", json=submission(), headers=not_investigator)
    ).status_code == 403


async def test_same_idempotency_key_and_body_returns_the_original(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    headers = {**tokens.investigator, "Idempotency-Key": "0b6f4a52-6c1e-4d1b-9f0e-3a1c2d4e5f60"}
    first = await client.post("/v1/trace-requests", json=submission(), headers=headers)
    second = await client.post("/v1/trace-requests", json=submission(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["reference"] == first.json()["reference"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await _count(client, tokens) == 1


async def test_same_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    headers = {**tokens.investigator, "Idempotency-Key": "key-1"}
    await client.post("/v1/trace-requests", json=submission(), headers=headers)
    other = await client.post(
        "/v1/trace-requests", json=submission(case_reference="NE/other"), headers=headers
    )
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert await _count(client, tokens) == 1


async def test_concurrent_retries_with_one_key_create_one_request(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    headers = {**tokens.investigator, "Idempotency-Key": "retry-storm"}
    responses = await asyncio.gather(
        *(client.post("/v1/trace-requests", json=submission(), headers=headers) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _count(client, tokens) == 1


async def test_invalid_idempotency_key_is_422(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    headers = {**tokens.investigator, "Idempotency-Key": "x" * 300}
    assert (await client.post("/v1/trace-requests", json=submission(), headers=headers)).status_code == 422


async def test_wrong_role_is_403_even_with_an_invalid_body(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    response = await client.post("/v1/trace-requests", json={"nonsense": True}, headers=tokens.ncp("NE"))
    assert response.status_code == 403
