"""Webhook delivery against real HTTP receivers on 127.0.0.1: signing, retries with backoff, and
the faults a receiver can throw at us (down, slow, 500, 410, redirect, huge answer)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import TEST_SIGNING_KEY, Tokens, submission
from tests.receiver import Receiver, Reply, free_port_with_nothing_listening
from tracing.audit.bundle import verify_bundle
from tracing.audit.signing import Signer
from tracing.config import Settings
from tracing.models.types import utcnow
from tracing.notify.delivery import DeliveryWorker, retry_delay


class Clock:
    """The wall clock plus an offset that tests move forward (no waiting for hours)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


def worker_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"webhook_timeout_seconds": 1.0, "webhook_connect_timeout_seconds": 1.0, **overrides}
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def worker(app: FastAPI, settings: Settings, clock: Clock) -> AsyncIterator[DeliveryWorker]:
    delivery_worker = DeliveryWorker(
        app.state.sessionmaker, worker_settings(settings), clock=clock, sweep=False
    )
    yield delivery_worker
    await delivery_worker.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


async def set_webhook(
    client: httpx.AsyncClient, tokens: Tokens, agency: str, url: str | None
) -> httpx.Response:
    return await client.patch(f"/v1/agencies/{agency}", json={"webhook_url": url}, headers=tokens.admin)


async def hook(client: httpx.AsyncClient, tokens: Tokens, url: str, agency: str = "RU-NCP") -> str:
    response = await set_webhook(client, tokens, agency, url)
    assert response.status_code == 200, response.text
    secret = response.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    return secret


async def forward_new_request(
    client: httpx.AsyncClient, tokens: Tokens, to: str = "RU", **overrides: Any
) -> str:
    created = await client.post(
        "/v1/trace-requests", json=submission(**overrides), headers=tokens.investigator
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    forwarded = await client.post(
        f"/v1/trace-requests/{request_id}/forward", json={"to_country": to}, headers=tokens.ncp("NE")
    )
    assert forwarded.status_code == 200, forwarded.text
    return request_id


async def deliveries(client: httpx.AsyncClient, tokens: Tokens, agency: str = "RU-NCP") -> list[dict]:
    response = await client.get(f"/v1/agencies/{agency}/deliveries", headers=tokens.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def delivery_detail(client: httpx.AsyncClient, tokens: Tokens, delivery_id: str) -> dict:
    response = await client.get(f"/v1/agencies/RU-NCP/deliveries/{delivery_id}", headers=tokens.admin)
    assert response.status_code == 200, response.text
    return response.json()


# ---- the happy path and the signature ----------------------------------------------------------


async def test_forwarded_request_reaches_the_new_holder_signed(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, receiver: Receiver
) -> None:
    secret = await hook(client, tokens, receiver.url)
    request_id = await forward_new_request(client, tokens)
    assert receiver.received == []  # nothing is sent from the request handler...
    assert await worker.run_once() == 1  # ...only by the worker, after the commit

    (received,) = receiver.received
    payload = Webhook(secret).verify(received.body, received.headers)
    assert payload["type"] == "request.forwarded"
    assert payload["trace_request_id"] == request_id
    assert payload["id"] == received.headers["webhook-id"]
    assert payload["data"]["holder_country"] == "RU"
    assert received.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(received.body.replace(b"RU", b"NG"), received.headers)

    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 1, 200)
    assert delivery["event_id"] == payload["id"]
    detail = await delivery_detail(client, tokens, delivery["id"])
    assert [(a["number"], a["status_code"], a["error"]) for a in detail["attempt_log"]] == [(1, 200, None)]
    assert await worker.run_once() == 0  # delivered once, not again


async def test_a_submission_reaches_the_requesting_contact_points_webhook_with_its_reference(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, receiver: Receiver
) -> None:
    secret = await hook(client, tokens, receiver.url, agency="NE-NCP")
    await hook(client, tokens, receiver.url, agency="BJ-NCP")  # another country's: not a recipient
    created = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    assert created.status_code == 201, created.text
    assert await worker.run_once() == 1

    (received,) = receiver.received
    payload = Webhook(secret).verify(received.body, received.headers)
    assert (payload["type"], payload["trace_request_id"]) == ("request.submitted", created.json()["id"])
    assert payload["data"]["reference"] == created.json()["reference"]
    assert (payload["data"]["state"], payload["data"]["requesting_country"]) == ("submitted", "NE")
    assert await deliveries(client, tokens, "BJ-NCP") == []


async def test_agencies_without_a_webhook_get_no_deliveries(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    await forward_new_request(client, tokens)
    assert await worker.run_once() == 0
    assert await deliveries(client, tokens) == []


# ---- faults ---------------------------------------------------------------------------------------


async def test_receiver_down_is_retried_with_backoff_then_failed_after_the_retry_window(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, clock: Clock
) -> None:
    port = await free_port_with_nothing_listening()
    await hook(client, tokens, f"http://127.0.0.1:{port}/hook")
    await forward_new_request(client, tokens)
    await worker.run_once()
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] == "could not connect to the receiver"
    (attempt,) = (await delivery_detail(client, tokens, delivery["id"]))["attempt_log"]
    first_retry = dt.datetime.fromisoformat(delivery["next_attempt_at"]) - dt.datetime.fromisoformat(
        attempt["at"]
    )
    assert first_retry >= dt.timedelta(seconds=2)  # half of the first backoff step at least

    assert await worker.run_once() == 0  # not due again yet
    for _ in range(60):  # an hour at a time, through the 24-hour retry window
        clock.advance(hours=1)
        await worker.run_once()
        (delivery,) = await deliveries(client, tokens)
        if delivery["status"] != "pending":
            break
    assert delivery["status"] == "failed"
    detail = await delivery_detail(client, tokens, delivery["id"])
    first, last = detail["attempt_log"][0], detail["attempt_log"][-1]
    tried_for = dt.datetime.fromisoformat(last["at"]) - dt.datetime.fromisoformat(first["at"])
    assert tried_for >= dt.timedelta(hours=24)
    assert len(detail["attempt_log"]) == delivery["attempts"] > 10


@given(
    attempts=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.1, max_value=60),
    cap=st.floats(min_value=1, max_value=86_400),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_between_half_and_all_of_its_capped_step(
    attempts: int, base: float, cap: float, jitter: float
) -> None:
    step = min(cap, base * 2 ** min(attempts - 1, 32))
    delay = retry_delay(attempts, base=base, cap=cap, rng=lambda: jitter)
    assert step / 2 <= delay <= step * (1 + 1e-9)


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    low = [retry_delay(n, base=5, cap=3600, rng=lambda: 0.0) for n in range(1, 12)]
    high = [retry_delay(n, base=5, cap=3600, rng=lambda: 1.0) for n in range(1, 12)]
    assert low[:4] == [2.5, 5.0, 10.0, 20.0]
    assert high[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(high) == 3600 and low[-1] == 1800
    assert retry_delay(10_000, base=5, cap=3600) <= 3600


async def test_slow_receiver_times_out_and_is_retried(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    async with Receiver(lambda _: Reply(delay=10)) as slow:
        await hook(client, tokens, slow.url)
        await forward_new_request(client, tokens)
        await worker.run_once()
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert "no answer within" in delivery["last_error"] or "timed out" in delivery["last_error"]


async def test_server_error_is_retried_until_the_receiver_recovers(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, clock: Clock
) -> None:
    replies = iter([Reply(status=500, body=b"boom"), Reply(status=500), Reply(status=204, body=b"")])
    async with Receiver(lambda _: next(replies)) as flaky:
        secret = await hook(client, tokens, flaky.url)
        await forward_new_request(client, tokens)
        for _ in range(3):
            await worker.run_once()
            clock.advance(hours=1)
        ids = {r.headers["webhook-id"] for r in flaky.received}
        assert len(flaky.received) == 3 and len(ids) == 1  # same event id on every retry
        for received in flaky.received:
            Webhook(secret).verify(received.body, received.headers)
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 3, 204)
    detail = await delivery_detail(client, tokens, delivery["id"])
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 204]


async def test_gone_stops_sending_and_disables_the_webhook_until_it_is_set_again(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    async with Receiver(lambda _: Reply(status=410)) as gone:
        await hook(client, tokens, gone.url)
        await forward_new_request(client, tokens)
        await worker.run_once()
        await forward_new_request(client, tokens, case_reference="NE/2")
        assert await worker.run_once() == 0
        assert len(gone.received) == 1
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["last_status_code"]) == ("failed", 410)
    agency = (await client.get("/v1/agencies/RU-NCP", headers=tokens.admin)).json()
    assert agency["webhook_disabled_at"] is not None
    assert "410" in agency["webhook_disabled_reason"]

    async with Receiver() as back:
        response = await set_webhook(client, tokens, "RU-NCP", back.url)
        assert response.json()["webhook_disabled_at"] is None
        assert response.json()["webhook_secret"] is None  # the secret is kept, and not shown again
        await forward_new_request(client, tokens, case_reference="NE/3")
        assert await worker.run_once() == 1
        assert len(back.received) == 1


async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    async with Receiver() as elsewhere:
        async with Receiver(lambda _: Reply(status=302, headers={"location": elsewhere.url})) as redirecting:
            await hook(client, tokens, redirecting.url)
            await forward_new_request(client, tokens)
            await worker.run_once()
            assert len(redirecting.received) == 1
        assert elsewhere.received == []
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["last_status_code"]) == ("pending", 302)
    assert "redirect" in delivery["last_error"]


async def test_huge_answer_is_not_read_whole(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    huge = 512 * 1024 * 1024
    async with Receiver(lambda _: Reply(status=200, stream_bytes=huge)) as chatty:
        await hook(client, tokens, chatty.url)
        await forward_new_request(client, tokens)
        await worker.run_once()
        assert chatty.streamed_bytes < huge
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["last_status_code"]) == ("delivered", 200)


async def test_answer_whose_body_trickles_past_the_time_limit_still_delivers(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker
) -> None:
    trickle = Reply(status=200, stream_bytes=200, chunk_bytes=10, chunk_delay=0.5)  # 10 s of body, 1 s limit
    async with Receiver(lambda _: trickle) as receiver:
        await hook(client, tokens, receiver.url)
        await forward_new_request(client, tokens)
        await worker.run_once()
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["last_status_code"]) == ("delivered", 200)


async def test_several_workers_never_send_an_event_twice(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    settings: Settings,
    receiver: Receiver,
) -> None:
    import asyncio

    await hook(client, tokens, receiver.url)
    for number in range(12):
        await forward_new_request(client, tokens, case_reference=f"NE/{number}")
    workers = [
        DeliveryWorker(app.state.sessionmaker, worker_settings(settings, webhook_concurrency=3), sweep=False)
        for _ in range(3)
    ]
    try:
        counts = await asyncio.gather(*(w.run_once() for w in workers))
    finally:
        for w in workers:
            await w.aclose()
    assert sum(counts) == 12
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 12


async def test_running_worker_records_every_outcome_and_drains_on_stop(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None, settings: Settings
) -> None:
    import asyncio

    async with Receiver(lambda _: Reply(delay=0.01)) as receiver:
        await hook(client, tokens, receiver.url)
        for number in range(20):
            await forward_new_request(client, tokens, case_reference=f"NE/{number}")
        running_settings = worker_settings(settings, webhook_concurrency=4, worker_poll_seconds=0.05)
        worker = DeliveryWorker(app.state.sessionmaker, running_settings, sweep=False)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await receiver.wait_for(20)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await worker.aclose()
    listed = (await client.get("/v1/agencies/RU-NCP/deliveries?limit=200", headers=tokens.admin)).json()
    assert [(d["status"], d["attempts"]) for d in listed["items"]] == [("delivered", 1)] * 20


async def test_overdue_sweep_notifies_the_holder_by_webhook(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, clock: Clock
) -> None:
    async with Receiver() as receiver:
        secret = await hook(client, tokens, receiver.url)
        await forward_new_request(client, tokens)
        await worker.run_once()
        clock.advance(days=6)  # the acknowledgement is 5 days late now...
        await worker.sweep()
        await worker.run_once()
        assert [r.headers["webhook-id"] for r in receiver.received][0] != receiver.received[-1].headers[
            "webhook-id"
        ]
        overdue = Webhook(secret).verify(receiver.received[-1].body, receiver.received[-1].headers)
    assert overdue["type"] == "request.overdue"
    assert overdue["data"]["missed"] == "acknowledge"


# ---- the audit trail of deliveries -------------------------------------------------------------


async def audit_trail(client: httpx.AsyncClient, tokens: Tokens, request_id: str) -> list[dict]:
    """The request's audit entries, each with its canonical content parsed; asserts the chain verifies."""
    response = await client.get(f"/v1/trace-requests/{request_id}/audit", headers=tokens.investigator)
    assert response.status_code == 200, response.text
    assert response.json()["verification"]["valid"] is True
    return [entry | {"content": json.loads(entry["canonical"])} for entry in response.json()["entries"]]


async def test_a_delivered_notification_is_kept_in_the_requests_audit_trail_and_bundle(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, receiver: Receiver
) -> None:
    await hook(client, tokens, receiver.url)
    request_id = await forward_new_request(client, tokens)
    assert [e["action"] for e in await audit_trail(client, tokens, request_id)] == ["submit", "forward"]
    assert await worker.run_once() == 1

    entries = await audit_trail(client, tokens, request_id)
    assert [e["action"] for e in entries] == ["submit", "forward", "notification"]
    (received,) = receiver.received
    (delivery,) = await deliveries(client, tokens)
    notified = entries[-1]["content"]
    assert notified["payload"] == json.loads(received.body)  # exactly what the receiver was sent
    assert (notified["delivery"], notified["to_agency"], notified["status"]) == (
        delivery["id"],
        "RU-NCP",
        "delivered",
    )
    assert (notified["attempts"], notified["status_code"], notified["reason"]) == (1, 200, None)
    assert "127.0.0.1" not in entries[-1]["canonical"] and "/hook" not in entries[-1]["canonical"]
    assert entries[-1]["at"] == delivery["delivered_at"]

    response = await client.get(f"/v1/trace-requests/{request_id}/audit/bundle", headers=tokens.ncp("RU"))
    problems, payload = verify_bundle(response.text, Signer.from_private_pem(TEST_SIGNING_KEY).public_pem)
    assert problems == []
    assert payload is not None
    assert [e["seq"] for e in payload["audit"]["entries"]] == [1, 2, 3]
    assert len(payload["exchanges"]) == 2

    assert await worker.run_once() == 0  # nothing more posted, nothing more appended
    assert len(await audit_trail(client, tokens, request_id)) == 3


async def test_retries_add_nothing_to_the_audit_trail_until_the_delivery_fails_for_good(
    client: httpx.AsyncClient, tokens: Tokens, world: None, app: FastAPI, settings: Settings, clock: Clock
) -> None:
    worker = DeliveryWorker(
        app.state.sessionmaker, worker_settings(settings, webhook_retry_hours=1), clock=clock, sweep=False
    )
    port = await free_port_with_nothing_listening()
    await hook(client, tokens, f"http://127.0.0.1:{port}/hook")
    request_id = await forward_new_request(client, tokens)
    try:
        await worker.run_once()
        clock.advance(minutes=30)
        await worker.run_once()
        (delivery,) = await deliveries(client, tokens)
        assert (delivery["status"], delivery["attempts"]) == ("pending", 2)
        assert [e["action"] for e in await audit_trail(client, tokens, request_id)] == ["submit", "forward"]

        clock.advance(hours=1)
        await worker.run_once()
    finally:
        await worker.aclose()
    (delivery,) = await deliveries(client, tokens)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    entries = await audit_trail(client, tokens, request_id)
    assert [e["action"] for e in entries] == ["submit", "forward", "notification"]
    notified = entries[-1]["content"]
    assert (notified["status"], notified["attempts"], notified["status_code"]) == ("failed", 3, None)
    assert notified["reason"] == "the receiver could not be reached or did not answer in time"
    assert notified["payload"]["trace_request_id"] == request_id


async def test_deliveries_failed_by_a_410_are_each_kept_in_their_requests_audit_trail(
    client: httpx.AsyncClient, tokens: Tokens, world: None, worker: DeliveryWorker, clock: Clock
) -> None:
    replies = iter([Reply(status=500), Reply(status=410)])
    async with Receiver(lambda _: next(replies)) as receiver:
        await hook(client, tokens, receiver.url)
        waiting = await forward_new_request(client, tokens)
        await worker.run_once()  # 500: due again later
        gone = await forward_new_request(client, tokens, case_reference="NE/2")
        await worker.run_once()  # only the new one is due: 410, which also fails the waiting one
    assert len(receiver.received) == 2

    by_request = {}
    for request_id in (waiting, gone):
        entries = await audit_trail(client, tokens, request_id)
        assert [e["action"] for e in entries] == ["submit", "forward", "notification"]
        by_request[request_id] = entries[-1]["content"]
    assert (by_request[gone]["status"], by_request[gone]["status_code"]) == ("failed", 410)
    assert by_request[gone]["reason"] == "the receiver answered 410"
    assert (by_request[waiting]["status"], by_request[waiting]["attempts"]) == ("failed", 1)
    assert (
        by_request[waiting]["reason"] == "not sent again: the receiver answered 410 Gone to another delivery"
    )
    assert by_request[waiting]["payload"]["trace_request_id"] == waiting
