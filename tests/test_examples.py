"""The example clients in examples/ work against the service: the feed follower answers what is
forwarded to it, and the webhook receiver verifies signatures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI

from examples.ncp_follow import follow
from examples.webhook_receiver import make_handler
from tests.conftest import Tokens
from tests.test_webhooks import forward_new_request, hook, worker_settings
from tracing.config import Settings
from tracing.models.types import utcnow
from tracing.notify.delivery import DeliveryWorker, signed_headers


async def test_feed_follower_acknowledges_and_answers_forwarded_requests(
    app: FastAPI, tokens: Tokens, world: None, client: httpx.AsyncClient
) -> None:
    traced = await forward_new_request(client, tokens)
    unknown = await forward_new_request(
        client,
        tokens,
        case_reference="NE/2",
        firearm__serial_number="ZZ 999",
        firearm__serial_obliterated="none",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://tracing.test", headers=tokens.ncp("RU")
    ) as ru:
        cursor = await follow(
            ru, cursor=None, records={"LX 10?3": "Exported to NG in 2009."}, once=True, wait_seconds=0
        )
        assert cursor is not None
        again = await follow(ru, cursor=cursor, records={}, once=True, wait_seconds=0)
        assert again == cursor  # nothing new, nothing done twice

    for request_id, outcome in ((traced, "traced"), (unknown, "not_traced")):
        request = (await client.get(f"/v1/trace-requests/{request_id}", headers=tokens.ncp("NE"))).json()
        assert (request["state"], request["outcome"]) == ("answered", outcome)
        assert request["acknowledged_at"] is not None


@pytest.fixture
def example_receiver(tokens: Tokens) -> Iterator[tuple[ThreadingHTTPServer, set[str], list[str]]]:
    secret_box: list[str] = []
    seen: set[str] = set()

    # The secret is known only once the URL (and so the port) is registered: look it up per request.
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: make_handler(secret_box[0], seen)(*a))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, seen, secret_box
    finally:
        server.shutdown()
        server.server_close()


async def test_example_webhook_receiver_accepts_signed_posts_and_refuses_forged_ones(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    settings: Settings,
    example_receiver: tuple[ThreadingHTTPServer, set[str], list[str]],
) -> None:
    server, seen, secret_box = example_receiver
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    secret_box.append(await hook(client, tokens, url))
    await forward_new_request(client, tokens)
    worker = DeliveryWorker(app.state.sessionmaker, worker_settings(settings), sweep=False)
    try:
        await worker.run_once()
    finally:
        await worker.aclose()
    (delivery,) = (await client.get("/v1/agencies/RU-NCP/deliveries", headers=tokens.admin)).json()["items"]
    assert (delivery["status"], delivery["last_status_code"]) == ("delivered", 204)
    assert seen == {delivery["event_id"]}

    body = '{"id":"forged","type":"request.forwarded","data":{}}'
    forged = signed_headers("whsec_" + "A" * 44, delivery["event_id"], body, utcnow())  # wrong secret
    async with httpx.AsyncClient() as http:
        response = await http.post(url, content=body, headers=forged)
        stale = signed_headers(secret_box[0], delivery["event_id"], body, utcnow().replace(year=2020))
        too_old = await http.post(url, content=body, headers=stale)
    assert (response.status_code, too_old.status_code) == (401, 401)
