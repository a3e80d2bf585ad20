"""Administering registries: create, list, update, bulk import of records with a per-row error
report, reading records back, and manufacturer aliases added by administrators."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Conflict, NotFound, Unprocessable
from tracing.markings import store
from tracing.markings.imports import ImportFormat, ImportRefused, RecordRow, RowProblem, parse
from tracing.markings.manufacturers import resolve_make
from tracing.markings.matching import MakeResolver
from tracing.markings.normalize import normalize_make
from tracing.models.registry import (
    AliasCreate,
    ImportReport,
    ManufacturerAlias,
    Registry,
    RegistryCreate,
    RegistryRecord,
    RegistryUpdate,
    RowError,
)
from tracing.models.types import utcnow
from tracing.security import Principal

BATCH_SIZE = 5000
YIELD_EVERY = 10  # rows parsed between turns for the writer (a COPY in progress)
MAX_REPORTED_ERRORS = 1000


async def create(*, session: AsyncSession, body: RegistryCreate) -> Registry:
    registry = Registry(
        code=body.code,
        name=body.name,
        kind=body.kind,
        owner_country=body.owner_country,
        adapter=body.adapter,
        url=str(body.url).rstrip("/") if body.url else None,
        auth_header=body.auth_header,
        auth_value=body.auth_value,
        timeout_seconds=body.timeout_seconds,
        enabled=body.enabled,
    )
    session.add(registry)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"a registry with code {body.code} already exists") from exc
    return registry


async def get(*, session: AsyncSession, registry_ref: str) -> Registry:
    """A registry by its UUID or its code."""
    try:
        condition = Registry.id == uuid.UUID(registry_ref)
    except ValueError:
        condition = Registry.code == registry_ref
    registry = (await session.execute(select(Registry).where(condition))).scalar_one_or_none()
    if registry is None:
        raise NotFound(f"registry {registry_ref} not found")
    return registry


async def list_all(*, session: AsyncSession) -> list[Registry]:
    return list((await session.execute(select(Registry).order_by(Registry.code))).scalars())


async def update(*, session: AsyncSession, registry_ref: str, body: RegistryUpdate) -> Registry:
    registry = await get(session=session, registry_ref=registry_ref)
    changes = body.model_dump(exclude_unset=True)
    if registry.adapter == "local" and {"url", "auth_header", "auth_value"} & changes.keys():
        raise Unprocessable("a local registry takes no url or auth header")
    for name, value in changes.items():
        if value is None and name in ("name", "enabled", "timeout_seconds"):
            raise Unprocessable(f"{name} cannot be null")
        setattr(registry, name, str(value).rstrip("/") if name == "url" and value else value)
    if (registry.auth_header is None) != (registry.auth_value is None):
        raise Unprocessable("auth_header and auth_value go together")
    registry.updated_at = utcnow()
    await session.commit()
    return registry


class _Report:
    def __init__(self, registry: Registry, fmt: ImportFormat) -> None:
        # The code, not the ORM object: a batch rolled back expires the session's objects.
        self.registry_code, self.fmt = registry.code, fmt
        self.received = self.imported = self.duplicates = self.rejected = 0
        self.errors: list[RowError] = []
        self.omitted = 0
        self.skip_stored_check = False  # the last batch repeated no stored record

    def error(self, line: int, field: str | None, message: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line=line, field=field, message=message))
        else:
            self.omitted += 1

    def result(self) -> ImportReport:
        return ImportReport(
            registry=self.registry_code,
            format=self.fmt.value,
            received=self.received,
            imported=self.imported,
            duplicates=self.duplicates,
            rejected=self.rejected,
            errors=self.errors,
            errors_omitted=self.omitted,
        )


async def import_records(
    *,
    session: AsyncSession,
    registry_ref: str,
    chunks: AsyncIterable[bytes],
    fmt: ImportFormat,
    encoding: str = "utf-8",
) -> ImportReport:
    """Stream records into a local registry in batches, each batch its own transaction: a bad row
    is reported and skipped, every good row is kept, and memory stays bounded."""
    registry = await get(session=session, registry_ref=registry_ref)
    if registry.adapter != "local":
        raise Unprocessable(
            f"registry {registry.code} is reached over HTTP; records are imported into local ones"
        )
    registry_id = registry.id
    await session.commit()  # release the read before the long stream
    report = _Report(registry, fmt)
    statistics = _Statistics(session)
    # Parsing and preparing the next batch overlaps with the database writing the last one: the
    # parser runs in its own task while the writer waits on the database.
    batches: asyncio.Queue[store.PreparedBatch | None] = asyncio.Queue(maxsize=2)
    parser = asyncio.create_task(_parse_into(batches, parse(chunks, fmt, encoding=encoding), report))
    try:
        while (batch := await batches.get()) is not None:
            await _write(session, registry_id, batch, report)
            await statistics.refresh_if_grown(report.imported)
        await parser  # raises what stopped the parser, if anything did
    except ImportRefused as exc:
        if report.imported == 0 and report.received == 0:
            raise Unprocessable(str(exc)) from exc
        report.error(0, None, f"import stopped: {exc}")
    finally:
        if not parser.done():
            parser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await parser
    await statistics.refresh_if_grown(report.imported, final=True)
    report.errors.sort(key=lambda error: error.line)
    return report.result()


async def _parse_into(
    batches: asyncio.Queue[store.PreparedBatch | None],
    rows: AsyncIterator[RecordRow | RowProblem],
    report: _Report,
) -> None:
    batch = store.BatchBuilder()
    try:
        async for item in rows:
            report.received += 1
            if report.received % YIELD_EVERY == 0:
                # Let the writer go on as soon as the database has answered: a body already
                # received is parsed without ever waiting, which would hold the event loop. A COPY
                # pauses each time the socket's buffer fills (every 64 KiB or so), so the writer
                # needs a turn often: every 250 rows made the writer wait ~9 ms a pause (the
                # import ran at 13,600 records/s at 100,000), every 10 rows ~0.4 ms (20,500).
                await asyncio.sleep(0)
            if isinstance(item, RowProblem):
                report.rejected += 1
                report.error(item.line, item.field, item.message)
                continue
            batch.add(item)
            if len(batch) >= BATCH_SIZE:
                await batches.put(batch.build())
                batch = store.BatchBuilder()
        if len(batch):
            await batches.put(batch.build())
    finally:
        await batches.put(None)


class _Statistics:
    """Keeps PostgreSQL's planner statistics in step with a bulk import. A registry table that grows
    from nothing has none until autovacuum catches up, and without them the planner reads a whole
    registry to check one batch for duplicates or to answer one lookup. The first statistics are
    what matters (the planner scales its row counts with the table's size, and the columns' shapes
    do not change as a registry grows), so they are refreshed after the first batch, each time the
    import has grown eightfold, and at its end: each ANALYZE samples 30,000 rows and costs about as
    much as writing 5,000 records."""

    GROWTH = 8

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.analyzed_at = 0

    async def refresh_if_grown(self, imported: int, *, final: bool = False) -> None:
        if (await self.session.connection()).dialect.name != "postgresql":
            return
        if imported > self.GROWTH * self.analyzed_at or (final and imported > self.analyzed_at):
            await self.session.execute(sa.text("ANALYZE registry_record, registry_record_key"))
            await self.session.commit()
            self.analyzed_at = imported


async def _write(
    session: AsyncSession, registry_id: uuid.UUID, batch: store.PreparedBatch, report: _Report
) -> None:
    # A batch is checked against the stored records first only while the import keeps meeting
    # them (the first batch always is): a file of new records skips that query, and the unique
    # constraint still catches a repeat, after which the batch is written again with the check.
    checks = (False, True, True) if report.skip_stored_check else (True, True)
    for attempt, check_stored in enumerate(checks, start=1):
        try:
            result = await store.write_batch(session, registry_id, batch, check_stored=check_stored)
            await session.commit()
            break
        except IntegrityError:
            # A stored record repeated, or another import stored one meanwhile: check again.
            await session.rollback()
            if attempt == len(checks):
                raise
    report.skip_stored_check = attempt == 1 and not result.repeats_stored
    report.imported += result.imported
    report.duplicates += len(result.duplicates)
    for row in sorted(result.duplicates, key=lambda r: r.line):
        what = f"record_id {row.record_ref!r}" if row.record_ref else "the same markings"
        report.error(
            row.line, "record_id" if row.record_ref else None, f"duplicate: {what} is already imported"
        )


async def list_records(
    *, session: AsyncSession, registry_ref: str, limit: int, after: int | None
) -> tuple[list[RegistryRecord], int | None]:
    registry = await get(session=session, registry_ref=registry_ref)
    statement = select(RegistryRecord).where(RegistryRecord.registry_id == registry.id)
    if after is not None:
        statement = statement.where(RegistryRecord.record_no > after)
    statement = statement.order_by(RegistryRecord.record_no).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars())
    return rows[:limit], (rows[limit - 1].record_no if len(rows) > limit else None)


# ---- manufacturer aliases -----------------------------------------------------------------------


async def alias_table(session: AsyncSession) -> dict[str, tuple[str, str]]:
    """normalize_make(alias) -> (canonical, country) for every alias administrators added."""
    rows = (await session.execute(select(ManufacturerAlias))).scalars()
    return {row.key: (row.canonical, row.country) for row in rows}


def resolver(aliases: dict[str, tuple[str, str]]) -> Callable[[str], tuple[str, str] | None]:
    """Resolve a make to (canonical, country): the shipped table first, then the added aliases."""

    def resolve(make: str) -> tuple[str, str] | None:
        shipped = resolve_make(make)
        if shipped is not None:
            return shipped.canonical, shipped.country
        return aliases.get(normalize_make(make))

    return resolve


def make_resolver(aliases: dict[str, tuple[str, str]]) -> MakeResolver:
    resolve = resolver(aliases)

    def canonical(make: str) -> str | None:
        found = resolve(make)
        return found[0] if found else None

    return canonical


async def add_alias(*, session: AsyncSession, principal: Principal, body: AliasCreate) -> ManufacturerAlias:
    key = normalize_make(body.alias)
    if not key:
        raise Unprocessable("the alias has no letters or digits")
    aliases = await alias_table(session)
    resolve = resolver(aliases)
    claimed = resolve(body.alias)
    target = resolve(body.canonical)
    if target is None:
        if body.country is None:
            raise Unprocessable(
                f"{body.canonical!r} is not in the manufacturer table; give its country to add it"
            )
        target = (body.canonical, body.country)
    elif body.country is not None and body.country != target[1]:
        raise Unprocessable(f"{target[0]} is a manufacturer of {target[1]}, not {body.country}")
    if claimed is not None:
        if claimed[0] == target[0]:
            raise Conflict(f"{body.alias!r} already names {claimed[0]}")
        raise Conflict(f"{body.alias!r} already names {claimed[0]}, not {target[0]}")
    alias = ManufacturerAlias(
        key=key, alias=body.alias, canonical=target[0], country=target[1], created_by=principal.subject
    )
    session.add(alias)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"{body.alias!r} was added meanwhile") from exc
    return alias


async def list_aliases(*, session: AsyncSession) -> list[ManufacturerAlias]:
    statement = select(ManufacturerAlias).order_by(ManufacturerAlias.canonical, ManufacturerAlias.alias)
    return list((await session.execute(statement)).scalars())
