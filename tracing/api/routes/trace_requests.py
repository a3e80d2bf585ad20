"""Trace requests: submit, read, list, and every move of the workflow.

The move routes (forward, acknowledge, answer, close) are generated from one factory: they differ
only in the action and the body they accept; the rules live in the transition table.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from tracing.api.deps import CurrentPrincipal, IdempotencyKeyHeader, IfMatch, SessionDep, require_any_role
from tracing.api.responses import problems
from tracing.audit import log as audit_log
from tracing.markings import service as cross_checks
from tracing.models.exchange import Action, ExchangeList, ExchangePublic
from tracing.models.registry import CrossCheckPublic
from tracing.models.trace_request import (
    AcknowledgeBody,
    AnswerBody,
    CloseBody,
    ForwardBody,
    State,
    TraceRequest,
    TraceRequestCreate,
    TraceRequestList,
    TraceRequestPublic,
    to_public,
)
from tracing.models.types import CountryCode
from tracing.workflow import queries, service
from tracing.workflow.machine import roles_for

router = APIRouter(prefix="/v1/trace-requests", tags=["trace requests"])


async def _render(
    session: AsyncSession,
    request: TraceRequest,
    http: Request,
    *,
    parties: list[str] | None = None,
    checks: list[CrossCheckPublic] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The request as JSON with its ETag. Serialised directly: the stored data was validated on the
    way in, and validating a nested response again would cost more than the rest of a submit."""
    if parties is None:
        parties = (await queries.parties_of(session, [request.id]))[request.id]
    if checks is None:
        checks = (await cross_checks.latest_for(session, [request.id]))[request.id]
    return Response(
        to_public(request, parties, checks, now=http.app.state.clock()).model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={
            "ETag": service.etag(request.version),
            "Location": f"/v1/trace-requests/{request.id}",
            **(headers or {}),
        },
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TraceRequestPublic,
    responses=problems(401, 403, 413, 422),
    dependencies=[require_any_role(roles_for(Action.submit))],
)
async def submit_trace_request(
    body: TraceRequestCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    http: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    submitted = await service.submit(
        session=session, principal=principal, body=body, idempotency_key=idempotency_key
    )
    return await _render(
        session,
        submitted.request,
        http,
        parties=submitted.parties,
        checks=submitted.cross_checks,
        status_code=status.HTTP_201_CREATED,
        headers={"Idempotent-Replayed": "true"} if submitted.replayed else None,
    )


@router.get("", response_model=TraceRequestList, responses=problems(401, 422))
async def list_trace_requests(
    http: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    state: State | None = None,
    operation: Annotated[str | None, Query(max_length=64)] = None,
    country: Annotated[CountryCode | None, Query(description="a party country")] = None,
    overdue: Annotated[
        bool | None, Query(description="only requests past a due date (true) or not (false)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TraceRequestList:
    filters = queries.ListFilters(state=state, operation=operation, country=country, overdue=overdue)
    now = http.app.state.clock()
    found, next_cursor = await queries.list_visible(
        session, principal, filters, limit=limit, cursor=cursor, now=now
    )
    parties = await queries.parties_of(session, [r.id for r in found])
    checks = await cross_checks.latest_for(session, [r.id for r in found])
    return TraceRequestList(
        items=[to_public(r, parties[r.id], checks[r.id], now=now) for r in found], next_cursor=next_cursor
    )


@router.get("/{request_id}", response_model=TraceRequestPublic, responses=problems(401, 404, 422))
async def get_trace_request(
    request_id: uuid.UUID, http: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    request = await queries.get_visible(session, principal, request_id)
    rendered = await _render(session, request, http)
    await audit_log.record_access(session, principal, request_id, "details", http.state.request_id)
    return rendered


@router.get("/{request_id}/exchanges", response_model=ExchangeList, responses=problems(401, 404, 422))
async def list_exchanges(
    request_id: uuid.UUID, http: Request, session: SessionDep, principal: CurrentPrincipal
) -> ExchangeList:
    exchanges = await queries.exchanges_of(session, principal, request_id)
    await audit_log.record_access(session, principal, request_id, "exchanges", http.state.request_id)
    return ExchangeList(items=[ExchangePublic.model_validate(e) for e in exchanges])


def _move_route(action: Action, body_model: type[SQLModel], summary: str) -> None:
    async def move(
        request_id: uuid.UUID,
        body: body_model,  # type: ignore[valid-type]
        session: SessionDep,
        principal: CurrentPrincipal,
        http: Request,
        if_match: IfMatch = None,
    ) -> Response:
        result = await service.apply(
            session=session,
            principal=principal,
            request_id=request_id,
            action=action,
            body=body,
            if_match=if_match,
            deadline_policy=http.app.state.deadline_policy,
        )
        return await _render(session, result.request, http, parties=result.parties)

    router.add_api_route(
        f"/{{request_id}}/{action.value}",
        move,
        methods=["POST"],
        name=f"{action.value}_trace_request",
        summary=summary,
        response_model=TraceRequestPublic,
        responses=problems(401, 403, 404, 409, 412, 413, 422),
        dependencies=[require_any_role(roles_for(action))],
    )


_move_route(Action.forward, ForwardBody, "Forward to another country's contact point")
_move_route(Action.acknowledge, AcknowledgeBody, "Acknowledge receipt (ITI); no state change")
_move_route(Action.answer, AnswerBody, "Answer: traced, partially traced, not traced or declined")
_move_route(Action.close, CloseBody, "Close with a resolution, or withdraw an open request")
