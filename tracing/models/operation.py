"""Joint operations (e.g. INTERPOL/WCO/UNODC operation TRIGGER III): their period, participating
countries, organisers, and the firearms each country reported recovering during the operation.

An operation's code is its key: trace requests name it in `operation_code`. Codes are stored upper
case, so `trigger-iii` and `TRIGGER-III` are the same operation and cannot both exist.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BeforeValidator, ConfigDict, StringConstraints, model_validator
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.types import CountryCode, ShortText, UTCDateTime, enum_type, utcnow

OperationCode = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    StringConstraints(min_length=2, max_length=64, pattern=r"^[A-Z0-9][A-Z0-9._-]*$"),
]
Organiser = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]


class OperationStatus(StrEnum):
    open = "open"
    closed = "closed"
    """No new trace requests may name a closed operation."""


class Recovery(SQLModel):
    """Firearms one participating country reported recovering during the operation."""

    model_config = ConfigDict(extra="forbid")

    country: CountryCode
    seized: int = Field(default=0, ge=0, le=10_000_000)
    found: int = Field(default=0, ge=0, le=10_000_000)
    surrendered: int = Field(default=0, ge=0, le=10_000_000)


def check_consistent(start: dt.date, end: dt.date, countries: list[str], recoveries: list[Recovery]) -> None:
    """The rules an operation satisfies whether it is being created or updated."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    repeated = sorted({c for c in countries if countries.count(c) > 1})
    if repeated:
        raise ValueError(f"countries listed more than once: {', '.join(repeated)}")
    reported = [r.country for r in recoveries]
    repeated = sorted({c for c in reported if reported.count(c) > 1})
    if repeated:
        raise ValueError(f"recoveries listed more than once for: {', '.join(repeated)}")
    outsiders = sorted(set(reported) - set(countries))
    if outsiders:
        raise ValueError(f"recoveries reported for countries not taking part: {', '.join(outsiders)}")


class OperationCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    code: OperationCode
    name: ShortText
    start: dt.date
    end: dt.date
    countries: list[CountryCode] = Field(min_length=1, max_length=250)
    organisers: list[Organiser] = Field(default_factory=list, max_length=50)
    recoveries: list[Recovery] = Field(default_factory=list, max_length=250)
    status: OperationStatus = OperationStatus.open

    @model_validator(mode="after")
    def _consistent(self) -> OperationCreate:
        check_consistent(self.start, self.end, self.countries, self.recoveries)
        return self


class OperationUpdate(SQLModel):
    """Any subset of an operation's fields except its code; `recoveries` replaces the whole list."""

    model_config = ConfigDict(extra="forbid")

    name: ShortText | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    countries: list[CountryCode] | None = Field(default=None, min_length=1, max_length=250)
    organisers: list[Organiser] | None = Field(default=None, max_length=50)
    recoveries: list[Recovery] | None = Field(default=None, max_length=250)
    status: OperationStatus | None = None


class Operation(SQLModel, table=True):
    __tablename__ = "operation"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    start: dt.date
    end: dt.date
    status: OperationStatus = Field(sa_type=enum_type(OperationStatus))
    countries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    organisers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class OperationRecovery(SQLModel, table=True):
    """One row per participating country that reported recoveries; a table (not JSON) so the SDG
    16.4.2 figures can be summed in the database."""

    __tablename__ = "operation_recovery"

    operation_id: uuid.UUID = Field(foreign_key="operation.id", primary_key=True, ondelete="CASCADE")
    country: str = Field(max_length=2, primary_key=True, index=True)
    seized: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
    found: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
    surrendered: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))


class OperationPublic(SQLModel):
    id: uuid.UUID
    code: str
    name: str
    start: dt.date
    end: dt.date
    status: OperationStatus
    countries: list[str]
    organisers: list[str]
    recoveries: list[Recovery]
    recovered_total: int
    created_at: dt.datetime
    updated_at: dt.datetime


class OperationList(SQLModel):
    items: list[OperationPublic]


def to_public(operation: Operation, recoveries: list[OperationRecovery]) -> OperationPublic:
    reported = [
        Recovery.model_construct(country=r.country, seized=r.seized, found=r.found, surrendered=r.surrendered)
        for r in sorted(recoveries, key=lambda r: (r.country not in operation.countries, r.country))
    ]
    fields: dict[str, Any] = operation.model_dump()
    return OperationPublic(
        **fields,
        recoveries=reported,
        recovered_total=sum(r.seized + r.found + r.surrendered for r in reported),
    )
