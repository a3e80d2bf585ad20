"""SDG indicator 16.4.2: numerator, denominator and method, by recovery type, and who may ask."""

from __future__ import annotations

import httpx

from tests.conftest import Tokens
from tests.test_stats import five_requests, operations_of  # noqa: F401 (fixture)

NE_2017 = {"country": "NE", "year": 2017}


async def test_indicator_counts_established_requests_over_recovered_arms(
    client: httpx.AsyncClient,
    tokens: Tokens,
    five_requests: None,  # noqa: F811
) -> None:
    response = await client.get("/v1/stats/sdg-16-4-2", params=NE_2017, headers=operations_of(tokens, "NE"))
    assert response.status_code == 200, response.text
    sdg = response.json()
    # five requests (four seized, one found), one origin_established; TRIGGER-III (started 2017)
    # reported 22 seized in NE, of which four have requests: 18 more seized arms never traced
    assert sdg["by_recovery_type"]["seized"] == {
        "numerator": 1, "denominator": 22, "proportion": 0.0455,
        "trace_requests": 4, "reported_not_traced": 18,
    }  # fmt: skip
    assert sdg["by_recovery_type"]["found"] == {
        "numerator": 0, "denominator": 1, "proportion": 0.0, "trace_requests": 1, "reported_not_traced": 0,
    }  # fmt: skip
    assert sdg["by_recovery_type"]["surrendered"]["denominator"] == 0
    assert sdg["by_recovery_type"]["surrendered"]["proportion"] is None
    assert (sdg["numerator"], sdg["denominator"], sdg["proportion"]) == (1, 23, 0.0435)
    assert sdg["operations"] == ["TRIGGER-III"]
    assert "origin_established or context_established" in sdg["method"]
    assert (sdg["indicator"], sdg["country"], sdg["year"]) == ("SDG 16.4.2", "NE", 2017)

    other_year = await client.get(
        "/v1/stats/sdg-16-4-2", params={"country": "NE", "year": 2018}, headers=tokens.admin
    )
    assert (other_year.json()["denominator"], other_year.json()["operations"]) == (0, [])


async def test_indicator_is_for_own_country_or_operation_partners(
    client: httpx.AsyncClient,
    tokens: Tokens,
    five_requests: None,  # noqa: F811
) -> None:
    async def status(headers: dict, country: str = "NE") -> int:
        params = {"country": country, "year": 2017}
        return (await client.get("/v1/stats/sdg-16-4-2", params=params, headers=headers)).status_code

    assert await status(operations_of(tokens, "NE")) == 200
    assert await status(operations_of(tokens, "NG")) == 200  # fellow TRIGGER-III participant
    assert await status(operations_of(tokens, "FR", agency="INTERPOL")) == 200  # organiser
    assert await status(operations_of(tokens, "BE")) == 403
    assert await status(operations_of(tokens, "BE"), country="BE") == 200
    assert await status(tokens.ncp("NE")) == 403


async def test_indicator_needs_a_country_and_a_plausible_year(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    for params in (
        {"country": "NE"},
        {"year": 2017},
        {"country": "NE", "year": 17},
        {"country": "NE", "year": "x"},
    ):
        response = await client.get("/v1/stats/sdg-16-4-2", params=params, headers=tokens.admin)
        assert response.status_code == 422, params


async def test_indicator_as_csv(client: httpx.AsyncClient, tokens: Tokens, five_requests: None) -> None:  # noqa: F811
    response = await client.get(
        "/v1/stats/sdg-16-4-2", params=NE_2017 | {"format": "csv"}, headers=tokens.admin
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert "total,denominator,,23" in response.text
