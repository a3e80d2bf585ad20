"""The README's backup and restore (pg_dump -Fc, pg_restore into a fresh database) keeps what the
evidence depends on: every audit chain and the latest signed checkpoint verify with the signing
key, the append-only triggers still refuse UPDATE, DELETE and TRUNCATE, and the schema is at the
latest migration."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_SIGNING_KEY, Tokens, submission
from tracing.audit.log import verify_everything
from tracing.audit.signing import Signer
from tracing.db import create_engine, create_sessionmaker, current_revision, head_revision


async def _run(*command: str) -> None:
    await asyncio.to_thread(subprocess.run, command, check=True, timeout=60)


def _libpq_args(database_url: str) -> tuple[list[str], str]:
    parts = urlsplit(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    args = [
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]
    return args, parts.path.lstrip("/")


async def test_restored_backup_verifies_and_stays_append_only(
    backend: str, database_url: str, client: httpx.AsyncClient, tokens: Tokens, world: None, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("pg_dump and pg_restore are for PostgreSQL")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump / pg_restore are not installed")
    response = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    request_id = response.json()["id"]
    forwarded = await client.post(
        f"/v1/trace-requests/{request_id}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
    )
    assert forwarded.status_code == 200
    assert (await client.post("/v1/audit/checkpoints", headers=tokens.admin)).status_code == 201

    connection_args, source = _libpq_args(database_url)
    dump = tmp_path / "tracing.dump"
    await _run("pg_dump", *connection_args, "-Fc", "-f", str(dump), source)
    target = f"{source}_restored"
    admin_url = database_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{target}"')
    finally:
        await admin.close()
    restored_url = database_url.rsplit("/", 1)[0] + f"/{target}"
    try:
        await _run(
            "pg_restore",
            *connection_args,
            "-d",
            target,
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            str(dump),
        )
        engine = create_engine(restored_url)
        try:
            assert await current_revision(engine) == head_revision()
            async with create_sessionmaker(engine)() as session:
                report = await verify_everything(
                    session, Signer.from_private_pem(TEST_SIGNING_KEY).public_pem
                )
        finally:
            await engine.dispose()
        assert report.valid, (report.broken, report.checkpoint_problems)
        assert (report.chains, report.entries) == (1, 2)

        restored = await asyncpg.connect(restored_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for statement in (
                "UPDATE audit_entry SET action = 'forged'",
                "DELETE FROM exchange",
                "TRUNCATE audit_entry CASCADE",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await restored.execute(statement)
        finally:
            await restored.close()
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        finally:
            await admin.close()
