"""Joint operations: who may create, see and change them, and the bad input they refuse."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TRIGGER_III, Tokens, submission


def operation(**overrides: Any) -> dict[str, Any]:
    return {**TRIGGER_III, "code": "OP-SAHEL", "name": "Operation Sahel", **overrides}


async def test_operations_staff_create_list_and_update_an_operation(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    ne_operations = tokens.headers("NE-NCP", "NE", "operations")
    created = await client.post("/v1/operations", json=operation(code=" op-sahel "), headers=ne_operations)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["code"], body["status"], body["recovered_total"]) == ("OP-SAHEL", "open", 22)
    assert created.headers["location"] == f"/v1/operations/{body['id']}"

    by_code = await client.get("/v1/operations/op-sahel", headers=ne_operations)
    by_id = await client.get(f"/v1/operations/{body['id']}", headers=ne_operations)
    assert by_code.json() == by_id.json() == body
    listed = await client.get("/v1/operations", headers=ne_operations)
    assert [item["code"] for item in listed.json()["items"]] == ["OP-SAHEL"]

    patch = {"recoveries": [{"country": "NG", "seized": 31, "found": 2}], "status": "closed"}
    updated = await client.patch("/v1/operations/OP-SAHEL", json=patch, headers=ne_operations)
    assert updated.status_code == 200, updated.text
    assert updated.json()["recoveries"] == [{"country": "NG", "seized": 31, "found": 2, "surrendered": 0}]
    assert (updated.json()["status"], updated.json()["recovered_total"]) == ("closed", 33)
    assert updated.json()["name"] == "Operation Sahel"


async def test_organiser_agency_sees_the_operation_from_any_country(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert (await client.post("/v1/operations", json=operation(), headers=tokens.admin)).status_code == 201
    interpol = tokens.headers("INTERPOL", "FR", "operations")
    assert (await client.get("/v1/operations/OP-SAHEL", headers=interpol)).status_code == 200


async def test_operation_of_other_countries_is_404_for_operations_staff(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    created = (await client.post("/v1/operations", json=operation(), headers=tokens.admin)).json()
    outsider = tokens.headers("BE-NCP", "BE", "operations")
    paths = (f"/v1/operations/{created['id']}", "/v1/operations/OP-SAHEL", "/v1/operations/OP-SAHEL/stats")
    for path in paths:
        response = await client.get(path, headers=outsider)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    patched = await client.patch("/v1/operations/OP-SAHEL", json={"name": "x"}, headers=outsider)
    assert patched.status_code == 404
    assert (await client.get("/v1/operations", headers=outsider)).json()["items"] == []


async def test_other_roles_cannot_use_operations(client: httpx.AsyncClient, tokens: Tokens) -> None:
    assert (await client.get("/v1/operations", headers=tokens.investigator)).status_code == 403
    refused = await client.post("/v1/operations", json=operation(), headers=tokens.ncp("NE"))
    assert refused.status_code == 403
    assert (await client.get("/v1/operations")).status_code == 401


async def test_operations_staff_cannot_create_an_operation_they_could_not_see(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    response = await client.post(
        "/v1/operations", json=operation(), headers=tokens.headers("BE-NCP", "BE", "operations")
    )
    assert response.status_code == 403


async def test_period_ending_before_it_starts_is_422(client: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await client.post(
        "/v1/operations", json=operation(start="2017-12-01", end="2017-11-20"), headers=tokens.admin
    )
    assert response.status_code == 422
    assert "ends (2017-11-20) before it starts (2017-12-01)" in response.json()["detail"]
    await client.post("/v1/operations", json=operation(), headers=tokens.admin)
    patched = await client.patch("/v1/operations/OP-SAHEL", json={"end": "2017-11-01"}, headers=tokens.admin)
    assert patched.status_code == 422
    assert "before it starts" in patched.json()["detail"]


async def test_unknown_countries_are_422(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for bad in (
        operation(countries=["NE", "XX"]),
        operation(countries=["NE", "ne"]),
        operation(recoveries=[{"country": "ZZ", "seized": 1}]),
        operation(recoveries=[{"country": "BE", "seized": 1}]),
        operation(recoveries=[{"country": "NE", "seized": -1}]),
        operation(countries=[]),
    ):
        response = await client.post("/v1/operations", json=bad, headers=tokens.admin)
        assert response.status_code == 422, (bad, response.text)
    response = await client.post(
        "/v1/operations", json=operation(recoveries=[{"country": "BE", "seized": 1}]), headers=tokens.admin
    )
    assert "not taking part: BE" in response.json()["detail"]


async def test_operation_codes_may_not_overlap(client: httpx.AsyncClient, tokens: Tokens) -> None:
    assert (await client.post("/v1/operations", json=operation(), headers=tokens.admin)).status_code == 201
    for code in ("OP-SAHEL", "op-sahel", " Op-Sahel "):
        again = await client.post("/v1/operations", json=operation(code=code), headers=tokens.admin)
        assert again.status_code == 409, again.text
        assert "already exists" in again.json()["detail"]
    renamed = await client.patch("/v1/operations/OP-SAHEL", json={"code": "OP-2"}, headers=tokens.admin)
    assert renamed.status_code == 422
    bad_code = await client.post("/v1/operations", json=operation(code="=cmd|x"), headers=tokens.admin)
    assert bad_code.status_code == 422


async def test_submission_naming_an_unknown_or_closed_operation_is_422(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    unknown = await client.post(
        "/v1/trace-requests", json=submission(operation_code="NO-SUCH-OP"), headers=tokens.investigator
    )
    assert unknown.status_code == 422
    assert "names no known operation" in unknown.json()["detail"]

    lower = await client.post(
        "/v1/trace-requests", json=submission(operation_code="trigger-iii"), headers=tokens.investigator
    )
    assert lower.status_code == 201
    assert lower.json()["operation_code"] == "TRIGGER-III"

    closed = await client.patch("/v1/operations/TRIGGER-III", json={"status": "closed"}, headers=tokens.admin)
    assert closed.status_code == 200
    keyed = {**tokens.investigator, "Idempotency-Key": "refused-then-fixed"}
    refused = await client.post("/v1/trace-requests", json=submission(), headers=keyed)
    assert refused.status_code == 422
    assert "is closed" in refused.json()["detail"]
    without = await client.post("/v1/trace-requests", json=submission(operation_code=None), headers=keyed)
    assert without.status_code == 201  # the refused attempt left nothing behind, not even its key
    listed = (await client.get("/v1/trace-requests", headers=tokens.investigator)).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted([lower.json()["id"], without.json()["id"]])
    feed = (await client.get("/v1/events", headers=tokens.ncp("NE"))).json()["items"]
    assert [item["trace_request_id"] for item in feed] == [lower.json()["id"], without.json()["id"]]


async def test_update_keeps_the_operation_consistent(client: httpx.AsyncClient, tokens: Tokens) -> None:
    created = (await client.post("/v1/operations", json=operation(), headers=tokens.admin)).json()
    url = f"/v1/operations/{created['id']}"
    for patch, words in (
        ({"countries": ["NG"]}, "not taking part: NE"),
        ({"name": None}, "cannot be set to null"),
        ({"status": "finished"}, "status"),
        ({"recoveries": [{"country": "NE", "seized": 1}, {"country": "NE", "found": 1}]}, "more than once"),
    ):
        response = await client.patch(url, json=patch, headers=tokens.admin)
        assert response.status_code == 422, (patch, response.text)
        assert words in response.text, (patch, response.text)
    unchanged = (await client.get(url, headers=tokens.admin)).json()
    assert unchanged == created

    ne_operations = tokens.headers("NE-NCP", "NE", "operations")
    leave = await client.patch(url, json={"countries": ["NG"], "recoveries": []}, headers=ne_operations)
    assert leave.status_code == 422
    assert "could no longer see" in leave.json()["detail"]
    moved = await client.patch(url, json={"countries": ["NG"], "recoveries": []}, headers=tokens.admin)
    assert (moved.status_code, moved.json()["countries"], moved.json()["recovered_total"]) == (200, ["NG"], 0)
