"""Audit trails, evidence bundles, checkpoints and the access log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import PlainTextResponse

from tracing.api.deps import CurrentPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.audit import log as audit_log
from tracing.audit.bundle import build_bundle, entry_json
from tracing.audit.signing import trusted_keys
from tracing.errors import Forbidden
from tracing.models.audit import (
    AccessLogList,
    AccessLogPublic,
    AuditEntryPublic,
    AuditTrail,
    CheckpointPublic,
    VerificationPublic,
)
from tracing.models.trace_request import to_public
from tracing.security import Role
from tracing.workflow import queries
from tracing.workflow.queries import decode_cursor, encode_cursor, visible_to

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/trace-requests/{request_id}/audit", response_model=AuditTrail, responses=problems(401, 404, 422)
)
async def get_audit_trail(
    request_id: uuid.UUID, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> AuditTrail:
    await queries.get_visible(session, principal, request_id, auditing=True)
    found = await audit_log.trail(session, request_id)
    await audit_log.record_access(session, principal, request_id, "audit", request.state.request_id)
    return AuditTrail(
        entries=[AuditEntryPublic(**entry_json(e)) for e in found.entries],
        verification=VerificationPublic(**found.verification.as_dict()),
    )


@router.get(
    "/v1/trace-requests/{request_id}/audit/bundle",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"application/jose": {}}, "description": "Compact JWS (ES256) evidence bundle"},
        **problems(401, 404, 422),
    },
)
async def get_evidence_bundle(
    request_id: uuid.UUID, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    trace_request = await queries.get_visible(session, principal, request_id, auditing=True)
    parties = await queries.parties_of(session, [request_id])
    exchanges = await queries.exchanges_of(session, principal, request_id, auditing=True)
    found = await audit_log.trail(session, request_id)
    checkpoint = await audit_log.latest_checkpoint(session)
    bundle = build_bundle(
        signer=request.app.state.signer,
        principal=principal,
        request=to_public(trace_request, parties[request_id], now=request.app.state.clock()),
        exchanges=exchanges,
        entries=found.entries,
        checkpoint=checkpoint,
    )
    await audit_log.record_access(session, principal, request_id, "bundle", request.state.request_id)
    filename = f"{trace_request.reference}-evidence.jws"
    return Response(
        bundle,
        media_type="application/jose",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/v1/audit/checkpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckpointPublic,
    responses=problems(401, 403),
)
async def create_checkpoint(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> CheckpointPublic:
    if not (principal.has(Role.auditor) or principal.has(Role.admin)):
        raise Forbidden("signing a checkpoint needs the auditor or admin role")
    checkpoint = await audit_log.create_checkpoint(session, request.app.state.signer)
    return CheckpointPublic.model_validate(checkpoint)


@router.get("/v1/audit/public-key", response_class=PlainTextResponse)
async def get_signing_public_key(request: Request) -> str:
    """The PEM public keys that verify checkpoints and evidence bundles: the current signing key
    first, then those of earlier keys. Verifiers should also obtain them out of band."""
    return trusted_keys(request.app.state.settings, request.app.state.signer)


@router.get("/v1/audit/access-log", response_model=AccessLogList, responses=problems(401, 403, 422))
async def list_access_log(
    session: SessionDep,
    principal: CurrentPrincipal,
    trace_request_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AccessLogList:
    """Who read which request's details and when, for requests where the auditor's country is a party."""
    if not principal.has(Role.auditor):
        raise Forbidden("the access log needs the auditor role")
    entries = await audit_log.access_log(
        session,
        visible=visible_to(principal, auditing=True),
        request_id=trace_request_id,
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
    )
    next_cursor = encode_cursor(entries[limit - 1].id or 0) if len(entries) > limit else None
    return AccessLogList(
        items=[AccessLogPublic.model_validate(e) for e in entries[:limit]], next_cursor=next_cursor
    )
