"""Writing and reading the audit trail: appends inside the caller's transaction, access records,
signed checkpoints over all chain heads, and verification of one chain or of everything."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.audit.chain import (
    GENESIS,
    LEAF,
    StoredEntry,
    Verification,
    canonical_bytes,
    entry_hash,
    head_leaf,
    merkle_root,
    verify_chain,
)
from tracing.audit.signing import SignatureInvalid, Signer, verify_jws
from tracing.models.audit import AccessLogEntry, AuditCheckpoint, AuditEntry, AuditHead
from tracing.models.exchange import Exchange
from tracing.models.types import utcnow
from tracing.security import Principal


def exchange_content(exchange: Exchange) -> dict[str, Any]:
    """What an audit entry of an exchange commits to: who, what, when, and the payload sent."""
    return {
        "exchange_seq": exchange.seq,
        "actor": {"subject": exchange.actor, "agency": exchange.agency, "country": exchange.country},
        "from_state": exchange.from_state,
        "to_state": exchange.to_state,
        "to_country": exchange.to_country,
        "payload": exchange.payload,
    }


@dataclass(frozen=True)
class Appended:
    chain_id: uuid.UUID
    seq: int
    hash: bytes


def entry_values(
    *, chain_id: uuid.UUID, seq: int, prev_hash: bytes, action: str, at: dt.datetime, content: dict[str, Any]
) -> dict[str, Any]:
    """The audit_entry row of one append: its canonical bytes and their hash linked to `prev_hash`."""
    canonical = canonical_bytes(
        {"chain": str(chain_id), "seq": seq, "action": action, "at": at.isoformat(), **content}
    )
    digest = entry_hash(chain_id, seq, prev_hash, canonical)
    return {
        "chain_id": chain_id,
        "seq": seq,
        "action": action,
        "at": at,
        "prev_hash": prev_hash,
        "hash": digest,
        "canonical": canonical,
    }


async def append(
    session: AsyncSession,
    *,
    chain_id: uuid.UUID,
    action: str,
    at: dt.datetime,
    content: dict[str, Any],
    new_chain: bool = False,
) -> Appended:
    """Append one entry to a chain in the caller's transaction (the caller commits).

    The chain head row is locked (SELECT ... FOR UPDATE on PostgreSQL), so appends to one chain
    are serialised while appends to different chains proceed side by side. Plain statements
    rather than ORM objects: this runs inside every command, and the ORM's bookkeeping would cost
    more than the hashing.
    """
    if session.get_bind().dialect.name == "postgresql":
        appended = await _append_in_one_statement(
            session, chain_id=chain_id, action=action, at=at, content=content
        )
        if appended is not None:
            return appended
    head = None
    if not new_chain:
        statement = (
            sa.select(AuditHead.seq, AuditHead.hash).where(AuditHead.chain_id == chain_id).with_for_update()
        )
        head = (await session.execute(statement)).one_or_none()
    seq = head.seq + 1 if head is not None else 1
    prev_hash = bytes(head.hash) if head is not None else GENESIS
    values = entry_values(
        chain_id=chain_id, seq=seq, prev_hash=prev_hash, action=action, at=at, content=content
    )
    digest = values["hash"]
    await session.execute(sa.insert(AuditEntry).values(values))
    if head is None:
        await session.execute(
            sa.insert(AuditHead).values(chain_id=chain_id, seq=seq, hash=digest, updated_at=at)
        )
    else:
        await session.execute(
            sa.update(AuditHead)
            .where(AuditHead.chain_id == chain_id)
            .values(seq=seq, hash=digest, updated_at=at)
        )
    return Appended(chain_id, seq, digest)


@dataclass(frozen=True)
class Append:
    """One entry to append with `append_many`."""

    chain_id: uuid.UUID
    action: str
    at: dt.datetime
    content: dict[str, Any]


async def append_many(session: AsyncSession, appends: list[Append]) -> list[Appended]:
    """Append several entries, to one chain or to many, in the caller's transaction, with four
    statements whatever their number: the heads are read and locked in one query (in chain order, so
    two callers never wait on each other in a cycle), the entries are chained here and written in one
    multi-row insert, and the heads are created or moved. Entries of one chain follow the order given.
    For callers that record many things at once (the webhook worker's batches); a command appends its
    one entry with `append`."""
    if not appends:
        return []
    chains = sorted({item.chain_id for item in appends})
    statement = (
        select(AuditHead.chain_id, AuditHead.seq, AuditHead.hash)
        .where(AuditHead.chain_id.in_(chains))
        .order_by(AuditHead.chain_id)
        .with_for_update()
    )
    heads = {row.chain_id: (row.seq, bytes(row.hash)) for row in await session.execute(statement)}
    existing = set(heads)
    moved_at: dict[uuid.UUID, dt.datetime] = {}
    rows, appended = [], []
    for item in appends:
        seq, prev_hash = heads.get(item.chain_id, (0, GENESIS))
        values = entry_values(
            chain_id=item.chain_id,
            seq=seq + 1,
            prev_hash=prev_hash,
            action=item.action,
            at=item.at,
            content=item.content,
        )
        rows.append(values)
        heads[item.chain_id] = (seq + 1, values["hash"])
        moved_at[item.chain_id] = item.at
        appended.append(Appended(item.chain_id, seq + 1, values["hash"]))
    await session.execute(sa.insert(AuditEntry), rows)
    new_heads, moved_heads = [], []
    for chain_id, at in moved_at.items():
        seq, digest = heads[chain_id]
        row = {"chain_id": chain_id, "seq": seq, "hash": digest, "updated_at": at}
        (moved_heads if chain_id in existing else new_heads).append(row)
    if new_heads:
        await session.execute(sa.insert(AuditHead), new_heads)
    if moved_heads:
        await session.execute(sa.update(AuditHead), moved_heads)  # by primary key, one per chain
    return appended


_SEQ_MARK = 9_087_654_321_234_567_890
"""Stands in for the sequence number in canonical bytes built before the number is known."""


async def _append_in_one_statement(
    session: AsyncSession, *, chain_id: uuid.UUID, action: str, at: dt.datetime, content: dict[str, Any]
) -> Appended | None:
    """PostgreSQL: `append` in one round trip (see `one_statement_append`); None when it cannot be
    used for this content (the caller then appends step by step)."""
    params = one_statement_append(chain_id=chain_id, action=action, at=at, content=content)
    if params is None:
        return None
    row = (await session.execute(ONE_STATEMENT_APPEND, params)).one()
    return Appended(chain_id, row.seq, bytes(row.hash))


def one_statement_append(
    *, chain_id: uuid.UUID, action: str, at: dt.datetime, content: dict[str, Any]
) -> dict[str, Any] | None:
    """The parameters of ONE_STATEMENT_APPEND. The statement locks the head, takes the next number,
    splices it into the canonical bytes (built here with a stand-in number: the JSON of an integer
    is its digits), hashes them as `chain.entry_hash` does, and writes the entry and the head. None
    when the stand-in cannot be placed unambiguously."""
    canonical = canonical_bytes(
        {"chain": str(chain_id), "seq": _SEQ_MARK, "action": action, "at": at.isoformat(), **content}
    )
    mark = b'"seq":%d' % _SEQ_MARK
    if canonical.count(mark) != 1:
        return None
    before, _, after = canonical.partition(mark)
    return {
        "chain_id": chain_id,
        "genesis": GENESIS,
        "prefix": LEAF + chain_id.bytes,
        "before": before + b'"seq":',
        "after": after,
        "action": action,
        "at": at,
    }


ONE_STATEMENT_APPEND = sa.text(
    """
    WITH head AS (
        SELECT seq, hash FROM audit_head WHERE chain_id = CAST(:chain_id AS uuid) FOR UPDATE
    ),
    next AS (
        SELECT COALESCE(head.seq, 0) + 1 AS seq, COALESCE(head.hash, CAST(:genesis AS bytea)) AS prev_hash
        FROM (SELECT 1) AS one LEFT JOIN head ON true
    ),
    spliced AS (
        SELECT seq, prev_hash,
            CAST(:before AS bytea) || convert_to(CAST(seq AS text), 'UTF8') || CAST(:after AS bytea)
                AS canonical
        FROM next
    ),
    hashed AS (
        SELECT seq, prev_hash, canonical,
            sha256(CAST(:prefix AS bytea) || int8send(CAST(seq AS bigint)) || prev_hash || canonical) AS hash
        FROM spliced
    ),
    entry AS (
        INSERT INTO audit_entry (chain_id, seq, action, at, prev_hash, hash, canonical)
        SELECT CAST(:chain_id AS uuid), seq, CAST(:action AS varchar), CAST(:at AS timestamptz), prev_hash,
            hash, canonical
        FROM hashed
    ),
    moved AS (
        INSERT INTO audit_head (chain_id, seq, hash, updated_at)
        SELECT CAST(:chain_id AS uuid), seq, hash, CAST(:at AS timestamptz) FROM hashed
        ON CONFLICT (chain_id) DO UPDATE
            SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at
    )
    SELECT seq, hash FROM hashed
    """
)


async def append_exchange(
    session: AsyncSession, exchange: Exchange, *, new_chain: bool = False
) -> AuditEntry:
    return await append(
        session,
        chain_id=exchange.trace_request_id,
        action=exchange.action.value,
        at=exchange.at,
        content=exchange_content(exchange),
        new_chain=new_chain,
    )


async def record_access(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID, what: str, http_request_id: str | None
) -> None:
    """Record that a party read a request's details (its own transaction)."""
    session.add(
        AccessLogEntry(
            trace_request_id=request_id,
            subject=principal.subject,
            agency=principal.agency,
            country=principal.country,
            what=what,
            request_id=http_request_id,
        )
    )
    await session.commit()


# ---- reading and verifying --------------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    chain_id: uuid.UUID
    entries: list[AuditEntry]
    head: AuditHead | None
    verification: Verification


def _stored(entry: AuditEntry) -> StoredEntry:
    return StoredEntry(entry.seq, bytes(entry.prev_hash), bytes(entry.hash), bytes(entry.canonical))


async def trail(session: AsyncSession, chain_id: uuid.UUID) -> Trail:
    statement = select(AuditEntry).where(AuditEntry.chain_id == chain_id).order_by(AuditEntry.seq)
    entries = list((await session.execute(statement)).scalars())
    head = await session.get(AuditHead, chain_id)
    verification = verify_chain(
        chain_id, (_stored(e) for e in entries), head=(head.seq, bytes(head.hash)) if head else (0, GENESIS)
    )
    if verification.valid:
        verification = await _against_latest_checkpoint(session, chain_id, entries, verification)
    return Trail(chain_id, entries, head, verification)


async def _against_latest_checkpoint(
    session: AsyncSession, chain_id: uuid.UUID, entries: list[AuditEntry], verification: Verification
) -> Verification:
    checkpoint = await latest_checkpoint(session)
    if checkpoint is None:
        return verification
    recorded = next((h for h in checkpoint.heads if h[0] == str(chain_id)), None)
    if recorded is None:
        return verification
    _, seq, hash_hex = recorded
    if len(entries) < seq or bytes(entries[seq - 1].hash).hex() != hash_hex:
        return Verification(
            False,
            verification.checked,
            min(seq, len(entries) + 1),
            f"the chain no longer contains entry {seq} as signed in checkpoint {checkpoint.id}",
        )
    return verification


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    statement = select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()


def sorted_heads(heads: list[AuditHead]) -> list[AuditHead]:
    return sorted(heads, key=lambda h: h.chain_id.bytes)


async def create_checkpoint(session: AsyncSession, signer: Signer) -> AuditCheckpoint:
    """Sign a Merkle root over every chain head, so deleting a whole chain or rolling the database
    back is detectable later."""
    heads = sorted_heads(list((await session.execute(select(AuditHead))).scalars()))
    leaves = [head_leaf(h.chain_id, h.seq, bytes(h.hash)) for h in heads]
    previous = await latest_checkpoint(session)
    now = utcnow()
    statement = {
        "type": "tracing-audit-checkpoint/1",
        "created_at": now.isoformat(),
        "size": len(leaves),
        "root": merkle_root(leaves).hex(),
        "previous_root": previous.root if previous else None,
    }
    checkpoint = AuditCheckpoint(
        created_at=now,
        size=len(leaves),
        root=statement["root"],
        heads=[[str(h.chain_id), h.seq, bytes(h.hash).hex()] for h in heads],
        signed=signer.sign(statement),
    )
    session.add(checkpoint)
    await session.commit()
    return checkpoint


@dataclass
class Report:
    chains: int = 0
    entries: int = 0
    broken: dict[uuid.UUID, Verification] = field(default_factory=dict)
    checkpoint_problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.broken and not self.checkpoint_problems


async def _entries_by_chain(session: AsyncSession) -> AsyncIterator[tuple[uuid.UUID, list[StoredEntry]]]:
    statement = (
        select(AuditEntry).order_by(AuditEntry.chain_id, AuditEntry.seq).execution_options(yield_per=5000)
    )
    current: uuid.UUID | None = None
    batch: list[StoredEntry] = []
    async for entry in await session.stream_scalars(statement):
        if entry.chain_id != current:
            if current is not None:
                yield current, batch
            current, batch = entry.chain_id, []
        batch.append(_stored(entry))
    if current is not None:
        yield current, batch


async def verify_everything(session: AsyncSession, public_pems: str) -> Report:
    """Every chain against its head, and the latest checkpoint against the chains."""
    report = Report()
    heads = {h.chain_id: h for h in (await session.execute(select(AuditHead))).scalars()}
    hashes: dict[uuid.UUID, list[bytes]] = {}
    async for chain_id, entries in _entries_by_chain(session):
        head = heads.pop(chain_id, None)
        verification = verify_chain(
            chain_id, entries, head=(head.seq, bytes(head.hash)) if head else (0, GENESIS)
        )
        report.chains += 1
        report.entries += verification.checked
        hashes[chain_id] = [e.hash for e in entries]
        if not verification.valid:
            report.broken[chain_id] = verification
    for chain_id, head in heads.items():  # heads whose entries are all gone
        report.chains += 1
        report.broken[chain_id] = Verification(False, 0, 1, f"all {head.seq} entries are missing")
    checkpoint = await latest_checkpoint(session)
    if checkpoint is not None:
        report.checkpoint_problems = check_checkpoint(checkpoint, hashes, public_pems)
    return report


def check_checkpoint(
    checkpoint: AuditCheckpoint, hashes: dict[uuid.UUID, list[bytes]], public_pems: str
) -> list[str]:
    problems = []
    try:
        statement = verify_jws(checkpoint.signed, public_pems)
    except SignatureInvalid as exc:
        return [f"checkpoint {checkpoint.id}: {exc}"]
    leaves = [head_leaf(uuid.UUID(c), s, bytes.fromhex(h)) for c, s, h in checkpoint.heads]
    if statement.get("root") != merkle_root(leaves).hex() or statement.get("root") != checkpoint.root:
        problems.append(f"checkpoint {checkpoint.id}: the stored heads do not match the signed root")
    for chain, seq, hash_hex in checkpoint.heads:
        chain_hashes = hashes.get(uuid.UUID(chain), [])
        if not chain_hashes:
            problems.append(f"checkpoint {checkpoint.id}: chain {chain} is missing")
        elif len(chain_hashes) < seq or chain_hashes[seq - 1].hex() != hash_hex:
            problems.append(
                f"checkpoint {checkpoint.id}: chain {chain} no longer holds entry {seq} as signed"
            )
    return problems


async def access_log(
    session: AsyncSession,
    *,
    visible: sa.ColumnElement[bool],
    request_id: uuid.UUID | None,
    limit: int,
    before: int | None,
) -> list[AccessLogEntry]:
    from tracing.models.trace_request import TraceRequest

    statement = (
        select(AccessLogEntry)
        .join(TraceRequest, TraceRequest.id == AccessLogEntry.trace_request_id)
        .where(visible)
        .order_by(AccessLogEntry.id.desc())
        .limit(limit)
    )
    if request_id is not None:
        statement = statement.where(AccessLogEntry.trace_request_id == request_id)
    if before is not None:
        statement = statement.where(AccessLogEntry.id < before)
    return list((await session.execute(statement)).scalars())
