"""Reading an agency's webhook deliveries, redelivering a failed one, and its webhook secret.

Who may see an agency's deliveries: admins, and the agency's own users (its contact point officers
or investigators), since the deliveries carry that agency's events.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Conflict, Forbidden, NotFound, Unprocessable
from tracing.models.agency import Agency
from tracing.models.notify import (
    DeliveryAttempt,
    DeliveryAttemptPublic,
    DeliveryPublic,
    DeliveryStatus,
    Event,
    WebhookDelivery,
)
from tracing.models.types import utcnow
from tracing.notify.outbox import mark_emitted
from tracing.security import Principal, Role


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def check_may_see_deliveries(session: AsyncSession, principal: Principal, agency_code: str) -> None:
    from tracing import agencies  # agencies uses this module for webhook secrets

    if principal.has(Role.admin):
        return
    own_user = principal.agency == agency_code and (
        principal.has(Role.contact_point) or principal.has(Role.investigator)
    )
    if not own_user or not await agencies.is_registered(
        session, code=principal.agency, country=principal.country
    ):
        raise Forbidden("an agency's deliveries are shown to admins and to the agency's own users")


def _public(
    delivery: WebhookDelivery, event: Event, attempts: list[DeliveryAttempt] | None
) -> DeliveryPublic:
    return DeliveryPublic(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=event.type,
        trace_request_id=event.trace_request_id,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.pending else None,
        retry_until=delivery.retry_until,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        failed_at=delivery.failed_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        attempt_log=(
            [
                DeliveryAttemptPublic(
                    number=a.number,
                    at=a.at,
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                )
                for a in attempts
            ]
            if attempts is not None
            else None
        ),
    )


def encode_cursor(delivery: WebhookDelivery) -> str:
    raw = f"d:{delivery.created_at.isoformat()}|{delivery.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, rest = raw.split(":", 1)
        created, delivery_id = rest.rsplit("|", 1)
        if prefix != "d":
            raise ValueError(prefix)
        return dt.datetime.fromisoformat(created), uuid.UUID(delivery_id)
    except ValueError as exc:
        raise Unprocessable("cursor is not one this service issued") from exc


async def list_for_agency(
    session: AsyncSession,
    *,
    agency: str,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[DeliveryPublic], str | None]:
    """Newest first."""
    statement = (
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.agency == agency)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if cursor is not None:
        created, delivery_id = _decode_cursor(cursor)
        statement = statement.where(
            sa.or_(
                WebhookDelivery.created_at < created,
                sa.and_(WebhookDelivery.created_at == created, WebhookDelivery.id < delivery_id),
            )
        )
    rows = list(await session.execute(statement))
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return [_public(d, e, None) for d, e in rows[:limit]], next_cursor


async def get_for_agency(session: AsyncSession, *, agency: str, delivery_id: uuid.UUID) -> DeliveryPublic:
    statement = (
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.agency == agency, WebhookDelivery.id == delivery_id)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        raise NotFound(f"delivery {delivery_id} not found for agency {agency}")
    attempts = list(
        (
            await session.execute(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.number)
            )
        ).scalars()
    )
    return _public(row[0], row[1], attempts)


async def redeliver(session: AsyncSession, *, agency: str, delivery_id: uuid.UUID) -> DeliveryPublic:
    """Put a failed delivery back in the queue, due now, with a fresh retry window. The event
    (and so the webhook-id) stays the same."""
    await get_for_agency(session, agency=agency, delivery_id=delivery_id)
    owner = (await session.execute(select(Agency).where(Agency.code == agency))).scalar_one()
    if not owner.webhook_url or owner.webhook_disabled_at is not None:
        raise Conflict(
            f"agency {agency} has no active webhook; an admin must set its webhook URL before redelivery"
        )
    now = utcnow()
    statement = (
        sa.update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.agency == agency,
            WebhookDelivery.status == DeliveryStatus.failed,
        )
        .values(
            status=DeliveryStatus.pending,
            next_attempt_at=now,
            retry_until=None,
            claim_token=None,
            failed_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if (await session.execute(statement)).rowcount != 1:
        await session.rollback()
        raise Conflict("only a failed delivery can be redelivered")
    mark_emitted(session, events=False)
    await session.commit()
    return await get_for_agency(session, agency=agency, delivery_id=delivery_id)
