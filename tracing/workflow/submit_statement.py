"""A submission written on PostgreSQL in one statement.

A submission writes the request, its first party, the submit exchange, the first audit entry and
the chain head, the idempotency key, a pending cross-check per enabled registry, and an event (and a
webhook delivery) for the requesting country's contact point. Sent row by row through the ORM that
is a dozen round trips, and most of the CPU time of a submit goes into preparing them. PostgreSQL's
data-modifying CTEs write them all in one INSERT, one round trip, with the same values the ORM path
(used on SQLite) writes: the request, exchange and audit rows are built by the caller exactly as for
that path, and the recipients and registries are chosen in SQL by the rules of
`outbox.recipients_of_transition` (a submit goes to the requesting country's contact point) and
`markings.service.schedule` (one pending check per enabled registry). The same statement reads the
operation the request names; the caller refuses a closed or unknown one and rolls everything back,
as the ORM path refuses it before writing. The tests run both paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from tracing.audit import log as audit_log
from tracing.audit.chain import GENESIS
from tracing.markings.service import to_public as cross_check_public
from tracing.models.agency import AgencyKind
from tracing.models.audit import AuditEntry
from tracing.models.exchange import Exchange
from tracing.models.notify import DeliveryStatus
from tracing.models.operation import OperationStatus
from tracing.models.registry import (
    CrossCheck,
    CrossCheckPublic,
    CrossCheckStatus,
    CrossCheckTrigger,
    Registry,
    RegistryKind,
)
from tracing.models.trace_request import IdempotencyKey, TraceRequest, format_reference
from tracing.notify import outbox

_DIALECT = postgresql.dialect()


@dataclass(frozen=True)
class Written:
    cross_checks: list[CrossCheckPublic]
    """The pending checks scheduled, as the request's GET shows them."""
    operation: tuple[str, OperationStatus] | None
    """(code, status) of the operation the request names, read by the same statement; None when
    it names none or an unknown one. The caller refuses (and rolls back) a closed or unknown one."""


async def write(
    session: AsyncSession,
    request: TraceRequest,
    exchange: Exchange,
    idempotency: IdempotencyKey | None,
) -> Written:
    """Write everything a submission writes, in the caller's transaction (the caller commits).
    Sets `request.number`. A reused idempotency key raises IntegrityError, as on the ORM path."""
    entry = audit_log.entry_values(
        chain_id=exchange.trace_request_id,
        seq=1,
        prev_hash=GENESIS,
        action=exchange.action.value,
        at=exchange.at,
        content=audit_log.exchange_content(exchange),
    )
    params: dict[str, Any] = {
        **_row_params("tr", TraceRequest.__table__, request),
        **_row_params("ex", Exchange.__table__, exchange),
        **_row_params("ae", AuditEntry.__table__, entry),
        "id": request.id,
        "requesting_country": request.requesting_country,
        "now": exchange.at,
        "trigger": CrossCheckTrigger.submit.value,
        "pending": CrossCheckStatus.pending.value,
        "delivery_pending": DeliveryStatus.pending.value,
        "contact_point": AgencyKind.contact_point.value,
        "event_type": outbox.event_type_of(exchange).value,
        "event_data": json.dumps(outbox.transition_data(request, exchange)),
        "reference_prefix": format_reference(request.created_at.year, 0).removesuffix("000000"),
        "operation_code": request.operation_code,
    }
    if idempotency is not None:
        params |= _row_params("ik", IdempotencyKey.__table__, idempotency)
    rows = (await session.execute(_statement(idempotency is not None), params)).all()
    first = rows[0]  # one row per scheduled cross-check, at least one
    request.number = first.number
    if first.events:
        outbox.mark_emitted(session, deliveries=first.deliveries > 0)
    checks = [
        cross_check_public(
            CrossCheck(
                id=row.check_id,
                trace_request_id=request.id,
                registry_id=row.registry_id,
                trigger=CrossCheckTrigger.submit,
                status=CrossCheckStatus.pending,
                next_attempt_at=exchange.at,
                created_at=exchange.at,
            ),
            Registry(
                id=row.registry_id,
                code=row.registry_code,
                name=row.registry_name,
                kind=RegistryKind(row.registry_kind),
                owner_country=row.registry_owner_country,
            ),
        )
        for row in rows
        if row.check_id is not None
    ]
    operation = (
        (first.operation_code, OperationStatus(first.operation_status)) if first.operation_code else None
    )
    return Written(cross_checks=checks, operation=operation)


def _row_params(prefix: str, table: sa.Table, row: Any) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return {f"{prefix}_{column.name}": _bind(column, get(column.name)) for column in _inserted(table)}


def _bind(column: sa.Column[Any], value: Any) -> Any:
    if isinstance(column.type, sa.JSON):
        return json.dumps(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _inserted(table: sa.Table) -> list[sa.Column[Any]]:
    """The columns a row is written with: all but the ones the database numbers."""
    return [column for column in table.columns if not _numbered(column)]


def _numbered(column: sa.Column[Any]) -> bool:
    return (
        column.primary_key and isinstance(column.type, sa.Integer) and column.autoincrement in ("auto", True)
    )


def _values(prefix: str, table: sa.Table) -> str:
    quote = _DIALECT.identifier_preparer.quote
    columns = _inserted(table)
    names = ", ".join(quote(column.name) for column in columns)
    casts = ", ".join(
        f"CAST(:{prefix}_{column.name} AS {column.type.compile(dialect=_DIALECT)})" for column in columns
    )
    return f"{table.name} ({names}) VALUES ({casts})"


@cache
def _statement(with_idempotency_key: bool) -> sa.TextClause:
    idempotency = (
        f", ik AS (INSERT INTO {_values('ik', IdempotencyKey.__table__)})" if with_idempotency_key else ""
    )
    reference = (
        "CAST(:reference_prefix AS text) || CASE WHEN tr.number < 1000000"
        " THEN lpad(CAST(tr.number AS text), 6, '0') ELSE CAST(tr.number AS text) END"
    )
    return sa.text(
        f"""
        WITH tr AS (INSERT INTO {_values("tr", TraceRequest.__table__)} RETURNING number),
        party AS (
            INSERT INTO trace_request_party (trace_request_id, country)
            VALUES (CAST(:id AS uuid), CAST(:requesting_country AS varchar))
        ),
        ex AS (INSERT INTO {_values("ex", Exchange.__table__)}),
        ae AS (INSERT INTO {_values("ae", AuditEntry.__table__)}),
        head AS (
            INSERT INTO audit_head (chain_id, seq, hash, updated_at)
            VALUES (CAST(:id AS uuid), 1, CAST(:ae_hash AS bytea), CAST(:now AS timestamptz))
        ){idempotency},
        cc AS (
            INSERT INTO cross_check
                (id, trace_request_id, registry_id, "trigger", status, attempts, next_attempt_at, matches,
                created_at)
            SELECT gen_random_uuid(), CAST(:id AS uuid), registry.id, CAST(:trigger AS varchar),
                CAST(:pending AS varchar), 0, CAST(:now AS timestamptz), CAST('[]' AS json),
                CAST(:now AS timestamptz)
            FROM registry WHERE registry.enabled
            RETURNING id, registry_id
        ),
        ev AS (
            INSERT INTO event (id, agency, type, at, trace_request_id, data)
            SELECT gen_random_uuid(), agency.code, CAST(:event_type AS varchar), CAST(:now AS timestamptz),
                CAST(:id AS uuid),
                CAST(CAST(:event_data AS jsonb) || jsonb_build_object('reference', {reference}) AS json)
            FROM agency, tr
            WHERE agency.kind = CAST(:contact_point AS varchar)
                AND agency.country = CAST(:requesting_country AS varchar)
            RETURNING id, agency
        ),
        wd AS (
            INSERT INTO webhook_delivery
                (id, event_id, agency, status, attempts, next_attempt_at, created_at, updated_at)
            SELECT gen_random_uuid(), ev.id, ev.agency, CAST(:delivery_pending AS varchar), 0,
                CAST(:now AS timestamptz), CAST(:now AS timestamptz), CAST(:now AS timestamptz)
            FROM ev JOIN agency ON agency.code = ev.agency
            WHERE agency.webhook_url IS NOT NULL AND agency.webhook_disabled_at IS NULL
            RETURNING id
        )
        SELECT tr.number, (SELECT count(*) FROM ev) AS events, (SELECT count(*) FROM wd) AS deliveries,
            op.code AS operation_code, op.status AS operation_status,
            cc.id AS check_id, registry.id AS registry_id, registry.code AS registry_code,
            registry.name AS registry_name, registry.kind AS registry_kind,
            registry.owner_country AS registry_owner_country
        FROM tr
        LEFT JOIN operation AS op ON op.code = CAST(:operation_code AS varchar)
        LEFT JOIN cc ON true
        LEFT JOIN registry ON registry.id = cc.registry_id
        ORDER BY registry.code
        """
    )
