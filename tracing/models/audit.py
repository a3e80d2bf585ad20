"""Audit tables: hash-chained entries, chain heads, signed checkpoints and the access log.

All of them are append-only in the database (triggers refuse UPDATE and DELETE, and TRUNCATE on
PostgreSQL); only a chain head row moves forward as its chain grows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.types import UTCDateTime, utcnow


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (sa.UniqueConstraint("chain_id", "seq", name="uq_audit_entry_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: uuid.UUID
    seq: int
    action: str = Field(max_length=32)
    at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    prev_hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    canonical: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))


class AuditHead(SQLModel, table=True):
    """The newest entry of each chain; appends lock this row, so one chain grows one entry at a time
    while different chains never wait on each other."""

    __tablename__ = "audit_head"

    chain_id: uuid.UUID = Field(primary_key=True)
    seq: int
    hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class AuditCheckpoint(SQLModel, table=True):
    """A signed Merkle root over every chain head at one moment."""

    __tablename__ = "audit_checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    size: int
    root: str = Field(max_length=64)
    heads: list[list[Any]] = Field(sa_column=Column(JSON, nullable=False))
    """[chain id, seq, head hash hex] sorted by chain id: the Merkle leaves, in order."""
    signed: str = Field(sa_column=Column(sa.Text, nullable=False))
    """The checkpoint statement as a compact JWS."""


class AccessLogEntry(SQLModel, table=True):
    __tablename__ = "access_log"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    trace_request_id: uuid.UUID = Field(index=True)
    subject: str = Field(max_length=200)
    agency: str = Field(max_length=64)
    country: str = Field(max_length=2)
    what: str = Field(max_length=32)
    request_id: str | None = Field(default=None, max_length=128)


# ---- responses ------------------------------------------------------------------------------


class AuditEntryPublic(SQLModel):
    seq: int
    action: str
    at: dt.datetime
    prev_hash: str
    hash: str
    canonical: str


class VerificationPublic(SQLModel):
    valid: bool
    checked: int
    first_invalid_seq: int | None
    reason: str | None = None


class AuditTrail(SQLModel):
    entries: list[AuditEntryPublic]
    verification: VerificationPublic


class CheckpointPublic(SQLModel):
    id: int
    created_at: dt.datetime
    size: int
    root: str
    signed: str


class AccessLogPublic(SQLModel):
    at: dt.datetime
    trace_request_id: uuid.UUID
    subject: str
    agency: str
    country: str
    what: str
    request_id: str | None


class AccessLogList(SQLModel):
    items: list[AccessLogPublic]
    next_cursor: str | None = None
