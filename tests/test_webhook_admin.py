"""Registering webhooks: the signing secret shown once, the guard against server-side request
forgery, who sees an agency's deliveries, redelivery, and secrets kept out of logs."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import Tokens
from tests.receiver import Receiver, Reply
from tests.test_webhooks import Clock, forward_new_request, hook, set_webhook, worker_settings
from tracing.api.app import create_app
from tracing.config import Settings
from tracing.notify.addresses import AddressPolicy, refusal
from tracing.notify.delivery import DeliveryWorker


@pytest.fixture
async def production_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update={"env": "production"}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as http:
            yield http


# ---- the secret ---------------------------------------------------------------------------------


async def test_secret_is_shown_once_when_the_webhook_is_first_set(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    created = await client.post(
        "/v1/agencies",
        json={"code": "BE-NCP", "name": "Belgium", "country": "BE", "kind": "contact_point",
              "webhook_url": "http://127.0.0.1:9/hook"},
        headers=tokens.admin,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    secret = created.json()["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    Webhook(secret)  # a valid Standard Webhooks secret

    shown = await client.get("/v1/agencies/BE-NCP", headers=tokens.admin)
    assert "webhook_secret" not in shown.json()
    listed = await client.get("/v1/agencies", headers=tokens.admin)
    assert secret not in listed.text
    renamed = await client.patch("/v1/agencies/BE-NCP", json={"name": "Belgium NCP"}, headers=tokens.admin)
    assert renamed.json()["webhook_secret"] is None

    without = await client.post(
        "/v1/agencies",
        json={"code": "AT-NCP", "name": "Austria", "country": "AT", "kind": "contact_point"},
        headers=tokens.admin,
    )
    assert without.json()["webhook_secret"] is None


async def test_rotated_secret_replaces_the_old_one(
    client: httpx.AsyncClient, tokens: Tokens, world: None, app: FastAPI, settings: Settings
) -> None:
    async with Receiver() as receiver:
        old = await hook(client, tokens, receiver.url)
        rotated = await client.post("/v1/agencies/RU-NCP/webhook-secret", headers=tokens.admin)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["webhook_secret"]
        assert new != old
        await forward_new_request(client, tokens)
        worker = DeliveryWorker(app.state.sessionmaker, worker_settings(settings), sweep=False)
        try:
            await worker.run_once()
        finally:
            await worker.aclose()
        (received,) = receiver.received
        Webhook(new).verify(received.body, received.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(received.body, received.headers)
    assert (await client.post("/v1/agencies/NG-NCP/webhook-secret", headers=tokens.admin)).status_code == 409
    assert (
        await client.post("/v1/agencies/RU-NCP/webhook-secret", headers=tokens.ncp("RU"))
    ).status_code == 403


async def test_removing_the_webhook_removes_its_secret(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    first = await hook(client, tokens, "http://127.0.0.1:9/hook")
    removed = await set_webhook(client, tokens, "RU-NCP", None)
    assert removed.json()["webhook_url"] is None
    second = await hook(client, tokens, "http://127.0.0.1:9/hook")
    assert second != first


async def test_logs_never_contain_webhook_secrets(
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    app: FastAPI,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replies = iter([Reply(status=500), Reply()])
    async with Receiver(lambda _: next(replies)) as receiver:
        secret = await hook(client, tokens, receiver.url)
        await forward_new_request(client, tokens)
        clock = Clock()
        worker = DeliveryWorker(app.state.sessionmaker, worker_settings(settings), clock=clock, sweep=False)
        try:
            await worker.run_once()
            clock.advance(hours=1)
            await worker.run_once()
        finally:
            await worker.aclose()
        assert len(receiver.received) == 2
    logged = capsys.readouterr()
    assert "webhook_attempt" in logged.err
    secret_body = secret.removeprefix("whsec_")
    for text in (logged.out, logged.err):
        assert secret_body not in text
        assert receiver.received[0].headers["webhook-signature"] not in text


# ---- server-side request forgery ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "refused_in_production"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.10", True),
        ("169.254.169.254", True),  # cloud metadata endpoints
        ("100.64.0.1", True),  # shared address space
        ("0.0.0.0", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:10.0.0.1", True),  # IPv4-mapped private
        ("224.0.0.1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
    ],
)
def test_address_policy_refuses_internal_addresses(address: str, refused_in_production: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (refusal(ip, AddressPolicy()) is not None) is refused_in_production
    development = AddressPolicy(allow_loopback=True, allow_http=True)
    assert (refusal(ip, development) is None) is (not refused_in_production or ip.is_loopback)
    allowed = AddressPolicy(allow_private=True, allow_loopback=True)
    assert (refusal(ip, allowed) is None) is not (ip.is_multicast or ip.is_unspecified)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fd00::5]/hook",
    ],
)
async def test_production_refuses_webhooks_to_private_or_loopback_addresses(
    production_client: httpx.AsyncClient, tokens: Tokens, url: str
) -> None:
    created = await production_client.post(
        "/v1/agencies",
        json={"code": "RU-NCP", "name": "RU", "country": "RU", "kind": "contact_point", "webhook_url": url},
        headers=tokens.admin,
    )
    assert created.status_code == 422, created.text
    assert created.headers["content-type"].startswith("application/problem+json")
    assert "address" in created.json()["detail"] or "https" in created.json()["detail"]


async def test_production_requires_https(production_client: httpx.AsyncClient, tokens: Tokens) -> None:
    created = await production_client.post(
        "/v1/agencies",
        json={"code": "RU-NCP", "name": "RU", "country": "RU", "kind": "contact_point",
              "webhook_url": "http://8.8.8.8/hook"},
        headers=tokens.admin,
    )  # fmt: skip
    assert created.status_code == 422
    assert "https" in created.json()["detail"]


async def test_private_addresses_can_be_allowed_explicitly(settings: Settings, tokens: Tokens) -> None:
    allowed = settings.model_copy(
        update={"env": "production", "webhook_allow_private_addresses": True, "webhook_allow_http": True}
    )
    application = create_app(allowed)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as http:
            created = await http.post(
                "/v1/agencies",
                json={"code": "RU-NCP", "name": "RU", "country": "RU", "kind": "contact_point",
                      "webhook_url": "http://10.0.0.5/hook"},
                headers=tokens.admin,
            )  # fmt: skip
    assert created.status_code == 201, created.text


async def test_worker_in_production_refuses_a_stored_loopback_url_without_connecting(
    client: httpx.AsyncClient, tokens: Tokens, world: None, app: FastAPI, settings: Settings
) -> None:
    async with Receiver() as receiver:
        await hook(client, tokens, receiver.url)  # accepted in development
        await forward_new_request(client, tokens)
        production = worker_settings(settings, env="production", webhook_allow_http=True)
        worker = DeliveryWorker(app.state.sessionmaker, production, sweep=False)
        try:
            await worker.run_once()
        finally:
            await worker.aclose()
        assert receiver.received == []
    (delivery,) = (await client.get("/v1/agencies/RU-NCP/deliveries", headers=tokens.admin)).json()["items"]
    assert delivery["status"] == "failed"
    assert "loopback" in delivery["last_error"]


async def test_webhook_urls_must_be_http_urls(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    for url in ("ftp://127.0.0.1/x", "not a url", "http://user:pw@127.0.0.1/x", "file:///etc/passwd"):
        response = await set_webhook(client, tokens, "RU-NCP", url)
        assert response.status_code == 422, (url, response.text)


# ---- who sees deliveries, and redelivery ------------------------------------------------------------


async def test_deliveries_are_shown_to_admins_and_the_agencys_own_users(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    await hook(client, tokens, "http://127.0.0.1:9/hook")
    await forward_new_request(client, tokens)
    path = "/v1/agencies/RU-NCP/deliveries"
    assert len((await client.get(path, headers=tokens.admin)).json()["items"]) == 1
    own = await client.get(path, headers=tokens.ncp("RU"))
    assert own.status_code == 200 and len(own.json()["items"]) == 1
    for outsider in (tokens.ncp("NE"), tokens.investigator, tokens.headers("RU-NCP", "RU", "operations")):
        assert (await client.get(path, headers=outsider)).status_code == 403
    assert (await client.get(path)).status_code == 401
    assert (await client.get("/v1/agencies/XX-NONE/deliveries", headers=tokens.admin)).status_code == 404
    assert (await client.get(f"{path}?status=bogus", headers=tokens.admin)).status_code == 422
    assert (await client.get(f"{path}?cursor=bogus", headers=tokens.admin)).status_code == 422
    other = "/v1/agencies/RU-NCP/deliveries/00000000-0000-0000-0000-000000000000"
    assert (await client.get(other, headers=tokens.ncp("RU"))).status_code == 404


async def test_failed_delivery_can_be_redelivered_with_the_same_event_id(
    client: httpx.AsyncClient, tokens: Tokens, world: None, app: FastAPI, settings: Settings
) -> None:
    clock = Clock()
    short = worker_settings(settings, webhook_retry_hours=1)
    worker = DeliveryWorker(app.state.sessionmaker, short, clock=clock, sweep=False)
    replies = iter([Reply(status=503)] * 2 + [Reply()])
    try:
        async with Receiver(lambda _: next(replies)) as receiver:
            await hook(client, tokens, receiver.url)
            await forward_new_request(client, tokens)
            await worker.run_once()
            clock.advance(hours=2)
            await worker.run_once()
            path = "/v1/agencies/RU-NCP/deliveries"
            (failed,) = (await client.get(f"{path}?status=failed", headers=tokens.ncp("RU"))).json()["items"]
            assert failed["attempts"] == 2

            redelivered = await client.post(f"{path}/{failed['id']}/redeliver", headers=tokens.ncp("RU"))
            assert redelivered.status_code == 200, redelivered.text
            assert (redelivered.json()["status"], redelivered.json()["retry_until"]) == ("pending", None)
            clock.offset = clock.offset.__class__()  # redelivery is due at once, by the wall clock
            assert await worker.run_once() == 1
            ids = {r.headers["webhook-id"] for r in receiver.received}
            assert len(receiver.received) == 3 and ids == {failed["event_id"]}
            again = await client.post(f"{path}/{failed['id']}/redeliver", headers=tokens.ncp("RU"))
            assert again.status_code == 409  # delivered now
            outsider = await client.post(f"{path}/{failed['id']}/redeliver", headers=tokens.ncp("NE"))
            assert outsider.status_code == 403
    finally:
        await worker.aclose()


async def test_deliveries_page_newest_first(client: httpx.AsyncClient, tokens: Tokens, world: None) -> None:
    await hook(client, tokens, "http://127.0.0.1:9/hook")
    for number in range(3):
        await forward_new_request(client, tokens, case_reference=f"NE/{number}")
    seen, cursor = [], None
    for _ in range(4):
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get("/v1/agencies/RU-NCP/deliveries", params=params, headers=tokens.admin)
        ).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3
