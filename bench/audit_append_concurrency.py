"""Do audit appends on different trace requests serialise? Concurrent vs one-at-a-time appends.

On a fresh, migrated PostgreSQL database (dropped afterwards), each append is one transaction: the
append statement (lock the chain head, number, hash and insert the entry, move the head) and the
commit. The same number of appends runs one at a time, then from 32 concurrent tasks each appending
to its own chain, then from 32 concurrent tasks all appending to one chain (which must serialise on
its head row); the ratios of throughputs show whether different chains wait on each other.

Two clients run the same rounds:
- the service's path: `audit_log.append` in an AsyncSession, as every workflow step calls it;
- the driver: the same statement and parameters (`audit_log.ONE_STATEMENT_APPEND`) on an asyncpg
  pool, so that the client's own CPU time (one Python process on the machine's cores, shared with
  the database) weighs as little as possible on what is measured: whether the database runs appends
  on different chains side by side.
Each ratio is the median of `--rounds` rounds. Each concurrent phase also prints how busy the client
process was (CPU time over wall time: 100% means the client's one core was the limit) and, on Linux,
how busy the machine's cores were. Every chain is verified at the end. The benchmark runs
on uvloop, the event loop the server runs on (uvicorn takes it when it is installed).
Target on PostgreSQL: concurrent/sequential >= 3.

    .venv/bin/python -m bench.audit_append_concurrency [--appends-per-chain 40] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvloop
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from tracing.audit import log as audit_log
from tracing.audit.signing import Signer, generate_private_pem
from tracing.db import create_engine, create_sessionmaker, upgrade
from tracing.models.types import utcnow

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

Appender = Callable[[uuid.UUID, int], Awaitable[None]]


def content(number: int) -> dict[str, Any]:
    return {"actor": {"subject": "officer@RU", "agency": "RU-NCP", "country": "RU"}, "n": number}


def session_appender(sessions) -> Appender:  # noqa: ANN001
    async def append_many(chain_id: uuid.UUID, count: int) -> None:
        for number in range(count):
            async with sessions() as session:
                await audit_log.append(
                    session, chain_id=chain_id, action="acknowledge", at=utcnow(), content=content(number)
                )
                await session.commit()

    return append_many


def driver_appender(pool: asyncpg.Pool) -> Appender:
    compiled = audit_log.ONE_STATEMENT_APPEND.compile(dialect=asyncpg_dialect())
    order = compiled.positiontup or []

    async def append_many(chain_id: uuid.UUID, count: int) -> None:
        for number in range(count):
            params = audit_log.one_statement_append(
                chain_id=chain_id, action="acknowledge", at=utcnow(), content=content(number)
            )
            assert params is not None
            async with pool.acquire() as connection, connection.transaction():
                await connection.fetchrow(compiled.string, *(params[name] for name in order))

    return append_many


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset (the appends leave no session state behind; the pool
    still rolls back a transaction left open)."""


def machine_busy_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, summed over its cores (Linux only)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    per_second = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / per_second, sum(ticks) / per_second


@dataclass(frozen=True)
class Round:
    sequential: float
    concurrent: float
    same_chain: float
    client_cpu: float
    """CPU seconds this process (the client) used during the concurrent phase."""
    machine_busy: float | None
    """Share of the machine's cores busy (client, database and anything else) during that phase."""


async def one_round(append_many: Appender, concurrency: int, per_chain: int) -> Round:
    """Times the appends one at a time, from concurrent chains, and from concurrent tasks on one chain."""
    started = time.perf_counter()
    for _ in range(concurrency):
        await append_many(uuid.uuid4(), per_chain)
    sequential = time.perf_counter() - started

    machine_before, cpu_before = machine_busy_seconds(), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(append_many(uuid.uuid4(), per_chain) for _ in range(concurrency)))
    concurrent = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    machine_after = machine_busy_seconds()
    machine_busy = None
    if machine_before is not None and machine_after is not None and machine_after[1] > machine_before[1]:
        machine_busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])

    one_chain = uuid.uuid4()
    await append_many(one_chain, 1)
    started = time.perf_counter()
    await asyncio.gather(*(append_many(one_chain, per_chain) for _ in range(concurrency)))
    same_chain = time.perf_counter() - started
    return Round(sequential, concurrent, same_chain, client_cpu, machine_busy)


async def report(name: str, append_many: Appender, args: argparse.Namespace) -> None:
    # Warm up: open every pooled connection and prepare the statement on each, as in a server that
    # has been running (otherwise the first concurrent phase also pays for opening connections).
    await asyncio.gather(*(append_many(uuid.uuid4(), 3) for _ in range(args.concurrency)))
    rounds = [
        await one_round(append_many, args.concurrency, args.appends_per_chain) for _ in range(args.rounds)
    ]
    total = args.concurrency * args.appends_per_chain
    print(f"{name}: {total:,} appends per phase, {args.rounds} rounds")
    for one in rounds:
        busy = f"{one.machine_busy:4.0%}" if one.machine_busy is not None else "   ?"
        print(
            f"  one at a time {total / one.sequential:6,.0f}/s"
            f"   {args.concurrency} chains {total / one.concurrent:6,.0f}/s"
            f" (client CPU {one.client_cpu / one.concurrent:4.0%} of one core, machine {busy} busy)"
            f"   one chain {total / one.same_chain:6,.0f}/s"
        )
    ratio = statistics.median(one.sequential / one.concurrent for one in rounds)
    chains = statistics.median(one.same_chain / one.concurrent for one in rounds)
    print(f"  ratio concurrent/sequential = {ratio:.2f} (median; target >= 3 on PostgreSQL)")
    print(f"  ratio different chains/one chain = {chains:.2f} (median; above 1: chains do not wait)")


async def measure(url: str, dsn: str, args: argparse.Namespace) -> None:
    size = args.concurrency + 2
    engine = create_engine(url, pool_size=size, max_overflow=0, pool_pre_ping=False)
    # No reset query on release: asyncpg's pool otherwise sends one (a fourth round trip per append)
    # that the service's SQLAlchemy pool does not; each append is then BEGIN, the statement, COMMIT
    # on both clients.
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size, reset=_keep_session_state)
    try:
        await report(
            "service path (audit_log.append in an AsyncSession)",
            session_appender(create_sessionmaker(engine)),
            args,
        )
        await report("driver (the same statement on an asyncpg pool)", driver_appender(pool), args)
        async with create_sessionmaker(engine)() as session:
            verified = await audit_log.verify_everything(
                session, Signer.from_private_pem(generate_private_pem()).public_pem
            )
        print(f"verification: {verified.chains} chains, {verified.entries} entries, valid={verified.valid}")
        if not verified.valid:
            raise SystemExit("audit chains did not verify")
    finally:
        await pool.close()
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends-per-chain", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    name = f"tracing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await asyncio.to_thread(upgrade, url)
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        await asyncio.wait_for(measure(url, dsn, args), timeout=900)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    uvloop.run(main())
