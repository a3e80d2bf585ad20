"""The audit trail: every exchange is chained, tampering is detected and named, evidence bundles
verify offline, and the tables refuse changes."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_SECRET, TEST_SIGNING_KEY, Tokens, submission
from tracing.audit.bundle import verify_bundle
from tracing.audit.chain import canonical_bytes
from tracing.audit.log import Append, append, append_many, trail, verify_everything
from tracing.audit.signing import Signer, generate_private_pem
from tracing.db import create_engine, create_sessionmaker
from tracing.models.types import utcnow

PUBLIC_PEM = Signer.from_private_pem(TEST_SIGNING_KEY).public_pem


async def walk(client: httpx.AsyncClient, tokens: Tokens, body: dict | None = None) -> str:
    """Submit, forward to RU, acknowledge, answer, close: five exchanges."""
    created = await client.post("/v1/trace-requests", json=body or submission(), headers=tokens.investigator)
    assert created.status_code == 201, created.text
    base = f"/v1/trace-requests/{created.json()['id']}"
    steps = [
        ("forward", {"to_country": "RU"}, tokens.ncp("NE")),
        ("acknowledge", {"note": "получено"}, tokens.ncp("RU")),
        ("answer", {"outcome": "traced", "findings": "Izhmash 1975, sold to NG MoD"}, tokens.ncp("RU")),
        ("close", {"resolution": "origin_established"}, tokens.investigator),
    ]
    for action, body_, headers in steps:
        response = await client.post(f"{base}/{action}", json=body_, headers=headers)
        assert response.status_code == 200, response.text
    return created.json()["id"]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def tamper(engine: AsyncEngine, *statements: tuple[str, dict[str, Any]]) -> None:
    """Run statements as a superuser would, with the append-only triggers out of the way."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        else:
            names = await connection.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
            for (name,) in names.all():
                await connection.execute(sa.text(f"DROP TRIGGER {name}"))
        for sql, params in statements:
            await connection.execute(_sql(sql), params)


_TYPES = {"chain": sa.Uuid()}


def _sql(sql: str) -> sa.TextClause:
    """Raw SQL with the chain id and timestamps bound as the models bind them on each database."""
    return sa.text(sql).bindparams(
        *(sa.bindparam(name, type_=t) for name, t in _TYPES.items() if f":{name}" in sql)
    )


def _chain(request_id: str) -> dict[str, Any]:
    return {"chain": uuid.UUID(request_id)}


async def _audit(client: httpx.AsyncClient, tokens: Tokens, request_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/trace-requests/{request_id}/audit", headers=tokens.investigator)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_exchange_is_chained_and_verifies(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request_id = await walk(client, tokens)
    trail = await _audit(client, tokens, request_id)
    assert trail["verification"] == {"valid": True, "checked": 5, "first_invalid_seq": None, "reason": None}
    entries = trail["entries"]
    assert [e["action"] for e in entries] == ["submit", "forward", "acknowledge", "answer", "close"]
    assert entries[0]["prev_hash"] == "00" * 32
    assert all(
        later["prev_hash"] == earlier["hash"] for earlier, later in zip(entries, entries[1:], strict=False)
    )
    assert '"note":"получено"' in entries[2]["canonical"]
    assert '"agency":"RU-NCP"' in entries[2]["canonical"]
    for entry in entries:  # the bytes kept are the canonical form of what they say, whoever wrote them
        content = json.loads(entry["canonical"])
        assert (content["chain"], content["seq"]) == (request_id, entry["seq"])
        assert canonical_bytes(content).decode() == entry["canonical"]


async def _change_one_byte(engine: AsyncEngine, request_id: str) -> None:
    async with engine.connect() as connection:
        canonical = (
            await connection.execute(
                _sql("SELECT canonical FROM audit_entry WHERE chain_id = :chain AND seq = 3"),
                _chain(request_id),
            )
        ).scalar_one()
    altered = bytes(canonical).replace(b"RU-NCP", b"RU-NCQ")
    await tamper(
        engine,
        (
            "UPDATE audit_entry SET canonical = :c WHERE chain_id = :chain AND seq = 3",
            {"c": altered, **_chain(request_id)},
        ),
    )


TAMPERING = {
    "one_byte_changed": (_change_one_byte, 3, "altered"),
    "entry_deleted": (
        lambda engine, rid: tamper(
            engine, ("DELETE FROM audit_entry WHERE chain_id = :chain AND seq = 2", _chain(rid))
        ),
        2,
        "missing",
    ),
    "entries_reordered": (
        lambda engine, rid: tamper(
            engine,
            ("UPDATE audit_entry SET seq = 100 WHERE chain_id = :chain AND seq = 2", _chain(rid)),
            ("UPDATE audit_entry SET seq = 2 WHERE chain_id = :chain AND seq = 3", _chain(rid)),
            ("UPDATE audit_entry SET seq = 3 WHERE chain_id = :chain AND seq = 100", _chain(rid)),
        ),
        2,
        "link",
    ),
    "last_entry_cut": (
        lambda engine, rid: tamper(
            engine, ("DELETE FROM audit_entry WHERE chain_id = :chain AND seq = 5", _chain(rid))
        ),
        5,
        "missing",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
async def test_tampering_is_detected_and_named(
    client: httpx.AsyncClient, tokens: Tokens, world: None, engine: AsyncEngine, case: str
) -> None:
    untouched = await walk(client, tokens, submission(case_reference="NE/untouched"))
    request_id = await walk(client, tokens)
    change, first_invalid, reason = TAMPERING[case]
    await change(engine, request_id)

    verification = (await _audit(client, tokens, request_id))["verification"]
    assert (verification["valid"], verification["first_invalid_seq"]) == (False, first_invalid)
    assert reason in verification["reason"]
    assert (await _audit(client, tokens, untouched))["verification"]["valid"] is True

    async with create_sessionmaker(engine)() as session:
        report = await verify_everything(session, PUBLIC_PEM)
    assert list(report.broken) == [uuid.UUID(request_id)]
    assert report.broken[uuid.UUID(request_id)].first_invalid_seq == first_invalid


async def test_forged_entry_is_detected(
    client: httpx.AsyncClient, tokens: Tokens, world: None, engine: AsyncEngine
) -> None:
    request_id = await walk(client, tokens)
    async with engine.connect() as connection:
        last = (
            await connection.execute(
                _sql("SELECT hash, at FROM audit_entry WHERE chain_id = :chain AND seq = 5"),
                _chain(request_id),
            )
        ).one()
    from tracing.audit.chain import canonical_bytes, entry_hash

    forged = canonical_bytes(
        {"chain": request_id, "seq": 6, "action": "answer", "payload": {"outcome": "traced"}}
    )
    digest = entry_hash(uuid.UUID(request_id), 6, bytes(last.hash), forged)
    await tamper(
        engine,
        (
            "INSERT INTO audit_entry (chain_id, seq, action, at, prev_hash, hash, canonical)"
            " VALUES (:chain, 6, 'answer', :at, :prev, :hash, :canonical)",
            {
                **_chain(request_id),
                "at": last.at,
                "prev": bytes(last.hash),
                "hash": digest,
                "canonical": forged,
            },
        ),
    )
    verification = (await _audit(client, tokens, request_id))["verification"]
    assert (verification["valid"], verification["first_invalid_seq"]) == (False, 6)
    assert "beyond the chain head" in verification["reason"]


async def test_deleting_a_whole_chain_is_caught_by_the_checkpoint(
    client: httpx.AsyncClient, tokens: Tokens, world: None, engine: AsyncEngine
) -> None:
    kept = await walk(client, tokens, submission(case_reference="NE/kept"))
    erased = await walk(client, tokens)
    checkpoint = await client.post("/v1/audit/checkpoints", headers=tokens.headers("UN-ADMIN", "AT", "admin"))
    assert (checkpoint.status_code, checkpoint.json()["size"]) == (201, 2)
    await tamper(
        engine,
        ("DELETE FROM audit_entry WHERE chain_id = :chain", _chain(erased)),
        ("DELETE FROM audit_head WHERE chain_id = :chain", _chain(erased)),
    )
    async with create_sessionmaker(engine)() as session:
        report = await verify_everything(session, PUBLIC_PEM)
    assert not report.valid
    assert report.checkpoint_problems == [f"checkpoint 1: chain {erased} is missing"]
    assert kept not in str(report.checkpoint_problems)


async def test_tables_refuse_update_delete_and_truncate(
    client: httpx.AsyncClient, tokens: Tokens, world: None, engine: AsyncEngine, backend: str
) -> None:
    request_id = await walk(client, tokens)
    await client.get(f"/v1/trace-requests/{request_id}", headers=tokens.investigator)  # an access log row
    attempts = [
        "UPDATE audit_entry SET action = 'x' WHERE chain_id = :chain",
        "DELETE FROM audit_entry WHERE chain_id = :chain",
        "UPDATE exchange SET payload = '{}' WHERE trace_request_id = :chain",
        "DELETE FROM exchange WHERE trace_request_id = :chain",
        "DELETE FROM audit_head WHERE chain_id = :chain",
        "DELETE FROM access_log",
    ]
    if backend == "postgresql":
        attempts += ["TRUNCATE audit_entry", "TRUNCATE exchange CASCADE", "TRUNCATE access_log"]
    for sql in attempts:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(_sql(sql), _chain(request_id) if ":chain" in sql else {})
    assert (await _audit(client, tokens, request_id))["verification"]["valid"] is True


async def _bundle(client: httpx.AsyncClient, tokens: Tokens, request_id: str) -> str:
    response = await client.get(f"/v1/trace-requests/{request_id}/audit/bundle", headers=tokens.ncp("RU"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jose")
    return response.text


def _flip(segment: str, at: int) -> str:
    replacement = "A" if segment[at] != "A" else "B"
    return segment[:at] + replacement + segment[at + 1 :]


async def test_bundle_verifies_offline_and_detects_alteration(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request_id = await walk(client, tokens)
    await client.post("/v1/audit/checkpoints", headers=tokens.headers("NE-AUD", "NE", "auditor"))
    bundle = await _bundle(client, tokens, request_id)
    problems, payload = verify_bundle(bundle, PUBLIC_PEM)
    assert problems == []
    assert payload is not None
    assert payload["trace_request"]["id"] == request_id
    assert len(payload["exchanges"]) == len(payload["audit"]["entries"]) == 5
    assert payload["checkpoint"]["leaf"]["seq"] == 5

    header, body, signature = bundle.split(".")
    altered_body = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(body + "==").replace(b"origin_established", b"context_established")
        )
        .decode()
        .rstrip("=")
    )
    for broken in (f"{header}.{altered_body}.{signature}", f"{header}.{body}.{_flip(signature, 10)}"):
        problems, _ = verify_bundle(broken, PUBLIC_PEM)
        assert problems and problems[0].startswith("bundle signature")

    other_key = Signer.from_private_pem(generate_private_pem())
    problems, _ = verify_bundle(bundle, other_key.public_pem)
    assert problems and "does not verify" in problems[0]
    resigned = other_key.sign(payload)
    problems, _ = verify_bundle(resigned, PUBLIC_PEM)
    assert problems and problems[0].startswith("bundle signature")


async def test_bundle_with_rewritten_history_but_valid_signature_is_rejected(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    """Whoever holds the key still cannot edit an exchange without breaking the chain."""
    request_id = await walk(client, tokens)
    _, payload = verify_bundle(await _bundle(client, tokens, request_id), PUBLIC_PEM)
    assert payload is not None
    payload["exchanges"][3]["payload"]["findings"] = "nothing found"
    problems, _ = verify_bundle(Signer.from_private_pem(TEST_SIGNING_KEY).sign(payload), PUBLIC_PEM)
    assert problems == ["exchange 4 differs from its audit entry"]


async def test_cli_verifies_bundle_and_database(
    client: httpx.AsyncClient,
    tokens: Tokens,
    world: None,
    database_url: str,
    tmp_path: Path,
    engine: AsyncEngine,
) -> None:
    request_id = await walk(client, tokens)
    bundle_file = tmp_path / "bundle.jws"
    bundle_file.write_text(await _bundle(client, tokens, request_id))
    key_file = tmp_path / "key.pem"
    key_file.write_text(PUBLIC_PEM)
    env = {
        "PATH": "/usr/bin:/bin",
        "TRACING_DATABASE_URL": database_url,
        "TRACING_SIGNING_KEY": TEST_SIGNING_KEY,
        "TRACING_JWT_SECRET": TEST_SECRET,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tracing.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    ok = await asyncio.to_thread(
        cli, "audit", "verify-bundle", str(bundle_file), "--public-key", str(key_file)
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "bundle verifies" in ok.stdout
    bundle_file.write_text(bundle_file.read_text().replace("origin", "0rigin", 1)[:-3] + "xyz")
    bad = await asyncio.to_thread(
        cli, "audit", "verify-bundle", str(bundle_file), "--public-key", str(key_file)
    )
    assert bad.returncode == 1
    assert "INVALID bundle signature" in bad.stdout

    public = await asyncio.to_thread(cli, "audit", "public-key")
    assert public.stdout == PUBLIC_PEM
    assert (await asyncio.to_thread(cli, "audit", "verify")).returncode == 0
    await _change_one_byte(engine, request_id)
    broken = await asyncio.to_thread(cli, "audit", "verify")
    assert broken.returncode == 1
    assert f"BROKEN chain {request_id}: first invalid entry 3" in broken.stdout


async def test_auditors_see_trails_of_their_country_only(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request_id = await walk(client, tokens)
    base = f"/v1/trace-requests/{request_id}"
    ne_auditor = tokens.headers("NE-AUD", "NE", "auditor")
    bj_auditor = tokens.headers("BJ-AUD", "BJ", "auditor")
    assert (await client.get(f"{base}/audit", headers=ne_auditor)).status_code == 200
    assert (await client.get(f"{base}/audit/bundle", headers=ne_auditor)).status_code == 200
    assert (await client.get(base, headers=ne_auditor)).status_code == 404  # the trail, not the case file
    assert (await client.get(f"{base}/audit", headers=bj_auditor)).status_code == 404
    assert (await client.get(f"{base}/audit", headers=tokens.ncp("BJ"))).status_code == 404
    assert (await client.post("/v1/audit/checkpoints", headers=tokens.investigator)).status_code == 403


async def test_reads_are_recorded_in_the_access_log(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request_id = await walk(client, tokens)
    await client.get(
        f"/v1/trace-requests/{request_id}", headers={**tokens.ncp("RU"), "X-Request-ID": "read-1"}
    )
    await client.get(f"/v1/trace-requests/{request_id}/exchanges", headers=tokens.investigator)
    log = await client.get(
        "/v1/audit/access-log",
        params={"trace_request_id": request_id},
        headers=tokens.headers("NE-AUD", "NE", "auditor"),
    )
    assert log.status_code == 200
    items = log.json()["items"]
    assert [(i["agency"], i["what"]) for i in items] == [("NE-PJ", "exchanges"), ("RU-NCP", "details")]
    assert items[1]["request_id"] == "read-1"
    elsewhere = await client.get("/v1/audit/access-log", headers=tokens.headers("BJ-AUD", "BJ", "auditor"))
    assert elsewhere.json()["items"] == []
    assert (await client.get("/v1/audit/access-log", headers=tokens.ncp("NE"))).status_code == 403


async def test_concurrent_moves_on_fifty_requests_all_succeed_and_verify(
    client: httpx.AsyncClient, tokens: Tokens, world: None, engine: AsyncEngine
) -> None:
    ids = []
    for number in range(50):
        response = await client.post(
            "/v1/trace-requests", json=submission(case_reference=f"NE/{number}"), headers=tokens.investigator
        )
        ids.append(response.json()["id"])
    forwards = await asyncio.gather(
        *(
            client.post(
                f"/v1/trace-requests/{rid}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
            )
            for rid in ids
        )
    )
    assert {r.status_code for r in forwards} == {200}
    races = await asyncio.gather(
        *(
            client.post(f"/v1/trace-requests/{ids[0]}/acknowledge", json={}, headers=tokens.ncp("RU"))
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in races) == [200] + [409] * 7
    async with create_sessionmaker(engine)() as session:
        report = await verify_everything(session, PUBLIC_PEM)
    assert report.valid
    assert (report.chains, report.entries) == (50, 101)


async def _append_one_each(engine: AsyncEngine, chains: list[uuid.UUID]) -> None:
    async with create_sessionmaker(engine)() as session:
        for chain in chains:
            await append(session, chain_id=chain, action="submit", at=utcnow(), content={"n": 0})
        await session.commit()


async def test_many_entries_appended_at_once_chain_like_single_appends(engine: AsyncEngine) -> None:
    """`append_many` (the webhook worker's batches): several chains, old and new, interleaved."""
    old, other, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _append_one_each(engine, [old, other])
    at = utcnow()
    batch = [Append(old, "notification", at, {"n": 1}), Append(other, "notification", at, {"n": 1})]
    batch += [Append(new, "notification", at, {"n": 1}), Append(old, "notification", at, {"n": 2})]
    async with create_sessionmaker(engine)() as session:
        appended = await append_many(session, batch)
        await session.commit()
    assert [(a.chain_id, a.seq) for a in appended] == [(old, 2), (other, 2), (new, 1), (old, 3)]
    async with create_sessionmaker(engine)() as session:
        await append(session, chain_id=old, action="close", at=utcnow(), content={"n": 3})
        await session.commit()
        report = await verify_everything(session, PUBLIC_PEM)
        old_trail = await trail(session, old)
    assert report.valid and (report.chains, report.entries) == (3, 7)
    assert [json.loads(e.canonical)["n"] for e in old_trail.entries] == [0, 1, 2, 3]
    assert old_trail.head is not None and old_trail.head.seq == 4


async def test_concurrent_batches_over_the_same_chains_all_commit_and_stay_unbroken(
    engine: AsyncEngine, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writing transaction at a time: batches cannot wait on each other")
    chains = [uuid.uuid4() for _ in range(5)]
    await _append_one_each(engine, chains)

    async def batch(number: int) -> None:
        order = random.Random(number).sample(chains, len(chains))  # each batch in its own order
        async with create_sessionmaker(engine)() as session:
            await append_many(
                session, [Append(c, "notification", utcnow(), {"batch": number}) for c in order]
            )
            await session.commit()

    await asyncio.gather(*(batch(number) for number in range(16)))
    async with create_sessionmaker(engine)() as session:
        report = await verify_everything(session, PUBLIC_PEM)
    assert report.valid and (report.chains, report.entries) == (5, 5 * 17)
