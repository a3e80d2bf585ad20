"""Cross-checks of a trace request's markings against registries, on both databases: scheduled on
submit and forward without blocking the 201, run by the runner, shown in GET and in the audit trail;
lost/stolen hits leave a notice; an unreachable registry is `unavailable` and retried later."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tenacity import wait_none

from tests.conftest import Tokens, submission
from tests.registry_helpers import AKM_ROWS, ServerThread, create_registry, csv_text, import_csv
from tracing.api.app import create_app
from tracing.config import Settings
from tracing.markings.adapters import HttpPolicy
from tracing.markings.example_server import DEMO_RECORDS, create_example_app
from tracing.markings.service import CrossCheckRunner

FAST = HttpPolicy(attempts=2, wait=wait_none())


@pytest.fixture(scope="module")
def example_registry() -> Iterator[str]:
    with ServerThread(create_example_app(DEMO_RECORDS)) as server:
        yield server.url


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def submit(client: httpx.AsyncClient, tokens: Tokens, serial: str, **firearm: Any) -> dict[str, Any]:
    overrides = {"firearm__serial_number": serial, "firearm__serial_obliterated": "none"}
    overrides |= {f"firearm__{k}": v for k, v in firearm.items()}
    if "?" in serial:
        overrides["firearm__serial_obliterated"] = "partial"
    response = await client.post(
        "/v1/trace-requests", json=submission(**overrides), headers=tokens.investigator
    )
    assert response.status_code == 201, response.text
    return response.json()


async def national_registry(client: httpx.AsyncClient, tokens: Tokens, **fields: Any) -> None:
    await create_registry(client, tokens, **fields)
    report = (await import_csv(client, tokens, "NG-NFR", csv_text(AKM_ROWS))).json()
    assert report["imported"] == 3


async def cross_checks(client: httpx.AsyncClient, headers: dict, request_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/trace-requests/{request_id}/cross-checks", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_serial_read_with_a_confusion_is_matched_a_moment_after_submission(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await national_registry(client, tokens)
    created = await submit(client, tokens, "LX 1O23")  # letter O for the digit zero
    assert [(c["registry"], c["status"]) for c in created["cross_checks"]] == [("NG-NFR", "pending")]
    read_back = (await client.get(f"/v1/trace-requests/{created['id']}", headers=tokens.investigator)).json()
    assert read_back["cross_checks"] == created["cross_checks"]  # the answer to the POST was no guess
    assert await app.state.cross_checks.run_pending() == 1

    shown = (await client.get(f"/v1/trace-requests/{created['id']}", headers=tokens.investigator)).json()
    check = shown["cross_checks"][0]
    assert (check["status"], check["outcome"], check["trigger"]) == ("completed", "confusable", "submit")
    best = check["matches"][0]
    assert best["record"]["record_id"] == "NG-0001" and best["record"]["serial_number"] == "LX 1023"
    assert (best["match_class"], best["make"], best["model"]) == ("confusable", "same", "same")
    assert 0.8 < best["score"] < 1
    listed = await cross_checks(client, tokens.investigator, created["id"])
    assert listed["make"] == {
        "as_marked": "Izhmash",
        "canonical": "Kalashnikov Concern",
        "country": "RU",
        "known": True,
    }
    assert listed["items"] == shown["cross_checks"]

    audit = (
        await client.get(f"/v1/trace-requests/{created['id']}/audit", headers=tokens.investigator)
    ).json()
    assert [e["action"] for e in audit["entries"]] == ["submit", "cross_check"]
    assert audit["verification"]["valid"] is True
    assert '"outcome":"confusable"' in audit["entries"][1]["canonical"]


async def test_lost_or_stolen_hit_is_highlighted_and_notifies_the_owner(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await create_registry(client, tokens, "NG-LOST", kind="lost_stolen", owner_country="NG")
    await import_csv(
        client, tokens, "NG-LOST", "record_id,serial_number,make,reported\nS-16,LX1023,Izhmash,2016\n"
    )
    await national_registry(client, tokens)
    created = await submit(client, tokens, "LX-1023")
    await app.state.cross_checks.run_pending()
    items = (await cross_checks(client, tokens.investigator, created["id"]))["items"]
    assert [c["registry"] for c in items] == ["NG-LOST", "NG-NFR"]  # the lost/stolen hit first
    lost = items[0]
    assert lost["highlight"] is True and lost["outcome"] == "reported_lost_or_stolen"
    assert lost["matches"][0]["warnings"][0] == "reported lost or stolen"
    assert items[1]["highlight"] is False and items[1]["outcome"] == "exact"

    notices = (await client.get("/v1/registry-notices", headers=tokens.ncp("NG"))).json()["items"]
    assert len(notices) == 1
    assert notices[0]["contact_point"] == "NG-NCP" and notices[0]["trace_request_id"] == created["id"]
    assert notices[0]["content"]["match"]["record"]["record_id"] == "S-16"
    assert (await client.get("/v1/registry-notices", headers=tokens.ncp("RU"))).json()["items"] == []
    assert (await client.get("/v1/registry-notices", headers=tokens.investigator)).status_code == 403

    rerun = await client.post(f"/v1/trace-requests/{created['id']}/cross-checks", headers=tokens.ncp("NE"))
    assert rerun.status_code == 202
    assert {c["status"] for c in rerun.json()["items"]} == {"pending"}
    await app.state.cross_checks.run_pending()
    again = (await client.get("/v1/registry-notices", headers=tokens.admin)).json()["items"]
    assert len(again) == 1  # one notice per request and record, however often it is checked

    # The owner's contact point also hears of it by event feed (and webhook), once, with no possessor.
    feed = (await client.get("/v1/events", headers=tokens.ncp("NG"))).json()["items"]
    hits = [e for e in feed if e["type"] == "crosscheck.hit"]
    assert len(hits) == 1
    assert hits[0]["trace_request_id"] == created["id"]
    assert (hits[0]["data"]["registry"], hits[0]["data"]["match_class"]) == (
        "NG-LOST",
        "reported_lost_or_stolen",
    )
    assert "record" not in hits[0]["data"]
    ru_feed = (await client.get("/v1/events", headers=tokens.ncp("RU"))).json()["items"]
    assert not [e for e in ru_feed if e["type"] == "crosscheck.hit"]


async def test_an_unreachable_registry_is_unavailable_never_a_failed_submission_and_is_retried(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None, example_registry: str
) -> None:
    await create_registry(
        client, tokens, "RU-KC", kind="manufacturer_records", owner_country="RU", adapter="http",
        url=closed_port_url(), timeout_seconds=1,
    )  # fmt: skip
    created = await submit(client, tokens, "LX 1O23")
    runner = CrossCheckRunner(app.state.sessionmaker, retry_base_seconds=0, policy=FAST)
    try:
        assert await runner.run_pending() == 1
        check = (await cross_checks(client, tokens.investigator, created["id"]))["items"][0]
        assert (check["status"], check["attempts"]) == ("unavailable", 1)
        assert "unreachable" in check["detail"] and check["next_attempt_at"] is not None

        patched = await client.patch(
            "/v1/registries/RU-KC", json={"url": example_registry}, headers=tokens.admin
        )
        assert patched.status_code == 200
        assert await runner.run_pending() == 1
    finally:
        await runner.close()
    check = (await cross_checks(client, tokens.investigator, created["id"]))["items"][0]
    assert (check["status"], check["outcome"], check["attempts"]) == ("completed", "confusable", 2)
    assert check["matches"][0]["record"]["record_id"] == "KC-1975-1023"
    audit = (
        await client.get(f"/v1/trace-requests/{created['id']}/audit", headers=tokens.investigator)
    ).json()
    assert [e["action"] for e in audit["entries"]] == ["submit", "cross_check", "cross_check"]


async def test_forward_and_on_demand_checks_are_scheduled_for_parties_only(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await national_registry(client, tokens)
    await create_registry(client, tokens, "OFF", enabled=False)
    created = await submit(
        client, tokens, "AB 5521", make="Glock", model="17", calibre="9x19mm", kind="pistol"
    )
    await app.state.cross_checks.run_pending()
    forwarded = await client.post(
        f"/v1/trace-requests/{created['id']}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
    )
    assert forwarded.status_code == 200
    assert [(c["trigger"], c["status"]) for c in forwarded.json()["cross_checks"]] == [("forward", "pending")]
    await app.state.cross_checks.run_pending()
    items = (await cross_checks(client, tokens.ncp("RU"), created["id"]))["items"]
    assert [(c["registry"], c["trigger"], c["outcome"]) for c in items] == [("NG-NFR", "forward", "exact")]

    for outsider in (tokens.ncp("BJ"), tokens.headers("BJ-PR", "BJ", "investigator")):
        assert (
            await client.get(f"/v1/trace-requests/{created['id']}/cross-checks", headers=outsider)
        ).status_code == 404
        assert (
            await client.post(f"/v1/trace-requests/{created['id']}/cross-checks", headers=outsider)
        ).status_code == 404
    twice = [
        await client.post(f"/v1/trace-requests/{created['id']}/cross-checks", headers=tokens.ncp("RU"))
        for _ in "ab"
    ]
    assert all(r.status_code == 202 for r in twice)
    assert await app.state.cross_checks.run_pending() == 1  # a pending check is not added twice


@pytest.mark.parametrize(
    ("serial", "outcome"),
    [("L? ??2?", "not_searchable"), ("ZZ 9999", "no_match"), ("LX 10?3", "partial"), ("LX 1032", "fuzzy")],
)
async def test_outcomes_of_odd_readings(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None, serial: str, outcome: str
) -> None:
    await national_registry(client, tokens)
    created = await submit(client, tokens, serial)
    await app.state.cross_checks.run_pending()
    check = (await cross_checks(client, tokens.investigator, created["id"]))["items"][0]
    assert (check["status"], check["outcome"]) == ("completed", outcome)
    if outcome == "not_searchable":
        assert "too few" in check["detail"]


async def test_an_unknown_make_is_kept_and_flagged(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await national_registry(client, tokens)
    created = await submit(client, tokens, "LX 1023", make="Acme Backyard Gunworks")
    await app.state.cross_checks.run_pending()
    listed = await cross_checks(client, tokens.investigator, created["id"])
    assert listed["make"]["known"] is False and listed["make"]["as_marked"] == "Acme Backyard Gunworks"
    best = listed["items"][0]["matches"][0]
    assert best["make"] == "unknown" and any("not in the manufacturer table" in w for w in best["warnings"])


async def test_two_runners_never_run_one_check_twice(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await national_registry(client, tokens)
    await create_registry(client, tokens, "NG-LOST", kind="lost_stolen")
    ids = [(await submit(client, tokens, f"LX 10{n}3"))["id"] for n in range(4)]
    first, second = (CrossCheckRunner(app.state.sessionmaker) for _ in range(2))
    try:
        ran = await asyncio.gather(first.run_pending(limit=2), second.run_pending(limit=2))
    finally:
        await first.close()
        await second.close()
    assert sum(ran) == 8
    for request_id in ids:
        audit = (
            await client.get(f"/v1/trace-requests/{request_id}/audit", headers=tokens.investigator)
        ).json()
        assert [e["action"] for e in audit["entries"]].count("cross_check") == 2


async def test_the_background_runner_delivers_results_without_being_asked(
    settings: Settings, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await national_registry(client, tokens)
    background = create_app(settings.model_copy(update={"cross_check_poll_seconds": 0.05}))
    async with background.router.lifespan_context(background):
        transport = httpx.ASGITransport(app=background)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as other:
            created = await submit(other, tokens, "LX 1O23")
            for _ in range(400):  # bounded wait for the runner's next poll
                items = (await cross_checks(other, tokens.investigator, created["id"]))["items"]
                if items[0]["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
    assert items[0]["outcome"] == "confusable"


async def test_demo_data_has_registries_and_a_confusion_that_is_matched(settings: Settings) -> None:
    from sqlmodel import select

    from tracing.db import create_engine, create_sessionmaker
    from tracing.demo import load_demo
    from tracing.markings.demo import CONFUSED_SERIAL
    from tracing.markings.service import latest_for
    from tracing.models.registry import Registry
    from tracing.models.trace_request import TraceRequest

    assert "registries NG-NFR" in await load_demo(settings)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            registries = {r.code: r for r in (await session.execute(select(Registry))).scalars()}
            statement = select(TraceRequest).where(TraceRequest.serial_number == CONFUSED_SERIAL)
            confused = (await session.execute(statement)).scalar_one()
            checks = {c.registry: c for c in (await latest_for(session, [confused.id]))[confused.id]}
    finally:
        await engine.dispose()
    assert registries["NG-NFR"].record_count >= 10_000
    assert registries["NG-LOST"].kind == "lost_stolen" and registries["RU-KC"].adapter == "http"
    assert checks["NG-NFR"].outcome == "confusable"
    assert checks["NG-NFR"].matches[0].record.serial_number == "LX 1023"
    assert checks["RU-KC"].status in ("unavailable", "completed")  # the example server may not be running


@pytest.mark.parametrize(
    ("serial", "status", "outcome"),
    [
        ("🔫💥", 201, "not_searchable"),  # emoji only: nothing readable, kept as marked
        ("L\x07X\x1b1023", 201, "exact"),  # control characters are not part of a serial
        ("LХ 1023 ✓", 201, "exact"),  # Cyrillic Х and a symbol
        ("   LX 1023   ", 201, "exact"),
        ("X" * 200, 422, None),  # longer than a serial field holds
        ("    ", 422, None),  # whitespace only
        ("", 422, None),
    ],
)
async def test_odd_serials_on_submission_give_a_result_or_a_clear_error(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    serial: str,
    status: int,
    outcome: str | None,
) -> None:
    await national_registry(client, tokens)
    body = submission(firearm__serial_number=serial, firearm__serial_obliterated="none")
    response = await client.post("/v1/trace-requests", json=body, headers=tokens.investigator)
    assert response.status_code == status, response.text
    if status != 201:
        assert response.headers["content-type"] == "application/problem+json"
        return
    await app.state.cross_checks.run_pending()
    check = (await cross_checks(client, tokens.investigator, response.json()["id"]))["items"][0]
    assert (check["status"], check["outcome"]) == ("completed", outcome)
