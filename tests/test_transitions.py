"""Moves through the HTTP API: illegal ones are 409 naming the state, stale ETags are 412,
and a refused move writes nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tokens


def url(request: dict[str, Any], action: str = "") -> str:
    return f"/v1/trace-requests/{request['id']}" + (f"/{action}" if action else "")


async def _exchanges(client: httpx.AsyncClient, tokens: Tokens, request: dict) -> list[str]:
    response = await client.get(url(request, "exchanges"), headers=tokens.investigator)
    return [e["action"] for e in response.json()["items"]]


async def test_answering_a_submitted_request_is_409_with_the_state(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    response = await client.post(
        url(submitted, "answer"), json={"outcome": "traced", "findings": "x"}, headers=tokens.ncp("NE")
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["state"] == "submitted"
    assert "submitted" in problem["detail"]
    assert await _exchanges(client, tokens, submitted) == ["submit"]


async def test_closing_a_closed_request_is_409(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    first = await client.post(
        url(submitted, "close"), json={"resolution": "withdrawn"}, headers=tokens.investigator
    )
    assert (first.status_code, first.json()["state"], first.json()["resolution"]) == (
        200,
        "closed",
        "withdrawn",
    )
    again = await client.post(
        url(submitted, "close"), json={"resolution": "withdrawn"}, headers=tokens.investigator
    )
    assert again.status_code == 409
    assert again.json()["state"] == "closed"


async def test_forwarding_to_own_country_is_409(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    response = await client.post(
        url(submitted, "forward"), json={"to_country": "NE"}, headers=tokens.ncp("NE")
    )
    assert response.status_code == 409
    assert "own country" in response.json()["detail"]
    fetched = await client.get(url(submitted), headers=tokens.investigator)
    assert (fetched.json()["state"], fetched.json()["version"]) == ("submitted", 1)


async def test_forwarding_to_a_country_without_contact_point_is_422(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    response = await client.post(
        url(submitted, "forward"), json={"to_country": "FR"}, headers=tokens.ncp("NE")
    )
    assert response.status_code == 422
    assert "FR" in response.json()["detail"]


async def test_forwarding_to_an_unknown_country_code_is_422(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    response = await client.post(
        url(submitted, "forward"), json={"to_country": "QQ"}, headers=tokens.ncp("NE")
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.to_country"


async def test_only_the_holder_may_answer(client: httpx.AsyncClient, tokens: Tokens, submitted: dict) -> None:
    await client.post(url(submitted, "forward"), json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    answer = {"outcome": "traced", "findings": "x"}
    by_requester = await client.post(url(submitted, "answer"), json=answer, headers=tokens.ncp("NE"))
    assert by_requester.status_code == 409
    assert "held by RU" in by_requester.json()["detail"]
    by_investigator = await client.post(url(submitted, "answer"), json=answer, headers=tokens.investigator)
    assert by_investigator.status_code == 403


async def test_acknowledging_twice_is_409(client: httpx.AsyncClient, tokens: Tokens, submitted: dict) -> None:
    await client.post(url(submitted, "forward"), json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    first = await client.post(url(submitted, "acknowledge"), json={}, headers=tokens.ncp("RU"))
    assert first.status_code == 200
    assert first.json()["acknowledged_at"] is not None
    assert (first.json()["state"], first.json()["version"]) == ("forwarded", 3)
    second = await client.post(url(submitted, "acknowledge"), json={}, headers=tokens.ncp("RU"))
    assert second.status_code == 409


async def test_answered_request_cannot_be_withdrawn_but_can_be_closed(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    await client.post(url(submitted, "forward"), json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    answer = {"outcome": "not_traced", "reason": "no_record"}
    assert (
        await client.post(url(submitted, "answer"), json=answer, headers=tokens.ncp("RU"))
    ).status_code == 200
    withdraw = await client.post(
        url(submitted, "close"), json={"resolution": "withdrawn"}, headers=tokens.ncp("NE")
    )
    assert withdraw.status_code == 409
    by_holder_country = await client.post(
        url(submitted, "close"), json={"resolution": "not_established"}, headers=tokens.ncp("RU")
    )
    assert by_holder_country.status_code == 403
    close = await client.post(
        url(submitted, "close"), json={"resolution": "not_established"}, headers=tokens.ncp("NE")
    )
    assert close.status_code == 200


async def test_answer_body_must_fit_the_outcome(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    await client.post(url(submitted, "forward"), json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    for body in (
        {"outcome": "not_traced"},
        {"outcome": "not_traced", "reason": "bored"},
        {"outcome": "declined"},
        {"outcome": "traced"},
        {"outcome": "lost"},
    ):
        response = await client.post(url(submitted, "answer"), json=body, headers=tokens.ncp("RU"))
        assert response.status_code == 422, body
    fetched = await client.get(url(submitted), headers=tokens.ncp("RU"))
    assert fetched.json()["state"] == "forwarded"


async def test_stale_if_match_is_412_and_current_one_succeeds(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    fetched = await client.get(url(submitted), headers=tokens.ncp("NE"))
    etag = fetched.headers["etag"]
    assert etag == '"1"'
    forward = await client.post(
        url(submitted, "forward"), json={"to_country": "RU"}, headers={**tokens.ncp("NE"), "If-Match": etag}
    )
    assert forward.status_code == 200
    assert forward.headers["etag"] == '"2"'
    stale = await client.post(
        url(submitted, "close"),
        json={"resolution": "withdrawn"},
        headers={**tokens.investigator, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert (await client.get(url(submitted), headers=tokens.investigator)).json()["state"] == "forwarded"


async def test_answer_after_reforward_goes_back_to_requester_and_keeps_parties(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    await client.post(url(submitted, "forward"), json={"to_country": "RU"}, headers=tokens.ncp("NE"))
    onward = await client.post(url(submitted, "forward"), json={"to_country": "NG"}, headers=tokens.ncp("RU"))
    assert (onward.status_code, onward.json()["holder_country"]) == (200, "NG")
    assert onward.json()["acknowledged_at"] is None
    answered = await client.post(
        url(submitted, "answer"),
        json={"outcome": "declined", "reason": "sub judice"},
        headers=tokens.ncp("NG"),
    )
    assert answered.json()["holder_country"] == "NE"
    assert answered.json()["parties"] == ["NE", "NG", "RU"]
    # RU passed it on but still sees it; it may no longer act on it.
    ru_view = await client.get(url(submitted), headers=tokens.ncp("RU"))
    assert ru_view.status_code == 200
    again = await client.post(url(submitted, "forward"), json={"to_country": "BJ"}, headers=tokens.ncp("RU"))
    assert again.status_code == 409
