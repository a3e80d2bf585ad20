"""Events for agencies (the outbox and the event feed), webhook deliveries and their attempts.

An event is one message to one agency: written in the same transaction as the change it reports,
given its place in that agency's feed (`seq`) once it is committed, by the first feed reader that
sees it (under a lock on the agency's feed head, so feed order is commit order and writers never
wait on one another), and, when the agency has a webhook, paired with a delivery row that the
worker claims, posts and records.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.types import UTCDateTime, enum_type, utcnow


class EventType(StrEnum):
    request_submitted = "request.submitted"
    request_forwarded = "request.forwarded"
    request_acknowledged = "request.acknowledged"
    request_answered = "request.answered"
    request_closed = "request.closed"
    request_overdue = "request.overdue"
    crosscheck_hit = "crosscheck.hit"


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (
        sa.UniqueConstraint("agency", "seq", name="uq_event_agency_seq"),
        sa.Index(
            "ix_event_unplaced",
            "agency",
            "number",
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        ),
    )

    number: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, unique=True)
    """The stable event id: the feed item's `id` and the webhook's `webhook-id`."""
    agency: str = Field(max_length=64)
    """The recipient agency's code."""
    seq: int | None = None
    """Position in the recipient's feed: 1, 2, 3... in commit order; None until a feed reader has
    placed it (tracing/notify/feed.py)."""
    type: EventType = Field(sa_type=enum_type(EventType, 64))
    at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    trace_request_id: uuid.UUID | None = Field(default=None, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EventFeedHead(SQLModel, table=True):
    """The last feed position given out per agency; placing events locks this row until commit."""

    __tablename__ = "event_feed_head"

    agency: str = Field(max_length=64, primary_key=True)
    seq: int


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_delivery_due", "status", "next_attempt_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    event_id: uuid.UUID = Field(foreign_key="event.id", index=True)
    agency: str = Field(max_length=64, index=True)
    status: DeliveryStatus = Field(sa_type=enum_type(DeliveryStatus))
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    """When a worker may (next) claim it; a claim moves it forward by the lease."""
    retry_until: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    """Set at the first failed attempt: failures are retried until then, after that the delivery is
    marked failed."""
    claim_token: uuid.UUID | None = None
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    delivered_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    failed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "webhook_delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: uuid.UUID = Field(foreign_key="webhook_delivery.id", index=True)
    number: int
    at: dt.datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    duration_ms: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)


# ---- responses ------------------------------------------------------------------------------


class EventPublic(SQLModel):
    id: uuid.UUID
    type: EventType
    at: dt.datetime
    trace_request_id: uuid.UUID | None
    data: dict[str, Any]


class EventFeed(SQLModel):
    items: list[EventPublic]
    next_cursor: str
    """Pass as `after` to get the events after these (the same cursor again when there were none)."""


class DeliveryAttemptPublic(SQLModel):
    number: int
    at: dt.datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryPublic(SQLModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    trace_request_id: uuid.UUID | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime | None
    retry_until: dt.datetime | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    failed_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[DeliveryAttemptPublic] | None = None


class DeliveryList(SQLModel):
    items: list[DeliveryPublic]
    next_cursor: str | None = None
