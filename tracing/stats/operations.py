"""Joint operations: create, list, read and update them, and decide who may see which.

Who sees an operation: administrators see every operation; a holder of the `operations` role sees
the operations their country takes part in and those their agency organises (an INTERPOL analyst
with agency `INTERPOL` sees TRIGGER III, whatever country their token names). Everyone else, and
anyone asking for an operation they may not see, gets 404: the operation might as well not exist.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Conflict, Forbidden, NotFound, Unprocessable
from tracing.models.operation import (
    Operation,
    OperationCreate,
    OperationRecovery,
    OperationStatus,
    OperationUpdate,
    Recovery,
    check_consistent,
)
from tracing.models.types import utcnow
from tracing.security import Principal, Role


def may_see(principal: Principal, operation: Operation) -> bool:
    if principal.has(Role.admin):
        return True
    if not principal.has(Role.operations):
        return False
    return principal.country in operation.countries or principal.agency in operation.organisers


def may_manage(principal: Principal) -> bool:
    return principal.has(Role.admin) or principal.has(Role.operations)


def _require_manager(principal: Principal) -> None:
    if not may_manage(principal):
        raise Forbidden("managing operations needs the operations or admin role")


async def create(*, session: AsyncSession, principal: Principal, body: OperationCreate) -> Operation:
    _require_manager(principal)
    operation = Operation(
        code=body.code,
        name=body.name,
        start=body.start,
        end=body.end,
        status=body.status,
        countries=list(body.countries),
        organisers=list(body.organisers),
    )
    if not may_see(principal, operation):
        raise Forbidden(
            "operations staff create operations their country takes part in or their agency organises"
        )
    session.add(operation)
    try:
        await session.flush()
        _replace_recoveries(session, operation, body.recoveries)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"an operation with code {body.code} already exists") from exc
    return operation


def _replace_recoveries(session: AsyncSession, operation: Operation, recoveries: list[Recovery]) -> None:
    for recovery in recoveries:
        session.add(OperationRecovery(operation_id=operation.id, **recovery.model_dump()))


async def _find(session: AsyncSession, key: str) -> Operation | None:
    """An operation by UUID or by code (case-insensitive, as codes are stored upper case)."""
    try:
        clause = Operation.id == uuid.UUID(key)
    except ValueError:
        clause = Operation.code == stored_code(key)
    return (await session.execute(select(Operation).where(clause))).scalar_one_or_none()


async def get_visible(*, session: AsyncSession, principal: Principal, key: str) -> Operation:
    operation = await _find(session, key)
    if operation is None or not may_see(principal, operation):
        raise NotFound(f"operation {key} not found")
    return operation


async def recoveries_of(session: AsyncSession, operation_ids: list[uuid.UUID]) -> dict[uuid.UUID, list]:
    found: dict[uuid.UUID, list[OperationRecovery]] = {i: [] for i in operation_ids}
    if operation_ids:
        statement = select(OperationRecovery).where(OperationRecovery.operation_id.in_(operation_ids))
        for recovery in (await session.execute(statement)).scalars():
            found[recovery.operation_id].append(recovery)
    return found


async def list_visible(*, session: AsyncSession, principal: Principal) -> list[Operation]:
    """Newest first. Visibility is checked in Python: the list is short (operations are few), and
    the participating countries live in a JSON list that the two databases query differently."""
    if not may_manage(principal):
        return []
    statement = select(Operation).order_by(Operation.start.desc(), Operation.code)
    return [op for op in (await session.execute(statement)).scalars() if may_see(principal, op)]


async def update(
    *, session: AsyncSession, principal: Principal, key: str, body: OperationUpdate
) -> Operation:
    _require_manager(principal)
    operation = await get_visible(session=session, principal=principal, key=key)
    changes = body.model_dump(exclude_unset=True)
    if any(changes.get(field, "") is None for field in ("name", "start", "end", "countries", "status")):
        raise Unprocessable("name, start, end, countries and status cannot be set to null")
    recoveries = body.recoveries
    if recoveries is None:
        recoveries = [
            Recovery.model_validate(r, from_attributes=True)
            for r in (await recoveries_of(session, [operation.id]))[operation.id]
        ]
    start = changes.get("start", operation.start)
    end = changes.get("end", operation.end)
    countries = changes.get("countries", operation.countries)
    try:
        check_consistent(start, end, countries, recoveries)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    for field in ("name", "start", "end", "status"):
        if field in changes:
            setattr(operation, field, changes[field])
    if "countries" in changes:
        operation.countries = list(countries)
    if "organisers" in changes:
        operation.organisers = list(changes["organisers"] or [])
    if not may_see(principal, operation):
        raise Unprocessable("after this change you could no longer see the operation; ask an administrator")
    operation.updated_at = utcnow()
    if body.recoveries is not None:
        stale = sa.delete(OperationRecovery).where(OperationRecovery.operation_id == operation.id)
        await session.execute(stale)
        _replace_recoveries(session, operation, body.recoveries)
    await session.commit()
    return operation


async def code_open_for_submissions(session: AsyncSession, code: str | None) -> str | None:
    """The stored spelling of the operation a new trace request names, or why it may not name it."""
    if code is None:
        return None
    statement = sa.select(Operation.code, Operation.status).where(Operation.code == stored_code(code))
    found = (await session.execute(statement)).one_or_none()  # by code only (not by UUID), two columns
    return open_for_submissions(code, None if found is None else (found.code, found.status))


def stored_code(code: str) -> str:
    """How an operation code given by a user is spelled in the database."""
    return code.strip().upper()


def open_for_submissions(code: str, found: tuple[str, OperationStatus] | None) -> str:
    """`found` is (stored code, status) of the operation named `code`, if any: its code, or why a new
    trace request may not name it."""
    if found is None:
        raise Unprocessable(
            f"operation_code {code!r} names no known operation", extra={"field": "operation_code"}
        )
    stored, status = found
    if status is OperationStatus.closed:
        raise Unprocessable(
            f"operation {stored} is closed; trace requests can no longer be filed under it",
            extra={"field": "operation_code"},
        )
    return stored
