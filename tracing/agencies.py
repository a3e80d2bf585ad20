"""Registering agencies: contact points (one per country) and investigating agencies."""

from __future__ import annotations

import weakref

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Conflict, NotFound
from tracing.models.agency import Agency, AgencyCreate, AgencyKind, AgencyUpdate


async def create(*, session: AsyncSession, body: AgencyCreate) -> Agency:
    agency = Agency(
        code=body.code,
        name=body.name,
        country=body.country,
        kind=body.kind,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
    )
    session.add(agency)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        if body.kind == AgencyKind.contact_point and await contact_point_of(session, body.country):
            raise Conflict(f"{body.country} already has a national contact point") from exc
        raise Conflict(f"an agency with code {body.code} already exists") from exc
    return agency


async def contact_point_of(session: AsyncSession, country: str) -> Agency | None:
    statement = select(Agency).where(Agency.country == country, Agency.kind == AgencyKind.contact_point)
    return (await session.execute(statement)).scalar_one_or_none()


# An agency's code, country and kind never change once registered, and agencies are never removed,
# so "is registered" answers are cached (per database) once they are yes; a no is always re-read.
_registered: weakref.WeakKeyDictionary[Engine, set[tuple[str, str, str]]] = weakref.WeakKeyDictionary()


async def is_registered(
    session: AsyncSession, *, code: str, country: str, kind: AgencyKind | None = None
) -> bool:
    known = _registered.setdefault(session.get_bind(), set())
    if any(c == code and k_country == country and kind in (None, k) for c, k_country, k in known):
        return True
    agency = (await session.execute(select(Agency).where(Agency.code == code))).scalar_one_or_none()
    if agency is None:
        return False
    known.add((agency.code, agency.country, agency.kind))
    return agency.country == country and kind in (None, agency.kind)


async def has_contact_point(session: AsyncSession, country: str) -> bool:
    known = _registered.setdefault(session.get_bind(), set())
    if any(c == country and k == AgencyKind.contact_point for _, c, k in known):
        return True
    agency = await contact_point_of(session, country)
    if agency is None:
        return False
    known.add((agency.code, agency.country, agency.kind))
    return True


async def get(*, session: AsyncSession, code: str) -> Agency:
    agency = (await session.execute(select(Agency).where(Agency.code == code))).scalar_one_or_none()
    if agency is None:
        raise NotFound(f"agency {code} not found")
    return agency


async def list_all(*, session: AsyncSession, country: str | None = None) -> list[Agency]:
    statement = select(Agency).order_by(Agency.country, Agency.code)
    if country is not None:
        statement = statement.where(Agency.country == country)
    return list((await session.execute(statement)).scalars())


async def update(*, session: AsyncSession, code: str, body: AgencyUpdate) -> Agency:
    agency = await get(session=session, code=code)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        agency.name = changes["name"]
    if "webhook_url" in changes:
        agency.webhook_url = str(body.webhook_url) if body.webhook_url else None
    await session.commit()
    return agency
