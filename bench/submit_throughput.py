"""Submit throughput against a bare-INSERT baseline, measured in the same run on the same database.

What it measures: requests per second of POST /v1/trace-requests (a valid investigator token, the
test suite's submission body, a unique Idempotency-Key per request) at N concurrent clients, and
of a baseline route that this script adds to the same app instance only (never to the production
code): POST /bench/baseline parses a JSON body of the same bytes as the submission and does exactly
one bare INSERT into a bench table, then commits, with a session from app.state.sessionmaker. The
ratio submit/baseline says how much of the database's raw write throughput the submit path keeps;
the target is >= 0.40 on PostgreSQL.

How: a fresh database (PostgreSQL: a throwaway database with a random suffix, migrated with
tracing.db.upgrade and dropped WITH (FORCE) at the end; SQLite: a temp file), the real app from
create_app with its lifespan entered, agencies NE-NCP and NE-PJ and the operation TRIGGER-III (which
the submission names) registered through the API with an admin token, then httpx.AsyncClient over
httpx.ASGITransport (in-process, no sockets). Each phase runs `--concurrency` worker tasks that send
requests until a shared counter reaches `--requests`.
After a warm-up of each endpoint, `--pairs` pairs of rounds run (baseline, then submit) and the
ratio printed is the median of the pairs' ratios: each pair is measured within seconds, so a machine
whose speed drifts (a shared VM's does, by a third) moves both sides of a pair together. Every
response status is checked (201 for submit, 200/201 for baseline).
Access logs are at WARNING by default (`--log-level INFO` to include their cost on both sides).

Run, from the project root:

    .venv/bin/python -m bench.submit_throughput --database postgresql
    .venv/bin/python -m bench.submit_throughput --database sqlite --requests 1000 --concurrency 32

Exit code: 0 whatever the ratio (a measurement, not a test); 1 if any request failed or the row
counts do not match the successful requests; 2 if the overall time cap (`--time-limit`) was hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from fastapi import FastAPI, Request, status

from bench.workload import OPERATION
from tracing.api.app import create_app
from tracing.config import Settings
from tracing.db import upgrade
from tracing.security import issue_token

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BASELINE_PATH = "/bench/baseline"
SUBMIT_PATH = "/v1/trace-requests"
MAX_FAILURES_SHOWN = 10
TARGET_RATIO = 0.40

Sender = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


# ---- the workload ---------------------------------------------------------------------------


def submission() -> dict[str, Any]:
    """The submission body of tests/conftest.py."""
    return {
        "requested_country": "RU",
        "priority": "routine",
        "operation_code": "TRIGGER-III",
        "case_reference": "NE/2017/1142",
        "intended_use": "criminal investigation of trafficking",
        "handling": {"confidential": True, "restrictions": "not for court without consent"},
        "seizure": {
            "date": "2017-11-24",
            "place": "Niamey",
            "country": "NE",
            "recovery_type": "seized",
            "context": "trafficking",
        },
        "firearm": {
            "kind": "rifle",
            "make": "Izhmash",
            "model": "AKM",
            "calibre": "7.62x39mm",
            "serial_number": "LX 10?3",
            "serial_obliterated": "partial",
            "country_of_manufacture": "RU",
            "year_of_manufacture": 1975,
            "import_marks": [{"country": "NG", "year": 2009, "text": "NG 09"}],
            "other_markings": ["star in circle on receiver"],
        },
    }


AGENCIES = [("NE-NCP", "NE", "contact_point"), ("NE-PJ", "NE", "investigating_agency")]


def bearer(settings: Settings, agency: str, country: str, role: str, subject: str) -> dict[str, str]:
    token = issue_token(settings, subject=subject, agency=agency, country=country, roles=[role])
    return {"Authorization": f"Bearer {token}"}


# ---- the baseline route, added to this app instance only ------------------------------------

CREATE_BASELINE_TABLE = sa.text(
    "CREATE TABLE bench_baseline (id varchar(36) PRIMARY KEY, body text NOT NULL)"
)
INSERT_BASELINE = sa.text("INSERT INTO bench_baseline (id, body) VALUES (:id, :body)")


async def baseline(body: dict[str, Any], request: Request) -> dict[str, str]:
    """One bare INSERT and a commit; FastAPI parses the JSON body as for a submission."""
    row_id = str(uuid.uuid4())
    async with request.app.state.sessionmaker() as session:
        await session.execute(INSERT_BASELINE, {"id": row_id, "body": json.dumps(body)})
        await session.commit()
    return {"id": row_id}


async def install_baseline(app: FastAPI) -> None:
    async with app.state.engine.begin() as connection:
        await connection.execute(CREATE_BASELINE_TABLE)
    app.add_api_route(
        BASELINE_PATH,
        baseline,
        methods=["POST"],
        status_code=status.HTTP_201_CREATED,
        include_in_schema=False,
    )


# ---- driving the load -----------------------------------------------------------------------


@dataclass
class Round:
    name: str
    requests: int
    seconds: float
    succeeded: int
    failures: list[str] = field(default_factory=list)
    failed: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


async def drive(
    client: httpx.AsyncClient, name: str, send: Sender, accepted: set[int], total: int, concurrency: int
) -> Round:
    """`concurrency` workers send requests until `total` have been issued between them."""
    issued = 0
    succeeded = 0
    failed = 0
    failures: list[str] = []

    def fail(message: str) -> None:
        nonlocal failed
        failed += 1
        if len(failures) < MAX_FAILURES_SHOWN:
            failures.append(message)

    async def worker() -> None:
        nonlocal issued, succeeded
        while issued < total:
            issued += 1  # no await between the test and the increment: one event loop, no race
            try:
                response = await send(client)
            except Exception as exc:  # an app exception escaping ASGITransport is a failed request
                fail(f"{type(exc).__name__}: {exc}"[:300])
                continue
            if response.status_code in accepted:
                succeeded += 1
            else:
                fail(f"HTTP {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Round(name, issued, elapsed, succeeded, failures, failed)


def senders(body: bytes, submit_headers: dict[str, str]) -> tuple[Sender, Sender]:
    json_header = {"Content-Type": "application/json"}

    async def send_baseline(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(BASELINE_PATH, content=body, headers=json_header)

    async def send_submit(client: httpx.AsyncClient) -> httpx.Response:
        headers = {**json_header, **submit_headers, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"}
        return await client.post(SUBMIT_PATH, content=body, headers=headers)

    return send_baseline, send_submit


async def statements_per_request(
    app: FastAPI, client: httpx.AsyncClient, send: Sender
) -> tuple[int, int, int]:
    """(statements, commits, connection checkouts) SQLAlchemy issues for one request, sent alone.

    Untimed, after the measured rounds. Driver-level extras (asyncpg's BEGIN, the pool's
    pre-ping) do not go through these events, so this is a lower bound on round trips."""
    counts = {"statements": 0, "commits": 0, "checkouts": 0}
    engine = app.state.engine.sync_engine

    def on_statement(*_: Any) -> None:
        counts["statements"] += 1

    def on_commit(*_: Any) -> None:
        counts["commits"] += 1

    def on_checkout(*_: Any) -> None:
        counts["checkouts"] += 1

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", on_statement),
        (engine, "commit", on_commit),
        (engine.pool, "checkout", on_checkout),
    ]
    for target, name, listener in listeners:
        sa.event.listen(target, name, listener)
    try:
        response = await send(client)
    finally:
        for target, name, listener in listeners:
            sa.event.remove(target, name, listener)
    if response.status_code >= 300:
        raise RuntimeError(f"probe request failed: HTTP {response.status_code}: {response.text[:300]}")
    return counts["statements"], counts["commits"], counts["checkouts"]


# ---- the run --------------------------------------------------------------------------------


@dataclass
class Report:
    database: str
    concurrency: int
    requests: int
    warmup: int
    body_bytes: int
    rounds: list[Round]
    rows: dict[str, tuple[int, int]]  # table: (rows found, successful requests)
    probes: dict[str, tuple[int, int, int]]

    def best(self, name: str) -> Round:
        return max((r for r in self.rounds if r.name == name), key=lambda r: r.rate)

    def pair_ratios(self) -> list[float]:
        baselines = [r for r in self.rounds if r.name == "baseline"]
        submits = [r for r in self.rounds if r.name == "submit"]
        return [s.rate / b.rate for b, s in zip(baselines, submits, strict=True) if b.rate > 0]

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rounds)

    @property
    def rows_match(self) -> bool:
        return all(found == expected for found, expected in self.rows.values())


async def run(database: str, database_url: str, scratch: Path, args: argparse.Namespace) -> Report:
    settings = Settings(
        database_url=database_url,
        env="development",
        jwt_secret=secrets.token_urlsafe(48),
        log_level=args.log_level,
        # Keeps the development signing key out of the working directory.
        signing_key_file=str(scratch / "signing-key.pem"),
        checkpoint_interval_seconds=0,
        rate_limit_per_minute=0,  # one principal sends every request here
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await install_baseline(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.bench") as client:
            admin = bearer(settings, "UN-ADMIN", "AT", "admin", "admin@UN-ADMIN")
            for code, country, kind in AGENCIES:
                response = await client.post(
                    "/v1/agencies",
                    json={"code": code, "name": f"{code} agency", "country": country, "kind": kind},
                    headers=admin,
                )
                if response.status_code != status.HTTP_201_CREATED:
                    raise RuntimeError(f"registering {code} failed: {response.status_code} {response.text}")
            response = await client.post("/v1/operations", json=OPERATION, headers=admin)
            if response.status_code != status.HTTP_201_CREATED:
                raise RuntimeError(f"registering the operation: {response.status_code} {response.text}")

            body = json.dumps(submission()).encode()
            investigator = bearer(settings, "NE-PJ", "NE", "investigator", "inspector.moussa")
            send_baseline, send_submit = senders(body, investigator)
            plan: list[tuple[str, Sender, set[int]]] = [
                ("baseline", send_baseline, {200, 201}),
                ("submit", send_submit, {201}),
            ]
            rounds: list[Round] = []
            for name, send, accepted in plan:
                rounds.append(
                    await drive(client, f"warmup-{name}", send, accepted, args.warmup, args.concurrency)
                )
            for _ in range(args.pairs):
                for name, send, accepted in plan:
                    measured = await drive(client, name, send, accepted, args.requests, args.concurrency)
                    rounds.append(measured)
                    print(
                        f"  {name:<8} {measured.requests} requests in {measured.seconds:6.2f} s"
                        f" = {measured.rate:8.1f} req/s, {measured.failed} failed",
                        flush=True,
                    )

            probes = {
                "baseline": await statements_per_request(app, client, send_baseline),
                "submit": await statements_per_request(app, client, send_submit),
            }
            expected = {
                table: sum(r.succeeded for r in rounds if r.name.endswith(name)) + 1
                for table, name in (("bench_baseline", "baseline"), ("trace_request", "submit"))
            }
            rows: dict[str, tuple[int, int]] = {}
            async with app.state.engine.connect() as connection:
                for table, wanted in expected.items():
                    found = (await connection.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
                    rows[table] = (int(found), wanted)

    return Report(
        database=database,
        concurrency=args.concurrency,
        requests=args.requests,
        warmup=args.warmup,
        body_bytes=len(body),
        rounds=rounds,
        rows=rows,
        probes=probes,
    )


# ---- throwaway databases --------------------------------------------------------------------


@asynccontextmanager
async def throwaway_database(database: str, postgres_admin_url: str, scratch: Path) -> AsyncIterator[str]:
    """A migrated, empty database for this run, removed afterwards; yields its SQLAlchemy URL."""
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{scratch / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return

    name = f"tracing_bench_{secrets.token_hex(6)}"
    base, _, _ = postgres_admin_url.rpartition("/")
    url = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = await asyncpg.connect(postgres_admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        admin = await asyncpg.connect(postgres_admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ---- output ---------------------------------------------------------------------------------


def print_report(report: Report) -> None:
    baseline, submit = report.best("baseline"), report.best("submit")
    ratios = report.pair_ratios()
    ratio = statistics.median(ratios) if ratios else 0.0
    print()
    print(f"submit throughput vs bare-INSERT baseline ({len(ratios)} pairs of rounds)")
    print(f"  database             {report.database}")
    print(f"  concurrency          {report.concurrency}")
    print(f"  requests             {report.requests} per round (+ {report.warmup} warm-up per endpoint)")
    print(f"  body                 {report.body_bytes} bytes of JSON on both endpoints")
    print(f"  baseline req/s       {baseline.rate:.1f} (best round)")
    print(f"  submit req/s         {submit.rate:.1f} (best round)")
    print(f"  pair ratios          {', '.join(f'{r:.2f}' for r in ratios)}")
    for name, (statements, commits, checkouts) in report.probes.items():
        print(
            f"  {name + ' SQL':<20} {statements} statements, {commits} commit(s),"
            f" {checkouts} connection checkout(s) per request (SQLAlchemy events)"
        )
    for table, (found, expected) in report.rows.items():
        verdict = "ok" if found == expected else "MISMATCH"
        print(f"  {table + ' rows':<20} {found} (successful requests {expected}) {verdict}")
    print(f"  failed requests      {report.failed}")
    for r in report.rounds:
        for message in r.failures:
            print(f"    [{r.name}] {message}")
        if r.failed > len(r.failures):
            print(f"    [{r.name}] ... and {r.failed - len(r.failures)} more")
    print(
        f"ratio submit/baseline = {ratio:.2f} (median of pairs; target >= {TARGET_RATIO:.2f} on PostgreSQL)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--requests", type=int, default=1000, help="requests per measured round")
    parser.add_argument("--pairs", type=int, default=5, help="measured (baseline, submit) pairs of rounds")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent client tasks")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests per endpoint")
    parser.add_argument("--time-limit", type=float, default=300.0, help="overall cap in seconds")
    parser.add_argument("--log-level", default="WARNING", help="app log level (INFO logs every request)")
    parser.add_argument("--postgres-admin-url", default=DEFAULT_POSTGRES_ADMIN_URL)
    args = parser.parse_args(argv)
    for option in ("requests", "pairs", "concurrency", "warmup"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.time_limit <= 0:
        parser.error("--time-limit must be positive")
    return args


async def main_async(args: argparse.Namespace) -> int:
    print(
        f"benchmarking on {args.database}: {args.concurrency} clients, {args.requests} requests per round",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tracing-bench-") as directory:
        scratch = Path(directory)
        async with throwaway_database(args.database, args.postgres_admin_url, scratch) as url:
            try:
                async with asyncio.timeout(args.time_limit):
                    report = await run(args.database, url, scratch, args)
            except TimeoutError:
                print(f"gave up: the run exceeded the time limit of {args.time_limit:.0f} s", file=sys.stderr)
                return 2
    print_report(report)
    return 1 if report.failed or not report.rows_match else 0


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
