"""GET /v1/stats over 1,000,000 trace requests on PostgreSQL, as a ratio of hand-written SQL.

Creates a scratch database, migrates it, generates the requests inside PostgreSQL (one INSERT ...
SELECT over generate_series: states, outcomes, resolutions and timestamps consistent with the
workflow, submissions spread over two years), then in the same run times

  baseline: the same figures computed by hand-written SQL sent straight through asyncpg (counts by
            GROUPING SETS in one pass, percentile_cont for the three waiting times and per requested
            country, one GROUP BY for the weekly series);
  API:      GET /v1/stats as an administrator (every request in scope) from `tracing serve` on
            127.0.0.1, over HTTP, JSON decoded.

Each is warmed up once and then run --rounds times; the medians are compared. Target: API / SQL
<= 2.0. The run stops adding rounds once --max-seconds have passed.

    .venv/bin/python bench/stats_aggregate.py [--requests 1000000] [--rounds 5] [--max-seconds 900]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from tracing.config import Settings
from tracing.db import upgrade
from tracing.security import issue_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-for-the-statistics-benchmark-0123456789"

GENERATE = """
WITH base AS (
  SELECT g,
    (ARRAY['NE','NG','BJ','BF','TD','GN','ML','MR','FR','DE','BR','ZA'])[1 + g % 12] AS requesting,
    (ARRAY['RU','CN','BG','RO','BE','AT','CZ','IT','TR','US'])[1 + (g * 7 + g / 13) % 10] AS requested,
    random() AS r_state, random() AS r_outcome, random() AS r_resolution, random() AS r_ack,
    random() AS r_priority,
    timestamptz '2023-01-02 00:00+00' + random() * interval '730 days' AS created,
    interval '2 hours' + random() * interval '10 days' AS to_forward,
    interval '1 hour' + random() * interval '14 days' AS to_ack,
    interval '1 day' + random() * random() * interval '180 days' AS to_answer,
    interval '1 hour' + random() * interval '30 days' AS to_close
  FROM generate_series(1, $1::int) AS g
), shaped AS (
  SELECT *,
    CASE WHEN r_state < 0.10 THEN 'submitted' WHEN r_state < 0.35 THEN 'forwarded'
         WHEN r_state < 0.50 THEN 'answered' ELSE 'closed' END AS state,
    r_state >= 0.50 AND r_resolution < 0.10 AS withdrawn
  FROM base
), timed AS (
  SELECT *,
    CASE WHEN state = 'submitted' OR (withdrawn AND r_ack < 0.5) THEN NULL
         ELSE created + to_forward END AS forwarded,
    state IN ('answered', 'closed') AND NOT withdrawn AS has_answer
  FROM shaped
)
INSERT INTO trace_request (
  id, state, version, holder_country, requesting_country, requesting_agency, submitted_by,
  requested_country, priority, operation_code, case_reference, intended_use, handling_confidential,
  seizure_date, seizure_place, seizure_country, recovery_type, firearm_kind, firearm_make,
  serial_number, serial_obliterated, import_marks, other_markings, outcome, outcome_reason,
  resolution, created_at, updated_at, forwarded_at, first_forwarded_at, acknowledged_at,
  answered_at, closed_at)
SELECT
  gen_random_uuid(), state, 1, CASE WHEN state = 'forwarded' THEN requested ELSE requesting END,
  requesting, requesting || '-PJ', 'bench', requested,
  CASE WHEN r_priority < 0.05 THEN 'urgent' ELSE 'routine' END,
  CASE WHEN g % 50 = 0 THEN 'BENCH-OP' END, 'BENCH/' || g, 'benchmark', true,
  (created - interval '3 days')::date, 'Niamey', requesting,
  CASE WHEN r_priority < 0.85 THEN 'seized' WHEN r_priority < 0.95 THEN 'found' ELSE 'surrendered' END,
  'rifle', 'Izhmash', 'LX ' || g, 'none', '[]', '[]',
  CASE WHEN has_answer THEN
    CASE WHEN r_outcome < 0.35 THEN 'traced' WHEN r_outcome < 0.60 THEN 'partially_traced'
         WHEN r_outcome < 0.90 THEN 'not_traced' ELSE 'declined' END END,
  CASE WHEN has_answer AND r_outcome >= 0.60 THEN 'no_record' END,
  CASE WHEN state = 'closed' THEN
    CASE WHEN withdrawn THEN 'withdrawn' WHEN r_resolution < 0.45 THEN 'origin_established'
         WHEN r_resolution < 0.65 THEN 'context_established' ELSE 'not_established' END END,
  created, created, forwarded, forwarded,
  CASE WHEN forwarded IS NOT NULL AND r_ack < 0.7 THEN
    forwarded + LEAST(to_ack, CASE WHEN has_answer THEN to_answer / 2 ELSE to_ack END) END,
  CASE WHEN has_answer THEN forwarded + to_answer END,
  CASE WHEN state = 'closed' THEN
    CASE WHEN has_answer THEN forwarded + to_answer + to_close ELSE created + to_close END END
FROM timed
"""

# The same figures as GET /v1/stats, written by hand.
HAND_WRITTEN = [
    """SELECT state, outcome, resolution, priority, requested_country, count(*),
              count(first_forwarded_at), count(answered_at)
       FROM trace_request
       GROUP BY GROUPING SETS ((state), (outcome), (resolution), (priority), (requested_country), ())""",
    """SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
                (ORDER BY extract(epoch FROM first_forwarded_at - created_at)),
              percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
                (ORDER BY extract(epoch FROM acknowledged_at - forwarded_at)),
              percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
                (ORDER BY CASE WHEN answered_at >= forwarded_at
                               THEN extract(epoch FROM answered_at - forwarded_at) END)
       FROM trace_request""",
    """SELECT requested_country, percentile_cont(0.5) WITHIN GROUP
                (ORDER BY CASE WHEN answered_at >= forwarded_at
                               THEN extract(epoch FROM answered_at - forwarded_at) END)
       FROM trace_request GROUP BY requested_country""",
    """SELECT date_trunc('week', created_at AT TIME ZONE 'UTC')::date AS week, state, count(*)
       FROM trace_request GROUP BY 1, 2""",
]


def _dsn(admin_dsn: str, database: str) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{database}"


async def _create_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _generate(dsn: str, requests: int) -> float:
    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(GENERATE, requests)
        await connection.execute("VACUUM ANALYZE trace_request")
        count = await connection.fetchval("SELECT count(*) FROM trace_request")
        assert count == requests, count
    finally:
        await connection.close()
    return time.perf_counter() - started


async def _time_sql(dsn: str, rounds: int, deadline: float) -> tuple[list[float], list[list]]:
    connection = await asyncpg.connect(dsn)
    timings: list[float] = []
    results: list[list] = []
    try:
        for round_ in range(rounds + 1):
            started = time.perf_counter()
            results = [await connection.fetch(statement) for statement in HAND_WRITTEN]
            if round_:  # the first round warms caches
                timings.append(time.perf_counter() - started)
            if round_ and time.monotonic() > deadline:
                break
    finally:
        await connection.close()
    return timings, results


def _check_same_figures(results: list[list], body: dict) -> None:
    """The baseline must compute what the API publishes, or the ratio means nothing."""
    counts, quantiles = results[0], results[1][0]
    by_state = {row["state"]: row[5] for row in counts if row["state"] is not None}
    assert by_state == {k: v for k, v in body["by_state"].items() if v}, (by_state, body["by_state"])
    median_answer = round(quantiles[2][0] / 3600, 2)
    assert median_answer == body["time_to_answer_hours"]["median"], (median_answer, body)
    assert len(results[3]) == sum(1 for week in body["weekly"] for n in week["by_state"].values() if n)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _time_api(url: str, settings: Settings, rounds: int, deadline: float) -> tuple[list[float], dict]:
    token = issue_token(settings, subject="bench", agency="BENCH", country="AT", roles=["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    body: dict = {}
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0)) as http:
        for round_ in range(rounds + 1):
            started = time.perf_counter()
            response = await http.get("/v1/stats", headers=headers)
            response.raise_for_status()
            body = response.json()
            if round_:
                timings.append(time.perf_counter() - started)
            if round_ and time.monotonic() > deadline:
                break
    return timings, body


def _start_server(database_url: str, port: int) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "TRACING_DATABASE_URL": database_url,
        "TRACING_JWT_SECRET": SECRET,
        "TRACING_CHECKPOINT_INTERVAL_SECONDS": "0",
        "TRACING_LOG_LEVEL": "WARNING",
        "TRACING_SIGNING_KEY_FILE": str(ROOT / "var" / "bench-signing-key.pem"),
    }
    (ROOT / "var").mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "tracing.cli",
        "serve",
        "--no-migrate",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as http:
        for _ in range(150):
            if server.poll() is not None:
                raise SystemExit(
                    f"the server exited: {server.stderr.read().decode() if server.stderr else ''}"
                )
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the server did not become ready in 30 s")


async def run(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.max_seconds
    name = f"tracing_bench_{uuid.uuid4().hex[:8]}"
    dsn = _dsn(args.postgres, name)
    database_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    await _create_database(args.postgres, name)
    server = None
    try:
        await asyncio.to_thread(upgrade, database_url)
        generated = await _generate(dsn, args.requests)
        print(f"trace requests: {args.requests:,} generated in PostgreSQL in {generated:.1f} s ({name})")

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = _start_server(database_url, port)
        await _wait_until_up(url, server)
        settings = Settings(database_url=database_url, jwt_secret=SECRET)

        remaining = (deadline - time.monotonic()) / 2
        sql, results = await _time_sql(dsn, args.rounds, time.monotonic() + remaining)
        api, body = await _time_api(url, settings, args.rounds, deadline)
        assert body["total_requests"] == args.requests, body["total_requests"]
        _check_same_figures(results, body)

        sql_median, api_median = statistics.median(sql), statistics.median(api)
        print(f"hand-written SQL (4 statements via asyncpg): median {sql_median * 1000:,.0f} ms"
              f" over {len(sql)} rounds (min {min(sql) * 1000:,.0f} ms)")  # fmt: skip
        print(f"GET /v1/stats (HTTP, JSON):                  median {api_median * 1000:,.0f} ms"
              f" over {len(api)} rounds (min {min(api) * 1000:,.0f} ms)")  # fmt: skip
        print(
            f"figures: {body['by_state']}, response rate {body['response_rate']},"
            f" median answer {body['time_to_answer_hours']['median']} h, {len(body['weekly'])} weeks"
        )
        print(f"ratio API/SQL = {api_median / sql_median:.2f} (target <= 2.00)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if args.keep:
            print(f"kept database {name}")
        else:
            await _drop_database(args.postgres, name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop adding timing rounds after this")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TRACING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an administrative connection; a scratch database is created beside it and dropped",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
