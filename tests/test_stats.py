"""Statistics over trace requests: counts, waiting times, weekly series, scopes, filters, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Tokens, submission
from tracing.models.exchange import Action
from tracing.models.trace_request import AnswerBody, CloseBody, ForwardBody, TraceRequestCreate
from tracing.security import Principal, Role
from tracing.workflow import service

INVESTIGATOR = Principal("inspector.moussa", "NE-PJ", "NE", frozenset({Role.investigator}))
T0 = dt.datetime(2017, 11, 21, 8, 0, tzinfo=dt.UTC)


def ncp(country: str) -> Principal:
    return Principal(f"officer@{country}", f"{country}-NCP", country, frozenset({Role.contact_point}))


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


TRACED = AnswerBody(outcome="traced", findings="state armoury, lost 2016")
NOT_TRACED = AnswerBody(outcome="not_traced", reason="no_record")


async def replay(app: FastAPI, submitted_at: dt.datetime, moves: list[tuple], **overrides: Any) -> None:
    """Submit one request at `submitted_at` and apply (hours later, actor, action, body) moves."""
    body = TraceRequestCreate.model_validate(submission(**overrides))
    async with app.state.sessionmaker() as session:
        request = (
            await service.submit(
                session=session, principal=INVESTIGATOR, body=body, idempotency_key=None, now=submitted_at
            )
        ).request
        for later, actor, action, move in moves:
            await service.apply(
                session=session,
                principal=actor,
                request_id=request.id,
                action=action,
                body=move,
                now=submitted_at + hours(later),
            )


@pytest.fixture
async def five_requests(app: FastAPI, world: None) -> None:
    """Two closed after answers, one forwarded to NG unanswered, one urgent never forwarded, one
    withdrawn; first forwards after 10, 20 and 30 hours; answers 48 and 100 hours after forward."""
    ne, ru = ncp("NE"), ncp("RU")
    await replay(app, T0, [
        (10, ne, Action.forward, ForwardBody(to_country="RU")),
        (34, ru, Action.acknowledge, None),
        (58, ru, Action.answer, TRACED),
        (70, INVESTIGATOR, Action.close, CloseBody(resolution="origin_established")),
    ])  # fmt: skip
    await replay(app, T0 + dt.timedelta(days=1), [
        (20, ne, Action.forward, ForwardBody(to_country="RU")),
        (120, ru, Action.answer, NOT_TRACED),
        (130, ne, Action.close, CloseBody(resolution="not_established")),
    ], firearm__serial_number="LX 2201", firearm__serial_obliterated="none")  # fmt: skip
    await replay(app, T0 + dt.timedelta(days=7), [
        (30, ne, Action.forward, ForwardBody(to_country="NG")),
    ], requested_country="NG", seizure__recovery_type="found")  # fmt: skip
    await replay(app, T0 + dt.timedelta(days=8), [], priority="urgent", priority_justification="armed gang")
    await replay(app, T0 + dt.timedelta(days=14), [
        (1, INVESTIGATOR, Action.close, CloseBody(resolution="withdrawn")),
    ])  # fmt: skip


def operations_of(tokens: Tokens, country: str, agency: str | None = None) -> dict:
    return tokens.headers(agency or f"{country}-STATS", country, "operations")


async def test_empty_database_gives_zeros_not_errors(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for headers in (tokens.admin, operations_of(tokens, "NE")):
        response = await client.get("/v1/stats", headers=headers)
        assert response.status_code == 200, response.text
        stats = response.json()
        assert stats["total_requests"] == 0
        assert stats["by_state"] == {"submitted": 0, "forwarded": 0, "answered": 0, "closed": 0}
        assert set(stats["by_outcome"].values()) == set(stats["by_resolution"].values()) == {0}
        assert (stats["response_rate"], stats["overdue"], stats["weekly"]) == (None, 0, [])
        assert stats["time_to_answer_hours"] == {"count": 0, "median": None, "p90": None}
        assert stats["requested_countries"] == [] and stats["by_requested_country"] == {}
    csv_response = await client.get("/v1/stats", params={"format": "csv"}, headers=tokens.admin)
    assert csv_response.status_code == 200
    assert ["total", "total_requests", "", "0"] in list(csv.reader(io.StringIO(csv_response.text)))
    sdg = await client.get(
        "/v1/stats/sdg-16-4-2", params={"country": "NE", "year": 2017}, headers=tokens.admin
    )
    assert sdg.status_code == 200, sdg.text
    assert (sdg.json()["numerator"], sdg.json()["denominator"], sdg.json()["proportion"]) == (0, 0, None)


async def test_counts_rates_and_waiting_times(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    stats = (await client.get("/v1/stats", headers=tokens.admin)).json()
    assert stats["total_requests"] == 5
    assert stats["by_state"] == {"submitted": 1, "forwarded": 1, "answered": 0, "closed": 3}
    assert stats["by_outcome"] == {"traced": 1, "partially_traced": 0, "not_traced": 1, "declined": 0}
    assert stats["by_resolution"] == {
        "origin_established": 1, "context_established": 0, "not_established": 1, "withdrawn": 1,
    }  # fmt: skip
    assert stats["by_priority"] == {"routine": 4, "urgent": 1}
    assert stats["by_requested_country"] == {"RU": 4, "NG": 1}
    assert (stats["forwarded"], stats["answered"], stats["response_rate"]) == (3, 2, 0.6667)
    # type 7 (percentile_cont) over [10, 20, 30] and [48, 100] hours
    assert stats["time_to_first_forward_hours"] == {"count": 3, "median": 20.0, "p90": 28.0}
    assert stats["time_to_acknowledge_hours"] == {"count": 1, "median": 24.0, "p90": 24.0}
    assert stats["time_to_answer_hours"] == {"count": 2, "median": 74.0, "p90": 94.8}
    assert stats["requested_countries"] == [
        {"country": "RU", "requests": 4, "forwarded": 2, "answered": 2, "response_rate": 1.0,
         "median_answer_hours": 74.0},
        {"country": "NG", "requests": 1, "forwarded": 1, "answered": 0, "response_rate": 0.0,
         "median_answer_hours": None},
    ]  # fmt: skip
    assert [(w["week"], w["submitted"], w["by_state"]["closed"]) for w in stats["weekly"]] == [
        ("2017-11-20", 2, 2), ("2017-11-27", 2, 0), ("2017-12-04", 1, 1),
    ]  # fmt: skip
    assert stats["overdue"] == 1  # the request forwarded to NG in 2017 is long past its due dates
    assert stats["scope"]["party_country"] is None


async def test_first_forward_is_kept_when_a_request_is_forwarded_onward(
    client: httpx.AsyncClient, tokens: Tokens, app: FastAPI, world: None
) -> None:
    ne, ru = ncp("NE"), ncp("RU")
    partial = AnswerBody(outcome="partially_traced", findings="exported to NG", suggest_forward_to="NG")
    await replay(app, T0, [
        (5, ne, Action.forward, ForwardBody(to_country="RU")),
        (50, ru, Action.answer, partial),
        (60, ne, Action.forward, ForwardBody(to_country="NG")),
    ])  # fmt: skip
    stats = (await client.get("/v1/stats", headers=tokens.admin)).json()
    assert stats["time_to_first_forward_hours"]["median"] == 5.0
    # the latest forward (to NG) is not answered yet: no answer time counts
    assert stats["time_to_answer_hours"]["count"] == 0
    assert (stats["forwarded"], stats["answered"]) == (1, 1)


async def test_filters_narrow_the_figures(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    async def total(**params: Any) -> int:
        response = await client.get("/v1/stats", params=params, headers=tokens.admin)
        assert response.status_code == 200, response.text
        return response.json()["total_requests"]

    assert await total(**{"from": "2017-11-28", "to": "2017-11-30"}) == 2
    assert await total(**{"from": "2017-11-21", "to": "2017-11-21"}) == 1
    assert await total(requested_country="ng") == 1
    assert await total(requesting_country="NE", requested_country="RU") == 4
    assert await total(requesting_country="BJ") == 0
    assert await total(operation="trigger-iii") == 5
    operation = await client.get(
        "/v1/operations/TRIGGER-III/stats", params={"from": "2017-12-01"}, headers=tokens.admin
    )
    assert operation.json()["total_requests"] == 1
    assert operation.json()["operation"]["recovered"] == {
        "seized": 22,
        "found": 0,
        "surrendered": 0,
        "total": 22,
    }


async def test_period_ending_before_it_starts_is_422(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for path in ("/v1/stats", "/v1/operations/TRIGGER-III/stats"):
        response = await client.get(
            path, params={"from": "2017-12-01", "to": "2017-11-01"}, headers=tokens.admin
        )
        assert response.status_code in (422, 404), response.text
    response = await client.get(
        "/v1/stats", params={"from": "2017-12-01", "to": "2017-11-01"}, headers=tokens.admin
    )
    assert response.status_code == 422
    assert "before it starts" in response.json()["detail"]
    assert (
        await client.get("/v1/stats", params={"from": "2017-13-01"}, headers=tokens.admin)
    ).status_code == 422


async def test_unknown_countries_are_422(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for params in ({"requested_country": "XX"}, {"requesting_country": "Niger"}):
        response = await client.get("/v1/stats", params=params, headers=tokens.admin)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
    sdg = await client.get(
        "/v1/stats/sdg-16-4-2", params={"country": "QQ", "year": 2017}, headers=tokens.admin
    )
    assert sdg.status_code == 422


async def test_operations_staff_see_their_own_countrys_requests(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    async def seen(headers: dict, **params: Any) -> int:
        response = await client.get("/v1/stats", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["total_requests"]

    assert await seen(operations_of(tokens, "NE")) == 5
    assert await seen(operations_of(tokens, "RU")) == 2  # forwarded to RU
    assert await seen(operations_of(tokens, "BE")) == 0
    # TRIGGER-III participants and organisers see every request of the operation
    assert await seen(operations_of(tokens, "NG"), operation="TRIGGER-III") == 5
    assert await seen(operations_of(tokens, "FR", agency="INTERPOL"), operation="TRIGGER-III") == 5
    scope = (await client.get("/v1/stats", headers=operations_of(tokens, "RU"))).json()["scope"]
    assert scope["party_country"] == "RU"


async def test_stats_of_an_operation_the_caller_may_not_see_are_404(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    outsider = operations_of(tokens, "RU")
    for path, params in (
        ("/v1/operations/TRIGGER-III/stats", {}),
        ("/v1/stats", {"operation": "TRIGGER-III"}),
        ("/v1/stats", {"operation": "NO-SUCH-OP"}),
    ):
        response = await client.get(path, params=params, headers=outsider)
        assert response.status_code == 404, (path, response.text)
        assert "TRIGGER-III" in response.json()["detail"] or "NO-SUCH-OP" in response.json()["detail"]


async def test_statistics_need_the_operations_or_admin_role(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    for headers in (tokens.investigator, tokens.ncp("NE"), tokens.headers("NE-AUD", "NE", "auditor")):
        for path in (
            "/v1/stats",
            "/v1/operations/TRIGGER-III/stats",
            "/v1/stats/sdg-16-4-2?country=NE&year=2017",
        ):
            assert (await client.get(path, headers=headers)).status_code == 403, path
    assert (await client.get("/v1/stats")).status_code == 401


async def test_statistics_never_carry_case_or_firearm_details(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    for path in ("/v1/stats", "/v1/operations/TRIGGER-III/stats"):
        text = (await client.get(path, headers=operations_of(tokens, "NE"))).text
        for detail in ("LX 10", "Izhmash", "NE/2017", "inspector.moussa", "Niamey", "armoury"):
            assert detail not in text, (path, detail)


async def test_csv_export_by_accept_header_or_format(
    client: httpx.AsyncClient, tokens: Tokens, five_requests: None
) -> None:
    by_accept = await client.get(
        "/v1/operations/TRIGGER-III/stats", headers=tokens.admin | {"Accept": "text/csv"}
    )
    by_param = await client.get("/v1/operations/TRIGGER-III/stats?format=csv", headers=tokens.admin)
    assert by_accept.status_code == by_param.status_code == 200
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert "operation-TRIGGER-III.csv" in by_accept.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(by_param.text)))
    assert rows[0] == ["section", "key", "metric", "value"]
    assert ["by_state", "closed", "requests", "3"] in rows
    assert ["requested_country", "RU", "median_answer_hours", "74.0"] in rows
    assert ["week", "2017-11-20", "submitted", "2"] in rows
    assert ["operation", "name", "", "Operation TRIGGER III"] in rows
    as_json = await client.get("/v1/stats", headers=tokens.admin | {"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"
    assert (await client.get("/v1/stats?format=xml", headers=tokens.admin)).status_code == 422


async def test_csv_escapes_names_a_spreadsheet_would_run_as_formulas(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    names = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t =1+1"]
    for number, name in enumerate(names):
        body = {
            "code": f"OP-{number}",
            "name": name,
            "start": "2017-01-01",
            "end": "2017-01-02",
            "countries": ["NE"],
        }
        created = await client.post("/v1/operations", json=body, headers=tokens.admin)
        assert created.status_code == 201, created.text
        exported = await client.get(f"/v1/operations/OP-{number}/stats?format=csv", headers=tokens.admin)
        cell = next(
            row[3] for row in csv.reader(io.StringIO(exported.text)) if row[:2] == ["operation", "name"]
        )
        assert cell.startswith("'"), (name, cell)
        assert cell[1:] == created.json()["name"]  # names are stored stripped: "=1+1" for the last
