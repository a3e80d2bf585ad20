"""Trace requests: the firearm, its markings, the seizure context, and where the request stands.

The firearm description follows the UN Firearms Protocol art. 8 and the International Tracing
Instrument: markings at manufacture and import, type, calibre, and the context of the seizure.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, model_validator
from sqlmodel import JSON, Column, Field, SQLModel

from tracing.models.registry import CrossCheckPublic
from tracing.models.types import (
    CountryCode,
    LongText,
    Note,
    ShortText,
    UTCDateTime,
    enum_type,
    text,
    utcnow,
)


class State(StrEnum):
    submitted = "submitted"
    forwarded = "forwarded"
    answered = "answered"
    closed = "closed"


class FirearmKind(StrEnum):
    pistol = "pistol"
    revolver = "revolver"
    rifle = "rifle"
    shotgun = "shotgun"
    submachine_gun = "submachine_gun"
    machine_gun = "machine_gun"
    other = "other"


class Obliteration(StrEnum):
    none = "none"
    partial = "partial"
    full = "full"


class RecoveryType(StrEnum):
    seized = "seized"
    found = "found"
    surrendered = "surrendered"


class Priority(StrEnum):
    routine = "routine"
    urgent = "urgent"


class Outcome(StrEnum):
    traced = "traced"
    partially_traced = "partially_traced"
    not_traced = "not_traced"
    declined = "declined"


class NotTracedReason(StrEnum):
    no_record = "no_record"
    insufficient_marking = "insufficient_marking"
    manufacturer_unknown = "manufacturer_unknown"
    records_unavailable = "records_unavailable"
    other = "other"


class Resolution(StrEnum):
    origin_established = "origin_established"
    context_established = "context_established"
    not_established = "not_established"
    withdrawn = "withdrawn"


Text64 = text(64)
RequiredText64 = text(64, min_length=1)
Text200 = text(200)
Text500 = text(500)
Marking = text(500, min_length=1)
Text2000 = text(2000)
RequiredText2000 = text(2000, min_length=1)


def _current_year() -> int:
    return dt.datetime.now(dt.UTC).year


class Strict(SQLModel):
    """Request bodies refuse unknown fields, so a misspelt field is an error, not silently lost."""

    model_config = ConfigDict(extra="forbid")


# ---- request bodies -------------------------------------------------------------------------


class ImportMark(Strict):
    country: CountryCode
    year: int | None = Field(default=None, ge=1800)
    text: Text200 | None = None

    @model_validator(mode="after")
    def _year_not_in_future(self) -> ImportMark:
        if self.year is not None and self.year > _current_year():
            raise ValueError("import mark year is in the future")
        return self


class Firearm(Strict):
    kind: FirearmKind
    make: ShortText = Field(description="Manufacturer's name as marked")
    model: Text200 | None = None
    calibre: Text64 | None = None
    serial_number: RequiredText64 = Field(
        description="As read; with partial obliteration write unreadable characters as '?'"
    )
    serial_obliterated: Obliteration = Obliteration.none
    country_of_manufacture: CountryCode | None = None
    year_of_manufacture: int | None = Field(default=None, ge=1800)
    import_marks: list[ImportMark] = Field(default_factory=list, max_length=20)
    other_markings: list[Marking] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> Firearm:
        if self.year_of_manufacture is not None and self.year_of_manufacture > _current_year():
            raise ValueError("year_of_manufacture is in the future")
        if "?" in self.serial_number and self.serial_obliterated == Obliteration.none:
            raise ValueError("serial_number contains '?' (unreadable) but serial_obliterated is 'none'")
        if self.serial_obliterated != Obliteration.full and not self.serial_number.strip("?"):
            raise ValueError("serial_number is entirely unreadable; set serial_obliterated 'full'")
        return self


class Seizure(Strict):
    date: dt.date
    place: ShortText
    country: CountryCode
    recovery_type: RecoveryType
    context: Text2000 | None = None

    @model_validator(mode="after")
    def _date_not_in_future(self) -> Seizure:
        if self.date > dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1):
            raise ValueError("seizure date is in the future")
        if self.date.year < 1900:
            raise ValueError("seizure date is before 1900")
        return self


class Handling(Strict):
    confidential: bool = True
    restrictions: Text2000 | None = None


class TraceRequestCreate(Strict):
    requested_country: CountryCode
    priority: Priority = Priority.routine
    priority_justification: Text2000 | None = None
    operation_code: RequiredText64 | None = None
    case_reference: ShortText
    intended_use: RequiredText2000
    handling: Handling = Field(default_factory=Handling)
    seizure: Seizure
    firearm: Firearm

    @model_validator(mode="after")
    def _urgent_needs_justification(self) -> TraceRequestCreate:
        if self.priority == Priority.urgent and not self.priority_justification:
            raise ValueError("an urgent request needs a priority_justification")
        return self


class ForwardBody(Strict):
    to_country: CountryCode
    note: Note | None = None


class AcknowledgeBody(Strict):
    note: Note | None = None


class Transfer(Strict):
    date: dt.date | None = None
    from_party: Text500 | None = None
    to_party: Text500 | None = None
    country: CountryCode | None = None
    document: Text500 | None = None


class AnswerBody(Strict):
    outcome: Outcome
    reason: Text2000 | None = None
    findings: LongText | None = None
    transfers: list[Transfer] = Field(default_factory=list, max_length=200)
    suggest_forward_to: CountryCode | None = None

    @model_validator(mode="after")
    def _reason_fits_outcome(self) -> AnswerBody:
        if self.outcome == Outcome.not_traced:
            allowed = [r.value for r in NotTracedReason]
            if self.reason not in allowed:
                raise ValueError(f"outcome not_traced needs a reason, one of {allowed}")
        elif self.outcome == Outcome.declined:
            if not self.reason:
                raise ValueError("outcome declined needs a reason")
        elif not self.findings:
            raise ValueError(f"outcome {self.outcome.value} needs findings")
        return self


class CloseBody(Strict):
    resolution: Resolution
    note: Note | None = None


# ---- tables ---------------------------------------------------------------------------------


def _json_column() -> Any:
    return Column(JSON, nullable=False)


class TraceRequest(SQLModel, table=True):
    __tablename__ = "trace_request"

    number: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, unique=True)
    state: State = Field(sa_type=enum_type(State), index=True)
    version: int = 1
    holder_country: str = Field(max_length=2, index=True)
    requesting_country: str = Field(max_length=2)
    requesting_agency: str = Field(max_length=64, index=True)
    submitted_by: str = Field(max_length=200)
    requested_country: str = Field(max_length=2)

    priority: Priority = Field(sa_type=enum_type(Priority))
    priority_justification: str | None = None
    operation_code: str | None = Field(default=None, max_length=64, index=True)
    case_reference: str = Field(max_length=200)
    intended_use: str
    handling_confidential: bool = True
    handling_restrictions: str | None = None

    seizure_date: dt.date
    seizure_place: str = Field(max_length=200)
    seizure_country: str = Field(max_length=2)
    recovery_type: RecoveryType = Field(sa_type=enum_type(RecoveryType))
    seizure_context: str | None = None

    firearm_kind: FirearmKind = Field(sa_type=enum_type(FirearmKind))
    firearm_make: str = Field(max_length=200)
    firearm_model: str | None = Field(default=None, max_length=200)
    firearm_calibre: str | None = Field(default=None, max_length=64)
    serial_number: str = Field(max_length=64)
    serial_obliterated: Obliteration = Field(sa_type=enum_type(Obliteration))
    country_of_manufacture: str | None = Field(default=None, max_length=2)
    year_of_manufacture: int | None = None
    import_marks: list[dict[str, Any]] = Field(default_factory=list, sa_column=_json_column())
    other_markings: list[str] = Field(default_factory=list, sa_column=_json_column())

    outcome: Outcome | None = Field(default=None, sa_type=enum_type(Outcome))
    outcome_reason: str | None = None
    resolution: Resolution | None = Field(default=None, sa_type=enum_type(Resolution))

    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True)
    )
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    forwarded_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    first_forwarded_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    """When the request first left the requesting country (statistics: time to first forward)."""
    acknowledged_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    answered_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    closed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))

    # Due dates of the current holder, set on every forward (tracing.workflow.deadlines), and when
    # the overdue sweep noticed each one missed (so request.overdue is emitted once per due date).
    acknowledge_by: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    answer_by: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime, index=True))
    acknowledge_missed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    answer_missed_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime))

    @property
    def reference(self) -> str:
        return format_reference(self.created_at.year, self.number or 0)


def format_reference(year: int, number: int) -> str:
    return f"TR-{year}-{number:06d}"


def parse_reference(reference: str) -> int | None:
    parts = reference.split("-")
    if len(parts) != 3 or parts[0] != "TR" or not parts[2].isdigit():
        return None
    return int(parts[2])


class TraceRequestParty(SQLModel, table=True):
    """Countries whose contact points may see a request: the requester and every forward target."""

    __tablename__ = "trace_request_party"

    trace_request_id: uuid.UUID = Field(foreign_key="trace_request.id", primary_key=True, ondelete="CASCADE")
    country: str = Field(max_length=2, primary_key=True, index=True)


class IdempotencyKey(SQLModel, table=True):
    """A client's Idempotency-Key for a submission, scoped to the submitting agency and subject."""

    __tablename__ = "idempotency_key"

    agency: str = Field(max_length=64, primary_key=True)
    subject: str = Field(max_length=200, primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    body_sha256: str = Field(max_length=64)
    trace_request_id: uuid.UUID = Field(foreign_key="trace_request.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# ---- responses ------------------------------------------------------------------------------


class Due(SQLModel):
    """What the holder owes: receipt acknowledged and an answer given by these times (from the
    latest forward). `overdue` is true while the request is forwarded and a due date has passed
    unmet."""

    acknowledge_by: dt.datetime | None
    answer_by: dt.datetime | None
    overdue: bool


def is_overdue(request: TraceRequest, now: dt.datetime) -> bool:
    if request.state != State.forwarded:
        return False
    missed_acknowledgement = (
        request.acknowledge_by is not None
        and request.acknowledged_at is None
        and now > request.acknowledge_by
    )
    missed_answer = request.answer_by is not None and now > request.answer_by
    return missed_acknowledgement or missed_answer


class TraceRequestPublic(SQLModel):
    id: uuid.UUID
    reference: str
    state: State
    version: int
    holder_country: str
    requesting_country: str
    requesting_agency: str
    requested_country: str
    parties: list[str]
    priority: Priority
    priority_justification: str | None
    operation_code: str | None
    case_reference: str
    intended_use: str
    handling: Handling
    seizure: Seizure
    firearm: Firearm
    outcome: Outcome | None
    outcome_reason: str | None
    resolution: Resolution | None
    created_at: dt.datetime
    updated_at: dt.datetime
    forwarded_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    answered_at: dt.datetime | None
    closed_at: dt.datetime | None
    due: Due
    cross_checks: list[CrossCheckPublic] | None = Field(
        default=None, description="the latest result per registry (results may arrive a moment after a move)"
    )


class TraceRequestList(SQLModel):
    items: list[TraceRequestPublic]
    next_cursor: str | None = None


def columns_from_submission(body: TraceRequestCreate) -> dict[str, Any]:
    """Flatten a submission into the trace_request columns (nested parts become structured fields)."""
    firearm, seizure = body.firearm, body.seizure
    return {
        "requested_country": body.requested_country,
        "priority": body.priority,
        "priority_justification": body.priority_justification,
        "operation_code": body.operation_code,
        "case_reference": body.case_reference,
        "intended_use": body.intended_use,
        "handling_confidential": body.handling.confidential,
        "handling_restrictions": body.handling.restrictions,
        "seizure_date": seizure.date,
        "seizure_place": seizure.place,
        "seizure_country": seizure.country,
        "recovery_type": seizure.recovery_type,
        "seizure_context": seizure.context,
        "firearm_kind": firearm.kind,
        "firearm_make": firearm.make,
        "firearm_model": firearm.model,
        "firearm_calibre": firearm.calibre,
        "serial_number": firearm.serial_number,
        "serial_obliterated": firearm.serial_obliterated,
        "country_of_manufacture": firearm.country_of_manufacture,
        "year_of_manufacture": firearm.year_of_manufacture,
        "import_marks": [mark.model_dump(mode="json") for mark in firearm.import_marks],
        "other_markings": list(firearm.other_markings),
    }


def to_public(
    request: TraceRequest,
    parties: list[str],
    cross_checks: list[CrossCheckPublic] | None = None,
    *,
    now: dt.datetime | None = None,
) -> TraceRequestPublic:
    """Nest the stored columns back into the contract's shape (no re-validation of stored data).
    `now` decides whether the request is overdue (the current time unless given)."""
    return TraceRequestPublic.model_construct(
        id=request.id,
        reference=request.reference,
        state=request.state,
        version=request.version,
        holder_country=request.holder_country,
        requesting_country=request.requesting_country,
        requesting_agency=request.requesting_agency,
        requested_country=request.requested_country,
        parties=sorted(parties),
        priority=request.priority,
        priority_justification=request.priority_justification,
        operation_code=request.operation_code,
        case_reference=request.case_reference,
        intended_use=request.intended_use,
        handling=Handling.model_construct(
            confidential=request.handling_confidential,
            restrictions=request.handling_restrictions,
        ),
        seizure=Seizure.model_construct(
            date=request.seizure_date,
            place=request.seizure_place,
            country=request.seizure_country,
            recovery_type=request.recovery_type,
            context=request.seizure_context,
        ),
        firearm=Firearm.model_construct(
            kind=request.firearm_kind,
            make=request.firearm_make,
            model=request.firearm_model,
            calibre=request.firearm_calibre,
            serial_number=request.serial_number,
            serial_obliterated=request.serial_obliterated,
            country_of_manufacture=request.country_of_manufacture,
            year_of_manufacture=request.year_of_manufacture,
            import_marks=[ImportMark.model_construct(**mark) for mark in request.import_marks],
            other_markings=list(request.other_markings),
        ),
        outcome=request.outcome,
        outcome_reason=request.outcome_reason,
        resolution=request.resolution,
        created_at=request.created_at,
        updated_at=request.updated_at,
        forwarded_at=request.forwarded_at,
        acknowledged_at=request.acknowledged_at,
        answered_at=request.answered_at,
        closed_at=request.closed_at,
        due=Due.model_construct(
            acknowledge_by=request.acknowledge_by,
            answer_by=request.answer_by,
            overdue=is_overdue(request, now or utcnow()),
        ),
        cross_checks=cross_checks,
    )
