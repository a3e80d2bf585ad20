"""Registry records in our database: writing imported batches with their match keys, and finding the
candidates for a reading by index probes only.

Writes use PostgreSQL's COPY (asyncpg) and SQLite's executemany, inside the caller's transaction.
Record numbers come from advancing the registry's counter with one UPDATE, which also serialises
concurrent imports into one registry on both databases.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.markings.imports import RecordRow
from tracing.markings.keys import LookupPlan, RecordKeys, key_hash, record_keys
from tracing.markings.matching import attribute_key
from tracing.markings.normalize import normalize_make
from tracing.models.registry import Registry, RegistryRecord, RegistryRecordKey
from tracing.models.types import utcnow

MAX_CANDIDATES = 2000
_RECORD_COLUMNS = (
    "registry_id", "record_no", "record_ref", "fingerprint", "serial_number", "make", "model", "calibre",
    "firearm_kind", "country_of_manufacture", "year_of_manufacture", "details", "serial_key",
    "confusable_key", "reversed_key", "key_length", "imported_at",
)  # fmt: skip
_KEY_COLUMNS = ("registry_id", "deletion", "record_no")
_IN_CHUNK = 500  # parameters per IN list, well inside SQLite's limit


def fingerprint(row: RecordRow, keys: RecordKeys | None = None) -> int:
    """A record's identity in its registry: the registry's own id when given, else its markings."""
    if row.record_ref:
        return key_hash("ref\x1f" + row.record_ref)
    keys = keys or record_keys(row.serial_number, normalized=row.normalized)
    parts = (keys.normalized, normalize_make(row.make), attribute_key(row.model), attribute_key(row.calibre))
    return key_hash("markings\x1f" + "\x1f".join(parts))


@dataclass(frozen=True)
class BatchResult:
    imported: int
    duplicates: list[RecordRow]


async def existing_fingerprints(
    session: AsyncSession, registry_id: uuid.UUID, wanted: Sequence[int]
) -> set[int]:
    found: set[int] = set()
    if (await session.connection()).dialect.name == "postgresql":
        # One array parameter: one plan for any batch size, where an IN list is planned per size.
        statement = select(RegistryRecord.fingerprint).where(
            RegistryRecord.registry_id == registry_id,
            RegistryRecord.fingerprint
            == sa.any_(sa.bindparam("wanted", list(wanted), type_=ARRAY(sa.BigInteger))),
        )
        return set((await session.execute(statement)).scalars())
    for start in range(0, len(wanted), _IN_CHUNK):
        statement = select(RegistryRecord.fingerprint).where(
            RegistryRecord.registry_id == registry_id,
            RegistryRecord.fingerprint.in_(wanted[start : start + _IN_CHUNK]),
        )
        found.update((await session.execute(statement)).scalars())
    return found


async def write_batch(
    session: AsyncSession, registry_id: uuid.UUID, rows: Sequence[RecordRow]
) -> BatchResult:
    """Insert the rows that are not duplicates (of each other or of stored records), with their
    keys, in the caller's transaction (the caller commits)."""
    by_fingerprint: dict[int, tuple[RecordRow, RecordKeys]] = {}
    duplicates: list[RecordRow] = []
    for row in rows:
        keys = record_keys(row.serial_number, normalized=row.normalized)
        print_ = fingerprint(row, keys)
        if print_ in by_fingerprint:
            duplicates.append(row)
        else:
            by_fingerprint[print_] = (row, keys)
    stored = await existing_fingerprints(session, registry_id, list(by_fingerprint))
    duplicates.extend(by_fingerprint.pop(print_)[0] for print_ in stored)
    if not by_fingerprint:
        return BatchResult(0, duplicates)

    count = len(by_fingerprint)
    reserved = await session.execute(
        sa.update(Registry)
        .where(Registry.id == registry_id)
        .values(
            next_record_no=Registry.next_record_no + count,
            record_count=Registry.record_count + count,
            updated_at=utcnow(),
        )
        .returning(Registry.next_record_no)
    )
    first = reserved.scalar_one() - count + 1
    connection = await session.connection()
    dialect = connection.dialect
    table = RegistryRecord.__table__
    # Values shared by the batch go through the column types' own bind processing once; the rest
    # are plain str/int (and the details as JSON text), so rows go to the driver as they are.
    shared_registry = _bound(table.c.registry_id, registry_id, dialect)
    shared_now = _bound(table.c.imported_at, utcnow(), dialect)
    records: list[tuple] = []
    keys_rows: list[tuple] = []
    for number, (print_, (row, keys)) in enumerate(by_fingerprint.items(), start=first):
        records.append(
            (
                shared_registry, number, row.record_ref, print_, row.serial_number, row.make, row.model,
                row.calibre, row.kind, row.country_of_manufacture, row.year_of_manufacture,
                json.dumps(row.details, ensure_ascii=False, separators=(",", ":")) if row.details else "{}",
                keys.normalized, keys.confusable, keys.reversed, keys.length, shared_now,
            )
        )  # fmt: skip
        keys_rows.extend((shared_registry, deletion, number) for deletion in keys.deletions)
    if dialect.name == "postgresql":
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(
            RegistryRecord.__tablename__, records=records, columns=_RECORD_COLUMNS
        )
        if keys_rows:
            await raw.copy_records_to_table(
                RegistryRecordKey.__tablename__, records=keys_rows, columns=_KEY_COLUMNS
            )
    else:
        await connection.exec_driver_sql(_insert_sql(RegistryRecord.__tablename__, _RECORD_COLUMNS), records)
        if keys_rows:
            await connection.exec_driver_sql(
                _insert_sql(RegistryRecordKey.__tablename__, _KEY_COLUMNS), keys_rows
            )
    return BatchResult(count, duplicates)


def _bound(column: sa.Column, value: object, dialect: sa.Dialect) -> object:
    process = column.type.bind_processor(dialect)
    return process(value) if process else value


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _candidate_numbers(
    registry_id: uuid.UUID, plan: LookupPlan, dialect: str
) -> sa.Select | sa.CompoundSelect | None:
    record = RegistryRecord
    length = len(plan.confusable)
    probes: list[sa.Select] = []
    if plan.is_partial:
        if plan.fills:
            probes.extend(_records_with_keys(registry_id, plan.fills, dialect))
        else:
            side, anchor = plan.anchor
            column = record.reversed_key if side == "suffix" else record.confusable_key
            pattern = plan.confusable.replace("?", "_")
            probes.append(
                select(record.record_no)
                .where(
                    record.registry_id == registry_id,
                    record.key_length == length,
                    column >= anchor,
                    column < anchor + "\U0010ffff",
                    record.confusable_key.like(pattern),
                )
                .limit(MAX_CANDIDATES)
            )
        if plan.gap_deletions:
            probes.append(_records_with_deletions(registry_id, plan.gap_deletions, dialect))
    else:
        probes.extend(_records_with_keys(registry_id, {plan.confusable, *plan.neighbours}, dialect))
        if plan.neighbour_deletions:
            probes.append(_records_with_deletions(registry_id, plan.neighbour_deletions, dialect))
    if not probes:
        return None
    return probes[0] if len(probes) == 1 else sa.union(*probes)


def _one_of(column: sa.ColumnElement, values: Iterable[str], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as one array parameter, so that one plan serves any count."""
    ordered = sorted(values)
    if dialect == "postgresql":
        return column == sa.any_(sa.literal(ordered, ARRAY(sa.String)))
    return column.in_(ordered)


def _records_with_keys(registry_id: uuid.UUID, keys: Iterable[str], dialect: str) -> list[sa.Select]:
    """One equality probe per key length on the records' confusable keys."""
    by_length: dict[int, list[str]] = {}
    for one in keys:
        by_length.setdefault(len(one), []).append(one)
    record = RegistryRecord
    return [
        select(record.record_no).where(
            record.registry_id == registry_id,
            record.key_length == length,
            _one_of(record.confusable_key, group, dialect),
        )
        for length, group in sorted(by_length.items())
    ]


def _records_with_deletions(registry_id: uuid.UUID, wanted: Iterable[str], dialect: str) -> sa.Select:
    """Records whose stored deletion neighbourhood (non-enumerable keys only) holds a wanted key."""
    key = RegistryRecordKey
    return select(key.record_no).where(key.registry_id == registry_id, _one_of(key.deletion, wanted, dialect))


async def find_candidates(
    session: AsyncSession, registry_id: uuid.UUID, plan: LookupPlan
) -> list[RegistryRecord]:
    """The records a reading could match, found by index probes (classification filters them)."""
    if not plan.searchable:
        return []
    dialect = (await session.connection()).dialect.name
    statement = candidates_statement(registry_id, plan, dialect)
    if statement is None:
        return []
    return list((await session.execute(statement)).scalars())


def candidates_statement(registry_id: uuid.UUID, plan: LookupPlan, dialect: str) -> sa.Select | None:
    numbers = _candidate_numbers(registry_id, plan, dialect)
    if numbers is None:
        return None
    return (
        select(RegistryRecord)
        .where(RegistryRecord.registry_id == registry_id, RegistryRecord.record_no.in_(numbers))
        .order_by(RegistryRecord.record_no)
        .limit(MAX_CANDIDATES)
    )


async def scan_all(session: AsyncSession, registry_id: uuid.UUID) -> list[RegistryRecord]:
    """Every record of a registry (the linear-scan baseline of the benchmark; never used by lookups)."""
    statement = select(RegistryRecord).where(RegistryRecord.registry_id == registry_id)
    return list((await session.execute(statement)).scalars())
