"""Applying the workflow: submit a trace request, and apply any other move from the table.

One command, one transaction: the new state, the exchange record and the party row are written
together, and the state change is a compare-and-set on the request's version, so of two concurrent
moves on one request exactly one succeeds; the other gets a Conflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, select

from tracing import agencies
from tracing.audit import log as audit_log
from tracing.config import get_settings
from tracing.errors import Conflict, PreconditionFailed, Unprocessable
from tracing.markings import service as cross_checks
from tracing.models.agency import AgencyKind
from tracing.models.exchange import Action, Exchange
from tracing.models.registry import CrossCheckPublic, CrossCheckTrigger
from tracing.models.trace_request import (
    AnswerBody,
    CloseBody,
    ForwardBody,
    IdempotencyKey,
    TraceRequest,
    TraceRequestCreate,
    TraceRequestParty,
    columns_from_submission,
)
from tracing.models.types import UTCDateTime, utcnow
from tracing.notify import outbox
from tracing.security import Principal
from tracing.stats.operations import code_open_for_submissions, open_for_submissions, stored_code
from tracing.workflow import deadlines, submit_statement
from tracing.workflow.machine import acts_as_contact_point, holder_after, plan
from tracing.workflow.queries import get_visible, parties_of


@dataclass(frozen=True)
class Result:
    """A request after a command, with its party countries (known without reading them back)."""

    request: TraceRequest
    parties: list[str] | None
    replayed: bool = False
    cross_checks: list[CrossCheckPublic] | None = None
    """The request's cross-checks when known without reading them back (a submission's)."""


def body_digest(body: SQLModel) -> str:
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    *,
    session: AsyncSession,
    principal: Principal,
    body: TraceRequestCreate,
    idempotency_key: str | None,
    now: dt.datetime | None = None,
) -> Result:
    """`now` backdates the submission (the demo replays a past operation); callers leave it unset."""
    transition = plan(Action.submit, None, principal)
    digest = body_digest(body)
    await _check_requester(session, principal)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:  # the one-statement write checks the operation too (below)
        operation_code = stored_code(body.operation_code) if body.operation_code is not None else None
    else:
        operation_code = await code_open_for_submissions(session, body.operation_code)

    now = now or utcnow()
    request = TraceRequest(
        **(columns_from_submission(body) | {"operation_code": operation_code}),
        state=transition.target,
        version=1,
        holder_country=principal.country,
        requesting_country=principal.country,
        requesting_agency=principal.agency,
        submitted_by=principal.subject,
        created_at=now,
        updated_at=now,
    )
    exchange = _exchange(request, Action.submit, principal, None, body, now, seq=1)
    idempotency = (
        IdempotencyKey(
            agency=principal.agency,
            subject=principal.subject,
            key=idempotency_key,
            body_sha256=digest,
            trace_request_id=request.id,
            created_at=now,
        )
        if idempotency_key is not None
        else None
    )
    checks = None
    try:
        if postgres:
            written = await submit_statement.write(session, request, exchange, idempotency)
            if body.operation_code is not None:
                try:
                    open_for_submissions(body.operation_code, written.operation)
                except Unprocessable:
                    await session.rollback()
                    raise
            checks = written.cross_checks
        else:
            await _write_submission(session, request, exchange, idempotency)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        # A retry with the same Idempotency-Key collides on its primary key: answer with the original.
        if idempotency_key is None:
            raise
        earlier = await _replay(session, principal, idempotency_key, digest)
        if earlier is None:
            raise
        return Result(earlier, parties=None, replayed=True)
    return Result(request, parties=[principal.country], cross_checks=checks)


async def _write_submission(
    session: AsyncSession, request: TraceRequest, exchange: Exchange, idempotency: IdempotencyKey | None
) -> None:
    """The rows of a submission, one statement each (submit_statement writes the same in one)."""
    session.add(request)
    await session.flush()  # the rows below refer to it, and the unit of work only orders by relationships
    session.add(TraceRequestParty(trace_request_id=request.id, country=request.requesting_country))
    session.add(exchange)
    await audit_log.append_exchange(session, exchange, new_chain=True)
    await cross_checks.schedule(session, request, CrossCheckTrigger.submit)
    if idempotency is not None:
        session.add(idempotency)
    await outbox.emit_for_transition(session, request, exchange)


async def _replay(session: AsyncSession, principal: Principal, key: str, digest: str) -> TraceRequest | None:
    """The request an earlier submission with this key created, if the body is the same."""
    earlier = await session.get(IdempotencyKey, (principal.agency, principal.subject, key))
    if earlier is None:
        return None
    if earlier.body_sha256 != digest:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different body; use a new key for a new request"
        )
    return await _by_id(session, earlier.trace_request_id)


async def _by_id(session: AsyncSession, request_id: uuid.UUID) -> TraceRequest | None:
    statement = select(TraceRequest).where(TraceRequest.id == request_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def _check_requester(session: AsyncSession, principal: Principal) -> None:
    await agencies.require_registered(session, principal)
    if not await agencies.has_contact_point(session, principal.country):
        raise Unprocessable(
            f"no national contact point is registered for {principal.country};"
            " an administrator must register one before requests can be submitted"
        )


async def apply(
    *,
    session: AsyncSession,
    principal: Principal,
    request_id: uuid.UUID,
    action: Action,
    body: SQLModel,
    if_match: str | None = None,
    now: dt.datetime | None = None,
    deadline_policy: deadlines.DeadlinePolicy | None = None,
) -> Result:
    """Apply one move from the transition table to a request, or raise why it is refused.

    A forward gives the new holder due dates by `deadline_policy` (the settings' when not given).
    `now` backdates the move (the demo replays a past operation); callers leave it unset.
    """
    request = await get_visible(session, principal, request_id)
    if if_match is not None and not etag_matches(if_match, request.version):
        raise PreconditionFailed(
            f"the request has changed (now {etag(request.version)}); fetch it again",
            extra={"state": request.state.value},
        )
    transition = plan(action, request, principal, body)
    if acts_as_contact_point(transition, principal, request):
        await agencies.require_registered(session, principal, kind=AgencyKind.contact_point)
    destination = body.to_country if isinstance(body, ForwardBody) else None
    if destination is not None and not await agencies.has_contact_point(session, destination):
        raise Unprocessable(f"no national contact point is registered for {destination}")

    now = now or utcnow()
    values: dict[str, Any] = {
        "state": transition.target,
        "version": request.version + 1,
        "holder_country": holder_after(transition, request, destination),
        "updated_at": now,
        **_effects(action, body, now),
    }
    if action is Action.forward:
        policy = deadline_policy or deadlines.DeadlinePolicy.from_settings(get_settings())
        values |= deadlines.on_forward(request.priority, now, policy)
    from_state = request.state
    statement = (
        sa.update(TraceRequest)
        .where(TraceRequest.id == request.id, TraceRequest.version == request.version)
        .values(**values)
        .returning(TraceRequest)
    )
    updated = (
        await session.execute(statement, execution_options={"populate_existing": True})
    ).scalar_one_or_none()
    if updated is None:
        await session.rollback()
        raise Conflict(
            "the request was changed by another party at the same time; fetch it and retry",
            extra={"state": from_state.value},
        )
    parties = (await parties_of(session, [request.id]))[request.id]
    if destination is not None and destination not in parties:
        session.add(TraceRequestParty(trace_request_id=request.id, country=destination))
        parties.append(destination)
    exchange = _exchange(updated, action, principal, from_state, body, now, seq=values["version"])
    session.add(exchange)
    await audit_log.append_exchange(session, exchange)
    await outbox.emit_for_transition(session, updated, exchange)
    if action is Action.forward:
        await cross_checks.schedule(session, updated, CrossCheckTrigger.forward)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(
            "the request was changed by another party at the same time; fetch it and retry"
        ) from exc
    return Result(updated, parties=parties)


def _effects(action: Action, body: SQLModel, now: dt.datetime) -> dict[str, Any]:
    """The columns a move sets besides state, version and holder."""
    if action is Action.forward:
        first = sa.func.coalesce(TraceRequest.first_forwarded_at, sa.literal(now, UTCDateTime()))
        return {"forwarded_at": now, "first_forwarded_at": first, "acknowledged_at": None}
    if action is Action.acknowledge:
        return {"acknowledged_at": now}
    if action is Action.answer:
        assert isinstance(body, AnswerBody)
        return {"outcome": body.outcome, "outcome_reason": body.reason, "answered_at": now}
    if action is Action.close:
        assert isinstance(body, CloseBody)
        return {"resolution": body.resolution, "closed_at": now}
    return {}


def _exchange(
    request: TraceRequest,
    action: Action,
    principal: Principal,
    from_state: Any,
    body: SQLModel | None,
    now: dt.datetime,
    *,
    seq: int,
) -> Exchange:
    payload = body.model_dump(mode="json") if body is not None else {}
    return Exchange(
        trace_request_id=request.id,
        seq=seq,
        action=action,
        actor=principal.subject,
        agency=principal.agency,
        country=principal.country,
        from_state=from_state.value if from_state is not None else None,
        to_state=request.state.value,
        to_country=getattr(body, "to_country", None),
        at=now,
        payload=payload,
    )


def etag(version: int) -> str:
    return f'"{version}"'


def etag_matches(if_match: str, version: int) -> bool:
    candidates = [part.strip() for part in if_match.split(",")]
    return any(candidate == "*" or candidate.removeprefix("W/") == etag(version) for candidate in candidates)
