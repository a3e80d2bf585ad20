"""SDG indicator 16.4.2 for one country and year, from the trace requests and the recoveries
countries reported in joint operations (the method in words is `figures.SDG_METHOD`).

Who may ask: administrators for any country; operations staff for their own country and for the
countries taking part in the operations they may see (fellow participants and organisers compile
an operation's results together). Anyone else gets 403: the indicator is published per country, so
refusing it hides nothing that exists.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Forbidden
from tracing.models.operation import Operation, OperationRecovery
from tracing.models.trace_request import RecoveryType, TraceRequest
from tracing.security import Principal, Role
from tracing.stats import figures
from tracing.stats.operations import may_see

TR = TraceRequest.__table__.c
RECOVERY_TYPES = [r.value for r in RecoveryType]


async def check_may_read(session: AsyncSession, principal: Principal, country: str) -> None:
    if principal.has(Role.admin) or (principal.has(Role.operations) and principal.country == country):
        return
    if principal.has(Role.operations):
        for operation in (await session.execute(select(Operation))).scalars():
            if country in operation.countries and may_see(principal, operation):
                return
    raise Forbidden(
        f"the indicator for {country} is available to its operations staff, to those of operations"
        " it takes part in, and to administrators"
    )


async def indicator(session: AsyncSession, *, country: str, year: int) -> dict[str, Any]:
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    established = sa.func.sum(sa.case((TR.resolution.in_(figures.ESTABLISHED), 1), else_=0))
    statement = (
        sa.select(TR.recovery_type, sa.func.count(), established)
        .where(TR.seizure_country == country, TR.seizure_date.between(first, last))
        .group_by(TR.recovery_type)
    )
    requests = {
        kind.value if hasattr(kind, "value") else kind: (int(n), int(done or 0))
        for kind, n, done in await session.execute(statement)
    }

    reported_statement = (
        sa.select(Operation.code, OperationRecovery)
        .join(OperationRecovery, OperationRecovery.operation_id == Operation.id)
        .where(OperationRecovery.country == country, Operation.start.between(first, last))
        .order_by(Operation.code)
    )
    reported = [
        (code, {"seized": r.seized, "found": r.found, "surrendered": r.surrendered})
        for code, r in await session.execute(reported_statement)
    ]
    filed: dict[str, dict[str, int]] = {code: {} for code, _ in reported}
    if reported:
        filed_statement = (
            sa.select(TR.operation_code, TR.recovery_type, sa.func.count())
            .where(TR.seizure_country == country, TR.operation_code.in_(list(filed)))
            .group_by(TR.operation_code, TR.recovery_type)
        )
        for code, kind, n in await session.execute(filed_statement):
            filed[code][getattr(kind, "value", kind)] = int(n)

    parts = figures.sdg_parts(
        requests, [counts for _, counts in reported], [filed[code] for code, _ in reported], RECOVERY_TYPES
    )
    numerator = sum(part.numerator for part in parts.values())
    denominator = sum(part.denominator for part in parts.values())
    return {
        "indicator": "SDG 16.4.2",
        "country": country,
        "year": year,
        "numerator": numerator,
        "denominator": denominator,
        "proportion": figures.rate(numerator, denominator),
        "by_recovery_type": {
            kind: {
                "numerator": part.numerator,
                "denominator": part.denominator,
                "proportion": part.proportion,
                "trace_requests": part.trace_requests,
                "reported_not_traced": part.reported_not_traced,
            }
            for kind, part in parts.items()
        },
        "operations": [code for code, _ in reported],
        "method": figures.SDG_METHOD,
    }
