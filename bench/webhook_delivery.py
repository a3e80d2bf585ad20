"""Webhook delivery: delay from commit to receipt, and throughput against plain httpx posts.

On a fresh database (a temporary SQLite file by default, or --database-url), with a real HTTP
receiver on 127.0.0.1 in this process:

1. Delay: the delivery worker runs as under `tracing serve`, while events are committed one
   transaction at a time (--events, default 1,000); for each, the time from the commit returning
   to the receiver reading the post. Prints p50 and p99.
2. Throughput: --events deliveries are queued with the worker stopped, then the worker is started
   and timed until all are delivered; then the same number of plain httpx posts of the same bodies,
   with the same concurrency, to the same receiver. Prints both rates and their ratio (target
   >= 0.5): what signing, claiming, recording each attempt and the SSRF check cost.

    .venv/bin/python -m bench.webhook_delivery [--events 1000] [--postgres | --database-url URL]

--postgres creates a scratch database on the PostgreSQL at TRACING_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it afterwards.

Only loopback traffic; bounded by --events and a time limit per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from sqlmodel import select

from tests.receiver import Receiver
from tracing.config import Settings
from tracing.db import create_engine, create_sessionmaker, upgrade
from tracing.models.agency import Agency, AgencyKind
from tracing.models.notify import DeliveryStatus, Event, EventType, WebhookDelivery
from tracing.models.types import utcnow
from tracing.notify import outbox
from tracing.notify.deliveries import new_webhook_secret
from tracing.notify.delivery import DeliveryWorker, signed_headers, webhook_body

PHASE_LIMIT_SECONDS = 300


def _event_data(number: int) -> dict:
    return {
        "reference": f"TR-2026-{number:06d}", "state": "forwarded", "version": 2, "priority": "routine",
        "holder_country": "RU", "requesting_country": "NE", "action": "forward", "by_country": "NE",
        "to_country": "RU",
        "due": {"acknowledge_by": "2026-12-05T09:00:00Z", "answer_by": "2026-12-30T09:00:00Z"},
    }  # fmt: skip


async def _setup(settings: Settings, receiver_url: str) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            session.add(
                Agency(
                    code="RU-NCP",
                    name="Russian Federation national contact point",
                    country="RU",
                    kind=AgencyKind.contact_point,
                    webhook_url=receiver_url,
                    webhook_secret=new_webhook_secret(),
                )
            )
            await session.commit()
    finally:
        await engine.dispose()


async def _emit(sessions, number: int) -> uuid.UUID:  # noqa: ANN001
    async with sessions() as session:
        (event,) = await outbox.emit(
            session,
            recipients=["RU-NCP"],
            type=EventType.request_forwarded,
            trace_request_id=uuid.uuid4(),
            data=_event_data(number),
            at=utcnow(),
        )
        await session.commit()
    return event.id


async def measure_delay(settings: Settings, receiver: Receiver, events: int) -> list[float]:
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    worker = DeliveryWorker(sessions, settings, sweep=False)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    committed: dict[str, float] = {}
    start_count = len(receiver.received)
    try:
        async with asyncio.timeout(PHASE_LIMIT_SECONDS):
            for number in range(events):
                event_id = await _emit(sessions, number)
                committed[str(event_id)] = time.perf_counter()
                await asyncio.sleep(0.002)  # a steady stream, not one burst
            await receiver.wait_for(start_count + events, PHASE_LIMIT_SECONDS)
    finally:
        stop.set()
        await running
        await worker.aclose()
        await engine.dispose()
    arrivals = {r.headers["webhook-id"]: r.at for r in receiver.received[start_count:]}
    return [arrivals[event_id] - at for event_id, at in committed.items()]


async def measure_worker_throughput(settings: Settings, receiver: Receiver, events: int) -> float:
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    for number in range(events):
        await _emit(sessions, number)
    worker = DeliveryWorker(sessions, settings, sweep=False)
    start_count = len(receiver.received)
    stop = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(worker.run(stop))
    try:
        await receiver.wait_for(start_count + events, PHASE_LIMIT_SECONDS)
        elapsed = time.perf_counter() - started
        async with asyncio.timeout(PHASE_LIMIT_SECONDS):  # every result recorded, too
            while True:
                async with sessions() as session:
                    pending = (
                        await session.execute(
                            select(WebhookDelivery.id).where(
                                WebhookDelivery.status != DeliveryStatus.delivered
                            )
                        )
                    ).first()
                if pending is None:
                    break
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await running
        await worker.aclose()
        await engine.dispose()
    return events / elapsed


async def measure_plain_httpx(settings: Settings, receiver: Receiver, events: int) -> float:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            stored = list((await session.execute(select(Event).limit(events))).scalars())
    finally:
        await engine.dispose()
    secret = new_webhook_secret()
    bodies = [(event.id, webhook_body(event)) for event in stored]
    queue: asyncio.Queue[tuple[uuid.UUID, str]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=10, limits=limits, follow_redirects=False) as client:

        async def post_all() -> None:
            while not queue.empty():
                event_id, body = queue.get_nowait()
                headers = signed_headers(secret, event_id, body, utcnow())
                response = await client.post(receiver.url, content=body.encode(), headers=headers)
                response.raise_for_status()

        started = time.perf_counter()
        async with asyncio.timeout(PHASE_LIMIT_SECONDS):
            await asyncio.gather(*(post_all() for _ in range(settings.webhook_concurrency)))
        return len(bodies) / (time.perf_counter() - started)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str]:
    import asyncpg

    admin_url = os.environ.get("TRACING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"tracing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        base = admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def main_async(events: int, database_url: str | None, postgres: bool) -> int:
    if postgres:
        async with scratch_postgres() as url:
            return await main_async(events, url, False)
    with tempfile.TemporaryDirectory() as directory:
        url = database_url or f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database_url=url,
            env="development",
            worker_poll_seconds=1.0,
            overdue_sweep_seconds=0,
            log_level="WARNING",
        )
        from tracing.logs import configure

        configure("WARNING")
        async with Receiver() as receiver:
            await _setup(settings, receiver.url)
            delays = await measure_delay(settings, receiver, events)
            worker_rate = await measure_worker_throughput(settings, receiver, events)
            plain_rate = await measure_plain_httpx(settings, receiver, events)
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(f"webhook delivery on loopback, {events} events, {backend}, {os.cpu_count()} cores")
    print(
        f"delay commit -> receipt: p50 {_percentile(delays, 0.5) * 1000:.1f} ms,"
        f" p99 {_percentile(delays, 0.99) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms"
        f" (mean {statistics.fmean(delays) * 1000:.1f} ms)"
    )
    print(f"throughput: worker {worker_rate:.0f}/s, plain httpx posts {plain_rate:.0f}/s")
    ratio = worker_rate / plain_rate
    print(f"ratio worker / plain httpx: {ratio:.2f} (target >= 0.5)")
    return 0 if ratio >= 0.5 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1000)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database-url", help="an empty or migrated database (default: a temporary SQLite file)"
    )
    where.add_argument("--postgres", action="store_true", help="a scratch database on the local PostgreSQL")
    args = parser.parse_args()
    if not 1 <= args.events <= 20_000:
        print("--events must be between 1 and 20000", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args.events, args.database_url, args.postgres))


if __name__ == "__main__":
    raise SystemExit(main())
