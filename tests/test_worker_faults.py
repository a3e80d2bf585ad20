"""The delivery worker under faults: killed mid-delivery (the event is delivered later, not lost),
the database going away while it runs (it carries on), and `tracing serve` running it in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import POSTGRES_ADMIN_URL, Tokens
from tests.receiver import Receiver, Reply
from tests.test_webhooks import Clock, forward_new_request, hook, worker_settings
from tracing.api.app import create_app
from tracing.config import Settings
from tracing.notify.delivery import DeliveryWorker


def _worker_process(
    settings: Settings, *, stderr: int = subprocess.DEVNULL, **env: str
) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "TRACING_DATABASE_URL": settings.database_url,
        "TRACING_ENV": "development",
        "TRACING_JWT_SECRET": settings.jwt_secret or "",
        "TRACING_OVERDUE_SWEEP_SECONDS": "0",
        "TRACING_WORKER_POLL_SECONDS": "0.1",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tracing.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


async def test_worker_killed_mid_delivery_leaves_the_event_to_be_delivered_later(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None, settings: Settings
) -> None:
    replies = iter([Reply(hang=True), Reply()])
    async with Receiver(lambda _: next(replies)) as receiver:
        await hook(client, tokens, receiver.url)
        await forward_new_request(client, tokens)
        process = _worker_process(
            settings, TRACING_WEBHOOK_LEASE_SECONDS="60", TRACING_WEBHOOK_TIMEOUT_SECONDS="60"
        )
        try:
            await receiver.wait_for(1, seconds=60)  # the post is in flight...
        finally:
            process.send_signal(signal.SIGKILL)  # ...when the worker dies without a word
            await asyncio.to_thread(process.wait, 30)

        clock = Clock()
        survivor = DeliveryWorker(app.state.sessionmaker, worker_settings(settings), clock=clock, sweep=False)
        try:
            assert await survivor.run_once() == 0  # the dead worker's claim still holds
            clock.advance(seconds=61)  # its lease runs out
            assert await survivor.run_once() == 1
        finally:
            await survivor.aclose()
        first, second = await receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
    (delivery,) = (await client.get("/v1/agencies/RU-NCP/deliveries", headers=tokens.admin)).json()["items"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)


async def test_worker_stopped_by_signal_exits_cleanly(settings: Settings) -> None:
    process = _worker_process(settings, stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        started = False
        for _ in range(200):  # log lines, until the worker says it runs (bounded)
            line = await asyncio.to_thread(process.stderr.readline)
            if not line or b"worker_started" in line:
                started = bool(line)
                break
        assert started
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0


class UnreachableDatabase:
    """A session factory standing in for a database that is restarting: every session fails."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = False
        self.refused = 0

    def __call__(self) -> Any:
        if self.down:
            self.refused += 1
            return _Refused()
        return self.real()


class _Refused:
    async def __aenter__(self) -> Any:
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is restarting"))

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _terminate_connections(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()


async def test_worker_carries_on_when_the_database_goes_away_and_comes_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    settings: Settings,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sessions = UnreachableDatabase(app.state.sessionmaker)
    worker = DeliveryWorker(
        sessions, worker_settings(settings, worker_poll_seconds=0.05, overdue_sweep_seconds=0.1)
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async with Receiver() as receiver:
            await hook(client, tokens, receiver.url)
            await forward_new_request(client, tokens)
            await receiver.wait_for(1)

            sessions.down = True
            if backend == "postgresql":
                await _terminate_connections(settings.database_url)  # every open connection dies
            for _ in range(100):  # until the worker has met the outage (bounded)
                if sessions.refused >= 2:
                    break
                await asyncio.sleep(0.05)
            await forward_new_request(client, tokens, case_reference="NE/2")  # committed during the outage
            sessions.down = False

            second = (await receiver.wait_for(2, seconds=60))[1]
            assert second.headers["webhook-id"] != receiver.received[0].headers["webhook-id"]
            assert not running.done()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await worker.aclose()
    assert sessions.refused >= 2
    assert "worker_database_error" in capsys.readouterr().err


async def test_serve_runs_the_worker_in_process(
    settings: Settings, tokens: Tokens, world: None, client: httpx.AsyncClient
) -> None:
    serving = create_app(settings.model_copy(update={"background_worker": True, "worker_poll_seconds": 0.1}))
    async with Receiver() as receiver, serving.router.lifespan_context(serving):
        transport = httpx.ASGITransport(app=serving)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as http:
            await hook(http, tokens, receiver.url)
            await forward_new_request(http, tokens)
            (received,) = await receiver.wait_for(1)
    assert received.headers["webhook-id"]


async def test_worker_once_delivers_what_is_due_and_exits(
    client: httpx.AsyncClient, tokens: Tokens, world: None, settings: Settings
) -> None:
    async with Receiver() as receiver:
        await hook(client, tokens, receiver.url)
        await forward_new_request(client, tokens)
        environment = {
            **os.environ,
            "TRACING_DATABASE_URL": settings.database_url,
            "TRACING_JWT_SECRET": settings.jwt_secret or "",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracing.cli", "worker", "--once",
            env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        assert b"1 deliveries attempted" in output
        assert len(receiver.received) == 1
