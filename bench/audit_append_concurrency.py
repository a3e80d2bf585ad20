"""Do audit appends on different trace requests serialise? Concurrent vs one-at-a-time appends.

On a fresh, migrated PostgreSQL database (dropped afterwards), each append is one transaction
(lock the chain head, insert the entry, move the head, commit). The same number of appends runs
one at a time, then from 32 concurrent tasks each appending to its own chain, then from 32
concurrent tasks all appending to one chain (which must serialise on its head row); the ratios of
throughputs show whether different chains wait on each other. Every chain is verified at the end.
Target on PostgreSQL: ratio >= 3.

    .venv/bin/python bench/audit_append_concurrency.py [--appends-per-chain 40] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg

from tracing.audit import log as audit_log
from tracing.audit.signing import Signer, generate_private_pem
from tracing.db import create_engine, create_sessionmaker, upgrade
from tracing.models.types import utcnow

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def append_many(sessions, chain_id: uuid.UUID, count: int) -> None:  # noqa: ANN001
    for number in range(count):
        async with sessions() as session:
            await audit_log.append(
                session,
                chain_id=chain_id,
                action="acknowledge",
                at=utcnow(),
                content={
                    "actor": {"subject": "officer@RU", "agency": "RU-NCP", "country": "RU"},
                    "n": number,
                },
            )
            await session.commit()


async def measure(url: str, concurrency: int, per_chain: int) -> None:
    engine = create_engine(url, pool_size=concurrency + 2, max_overflow=0, pool_pre_ping=False)
    sessions = create_sessionmaker(engine)
    try:
        await append_many(sessions, uuid.uuid4(), 20)  # warm up the pool and the plans

        sequential_chains = [uuid.uuid4() for _ in range(concurrency)]
        started = time.perf_counter()
        for chain_id in sequential_chains:
            await append_many(sessions, chain_id, per_chain)
        sequential = time.perf_counter() - started

        concurrent_chains = [uuid.uuid4() for _ in range(concurrency)]
        started = time.perf_counter()
        await asyncio.gather(*(append_many(sessions, chain_id, per_chain) for chain_id in concurrent_chains))
        concurrent = time.perf_counter() - started

        one_chain = uuid.uuid4()
        await append_many(sessions, one_chain, 1)
        started = time.perf_counter()
        await asyncio.gather(*(append_many(sessions, one_chain, per_chain) for _ in range(concurrency)))
        same_chain = time.perf_counter() - started

        async with sessions() as session:
            report = await audit_log.verify_everything(
                session, Signer.from_private_pem(generate_private_pem()).public_pem
            )
        total = concurrency * per_chain
        print(f"appends: {total:,} one at a time, then {total:,} from {concurrency} concurrent chains")
        print(f"one at a time: {total / sequential:,.0f} appends/s")
        print(f"concurrent:    {total / concurrent:,.0f} appends/s")
        print(f"same chain:    {total / same_chain:,.0f} appends/s (one chain, serialised)")
        print(f"ratio concurrent/sequential = {sequential / concurrent:.2f} (target >= 3 on PostgreSQL)")
        print(
            f"ratio different chains/one chain = {same_chain / concurrent:.2f} (above 1: chains do not wait)"
        )
        print(f"verification: {report.chains} chains, {report.entries} entries, valid={report.valid}")
        if not report.valid:
            raise SystemExit("audit chains did not verify")
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends-per-chain", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    name = f"tracing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await asyncio.to_thread(upgrade, url)
        await asyncio.wait_for(measure(url, args.concurrency, args.appends_per_chain), timeout=600)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
