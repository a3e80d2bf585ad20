"""Joint operations (operations or admin role): create, list, read, update; `{key}` is the
operation's UUID or its code."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tracing.api.deps import OperationsPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.models.operation import (
    Operation,
    OperationCreate,
    OperationList,
    OperationPublic,
    OperationUpdate,
    to_public,
)
from tracing.stats import operations

router = APIRouter(prefix="/v1/operations", tags=["operations"])


async def _render(session: AsyncSession, operation: Operation) -> OperationPublic:
    recoveries = await operations.recoveries_of(session, [operation.id])
    return to_public(operation, recoveries[operation.id])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationPublic,
    responses=problems(401, 403, 409, 422),
)
async def create_operation(
    body: OperationCreate, session: SessionDep, principal: OperationsPrincipal, response: Response
) -> OperationPublic:
    operation = await operations.create(session=session, principal=principal, body=body)
    response.headers["Location"] = f"/v1/operations/{operation.id}"
    return await _render(session, operation)


@router.get("", response_model=OperationList, responses=problems(401, 403))
async def list_operations(session: SessionDep, principal: OperationsPrincipal) -> OperationList:
    found = await operations.list_visible(session=session, principal=principal)
    recoveries = await operations.recoveries_of(session, [op.id for op in found])
    return OperationList(items=[to_public(op, recoveries[op.id]) for op in found])


@router.get("/{key}", response_model=OperationPublic, responses=problems(401, 403, 404))
async def get_operation(key: str, session: SessionDep, principal: OperationsPrincipal) -> OperationPublic:
    operation = await operations.get_visible(session=session, principal=principal, key=key)
    return await _render(session, operation)


@router.patch("/{key}", response_model=OperationPublic, responses=problems(401, 403, 404, 422))
async def update_operation(
    key: str, body: OperationUpdate, session: SessionDep, principal: OperationsPrincipal
) -> OperationPublic:
    operation = await operations.update(session=session, principal=principal, key=key, body=body)
    return await _render(session, operation)
