"""Demo registries: a local national registry of 12,000 generated records (with the demo AKMs), a
lost/stolen list, and an HTTP registry served by `tracing registry serve-example`; plus a trace
request whose serial was read with a confusion (letter O for zero) that the cross-check matches."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tracing.markings import registries
from tracing.markings.adapters import HttpPolicy
from tracing.markings.corpus import generate_records
from tracing.markings.imports import KNOWN_COLUMNS, ImportFormat
from tracing.markings.service import CrossCheckRunner
from tracing.models.registry import AdapterKind, RegistryCreate, RegistryKind
from tracing.models.trace_request import TraceRequestCreate
from tracing.security import Principal
from tracing.workflow import service

NATIONAL_RECORDS = 12_000
CONFUSED_SERIAL = "LX 1O23"  # read off the receiver with the letter O for the digit zero
CONFUSED_READING = {
    "serial_number": CONFUSED_SERIAL,
    "serial_obliterated": "none",
    "case_reference": "NE/2017/1199",
}

# The demo's AKMs as Nigeria registered them on import in 2009 (the README's walkthrough).
NG_AKMS = [
    {"record_id": f"NG-2009-{n}", "serial_number": serial, "make": "Izhevsk Mechanical Plant", "model": "AKM",
     "calibre": "7.62x39mm", "kind": "rifle", "country_of_manufacture": "RU", "year_of_manufacture": "1975",
     "import_licence": "2009/445"}
    for n, serial in enumerate(["LX 1023", "LX 2201", "LX 3310", "LX 4471", "LX 5002"], start=1)
]  # fmt: skip
NG_LOST = [
    {"record_id": "NG-LS-2016-77", "serial_number": "LX4471", "make": "Izhmash", "model": "AKM",
     "calibre": "7.62x39", "reported": "2016-08-14", "circumstances": "lost from a state armoury"},
]  # fmt: skip


async def _csv(rows: Iterable[dict[str, str]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*KNOWN_COLUMNS, "import_licence"], extrasaction="ignore")
    writer.writeheader()
    for number, row in enumerate(rows, start=1):
        writer.writerow(row)
        if number % 2000 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


async def load_registries(sessions: async_sessionmaker[AsyncSession], example_url: str) -> None:
    """Create the demo registries and import their records (before the demo requests are submitted,
    so each submission schedules its cross-checks)."""
    specs = [
        ("NG-NFR", "Nigeria national firearms registry (demo)", RegistryKind.national_registry, "NG", None),
        ("NG-LOST", "Nigeria lost and stolen firearms (demo)", RegistryKind.lost_stolen, "NG", None),
        ("RU-KC", "Kalashnikov Concern production records (example HTTP registry)",
         RegistryKind.manufacturer_records, "RU", example_url),
    ]  # fmt: skip
    async with sessions() as session:
        for code, name, kind, country, url in specs:
            adapter = AdapterKind.http if url else AdapterKind.local
            body = RegistryCreate(
                code=code,
                name=name,
                kind=kind,
                owner_country=country,
                adapter=adapter,
                url=url,
                timeout_seconds=3,
            )
            await registries.create(session=session, body=body)
        generated = (
            record.as_row() for record in generate_records(NATIONAL_RECORDS, seed=2017, prefix="NG-")
        )
        await registries.import_records(
            session=session, registry_ref="NG-NFR", chunks=_csv([*NG_AKMS, *generated]), fmt=ImportFormat.csv
        )
        await registries.import_records(
            session=session, registry_ref="NG-LOST", chunks=_csv(NG_LOST), fmt=ImportFormat.csv
        )


async def finish(
    sessions: async_sessionmaker[AsyncSession], investigator: Principal, confused: TraceRequestCreate
) -> str:
    """Submit the request read with a confusion (built from CONFUSED_READING), then run every
    scheduled cross-check once (an example registry that is not running yet is `unavailable` and
    retried by `tracing serve`)."""
    async with sessions() as session:
        submitted = await service.submit(
            session=session, principal=investigator, body=confused, idempotency_key=None
        )
    runner = CrossCheckRunner(sessions, policy=HttpPolicy(attempts=1))
    try:
        await runner.run_pending()
    finally:
        await runner.close()
    return (
        f"; registries NG-NFR ({NATIONAL_RECORDS + len(NG_AKMS)} records), NG-LOST, RU-KC (HTTP);"
        f" {submitted.request.reference} was read as {CONFUSED_SERIAL!r}"
    )
