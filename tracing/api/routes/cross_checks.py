"""Cross-check results of a trace request, for its parties; POST asks every registry again."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from tracing.api.deps import CurrentPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.markings import service as cross_checks
from tracing.models.registry import CrossCheckList, CrossCheckTrigger
from tracing.workflow import queries

router = APIRouter(prefix="/v1/trace-requests", tags=["cross-checks"])


async def _list(session: SessionDep, request_id: uuid.UUID, make: str) -> CrossCheckList:
    latest = await cross_checks.latest_for(session, [request_id])
    return CrossCheckList(make=await cross_checks.make_resolution(session, make), items=latest[request_id])


@router.get("/{request_id}/cross-checks", response_model=CrossCheckList, responses=problems(401, 404, 422))
async def list_cross_checks(
    request_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> CrossCheckList:
    """The latest result per registry; lost/stolen hits first, then the strongest match."""
    trace_request = await queries.get_visible(session, principal, request_id)
    return await _list(session, request_id, trace_request.firearm_make)


@router.post(
    "/{request_id}/cross-checks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CrossCheckList,
    responses=problems(401, 404, 422),
)
async def rerun_cross_checks(
    request_id: uuid.UUID, http: Request, session: SessionDep, principal: CurrentPrincipal
) -> CrossCheckList:
    """Ask every enabled registry again; the results arrive a moment later (pending until then)."""
    trace_request = await queries.get_visible(session, principal, request_id)
    await cross_checks.schedule(session, trace_request, CrossCheckTrigger.on_demand)
    await session.commit()
    http.app.state.cross_checks.wake()
    return await _list(session, request_id, trace_request.firearm_make)
