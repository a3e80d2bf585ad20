"""Registries of firearms (national registries, lost/stolen lists, manufacturer and importer records),
their records with precomputed match keys, cross-check results per trace request and registry,
notices to a registry owner's contact point, and manufacturer aliases added by administrators."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import ConfigDict, HttpUrl, StringConstraints, model_validator
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.types import CountryCode, ShortText, UTCDateTime, enum_type, utcnow

RegistryCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]
HeaderName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")
]
HeaderValue = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[\x20-\x7e]+$")]


def key_column(*, primary_key: bool = False) -> Any:
    """A match key column: byte-ordered on PostgreSQL whatever the database collation, so a prefix
    range scan on it is exact (SQLite compares bytes already)."""
    kind = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
    return Column(kind, nullable=False, primary_key=primary_key)


class RegistryKind(StrEnum):
    national_registry = "national_registry"
    lost_stolen = "lost_stolen"
    manufacturer_records = "manufacturer_records"
    importer_records = "importer_records"


class AdapterKind(StrEnum):
    local = "local"
    http = "http"


class RegistryCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    code: RegistryCode
    name: ShortText
    kind: RegistryKind
    owner_country: CountryCode
    adapter: AdapterKind = AdapterKind.local
    url: HttpUrl | None = Field(
        default=None, description="http adapter: base URL; lookups POST to {url}/lookup"
    )
    auth_header: HeaderName | None = Field(
        default=None, description="http adapter: header name, e.g. Authorization"
    )
    auth_value: HeaderValue | None = Field(
        default=None, description="http adapter: header value; never returned"
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    enabled: bool = True

    @model_validator(mode="after")
    def _adapter_settings(self) -> RegistryCreate:
        if self.adapter == AdapterKind.http and self.url is None:
            raise ValueError("an http registry needs a url")
        if self.adapter == AdapterKind.local and (self.url or self.auth_header or self.auth_value):
            raise ValueError("a local registry takes no url or auth header")
        if (self.auth_header is None) != (self.auth_value is None):
            raise ValueError("auth_header and auth_value go together")
        return self


class RegistryUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText | None = None
    enabled: bool | None = None
    url: HttpUrl | None = None
    auth_header: HeaderName | None = None
    auth_value: HeaderValue | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=30)


class Registry(SQLModel, table=True):
    __tablename__ = "registry"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    kind: RegistryKind = Field(sa_type=enum_type(RegistryKind))
    owner_country: str = Field(max_length=2)
    adapter: AdapterKind = Field(sa_type=enum_type(AdapterKind))
    url: str | None = Field(default=None, max_length=2000)
    auth_header: str | None = Field(default=None, max_length=100)
    auth_value: str | None = Field(default=None, max_length=2000)
    timeout_seconds: float = 5.0
    enabled: bool = True
    next_record_no: int = Field(default=0, sa_type=sa.BigInteger)
    """Record numbers are handed out by advancing this counter (a compare-free atomic UPDATE), so
    concurrent imports into one registry never collide."""
    record_count: int = 0
    key_shape: str | None = Field(default="{}", sa_column=Column(sa.Text, nullable=True))
    """The characters seen at each position of the records' confusable keys, by key length
    (tracing.markings.keys.dump_shape): lookups skip probe keys that fit no record. Grows with every
    import; NULL would mean unknown (nothing is skipped)."""
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class RegistryPublic(SQLModel):
    id: uuid.UUID
    code: str
    name: str
    kind: RegistryKind
    owner_country: str
    adapter: AdapterKind
    url: str | None
    auth_header: str | None
    has_auth: bool
    timeout_seconds: float
    enabled: bool
    record_count: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, registry: Registry) -> RegistryPublic:
        return cls(
            **registry.model_dump(exclude={"auth_value", "next_record_no", "key_shape"}),
            has_auth=bool(registry.auth_value),
        )


class RegistryList(SQLModel):
    items: list[RegistryPublic]


class RegistryRecord(SQLModel, table=True):
    """A firearm as a registry knows it, with the match keys computed at import."""

    __tablename__ = "registry_record"
    __table_args__ = (
        sa.UniqueConstraint("registry_id", "fingerprint", name="uq_registry_record_fingerprint"),
        sa.Index("ix_registry_record_confusable", "registry_id", "key_length", "confusable_key"),
        sa.Index("ix_registry_record_reversed", "registry_id", "key_length", "reversed_key"),
        # PostgreSQL: one-edit and filled lookups probe hundreds of keys; a hash probe reads one page.
        sa.Index("ix_registry_record_confusable_hash", "confusable_key", postgresql_using="hash").ddl_if(
            dialect="postgresql"
        ),
    )

    registry_id: uuid.UUID = Field(foreign_key="registry.id", primary_key=True)
    record_no: int = Field(primary_key=True, sa_type=sa.BigInteger)
    record_ref: str | None = Field(default=None, max_length=128)
    fingerprint: int = Field(sa_type=sa.BigInteger)
    """Hash of the registry's own record id when given, else of the normalised markings: the
    identity duplicates are detected by."""
    serial_number: str = Field(max_length=64)
    make: str = Field(default="", max_length=200)
    model: str | None = Field(default=None, max_length=200)
    calibre: str | None = Field(default=None, max_length=64)
    firearm_kind: str | None = Field(default=None, max_length=32)
    country_of_manufacture: str | None = Field(default=None, max_length=2)
    year_of_manufacture: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    serial_key: str = Field(sa_column=key_column())
    confusable_key: str = Field(sa_column=key_column())
    reversed_key: str = Field(sa_column=key_column())
    key_length: int
    imported_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class RegistryRecordKey(SQLModel, table=True):
    """The one-character deletion neighbourhood of the confusable key of the records that lookups
    cannot reach by enumeration: keys holding characters outside KEY_ALPHABET (letters of scripts not
    folded to Latin). Their one-edit and partial lookups are equality probes on this primary key."""

    __tablename__ = "registry_record_key"
    __table_args__ = {"sqlite_with_rowid": False}

    registry_id: uuid.UUID = Field(primary_key=True)
    deletion: str = Field(sa_column=key_column(primary_key=True))
    record_no: int = Field(primary_key=True, sa_type=sa.BigInteger)


class RecordPublic(SQLModel):
    record_id: str | None
    serial_number: str
    make: str
    model: str | None
    calibre: str | None
    kind: str | None
    country_of_manufacture: str | None
    year_of_manufacture: int | None
    details: dict[str, Any]


class RecordList(SQLModel):
    items: list[RecordPublic]
    next_cursor: str | None = None


class RowError(SQLModel):
    line: int = Field(description="1-based line of the file (a CSV header is line 1)")
    field: str | None
    message: str


class ImportReport(SQLModel):
    registry: str
    format: str
    received: int = Field(description="data rows read")
    imported: int
    duplicates: int
    rejected: int
    errors: list[RowError] = Field(description="the first errors, row by row (duplicates included)")
    errors_omitted: int = Field(description="errors beyond those listed")


# ---- cross-checks -----------------------------------------------------------------------------


class CrossCheckStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    unavailable = "unavailable"  # the registry could not be reached; retried later
    error = "error"  # the registry answered with something unusable; retried later


class CrossCheckTrigger(StrEnum):
    submit = "submit"
    forward = "forward"
    on_demand = "on_demand"


class CrossCheck(SQLModel, table=True):
    __tablename__ = "cross_check"
    __table_args__ = (sa.Index("ix_cross_check_due", "status", "next_attempt_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    trace_request_id: uuid.UUID = Field(foreign_key="trace_request.id", index=True)
    registry_id: uuid.UUID = Field(foreign_key="registry.id")
    trigger: CrossCheckTrigger = Field(sa_type=enum_type(CrossCheckTrigger))
    status: CrossCheckStatus = Field(sa_type=enum_type(CrossCheckStatus))
    attempts: int = 0
    next_attempt_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    outcome: str | None = Field(default=None, max_length=32)
    """The best match class, `no_match`, or `not_searchable`."""
    matches: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    detail: str | None = Field(default=None, max_length=2000)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    completed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class MatchPublic(SQLModel):
    match_class: str
    serial: str
    score: float
    make: str
    model: str
    calibre: str
    warnings: list[str]
    record: RecordPublic


class CrossCheckPublic(SQLModel):
    id: uuid.UUID
    registry: str
    registry_name: str
    registry_kind: RegistryKind
    owner_country: str
    trigger: CrossCheckTrigger
    status: CrossCheckStatus
    outcome: str | None
    highlight: bool = Field(description="a hit on a lost/stolen list")
    attempts: int
    detail: str | None
    matches: list[MatchPublic]
    created_at: dt.datetime
    completed_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class MakeResolutionPublic(SQLModel):
    as_marked: str
    canonical: str | None
    country: str | None
    known: bool


class CrossCheckList(SQLModel):
    make: MakeResolutionPublic
    items: list[CrossCheckPublic] = Field(description="the latest cross-check per registry")


class RegistryNotice(SQLModel, table=True):
    """A lost/stolen hit, kept for the registry owner's contact point (delivered by webhook once
    webhooks exist)."""

    __tablename__ = "registry_notice"
    __table_args__ = (
        sa.UniqueConstraint("trace_request_id", "registry_id", "record_no", name="uq_registry_notice_hit"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    registry_id: uuid.UUID = Field(foreign_key="registry.id")
    owner_country: str = Field(max_length=2, index=True)
    contact_point: str | None = Field(default=None, max_length=64)
    trace_request_id: uuid.UUID = Field(foreign_key="trace_request.id")
    cross_check_id: uuid.UUID = Field(foreign_key="cross_check.id")
    record_no: int = Field(sa_type=sa.BigInteger)
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    delivered_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class RegistryNoticePublic(SQLModel):
    id: uuid.UUID
    registry_id: uuid.UUID
    owner_country: str
    contact_point: str | None
    trace_request_id: uuid.UUID
    content: dict[str, Any]
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class RegistryNoticeList(SQLModel):
    items: list[RegistryNoticePublic]


# ---- manufacturer aliases ---------------------------------------------------------------------


class ManufacturerAlias(SQLModel, table=True):
    """An alias an administrator added; consulted alongside the shipped manufacturer table."""

    __tablename__ = "manufacturer_alias"

    key: str = Field(primary_key=True, max_length=200)
    alias: str = Field(max_length=200)
    canonical: str = Field(max_length=200)
    country: str = Field(max_length=2)
    created_by: str = Field(max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class AliasCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    alias: ShortText
    canonical: ShortText = Field(
        description="a manufacturer in the table (by any of its names), or a new one"
    )
    country: CountryCode | None = Field(default=None, description="required when the manufacturer is new")


class AliasPublic(SQLModel):
    alias: str
    canonical: str
    country: str
    created_by: str
    created_at: dt.datetime


class AliasList(SQLModel):
    items: list[AliasPublic]
