"""Emitting events to agencies inside the caller's transaction: the transactional outbox.

Nothing is sent from here. An event row (and a webhook delivery row when the recipient has an
active webhook) is added to the session the change is written in, so the event exists exactly when
the change does. The event takes its place in the agency's feed when a feed reader first sees it
committed (tracing/notify/feed.py), so writers to one agency never wait on one another. After the
commit, the doorbells wake waiting feed readers and (when a delivery was added) the delivery worker
of this process; other processes find the rows by polling.

Who receives what derives from the exchange: request.submitted goes to the requesting country's
contact point (new work to check and forward), request.forwarded to the new holder's contact
point, request.acknowledged / answered / closed to the requesting side (the requesting agency and
its country's contact point; a withdrawal also to the contact point that held the request), and
request.overdue to the holder and the requesting side.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import select

from tracing.models.agency import Agency, AgencyKind
from tracing.models.exchange import Action, Exchange
from tracing.models.notify import DeliveryStatus, Event, EventType, WebhookDelivery
from tracing.models.trace_request import State, TraceRequest
from tracing.notify.doorbell import delivery_doorbell, doorbell

_EMITTED = "tracing.notify.emitted"
_DELIVERIES = "tracing.notify.deliveries"

_EVENT_OF_ACTION = {
    Action.submit: EventType.request_submitted,
    Action.forward: EventType.request_forwarded,
    Action.acknowledge: EventType.request_acknowledged,
    Action.answer: EventType.request_answered,
    Action.close: EventType.request_closed,
}


def iso_utc(moment: dt.datetime) -> str:
    """A UTC timestamp as the API writes it (ISO 8601 with `Z`)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _iso(moment: dt.datetime | None) -> str | None:
    return iso_utc(moment) if moment is not None else None


def request_summary(request: TraceRequest) -> dict[str, Any]:
    """What every request event carries: enough to decide what to do, no firearm, case or person
    details (the recipient fetches those with its own token, which also records the access)."""
    return {
        "reference": request.reference,
        "state": request.state.value,
        "version": request.version,
        "priority": request.priority.value,
        "holder_country": request.holder_country,
        "requesting_country": request.requesting_country,
        "due": {"acknowledge_by": _iso(request.acknowledge_by), "answer_by": _iso(request.answer_by)},
    }


async def contact_points(session: AsyncSession, countries: Iterable[str]) -> list[str]:
    wanted = sorted(set(countries))
    if not wanted:
        return []
    statement = select(Agency.code).where(Agency.kind == AgencyKind.contact_point, Agency.country.in_(wanted))
    return list((await session.execute(statement)).scalars())


async def recipients_of_transition(
    session: AsyncSession, request: TraceRequest, exchange: Exchange
) -> list[str]:
    if exchange.action is Action.submit:
        return await contact_points(session, [request.requesting_country])
    if exchange.action is Action.forward:
        return await contact_points(session, [request.holder_country])
    countries = [request.requesting_country]
    if exchange.action is Action.close and exchange.from_state == State.forwarded.value:
        countries.append(request.holder_country)
    return [request.requesting_agency, *await contact_points(session, countries)]


async def recipients_of_overdue(session: AsyncSession, request: TraceRequest) -> list[str]:
    countries = [request.holder_country, request.requesting_country]
    return [request.requesting_agency, *await contact_points(session, countries)]


async def emit_for_transition(
    session: AsyncSession, request: TraceRequest, exchange: Exchange
) -> list[Event]:
    """The events of one workflow step, in the step's transaction."""
    return await emit(
        session,
        recipients=await recipients_of_transition(session, request, exchange),
        type=event_type_of(exchange),
        trace_request_id=request.id,
        data=transition_data(request, exchange),
        at=exchange.at,
    )


def event_type_of(exchange: Exchange) -> EventType:
    return _EVENT_OF_ACTION[exchange.action]


def transition_data(request: TraceRequest, exchange: Exchange) -> dict[str, Any]:
    """What the events of a workflow step carry."""
    data = request_summary(request) | {"action": exchange.action.value, "by_country": exchange.country}
    if exchange.action is Action.forward:
        data["to_country"] = exchange.to_country
    elif exchange.action is Action.answer:
        data["outcome"] = request.outcome.value if request.outcome else None
    elif exchange.action is Action.close:
        data["resolution"] = request.resolution.value if request.resolution else None
    return data


async def emit_overdue(
    session: AsyncSession, request: TraceRequest, *, missed: str, due_at: dt.datetime, at: dt.datetime
) -> list[Event]:
    data = request_summary(request) | {"missed": missed, "due_at": iso_utc(due_at)}
    return await emit(
        session,
        recipients=await recipients_of_overdue(session, request),
        type=EventType.request_overdue,
        trace_request_id=request.id,
        data=data,
        at=at,
    )


async def emit_crosscheck_hit(
    session: AsyncSession,
    request: TraceRequest,
    *,
    registry_owner_country: str,
    hit: dict[str, Any],
    at: dt.datetime,
) -> list[Event]:
    """A cross-check found the request's firearm in a registry: tell the registry owner's contact
    point, in the transaction that records the result. `hit` should name the registry, the matched
    record's reference and the confidence, and nothing about possessors."""
    data = {"reference": request.reference, "requesting_country": request.requesting_country, **hit}
    return await emit(
        session,
        recipients=await contact_points(session, [registry_owner_country]),
        type=EventType.crosscheck_hit,
        trace_request_id=request.id,
        data=data,
        at=at,
    )


async def emit(
    session: AsyncSession,
    *,
    recipients: Iterable[str],
    type: EventType,
    trace_request_id: uuid.UUID | None,
    data: dict[str, Any],
    at: dt.datetime,
) -> list[Event]:
    """Add one event per recipient agency (and its webhook delivery) to the caller's transaction."""
    codes = sorted(set(recipients))
    if not codes:
        return []
    webhooks = await _active_webhooks(session, codes)
    events = []
    for code in codes:
        event = Event(
            agency=code,
            type=type,
            at=at,
            trace_request_id=trace_request_id,
            data=data,
        )
        session.add(event)
        events.append(event)
        if code in webhooks:
            session.add(
                WebhookDelivery(
                    event_id=event.id,
                    agency=code,
                    status=DeliveryStatus.pending,
                    next_attempt_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
    mark_emitted(session, deliveries=bool(webhooks))
    return events


def mark_emitted(session: AsyncSession, *, events: bool = True, deliveries: bool = True) -> None:
    """Ring the doorbells of what this session added (events, webhook deliveries) when its
    transaction commits."""
    if events:
        session.info[_EMITTED] = True
    if deliveries:
        session.info[_DELIVERIES] = True


async def _active_webhooks(session: AsyncSession, codes: list[str]) -> set[str]:
    statement = select(Agency.code).where(
        Agency.code.in_(codes), Agency.webhook_url.is_not(None), Agency.webhook_disabled_at.is_(None)
    )
    return set((await session.execute(statement)).scalars())


@sa_event.listens_for(Session, "after_commit")
def _ring_after_commit(session: Session) -> None:
    if session.info.pop(_EMITTED, False):
        doorbell.ring()
    if session.info.pop(_DELIVERIES, False):
        delivery_doorbell.ring()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_EMITTED, None)
    session.info.pop(_DELIVERIES, None)
