"""Processes and databases for the load and fault runs: `tracing serve` as a subprocess on a free
loopback port, a scratch database on an existing PostgreSQL, and a private throwaway PostgreSQL
cluster that a fault run may stop and start at will.

Everything here cleans up after itself: servers are killed (and die with this process, through
PR_SET_PDEATHSIG, should it be killed first), scratch databases are dropped, private clusters are
stopped and their directories removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from tracing.audit.signing import Signer, generate_private_pem
from tracing.config import Settings
from tracing.db import upgrade
from tracing.security import issue_token

LOOPBACK = "127.0.0.1"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Lines a healthy server never writes: an exception that escaped every handler (uvicorn's
# "Exception in ASGI application" and its traceback) or the app's own 500 log line.
SERVER_LOG_ALARMS = ("Traceback (most recent call last)", "Exception in ASGI application", "unhandled_error")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the process that started it dies."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def tracing_command() -> list[str]:
    """The venv's `tracing` script next to this interpreter, or the module as a fallback."""
    script = Path(sys.executable).parent / "tracing"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tracing.cli"]


@dataclass
class Secrets:
    """The JWT secret and evidence signing key a run gives its server, so it can mint tokens and
    verify the audit trail afterwards."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    signing_key_pem: str = field(default_factory=generate_private_pem)

    @property
    def public_pem(self) -> str:
        return Signer.from_private_pem(self.signing_key_pem).public_pem

    def settings(self, database_url: str) -> Settings:
        return Settings(
            database_url=database_url, jwt_secret=self.jwt_secret, signing_key=self.signing_key_pem
        )

    def bearer(self, *, subject: str, agency: str, country: str, roles: list[str]) -> dict[str, str]:
        token = issue_token(
            self.settings("sqlite://"),
            subject=subject,
            agency=agency,
            country=country,
            roles=roles,
            ttl_seconds=6 * 3600,
        )
        return {"Authorization": f"Bearer {token}"}


class ServerProcess:
    """One `tracing serve --no-migrate` process on a loopback port, logging to a file."""

    def __init__(
        self,
        *,
        database_url: str,
        run_secrets: Secrets,
        log_path: Path,
        port: int | None = None,
        log_level: str = "INFO",
        checkpoint_interval_seconds: int = 30,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "TRACING_ENV": "production",
            "TRACING_DATABASE_URL": database_url,
            "TRACING_JWT_SECRET": run_secrets.jwt_secret,
            "TRACING_SIGNING_KEY": run_secrets.signing_key_pem,
            "TRACING_RATE_LIMIT_PER_MINUTE": "0",  # a load run's principals are few and busy
            "TRACING_CHECKPOINT_INTERVAL_SECONDS": str(checkpoint_interval_seconds),
            "TRACING_LOG_LEVEL": log_level,
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        command = [*tracing_command(), "serve", "--no-migrate", "--host", LOOPBACK, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts + 1}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1

    async def wait_listening(self, within: float = 60.0) -> float:
        """Seconds until /healthz answers (the app is up; the database may not be)."""
        return await self._wait_for("/healthz", within)

    async def wait_ready(self, within: float = 60.0) -> float:
        """Seconds until /readyz answers 200 (the app is up and reaches its database)."""
        return await self._wait_for("/readyz", within)

    async def _wait_for(self, path: str, within: float) -> float:
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"the server exited; see {self.log_path}\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(path)).status_code == 200:
                        return time.monotonic() - started
                if time.monotonic() - started > within:
                    raise TimeoutError(
                        f"{path} did not answer 200 within {within:.0f} s; see {self.log_path}"
                    )
                await asyncio.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, connections dropped mid-request."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; safe to call more than once."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_alarms(self) -> list[str]:
        """Lines of the server log that show an exception no handler rendered (should be none)."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if any(alarm in line for alarm in SERVER_LOG_ALARMS)]

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start the server and make sure it is gone when the block ends, however it ends."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---- databases ------------------------------------------------------------------------------


def sqlalchemy_url(asyncpg_url: str) -> str:
    return asyncpg_url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _with_database(admin_url: str, database: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{database}"


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, prefix: str = "tracing_load") -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database, dropped WITH (FORCE) afterwards; yields its
    SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = sqlalchemy_url(_with_database(admin_url, name))
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def private_cluster_unavailable() -> str | None:
    """Why a private cluster cannot be made here, or None if it can."""
    if postgres_bin_dir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' system user to own the cluster"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "a private cluster needs root (to run initdb as postgres) or the postgres user"
    return None


class PostgresCluster:
    """A throwaway PostgreSQL cluster of our own (initdb into a temp directory, its own port, trust
    authentication, listening on 127.0.0.1 only), which fault runs stop and start freely. It never
    touches the machine's shared cluster."""

    def __init__(self, port: int | None = None) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries found")
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="tracing-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {completed.stdout}{completed.stderr}")

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self.directory.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses={LOOPBACK} -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` (the default of pg_ctl and pg_ctlcluster) rolls back open transactions and
        disconnects every client."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def private_cluster() -> AsyncIterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.remove)
