"""Exchanges: one row for every step of a trace request (submit, forward, acknowledge, answer, close).

An exchange records who acted (subject, agency, country), when, the state before and after, and the
payload they sent. Its `seq` equals the request's version after the step, so a request's exchanges
are numbered 1, 2, 3... without gaps.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.types import UTCDateTime, enum_type, utcnow


class Action(StrEnum):
    submit = "submit"
    forward = "forward"
    acknowledge = "acknowledge"
    answer = "answer"
    close = "close"


class Exchange(SQLModel, table=True):
    __tablename__ = "exchange"
    __table_args__ = (sa.UniqueConstraint("trace_request_id", "seq", name="uq_exchange_seq"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    trace_request_id: uuid.UUID = Field(foreign_key="trace_request.id", index=True)
    seq: int
    action: Action = Field(sa_type=enum_type(Action))
    actor: str = Field(max_length=200)
    agency: str = Field(max_length=64)
    country: str = Field(max_length=2)
    from_state: str | None = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    to_country: str | None = Field(default=None, max_length=2)
    at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ExchangePublic(SQLModel):
    seq: int
    action: Action
    actor: str
    agency: str
    country: str
    from_state: str | None
    to_state: str
    to_country: str | None
    at: dt.datetime
    payload: dict[str, Any]


class ExchangeList(SQLModel):
    items: list[ExchangePublic]
