"""Registering agencies: contact points (one per country) and investigating agencies."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Conflict, Forbidden, NotFound
from tracing.models.agency import Agency, AgencyCreate, AgencyKind, AgencyUpdate
from tracing.notify.addresses import AddressPolicy, resolve_allowed
from tracing.notify.deliveries import new_webhook_secret
from tracing.security import Principal


@dataclass(frozen=True)
class Saved:
    agency: Agency
    new_webhook_secret: str | None = None
    """Set when this change generated the webhook signing secret: show it to the admin once."""


async def _set_webhook(agency: Agency, url: str | None, policy: AddressPolicy) -> str | None:
    """Point the agency's webhook at `url` (checked against the SSRF guard), or remove it. A secret
    is generated when the agency gets a webhook; setting the URL again re-enables a disabled one."""
    if url is None:
        agency.webhook_url = agency.webhook_secret = None
        agency.webhook_disabled_at = agency.webhook_disabled_reason = None
        return None
    await resolve_allowed(url, policy)
    agency.webhook_url = url
    agency.webhook_disabled_at = agency.webhook_disabled_reason = None
    if agency.webhook_secret is None:
        agency.webhook_secret = new_webhook_secret()
        return agency.webhook_secret
    return None


async def create(
    *, session: AsyncSession, body: AgencyCreate, address_policy: AddressPolicy | None = None
) -> Saved:
    agency = Agency(code=body.code, name=body.name, country=body.country, kind=body.kind)
    secret = await _set_webhook(
        agency, str(body.webhook_url) if body.webhook_url else None, address_policy or AddressPolicy()
    )
    session.add(agency)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        if body.kind == AgencyKind.contact_point and await contact_point_of(session, body.country):
            raise Conflict(f"{body.country} already has a national contact point") from exc
        raise Conflict(f"an agency with code {body.code} already exists") from exc
    return Saved(agency, secret)


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


async def require_registered(
    session: AsyncSession, principal: Principal, *, kind: AgencyKind | None = None
) -> None:
    """Refuse a caller whose token names an agency not registered in its country (or, with `kind`,
    not of that kind): roles come from the token, but agencies come from this registry."""
    if not await is_registered(session, code=principal.agency, country=principal.country, kind=kind):
        what = (
            "the registered contact point of"
            if kind is AgencyKind.contact_point
            else "registered for country"
        )
        raise Forbidden(f"agency {principal.agency} is not {what} {principal.country}")


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


async def update(
    *, session: AsyncSession, code: str, body: AgencyUpdate, address_policy: AddressPolicy | None = None
) -> Saved:
    agency = await get(session=session, code=code)
    changes = body.model_dump(exclude_unset=True)
    secret = None
    if "name" in changes:
        agency.name = changes["name"]
    if "webhook_url" in changes:
        url = str(body.webhook_url) if body.webhook_url else None
        secret = await _set_webhook(agency, url, address_policy or AddressPolicy())
    await session.commit()
    return Saved(agency, secret)


async def rotate_webhook_secret(*, session: AsyncSession, code: str) -> Saved:
    """A new signing secret; the old one stops working at once."""
    agency = await get(session=session, code=code)
    if agency.webhook_url is None:
        raise Conflict(f"agency {code} has no webhook URL; set one first")
    agency.webhook_secret = new_webhook_secret()
    await session.commit()
    return Saved(agency, agency.webhook_secret)
