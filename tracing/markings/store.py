"""Registry records in our database: writing imported batches with their match keys, and finding the
candidates for a reading by index probes only.

Writes use PostgreSQL's COPY (asyncpg) and SQLite's executemany, inside the caller's transaction.
Record numbers come from advancing the registry's counter with one UPDATE, which also serialises
concurrent imports into one registry on both databases.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.markings.imports import RecordRow
from tracing.markings.keys import (
    LookupPlan,
    RecordKeys,
    Shape,
    dump_shape,
    fitting_fills,
    fitting_neighbours,
    key_hash,
    key_shape,
    load_shape,
    merge_shapes,
    record_keys,
)
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
    repeats_stored: bool = False  # some rows repeat records stored before the batch


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


@dataclass(frozen=True)
class PreparedBatch:
    """Rows with their match keys and column values, duplicates within the batch set aside: the CPU
    work of a write, which an import does while the database writes the batch before."""

    values: dict[int, tuple]  # by fingerprint: the record's columns after registry_id and record_no
    deletions: dict[int, frozenset[str]]  # by fingerprint: stored deletions (non-enumerable keys only)
    rows: dict[int, RecordRow]
    duplicates: list[RecordRow]
    shape: Shape  # of the rows' confusable keys


class BatchBuilder:
    """Prepares a batch row by row (an import interleaves this with waiting on the database)."""

    def __init__(self) -> None:
        self.values: dict[int, tuple] = {}
        self.deletions: dict[int, frozenset[str]] = {}
        self.rows: dict[int, RecordRow] = {}
        self.duplicates: list[RecordRow] = []
        self.keys: list[str] = []

    def __len__(self) -> int:
        return len(self.rows) + len(self.duplicates)

    def add(self, row: RecordRow) -> None:
        keys = record_keys(row.serial_number, normalized=row.normalized)
        print_ = fingerprint(row, keys)
        if print_ in self.rows:
            self.duplicates.append(row)
            return
        self.rows[print_] = row
        details = json.dumps(row.details, ensure_ascii=False, separators=(",", ":")) if row.details else "{}"
        self.values[print_] = (
            row.record_ref, print_, row.serial_number, row.make, row.model, row.calibre, row.kind,
            row.country_of_manufacture, row.year_of_manufacture, details, keys.normalized, keys.confusable,
            keys.reversed, keys.length,
        )  # fmt: skip
        if keys.deletions:
            self.deletions[print_] = keys.deletions
        self.keys.append(keys.confusable)

    def build(self) -> PreparedBatch:
        return PreparedBatch(self.values, self.deletions, self.rows, self.duplicates, key_shape(self.keys))


async def write_batch(
    session: AsyncSession, registry_id: uuid.UUID, prepared: PreparedBatch, *, check_stored: bool = True
) -> BatchResult:
    """Insert the rows that are not duplicates (of each other or of stored records), with their
    keys, in the caller's transaction (the caller commits). The batch is left as it was, so the
    caller may write it again after a rollback.

    With `check_stored=False` the stored records are not looked up first: a row that repeats one
    makes the unique fingerprint constraint raise IntegrityError (on both databases), and the caller
    rolls back and writes the batch again with the check."""
    stored = set()
    if check_stored:
        stored = await existing_fingerprints(session, registry_id, list(prepared.values))
    duplicates = [*prepared.duplicates, *(prepared.rows[print_] for print_ in stored)]
    fresh = [print_ for print_ in prepared.values if print_ not in stored]
    if not fresh:
        return BatchResult(0, duplicates, bool(stored))

    count = len(fresh)
    reserved = await session.execute(
        sa.update(Registry)
        .where(Registry.id == registry_id)
        .values(
            next_record_no=Registry.next_record_no + count,
            record_count=Registry.record_count + count,
            updated_at=utcnow(),
        )
        .returning(Registry.next_record_no, Registry.key_shape)
    )
    last, stored_shape = reserved.one()
    first = last - count + 1
    if stored_shape is not None:  # NULL: not known, lookups skip nothing
        shape = dump_shape(merge_shapes(load_shape(stored_shape), prepared.shape))
        if shape != stored_shape:
            await session.execute(
                sa.update(Registry).where(Registry.id == registry_id).values(key_shape=shape)
            )
    connection = await session.connection()
    dialect = connection.dialect
    table = RegistryRecord.__table__
    # Values shared by the batch go through the column types' own bind processing once; the rest
    # are plain str/int (and the details as JSON text), so rows go to the driver as they are.
    shared_registry = _bound(table.c.registry_id, registry_id, dialect)
    shared_now = _bound(table.c.imported_at, utcnow(), dialect)
    values = prepared.values
    numbered = list(enumerate(fresh, start=first))
    records = [(shared_registry, number, *values[print_], shared_now) for number, print_ in numbered]
    keys_rows = [
        (shared_registry, deletion, number)
        for number, print_ in numbered
        if print_ in prepared.deletions
        for deletion in prepared.deletions[print_]
    ]
    if dialect.name == "postgresql":
        raw = (await connection.get_raw_connection()).driver_connection
        try:
            await raw.copy_records_to_table(
                RegistryRecord.__tablename__, records=records, columns=_RECORD_COLUMNS
            )
        except asyncpg.UniqueViolationError as exc:  # the driver's own error: COPY bypasses SQLAlchemy
            raise IntegrityError("COPY registry_record", None, exc) from exc
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
    return BatchResult(count, duplicates, bool(stored))


def _bound(column: sa.Column, value: object, dialect: sa.Dialect) -> object:
    process = column.type.bind_processor(dialect)
    return process(value) if process else value


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@functools.cache
def _probe_statement(dialect: str) -> sa.Select:
    """Every record whose confusable key is one of the wanted keys, or whose stored deletions hold one
    of :deletions. One statement for every one-edit and filled lookup, compiled once and prepared
    once per connection, whatever the key counts.

    PostgreSQL: the keys are one array parameter (:keys, sent as the text of an array, so the driver
    does no work per key), probed through the hash index on confusable_key: one index page per key,
    where the B-tree takes a descent per key. SQLite: one IN list per key length (:shorter, :same,
    :longer), probed through the B-tree."""
    record, key = RegistryRecord, RegistryRecordKey
    registry = sa.bindparam("registry_id", type_=sa.Uuid)
    if dialect == "postgresql":

        def one_of(column: sa.ColumnElement, name: str) -> sa.ColumnElement[bool]:
            return column == sa.any_(sa.cast(sa.bindparam(name, type_=sa.Text), ARRAY(sa.Text)))

        probes = [
            select(record.record_no).where(
                record.registry_id == registry, one_of(record.confusable_key, "keys")
            )
        ]
    else:

        def one_of(column: sa.ColumnElement, name: str) -> sa.ColumnElement[bool]:
            return column.in_(sa.bindparam(name, expanding=True))

        probes = [
            select(record.record_no).where(
                record.registry_id == registry,
                record.key_length == sa.bindparam(f"{name}_length", type_=sa.Integer),
                one_of(record.confusable_key, name),
            )
            for name in ("shorter", "same", "longer")
        ]
    numbers = sa.union(
        *probes, select(key.record_no).where(key.registry_id == registry, one_of(key.deletion, "deletions"))
    )
    return (
        select(record)
        .where(record.registry_id == registry, record.record_no.in_(numbers))
        .order_by(record.record_no)
        .limit(MAX_CANDIDATES)
    )


def _anchored_statement(registry_id: uuid.UUID, plan: LookupPlan) -> sa.Select:
    """Three or more unreadable characters: a range scan on the longer readable end."""
    record = RegistryRecord
    side, anchor = plan.anchor
    column = record.reversed_key if side == "suffix" else record.confusable_key
    return (
        select(record)
        .where(
            record.registry_id == registry_id,
            record.key_length == len(plan.confusable),
            column >= anchor,
            column < anchor + "\U0010ffff",
            record.confusable_key.like(plan.confusable.replace("?", "_")),
        )
        .order_by(record.record_no)
        .limit(MAX_CANDIDATES)
    )


def candidates_query(
    registry_id: uuid.UUID, plan: LookupPlan, dialect: str, shape: str | None = None
) -> tuple[sa.Select, dict[str, object]] | None:
    """The statement and parameters that find the records a reading could match, or None when no
    record can match. `shape` is the registry's stored key shape: keys that fit none of its records
    are not probed (None: every key is)."""
    if not plan.searchable:
        return None
    if plan.is_partial and not plan.is_filled:
        return _anchored_statement(registry_id, plan), {}
    keys: Iterable[str]
    if plan.is_partial:
        deletions = plan.gap_deletions
        keys = plan.fills if shape is None else fitting_fills(plan.confusable, shape)
    else:
        deletions = plan.neighbour_deletions
        keys = (
            (plan.confusable, *plan.neighbours)
            if shape is None
            else fitting_neighbours(plan.confusable, shape)
        )
    if shape is not None and not keys and not deletions:
        return None
    if dialect == "postgresql":
        params = {"registry_id": registry_id, "keys": _array_text(keys), "deletions": _array_text(deletions)}
        return _probe_statement(dialect), params
    length = len(plan.confusable)
    by_length: dict[int, list[str]] = {length - 1: [], length: [], length + 1: []}
    for one in keys:
        by_length[len(one)].append(one)
    params = {"registry_id": registry_id, "deletions": list(deletions)}
    for name, size in (("shorter", length - 1), ("same", length), ("longer", length + 1)):
        params[name], params[f"{name}_length"] = by_length[size], size
    return _probe_statement(dialect), params


def _array_text(values: Iterable[str]) -> str:
    """PostgreSQL's text form of an array of strings: every element quoted, quotes and backslashes
    escaped."""
    values = list(values)
    if not values:
        return "{}"
    everything = "".join(values)
    if '"' in everything or "\\" in everything:  # rare: escape element by element
        values = [value.replace("\\", "\\\\").replace('"', '\\"') for value in values]
    return '{"' + '","'.join(values) + '"}'


async def find_candidates(
    session: AsyncSession, registry_id: uuid.UUID, plan: LookupPlan
) -> list[RegistryRecord]:
    """The records a reading could match, found by index probes (classification filters them)."""
    shape = (await session.execute(select(Registry.key_shape).where(Registry.id == registry_id))).scalar()
    query = candidates_query(registry_id, plan, (await session.connection()).dialect.name, shape)
    if query is None:
        return []
    statement, params = query
    return list((await session.execute(statement, params)).scalars())


async def scan_all(session: AsyncSession, registry_id: uuid.UUID) -> list[RegistryRecord]:
    """Every record of a registry (the linear-scan baseline of the benchmark; never used by lookups)."""
    statement = select(RegistryRecord).where(RegistryRecord.registry_id == registry_id)
    return list((await session.execute(statement)).scalars())
