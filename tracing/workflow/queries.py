"""Reading trace requests as a given principal: only parties see a request exists."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import NotFound, Unprocessable
from tracing.models.agency import Agency, AgencyKind
from tracing.models.exchange import Exchange
from tracing.models.trace_request import State, TraceRequest, TraceRequestParty
from tracing.models.types import utcnow
from tracing.security import Principal, Role
from tracing.workflow.deadlines import overdue


def visible_to(principal: Principal, *, auditing: bool = False) -> sa.ColumnElement[bool]:
    """The parties of a request: the requesting agency's investigators, and the contact points of
    the requesting country and of every country the request was forwarded to. When `auditing`,
    auditors of those countries too (they see audit trails, not the request itself).

    A contact point is the agency registered as its country's contact point: a token claiming the
    role for another agency sees nothing."""
    clauses: list[sa.ColumnElement[bool]] = []
    party_country = sa.exists().where(
        TraceRequestParty.trace_request_id == TraceRequest.id,
        TraceRequestParty.country == principal.country,
    )
    if principal.has(Role.investigator):
        clauses.append(TraceRequest.requesting_agency == principal.agency)
    if principal.has(Role.contact_point):
        registered = sa.exists().where(
            Agency.code == principal.agency,
            Agency.country == principal.country,
            Agency.kind == AgencyKind.contact_point,
        )
        clauses.append(sa.and_(registered, party_country))
    if auditing and principal.has(Role.auditor):
        clauses.append(party_country)
    return sa.or_(*clauses) if clauses else sa.false()


async def get_visible(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID, *, auditing: bool = False
) -> TraceRequest:
    statement = select(TraceRequest).where(
        TraceRequest.id == request_id, visible_to(principal, auditing=auditing)
    )
    request = (await session.execute(statement)).scalar_one_or_none()
    if request is None:
        raise NotFound(f"trace request {request_id} not found")
    return request


async def parties_of(session: AsyncSession, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {request_id: [] for request_id in request_ids}
    if not request_ids:
        return found
    statement = select(TraceRequestParty.trace_request_id, TraceRequestParty.country).where(
        TraceRequestParty.trace_request_id.in_(request_ids)
    )
    for request_id, country in await session.execute(statement):
        found[request_id].append(country)
    return found


@dataclass(frozen=True)
class ListFilters:
    state: State | None = None
    operation: str | None = None
    country: str | None = None
    overdue: bool | None = None


def encode_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"n:{number}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, number = raw.split(":", 1)
        if prefix != "n":
            raise ValueError(prefix)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable("cursor is not one this service issued") from exc


async def list_visible(
    session: AsyncSession,
    principal: Principal,
    filters: ListFilters,
    *,
    limit: int,
    cursor: str | None,
    now: dt.datetime | None = None,
) -> tuple[list[TraceRequest], str | None]:
    """Newest first; the cursor is the last item's position, so pages never repeat or skip.
    `now` decides which requests are overdue (the current time unless given)."""
    statement = select(TraceRequest).where(visible_to(principal))
    if filters.overdue is not None:
        is_overdue = overdue(now or utcnow())
        statement = statement.where(is_overdue if filters.overdue else sa.not_(is_overdue))
    if filters.state is not None:
        statement = statement.where(TraceRequest.state == filters.state)
    if filters.operation is not None:
        statement = statement.where(TraceRequest.operation_code == filters.operation)
    if filters.country is not None:
        statement = statement.where(
            sa.exists().where(
                TraceRequestParty.trace_request_id == TraceRequest.id,
                TraceRequestParty.country == filters.country,
            )
        )
    if cursor is not None:
        statement = statement.where(TraceRequest.number < decode_cursor(cursor))
    statement = statement.order_by(TraceRequest.number.desc()).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars())
    next_cursor = encode_cursor(rows[limit - 1].number or 0) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def exchanges_of(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID, *, auditing: bool = False
) -> list[Exchange]:
    await get_visible(session, principal, request_id, auditing=auditing)
    statement = select(Exchange).where(Exchange.trace_request_id == request_id).order_by(Exchange.seq)
    return list((await session.execute(statement)).scalars())
