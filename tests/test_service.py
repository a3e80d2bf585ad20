"""Service-level behaviour: startup refuses an unmigrated database, OpenAPI is current, agencies,
request ids and logs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Tokens
from tracing.api.app import DatabaseNotMigrated, create_app
from tracing.cli import OPENAPI_PATH, openapi_document
from tracing.config import Settings


async def test_server_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"))
    with pytest.raises(DatabaseNotMigrated, match="tracing migrate"):
        async with app.router.lifespan_context(app):
            pass


def test_committed_openapi_matches_the_app() -> None:
    assert OPENAPI_PATH.read_text() == openapi_document(), "run `tracing openapi` and commit the result"
    document = json.loads(OPENAPI_PATH.read_text())
    operation_ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))
    assert "answer_trace_request" in operation_ids


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()["database"]) == (200, "ok")


async def test_metrics_count_requests_by_route_template_without_ids(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    await client.get(f"/v1/trace-requests/{submitted['id']}", headers=tokens.investigator)
    await client.get(f"/v1/trace-requests/{uuid.uuid4()}", headers=tokens.investigator)  # 404
    await client.get("/no/such/path/0123456789")
    response = await client.get("/metrics")  # no token needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    requests = families["tracing_http_requests"].samples
    counted = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in requests
        if s.name == "tracing_http_requests_total"
    }
    assert counted[("POST", "/v1/trace-requests", "201")] == 1
    assert counted[("GET", "/v1/trace-requests/{request_id}", "200")] == 1
    assert counted[("GET", "/v1/trace-requests/{request_id}", "404")] == 1
    assert counted[("GET", "unmatched", "404")] == 1
    latency = families["tracing_http_request_duration_seconds"].samples
    assert any(s.name.endswith("_count") and s.labels["route"] == "/v1/trace-requests" for s in latency)
    for private in (submitted["id"], "NE-PJ", "inspector", "0123456789"):
        assert private not in response.text


async def test_one_contact_point_per_country(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    second = {"code": "NE-NCP-2", "name": "another", "country": "NE", "kind": "contact_point"}
    response = await client.post("/v1/agencies", json=second, headers=tokens.admin)
    assert response.status_code == 409
    assert "NE already has" in response.json()["detail"]
    duplicate = {"code": "NE-PJ", "name": "again", "country": "NE", "kind": "investigating_agency"}
    assert (await client.post("/v1/agencies", json=duplicate, headers=tokens.admin)).status_code == 409
    listed = await client.get("/v1/agencies", params={"country": "NE"}, headers=tokens.admin)
    assert [a["code"] for a in listed.json()["items"]] == ["NE-DOUANES", "NE-NCP", "NE-PJ"]
    bad = {"code": "X", "name": "x", "country": "QQ", "kind": "contact_point", "webhook_url": "not a url"}
    problem = (await client.post("/v1/agencies", json=bad, headers=tokens.admin)).json()
    assert {e["field"] for e in problem["errors"]} >= {"body.country", "body.webhook_url", "body.code"}


async def test_request_id_is_echoed_and_logs_hold_no_token(
    client: httpx.AsyncClient, tokens: Tokens, world: None, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {**tokens.investigator, "X-Request-ID": "case-42.retry-1"}
    response = await client.get("/v1/trace-requests", headers=headers)
    assert response.headers["x-request-id"] == "case-42.retry-1"
    invented = await client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert invented.headers["x-request-id"] != "bad id\nwith newline"
    logged = capsys.readouterr().err
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "case-42.retry-1"]
    assert mine and mine[0]["subject"] == "inspector.moussa" and mine[0]["agency"] == "NE-PJ"
    token = tokens.investigator["Authorization"].split()[1]
    assert token not in logged
    assert token.split(".")[2] not in logged


def test_cli_token_prints_a_jwt_the_service_accepts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracing.cli", "token", "--sub", "s", "--agency", "NE-PJ",
         "--country", "NE", "--role", "investigator", "--role", "contact_point", "--ttl", "60"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    token = result.stdout.strip().splitlines()[-1]
    from jose import jwt

    claims = jwt.get_unverified_claims(token)
    assert claims["roles"] == ["investigator", "contact_point"]
    assert claims["exp"] - claims["iat"] == 60


async def test_demo_loads_agencies_and_requests_in_every_state(settings: Settings) -> None:
    from sqlmodel import select

    from tracing.db import create_engine, create_sessionmaker
    from tracing.demo import load_demo
    from tracing.models.trace_request import State, TraceRequest

    assert "demo data loaded" in await load_demo(settings)
    assert "not loaded" in await load_demo(settings)  # a second run changes nothing
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            states = set((await session.execute(select(TraceRequest.state))).scalars())
    finally:
        await engine.dispose()
    assert states == set(State)


async def test_agency_update_refuses_a_null_name(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    response = await client.patch("/v1/agencies/NE-PJ", json={"name": None}, headers=tokens.admin)
    assert response.status_code == 422
    renamed = await client.patch(
        "/v1/agencies/NE-PJ", json={"name": "Police judiciaire"}, headers=tokens.admin
    )
    assert renamed.json()["name"] == "Police judiciaire"
