"""Registries (admin): configure local and HTTP registries, bulk-import records, read them back;
manufacturer aliases; lost/stolen notices for the owner's contact point."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from tracing import agencies
from tracing.api.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.errors import Forbidden, Unprocessable
from tracing.markings import registries
from tracing.markings import service as cross_checks
from tracing.markings.imports import ImportFormat
from tracing.models.agency import AgencyKind
from tracing.models.registry import (
    AliasCreate,
    AliasList,
    AliasPublic,
    ImportReport,
    MakeResolutionPublic,
    RecordList,
    RecordPublic,
    RegistryCreate,
    RegistryList,
    RegistryNoticeList,
    RegistryNoticePublic,
    RegistryPublic,
    RegistryUpdate,
)
from tracing.models.registry import RegistryRecord as RegistryRecordRow
from tracing.security import Role

router = APIRouter(tags=["registries"])

_FORMATS = {
    "text/csv": ImportFormat.csv,
    "application/csv": ImportFormat.csv,
    "application/x-ndjson": ImportFormat.jsonl,
    "application/jsonl": ImportFormat.jsonl,
    "application/jsonlines": ImportFormat.jsonl,
}
_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "CSV with a header row (columns serial_number and make required; record_id, model, calibre,"
            " kind, country_of_manufacture, year_of_manufacture optional; other columns are kept as"
            " details), or JSON lines with the same field names. Streamed: the size is limited by"
            " TRACING_MAX_IMPORT_BYTES, not by the 1 MiB limit of other routes."
        ),
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/v1/registries",
    status_code=status.HTTP_201_CREATED,
    response_model=RegistryPublic,
    responses=problems(401, 403, 409, 422),
)
async def create_registry(body: RegistryCreate, session: SessionDep, _: AdminPrincipal) -> RegistryPublic:
    return RegistryPublic.of(await registries.create(session=session, body=body))


@router.get("/v1/registries", response_model=RegistryList, responses=problems(401, 403))
async def list_registries(session: SessionDep, _: AdminPrincipal) -> RegistryList:
    return RegistryList(items=[RegistryPublic.of(r) for r in await registries.list_all(session=session)])


@router.get("/v1/registries/{registry}", response_model=RegistryPublic, responses=problems(401, 403, 404))
async def get_registry(registry: str, session: SessionDep, _: AdminPrincipal) -> RegistryPublic:
    """`registry` is the registry's UUID or its code."""
    return RegistryPublic.of(await registries.get(session=session, registry_ref=registry))


@router.patch(
    "/v1/registries/{registry}", response_model=RegistryPublic, responses=problems(401, 403, 404, 422)
)
async def update_registry(
    registry: str, body: RegistryUpdate, session: SessionDep, _: AdminPrincipal
) -> RegistryPublic:
    return RegistryPublic.of(await registries.update(session=session, registry_ref=registry, body=body))


@router.post(
    "/v1/registries/{registry}/records",
    response_model=ImportReport,
    responses=problems(401, 403, 404, 413, 422),
    openapi_extra=_IMPORT_BODY,
)
async def import_registry_records(
    registry: str,
    request: Request,
    session: SessionDep,
    _: AdminPrincipal,
    format: Annotated[ImportFormat | None, Query(description="overrides the Content-Type")] = None,
    encoding: Annotated[
        str,
        Query(
            max_length=40, description="utf-8, or an ASCII-compatible encoding (latin-1, cp1251, gb18030...)"
        ),
    ] = "utf-8",
) -> ImportReport:
    """Bulk import, streamed in batches: bad rows are reported line by line, good rows are kept."""
    if format is None:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        format = _FORMATS.get(media_type)
        if format is None:
            raise Unprocessable(
                f"send text/csv or application/x-ndjson (or ?format=csv|jsonl), not {media_type or 'nothing'}"
            )
    return await registries.import_records(
        session=session, registry_ref=registry, chunks=request.stream(), fmt=format, encoding=encoding
    )


def _record_public(record: RegistryRecordRow) -> RecordPublic:
    return RecordPublic(
        record_id=record.record_ref,
        serial_number=record.serial_number,
        make=record.make,
        model=record.model,
        calibre=record.calibre,
        kind=record.firearm_kind,
        country_of_manufacture=record.country_of_manufacture,
        year_of_manufacture=record.year_of_manufacture,
        details=record.details,
    )


def _decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().removeprefix("r:"))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable("cursor is not one this service issued") from exc


@router.get(
    "/v1/registries/{registry}/records", response_model=RecordList, responses=problems(401, 403, 404, 422)
)
async def list_registry_records(
    registry: str,
    session: SessionDep,
    _: AdminPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> RecordList:
    rows, last = await registries.list_records(
        session=session, registry_ref=registry, limit=limit, after=_decode_cursor(cursor) if cursor else None
    )
    next_cursor = base64.urlsafe_b64encode(f"r:{last}".encode()).decode().rstrip("=") if last else None
    return RecordList(items=[_record_public(r) for r in rows], next_cursor=next_cursor)


@router.get("/v1/registry-notices", response_model=RegistryNoticeList, responses=problems(401, 403))
async def list_registry_notices(session: SessionDep, principal: CurrentPrincipal) -> RegistryNoticeList:
    """Lost/stolen hits on registries owned by the caller's country (contact points), or all (admin)."""
    if not (principal.has(Role.contact_point) or principal.has(Role.admin)):
        raise Forbidden("notices are for contact points and administrators")
    if not principal.has(Role.admin):
        await agencies.require_registered(session, principal, kind=AgencyKind.contact_point)
    country = None if principal.has(Role.admin) else principal.country
    notices = await cross_checks.notices(session, owner_country=country)
    return RegistryNoticeList(items=[RegistryNoticePublic.model_validate(n) for n in notices])


@router.post(
    "/v1/manufacturers/aliases",
    status_code=status.HTTP_201_CREATED,
    response_model=AliasPublic,
    responses=problems(401, 403, 409, 422),
)
async def add_manufacturer_alias(
    body: AliasCreate, session: SessionDep, principal: AdminPrincipal
) -> AliasPublic:
    """Teach the service another name of a manufacturer (or a manufacturer the table lacks)."""
    alias = await registries.add_alias(session=session, principal=principal, body=body)
    return AliasPublic.model_validate(alias)


@router.get("/v1/manufacturers/aliases", response_model=AliasList, responses=problems(401, 403))
async def list_manufacturer_aliases(session: SessionDep, _: AdminPrincipal) -> AliasList:
    return AliasList(
        items=[AliasPublic.model_validate(a) for a in await registries.list_aliases(session=session)]
    )


@router.get("/v1/manufacturers/resolve", response_model=MakeResolutionPublic, responses=problems(401, 422))
async def resolve_manufacturer(
    session: SessionDep, _: CurrentPrincipal, make: Annotated[str, Query(min_length=1, max_length=200)]
) -> MakeResolutionPublic:
    """The canonical manufacturer for a make as marked, in any script; unknown makes say so."""
    return await cross_checks.make_resolution(session, make)
