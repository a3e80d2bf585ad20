"""Agencies: national contact points and investigating agencies, one contact point per country."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import ConfigDict, HttpUrl, StringConstraints, UrlConstraints, model_validator
from sqlmodel import Column, Field, SQLModel

from tracing.models.types import CountryCode, ShortText, UTCDateTime, enum_type, utcnow

WebhookUrl = Annotated[HttpUrl, UrlConstraints(max_length=2000)]
AgencyCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]


class AgencyKind(StrEnum):
    contact_point = "contact_point"
    investigating_agency = "investigating_agency"


class AgencyBase(SQLModel):
    name: str = Field(max_length=200)
    kind: AgencyKind = Field(sa_type=enum_type(AgencyKind))
    webhook_url: str | None = Field(default=None, max_length=2000)


class AgencyCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    code: AgencyCode
    name: ShortText
    country: CountryCode
    kind: AgencyKind
    webhook_url: WebhookUrl | None = None


class AgencyUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText | None = None
    webhook_url: WebhookUrl | None = None
    """null removes the webhook."""

    @model_validator(mode="after")
    def _name_is_not_removed(self) -> AgencyUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null; leave it out to keep it")
        return self


class Agency(AgencyBase, table=True):
    __tablename__ = "agency"
    __table_args__ = (
        sa.Index(
            "uq_agency_one_contact_point_per_country",
            "country",
            unique=True,
            sqlite_where=sa.text("kind = 'contact_point'"),
            postgresql_where=sa.text("kind = 'contact_point'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    country: str = Field(max_length=2, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    webhook_secret: str | None = Field(default=None, max_length=200)
    """Standard Webhooks signing secret (`whsec_...`); shown to the admin once, never logged."""
    webhook_disabled_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    """Set when the receiver answered 410 Gone; setting the URL again re-enables the webhook."""
    webhook_disabled_reason: str | None = Field(default=None, max_length=200)


class AgencyPublic(AgencyBase):
    id: uuid.UUID
    code: str
    country: str
    created_at: dt.datetime
    webhook_disabled_at: dt.datetime | None = None
    webhook_disabled_reason: str | None = None


class AgencyWithSecret(AgencyPublic):
    webhook_secret: str | None = Field(
        default=None,
        description=(
            "The webhook signing secret, present only in the response that created it: store it now,"
            " it is not shown again"
        ),
    )


class AgencyList(SQLModel):
    items: list[AgencyPublic]
    next_cursor: str | None = None
