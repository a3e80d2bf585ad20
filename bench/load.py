"""Load test: simulated users run the whole workflow against one `tracing serve` process on
PostgreSQL, then the database is held to every answer the service gave.

What it does:
- creates a scratch database on the PostgreSQL at `--postgres-admin-url` (migrated; dropped WITH
  (FORCE) at the end) and starts ONE `tracing serve --no-migrate` subprocess on a free port of
  127.0.0.1, in production mode, with a JWT secret and evidence signing key made for the run (so
  the script can mint tokens and verify the audit trail), the per-principal rate limit off
  (TRACING_RATE_LIMIT_PER_MINUTE=0) and a checkpoint signed every `--checkpoint-interval` seconds;
- registers, through the API, contact points of ten countries, four investigating agencies and
  an open operation;
- runs `--users` concurrent users (64) for `--duration` seconds (120), each playing trace requests
  start to finish (see bench/workload.py): submit with an Idempotency-Key (5% replayed), forward
  (10% as a race between two officers, where exactly one may win), acknowledge, answer (a quarter
  point onward to a third country, which is then asked too), close or withdraw; reads of the
  request, the parties' lists, the exchanges, the audit trail, and `GET /v1/stats`;
- prints requests per second, p50/p99/max latency overall and per operation, statuses, 5xx count;
- stops the server and checks the database (bench/checks.py): every 201 and every 2xx move is
  there as the client last saw it, nothing is half-written, every audit chain and the latest
  checkpoint verify.

Run, from the project root (traffic stays on 127.0.0.1; the run stops by itself):

    .venv/bin/python -m bench.load                          # 64 users, 2 minutes
    .venv/bin/python -m bench.load --users 16 --duration 20

Exit code 0 when every check passes; 1 when any 5xx, lost connection, unexpected status, broken
promise, server traceback or database check failed; 2 when `--time-limit` was hit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.checks import check_database
from bench.harness import DEFAULT_POSTGRES_ADMIN_URL, Secrets, ServerProcess, running, scratch_database
from bench.workload import Ledger, Recorder, Run, print_figures, run_users, set_up_world


def client_for(server: ServerProcess, users: int) -> httpx.AsyncClient:
    # uvicorn closes a keep-alive connection after 5 s idle; a client that keeps idle connections
    # as long (httpx's default) now and then sends a request on one the server is closing, and
    # gets no response. Every client of the service should keep them for less (README, Operations).
    return httpx.AsyncClient(
        base_url=server.base_url,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(
            max_connections=users * 2, max_keepalive_connections=users * 2, keepalive_expiry=2.0
        ),
    )


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def postgres_version(admin_url: str) -> str:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def database_bytes(database_url: str) -> int:
    connection = await asyncpg.connect(
        database_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10
    )
    try:
        return int(await connection.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await connection.close()


def machine_context() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} at start, Python {platform.python_version()}"


async def run_load(args: argparse.Namespace, scratch: Path) -> int:
    print(f"machine: {machine_context()}; PostgreSQL {await postgres_version(args.postgres_admin_url)}")
    async with scratch_database(args.postgres_admin_url) as url:
        run_secrets = Secrets()
        server = ServerProcess(
            database_url=url,
            run_secrets=run_secrets,
            log_path=scratch / "server.log",
            log_level=args.server_log_level,
            checkpoint_interval_seconds=args.checkpoint_interval,
        )
        with running(server):
            await server.wait_ready()
            assert server.process is not None
            async with client_for(server, args.users) as client:
                await set_up_world(client, run_secrets)
                size_before = await database_bytes(url)
                recorder, ledger = Recorder(), Ledger()
                run = Run(client, run_secrets, recorder, ledger, deadline=args.duration)
                print(
                    f"load: {args.users} users for {args.duration:.0f} s against one server"
                    f" (pid {server.process.pid}, {server.base_url}, log level {args.server_log_level})",
                    flush=True,
                )
                server_cpu, client_cpu = cpu_seconds_of(server.process.pid), own_cpu_seconds()
                recorder.started = time.monotonic()
                people = await run_users(run, args.users, args.seed)
                elapsed = recorder.now()
                server_cpu = cpu_seconds_of(server.process.pid) - server_cpu
                client_cpu = own_cpu_seconds() - client_cpu
        verdict = await check_database(url, ledger, run_secrets.public_pem)
        grown = await database_bytes(url) - size_before
        alarms = server.log_alarms()
        if args.keep_log:
            shutil.copyfile(server.log_path, args.keep_log)

    print()
    print_figures(recorder.samples, elapsed)
    statuses = [s.status for s in recorder.samples]
    server_errors = sum(1 for s in statuses if s >= 500)
    other = sorted({s for s in statuses if 300 <= s < 500})
    print(f"5xx responses: {server_errors}")
    print("other non-2xx: " + (", ".join(f"{s}: {statuses.count(s)}" for s in other) or "none"))
    races = sum(1 for s in recorder.samples if s.operation == "forward-race") // 2
    print(f"  (forward races: {races}; each has exactly one 200 and one 409/412 loser by design)")
    print(f"no response (refused, reset, timed out): {sum(recorder.transport_errors.values())}")
    for kind, count in recorder.transport_errors.most_common(5):
        print(f"  {kind} x{count}")
    print(
        f"cases played: {sum(p.cases_played for p in people)}; CPU seconds: server {server_cpu:.1f},"
        f" load client {client_cpu:.1f} (of {elapsed * (os.cpu_count() or 1):.0f} on the machine);"
        f" {len(statuses) / max(server_cpu, 0.001):.0f} requests per server CPU-second;"
        f" load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for title, messages in (
        ("unexpected responses", recorder.unexpected),
        ("broken promises", recorder.violations),
    ):
        print(f"{title}: {len(messages)}")
        for message in messages[:10]:
            print(f"  {message}")
    verdict.print()
    requests = verdict.counts.get("trace requests", 0)
    print(
        f"database grew by {grown / 1e6:.1f} MB: {grown / max(requests, 1) / 1024:.1f} KiB per trace request"
        " with its exchanges, audit entries, access log rows and indexes"
    )
    print(f"server log: {len(alarms)} lines showing an unhandled exception")
    for line in alarms[:5]:
        print(f"  {line[:300]}")
    failed = (
        server_errors
        or recorder.transport_errors
        or recorder.unexpected
        or recorder.violations
        or not verdict.ok
        or alarms
    )
    print(
        "RESULT: "
        + ("FAILED" if failed else "ok: no 5xx, every acknowledged write present, every chain verifies")
    )
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=64, help="concurrent simulated users")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=7, help="seed of the users' random choices")
    parser.add_argument(
        "--checkpoint-interval", type=int, default=30, help="server's checkpoint interval (s)"
    )
    parser.add_argument("--server-log-level", default="INFO", help="INFO writes an access line per request")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    parser.add_argument("--postgres-admin-url", default=DEFAULT_POSTGRES_ADMIN_URL)
    parser.add_argument("--time-limit", type=float, help="overall cap in seconds (default: duration + 300)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.duration <= 0:
        parser.error("--users and --duration must be positive")
    args.time_limit = args.time_limit or args.duration + 300
    return args


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tracing-load-") as directory:
        try:
            async with asyncio.timeout(args.time_limit):
                return await run_load(args, Path(directory))
        except TimeoutError:
            print(f"gave up: the run exceeded the time limit of {args.time_limit:.0f} s", file=sys.stderr)
            return 2


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
