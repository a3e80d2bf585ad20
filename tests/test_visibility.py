"""Only parties see a request exists; everybody else gets 404, and lists never leak."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import TRIGGER_III, Tokens, submission


@pytest.mark.parametrize(
    "outsider",
    [
        ("BJ-NCP", "BJ", "contact_point"),  # a contact point it was never forwarded to
        ("BJ-PR", "BJ", "investigator"),  # an investigator of another country
        ("NE-DOUANES", "NE", "investigator"),  # another agency of the same country
        ("NE-NCP", "NE", "operations"),  # operations role sees counts, never requests
        ("NE-NCP", "NE", "auditor"),
        ("UN-ADMIN", "AT", "admin"),
    ],
)
async def test_non_parties_get_404_for_every_route(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict, outsider: tuple[str, str, str]
) -> None:
    headers = tokens.headers(*outsider)
    base = f"/v1/trace-requests/{submitted['id']}"
    assert (await client.get(base, headers=headers)).status_code == 404
    assert (await client.get(f"{base}/exchanges", headers=headers)).status_code == 404
    listed = await client.get("/v1/trace-requests", headers=headers)
    assert listed.json()["items"] == []
    if outsider[2] == "contact_point":
        move = await client.post(f"{base}/forward", json={"to_country": "RU"}, headers=headers)
        assert move.status_code == 404
        assert move.json()["title"] == "Not found"


async def test_unknown_id_and_other_countrys_request_look_the_same(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    outsider = tokens.ncp("BJ")
    hidden = await client.get(f"/v1/trace-requests/{submitted['id']}", headers=outsider)
    missing = await client.get(f"/v1/trace-requests/{uuid.uuid4()}", headers=outsider)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json().keys() == missing.json().keys()
    assert hidden.json()["title"] == missing.json()["title"]


async def test_forwarded_country_becomes_a_party(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    base = f"/v1/trace-requests/{submitted['id']}"
    assert (await client.get(base, headers=tokens.ncp("RU"))).status_code == 404
    await client.post(f"{base}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    assert (await client.get(base, headers=tokens.ncp("RU"))).status_code == 200
    listed = await client.get("/v1/trace-requests", headers=tokens.ncp("RU"))
    assert [item["id"] for item in listed.json()["items"]] == [submitted["id"]]


async def test_malformed_id_is_422_not_500(client: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await client.get("/v1/trace-requests/not-a-uuid", headers=tokens.investigator)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_list_pages_with_cursor_without_repeats_and_filters(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    for code in ("OP-A", "OP-B"):
        operation = {**TRIGGER_III, "code": code, "name": f"Operation {code}"}
        assert (await client.post("/v1/operations", json=operation, headers=tokens.admin)).status_code == 201
    created = []
    for number in range(7):
        body = submission(case_reference=f"NE/{number}", operation_code="OP-A" if number % 2 else "OP-B")
        response = await client.post("/v1/trace-requests", json=body, headers=tokens.investigator)
        created.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/trace-requests", params=params, headers=tokens.investigator)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))

    by_operation = await client.get(
        "/v1/trace-requests", params={"operation": "OP-A"}, headers=tokens.ncp("NE")
    )
    assert len(by_operation.json()["items"]) == 3
    by_state = await client.get("/v1/trace-requests", params={"state": "closed"}, headers=tokens.ncp("NE"))
    assert by_state.json()["items"] == []
    bad_cursor = await client.get("/v1/trace-requests", params={"cursor": "!!"}, headers=tokens.ncp("NE"))
    assert bad_cursor.status_code == 422
    too_big = await client.get("/v1/trace-requests", params={"limit": 10_000}, headers=tokens.ncp("NE"))
    assert too_big.status_code == 422


async def test_contact_point_role_for_an_unregistered_agency_sees_nothing(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    base = f"/v1/trace-requests/{submitted['id']}"
    impostor = tokens.headers("NE-PJ", "NE", "contact_point")  # a real agency, but not NE's contact point
    assert (await client.get(base, headers=impostor)).status_code == 404
    assert (
        await client.post(f"{base}/forward", json={"to_country": "RU"}, headers=impostor)
    ).status_code == 404
    assert (await client.get("/v1/trace-requests", headers=impostor)).json()["items"] == []


async def test_nul_in_query_or_path_is_400(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for url in ("/v1/trace-requests?operation=OP%00A", "/v1/agencies/NE%00NCP"):
        response = await client.get(url, headers=tokens.admin)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
