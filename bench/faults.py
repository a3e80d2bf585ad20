"""Crash and fault runs under load: kill -9 the server, or stop and start the database under it.

`kill9`: users run the workflow (resiliently: retrying a lost or 503'd call, a submission with
its Idempotency-Key, a move with its If-Match) against one `tracing serve` process; the process is
killed with SIGKILL `--kills` times, each time restarted on the same port. Afterwards every
request that received 201 exists, every move that received 2xx is its exchange, every chain and
the latest checkpoint verify, nothing is half-written, and no outbox event is missing.

`pgrestart`: the same against a private, throwaway PostgreSQL cluster (initdb in a temp
directory, its own port; the machine's shared cluster is never touched), which is stopped (`pg_ctl
stop -m fast`, what `pg_ctlcluster ... restart` does first) for `--down` seconds and started
again, while the API process keeps running. While it is down clients must get 503 problem+json
(never another 5xx, never a hang) and /readyz 503 naming the database; afterwards the service
must recover by itself (no restart of the API): /readyz 200, 2xx again, and the same database
checks as above.

Run, from the project root (loopback only; each run stops by itself and removes what it made):

    .venv/bin/python -m bench.faults kill9                      # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python -m bench.faults kill9 --database sqlite
    .venv/bin/python -m bench.faults pgrestart                  # needs root or the postgres user

Exit code 0 when every check passes, 1 otherwise, 2 when `--time-limit` was hit. The short
versions run in the test suite (tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.checks import Verdict, check_database
from bench.harness import (
    DEFAULT_POSTGRES_ADMIN_URL,
    Secrets,
    ServerProcess,
    private_cluster,
    running,
    scratch_database,
)
from bench.load import client_for
from bench.workload import (
    TRANSPORT_ERROR,
    Ledger,
    Recorder,
    Run,
    Sample,
    User,
    print_figures,
    set_up_world,
)
from tracing.db import upgrade

HANG_SECONDS = 20.0
"""A request sent while the database is down and unanswered this long counts as a hang: well under
the pool's 30 s checkout timeout and asyncpg's 60 s connect timeout, which a hang would run into,
and well over the queueing of a CPU-starved server (up to 8 s on the shared test machine)."""


@dataclass
class FaultOutcome:
    name: str
    figures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    recorder: Recorder = field(default_factory=Recorder)
    ledger: Ledger = field(default_factory=Ledger)
    verdict: Verdict | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.verdict is not None and self.verdict.ok

    def print(self) -> None:
        print()
        print_figures(self.recorder.samples, self.elapsed, title=f"{self.name} requests")
        for name, value in self.figures.items():
            print(f"{name}: {value}")
        for kind, count in self.recorder.transport_errors.most_common(5):
            print(f"  no response: {kind} x{count}")
        for title, messages in (
            ("unexpected responses", self.recorder.unexpected),
            ("broken promises", self.recorder.violations),
        ):
            print(f"{title}: {len(messages)}")
            for message in messages[:10]:
                print(f"  {message}")
        if self.verdict is not None:
            self.verdict.print()
        for problem in self.problems:
            print(f"PROBLEM {problem}")
        print(f"RESULT: {'ok' if self.ok else 'FAILED'}")


class Users:
    """Resilient users playing in the background until told when to stop."""

    def __init__(self, client: httpx.AsyncClient, run_secrets: Secrets, users: int, seed: int) -> None:
        self.recorder, self.ledger = Recorder(), Ledger()
        self.run = Run(client, run_secrets, self.recorder, self.ledger, deadline=float("inf"), resilient=True)
        self.people = [User(self.run, number, seed) for number in range(users)]
        self.task: asyncio.Task[list[None]] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(asyncio.gather(*(p.play() for p in self.people)))

    async def stop_after(self, seconds: float) -> float:
        """Let them play `seconds` more, wait for them to settle; returns the run's length."""
        assert self.task is not None
        self.run.deadline = self.recorder.now() + seconds
        await self.task
        return self.recorder.now()

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


# ---- kill -9 --------------------------------------------------------------------------------


async def kill9_scenario(
    database_url: str,
    scratch: Path,
    *,
    users: int = 32,
    before: float = 20.0,
    after: float = 20.0,
    kills: int = 1,
    seed: int = 11,
) -> FaultOutcome:
    """Load, then `kills` times: SIGKILL the server `before` seconds into its life and restart it;
    then `after` seconds more of load, and the checks."""
    outcome = FaultOutcome("kill9")
    run_secrets = Secrets()
    server = ServerProcess(
        database_url=database_url,
        run_secrets=run_secrets,
        log_path=scratch / "server.log",
        checkpoint_interval_seconds=3,  # checkpoints land between the kills too
    )
    restarts: list[float] = []
    in_flight: list[int] = []
    with running(server):
        await server.wait_ready()
        async with client_for(server, users) as client:
            await set_up_world(client, run_secrets)
            players = Users(client, run_secrets, users, seed)
            outcome.recorder, outcome.ledger = players.recorder, players.ledger
            players.start()
            try:
                for _ in range(kills):
                    await asyncio.sleep(before)
                    killed_at = players.recorder.now()
                    server.kill9()
                    server.start()
                    await server.wait_ready()
                    restarts.append(players.recorder.now() - killed_at)
                    lost = [
                        s
                        for s in players.recorder.between(killed_at - 30, killed_at + 0.05)
                        if s.status == TRANSPORT_ERROR and s.started + s.seconds >= killed_at
                    ]
                    in_flight.append(len(lost))
                outcome.elapsed = await players.stop_after(after)
            finally:
                await players.cancel()
    outcome.verdict = await check_database(database_url, outcome.ledger, run_secrets.public_pem)

    samples = outcome.recorder.samples
    server_errors = [s for s in samples if s.status >= 500]
    outcome.figures = {
        "kills": str(kills),
        "restart, kill to /readyz 200": ", ".join(_seconds(r) for r in restarts),
        "requests cut off by each kill": ", ".join(map(str, in_flight)),
        "calls without a response (retried)": str(sum(outcome.recorder.transport_errors.values())),
        "5xx responses": str(len(server_errors)),
        "moves found committed after their response was lost": str(outcome.ledger.learned_steps()),
        "submissions answered as a replay after a lost response": str(outcome.ledger.submissions_replayed),
    }
    if server_errors:
        outcome.problems.append(f"{len(server_errors)} responses were 5xx")
    if not any(in_flight):
        outcome.problems.append("no request was in flight at any kill; the run proved nothing")
    outcome.problems += [f"server log: {line[:200]}" for line in server.log_alarms()[:5]]
    return outcome


# ---- PostgreSQL stop/start ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One GET /readyz: when it was sent and answered (seconds into the run), and what it said."""

    started: float
    ended: float
    status: int
    database: str


async def probe_readiness(base_url: str, recorder: Recorder, seen: list[Probe]) -> None:
    """GET /readyz every 0.2 s until cancelled."""
    async with httpx.AsyncClient(base_url=base_url, timeout=HANG_SECONDS) as client:
        while True:
            started = recorder.now()
            try:
                response = await client.get("/readyz")
                status, database = response.status_code, str(response.json().get("database"))
            except (httpx.TransportError, ValueError) as exc:
                status, database = TRANSPORT_ERROR, type(exc).__name__
            seen.append(Probe(started, recorder.now(), status, database))
            await asyncio.sleep(0.2)


async def pgrestart_scenario(
    scratch: Path,
    *,
    users: int = 32,
    before: float = 15.0,
    down: float = 10.0,
    after: float = 20.0,
    seed: int = 13,
) -> FaultOutcome:
    outcome = FaultOutcome("pgrestart")
    run_secrets = Secrets()
    readiness: list[Probe] = []
    async with private_cluster() as cluster, scratch_database(cluster.admin_url, "tracing_fault") as url:
        server = ServerProcess(database_url=url, run_secrets=run_secrets, log_path=scratch / "server.log")
        with running(server):
            await server.wait_ready()
            assert server.process is not None
            pid = server.process.pid
            async with client_for(server, users) as client:
                await set_up_world(client, run_secrets)
                players = Users(client, run_secrets, users, seed)
                recorder = outcome.recorder = players.recorder
                outcome.ledger = players.ledger
                players.start()
                prober = asyncio.ensure_future(probe_readiness(server.base_url, recorder, readiness))
                try:
                    await asyncio.sleep(before)
                    stopping = recorder.now()
                    await asyncio.to_thread(cluster.stop, "fast")
                    stopped = recorder.now()
                    await asyncio.sleep(down)
                    starting = recorder.now()
                    await asyncio.to_thread(cluster.start)
                    started = recorder.now()  # pg_ctl -w returned: the cluster accepts connections
                    outcome.elapsed = await players.stop_after(after)
                finally:
                    prober.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await prober
                    await players.cancel()
            same_process = server.starts == 1 and server.process.pid == pid and server.process.poll() is None
            alarms = server.log_alarms()
        outcome.verdict = await check_database(url, outcome.ledger, run_secrets.public_pem)
        if cluster.log.exists():
            shutil.copyfile(cluster.log, scratch / "postgres.log")

    _judge_outage(outcome, readiness, (stopping, stopped, starting, started), same_process, alarms)
    return outcome


def _counted(samples: list[Sample]) -> str:
    return f"{len(samples)}, statuses {sorted({s.status for s in samples})}"


def _judge_outage(
    outcome: FaultOutcome,
    readiness: list[Probe],
    moments: tuple[float, float, float, float],
    same_process: bool,
    alarms: list[str],
) -> None:
    """`moments`: stop requested, stopped, start requested, accepting connections again.

    "While down" means sent after the stop and answered before the start was requested. A request
    sent while down but answered after the restart (it queued in a busy server until the database
    was back) may get either answer; it counts only for the hang check."""
    stopping, stopped, starting, started = moments
    recorder, problems = outcome.recorder, outcome.problems
    samples = recorder.samples
    sent_down = [s for s in samples if stopped <= s.started < starting]
    down = [s for s in sent_down if s.started + s.seconds < starting]
    spanning = [s for s in sent_down if s.started + s.seconds >= starting]
    ready_down = [p for p in readiness if stopped <= p.started and p.ended < starting]
    after = [s for s in samples if s.started >= started]
    first_ok = min((s.started + s.seconds for s in after if 200 <= s.status < 300), default=None)
    first_ready = min((p.ended for p in readiness if p.started >= started and p.status == 200), default=None)
    late_503 = [s for s in after if s.status == 503]
    other_5xx = [s for s in samples if s.status >= 500 and s.status != 503]
    no_response = [s for s in samples if s.status == TRANSPORT_ERROR]
    slowest_down = max((s.seconds for s in sent_down), default=0.0)
    in_flight = [s for s in samples if s.started < stopped and s.started + s.seconds >= stopping]
    outcome.figures = {
        "database down (stop requested -> accepting again)": _seconds(started - stopping),
        "pg_ctl stop -m fast took": _seconds(stopped - stopping),
        "requests in flight at the stop": _counted(in_flight),
        "requests sent and answered while down": _counted(down),
        "requests sent while down, answered after the restart": _counted(spanning),
        "slowest request sent while down": _seconds(slowest_down),
        "/readyz while down": f"{len(ready_down)}, {sorted({(p.status, p.database) for p in ready_down})}",
        "database accepting -> first 2xx": _seconds(None if first_ok is None else first_ok - started),
        "database accepting -> /readyz 200": _seconds(None if first_ready is None else first_ready - started),
        "503 to requests sent after the database was back": str(len(late_503)),
        "5xx other than 503": str(len(other_5xx)),
        "calls without a response": str(len(no_response)),
        "API process restarted": "no" if same_process else "YES",
    }
    if not down or any(s.status != 503 for s in down):
        odd = [
            f"{s.operation} {s.status} sent {s.started - stopped:+.2f} s after the stop in {s.seconds:.2f} s"
            for s in down
            if s.status != 503
        ]
        problems.append(f"requests while the database was down were not all 503: {odd[:5]}")
    if not ready_down or any(p.status != 503 or p.database in ("ok", "None") for p in ready_down):
        answers = sorted({(p.status, p.database) for p in ready_down})
        problems.append(f"/readyz while the database was down: {answers}")
    if slowest_down > HANG_SECONDS:
        problems.append(f"a request sent while the database was down took {slowest_down:.1f} s (a hang)")
    if first_ok is None or first_ready is None:
        problems.append("the service did not recover after the database came back")
    if late_503:
        problems.append(f"{len(late_503)} requests sent after the database was back got 503")
    if other_5xx:
        problems.append(
            f"{len(other_5xx)} responses were 5xx other than 503: {sorted({s.status for s in other_5xx})}"
        )
    if no_response:
        problems.append(f"{len(no_response)} calls got no response from the API, which stayed up")
    if not same_process:
        problems.append("the API process was restarted; it must recover by itself")
    problems.extend(f"server log: {line[:200]}" for line in alarms[:5])


# ---- the command ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def kill9_database(args: argparse.Namespace, scratch: Path) -> AsyncIterator[str]:
    if args.database == "sqlite":
        url = f"sqlite+aiosqlite:///{scratch / 'faults.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    async with scratch_database(args.postgres_admin_url, "tracing_fault") as url:
        yield url


async def run_fault(args: argparse.Namespace, scratch: Path) -> FaultOutcome:
    if args.fault == "kill9":
        async with kill9_database(args, scratch) as url:
            return await kill9_scenario(
                url, scratch, users=args.users, before=args.before, after=args.after, kills=args.kills
            )
    return await pgrestart_scenario(
        scratch, users=args.users, before=args.before, down=args.down, after=args.after
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    faults = parser.add_subparsers(dest="fault", required=True)
    kill9 = faults.add_parser("kill9", help="SIGKILL the server under load and restart it")
    kill9.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    kill9.add_argument("--kills", type=int, default=3)
    kill9.add_argument("--before", type=float, default=20.0, help="seconds of load before each kill")
    pgrestart = faults.add_parser("pgrestart", help="stop and start a private PostgreSQL under load")
    pgrestart.add_argument("--before", type=float, default=15.0, help="seconds of load before the stop")
    pgrestart.add_argument("--down", type=float, default=10.0, help="seconds the database stays down")
    for sub in (kill9, pgrestart):
        sub.add_argument("--users", type=int, default=32)
        sub.add_argument("--after", type=float, default=20.0, help="seconds of load after recovery")
        sub.add_argument("--postgres-admin-url", default=DEFAULT_POSTGRES_ADMIN_URL)
        sub.add_argument("--time-limit", type=float, default=600.0, help="overall cap in seconds")
        sub.add_argument("--keep-log", type=Path, help="copy the server's log here (PostgreSQL's: .postgres)")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tracing-faults-") as directory:
        try:
            async with asyncio.timeout(args.time_limit):
                outcome = await run_fault(args, Path(directory))
        except TimeoutError:
            print(f"gave up: the run exceeded the time limit of {args.time_limit:.0f} s", file=sys.stderr)
            return 2
        finally:
            if args.keep_log and (Path(directory) / "server.log").exists():
                shutil.copyfile(Path(directory) / "server.log", args.keep_log)
            if args.keep_log and (Path(directory) / "postgres.log").exists():
                shutil.copyfile(Path(directory) / "postgres.log", f"{args.keep_log}.postgres")
    outcome.print()
    return 0 if outcome.ok else 1


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
