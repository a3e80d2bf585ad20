"""Statistics (operations or admin role): counts, waiting times and weekly series of trace
requests, an operation's results, and SDG indicator 16.4.2. JSON, or CSV with `Accept: text/csv`
or `?format=csv`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from tracing.api.deps import OperationsPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.models.operation import Operation
from tracing.models.stats import OperationStatistics, SdgIndicator, Statistics, StatsScope
from tracing.models.types import CountryCode, utcnow
from tracing.security import Principal, Role
from tracing.stats import figures, operations, queries, sdg

router = APIRouter(tags=["statistics"])

Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="csv for a spreadsheet; the default follows the Accept header, else JSON"),
]
PeriodFrom = Annotated[dt.date | None, Query(alias="from", description="Submitted on or after (UTC)")]
PeriodTo = Annotated[dt.date | None, Query(alias="to", description="Submitted on or before (UTC)")]
_CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON or CSV"}}


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _render(
    request: Request,
    format: str | None,
    model: type[BaseModel],
    figures_: Mapping[str, Any],
    rows: Callable[[Mapping[str, Any]], Sequence[Sequence[Any]]],
    filename: str,
) -> Any:
    document = model.model_validate(figures_)
    if not _wants_csv(request, format):
        return document
    text = figures.csv_document(
        rows(document.model_dump(mode="json", by_alias=True)), figures.STATS_CSV_HEADER
    )
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _scope(principal: Principal, filters: queries.StatsFilters) -> StatsScope:
    operations_only = filters.operation is None and not principal.has(Role.admin)
    return StatsScope(
        operation=filters.operation.code if filters.operation else None,
        period_from=filters.start,
        period_to=filters.end,
        requesting_country=filters.requesting_country,
        requested_country=filters.requested_country,
        party_country=principal.country if operations_only else None,
    )


def _operation_summary(operation: Operation, recoveries: list[Any]) -> dict[str, Any]:
    recovered = {
        "seized": sum(r.seized for r in recoveries),
        "found": sum(r.found for r in recoveries),
        "surrendered": sum(r.surrendered for r in recoveries),
    }
    recovered["total"] = sum(recovered.values())
    return {**operation.model_dump(), "recovered": recovered}


@router.get(
    "/v1/stats",
    response_model=Statistics,
    responses={**problems(401, 403, 404, 422), **_CSV},
)
async def get_statistics(
    request: Request,
    session: SessionDep,
    principal: OperationsPrincipal,
    period_from: PeriodFrom = None,
    period_to: PeriodTo = None,
    requesting_country: Annotated[CountryCode | None, Query()] = None,
    requested_country: Annotated[CountryCode | None, Query()] = None,
    operation: Annotated[str | None, Query(max_length=64, description="UUID or code")] = None,
    format: Format = None,
) -> Any:
    """Counts by state, outcome, resolution, priority and requested country; response rate; median
    and 90th percentile waiting times; weekly series. Operations staff see their own country's
    requests, or with `operation` every request of an operation they may see."""
    found = (
        await operations.get_visible(session=session, principal=principal, key=operation)
        if operation
        else None
    )
    filters = queries.StatsFilters(
        start=period_from,
        end=period_to,
        requesting_country=requesting_country,
        requested_country=requested_country,
        operation=found,
    )
    stats = await queries.request_statistics(session, principal, filters)
    stats |= {"scope": _scope(principal, filters), "generated_at": utcnow()}
    return _render(request, format, Statistics, stats, figures.statistics_rows, "statistics.csv")


@router.get(
    "/v1/operations/{key}/stats",
    response_model=OperationStatistics,
    responses={**problems(401, 403, 404, 422), **_CSV},
)
async def get_operation_statistics(
    key: str,
    request: Request,
    session: SessionDep,
    principal: OperationsPrincipal,
    period_from: PeriodFrom = None,
    period_to: PeriodTo = None,
    requesting_country: Annotated[CountryCode | None, Query()] = None,
    requested_country: Annotated[CountryCode | None, Query()] = None,
    format: Format = None,
) -> Any:
    """How many trace requests an operation produced, where they went, how fast they were answered
    and how they ended, beside the recoveries its countries reported."""
    operation = await operations.get_visible(session=session, principal=principal, key=key)
    filters = queries.StatsFilters(
        start=period_from,
        end=period_to,
        requesting_country=requesting_country,
        requested_country=requested_country,
        operation=operation,
    )
    stats = await queries.request_statistics(session, principal, filters)
    recoveries = (await operations.recoveries_of(session, [operation.id]))[operation.id]
    stats |= {
        "scope": _scope(principal, filters),
        "generated_at": utcnow(),
        "operation": _operation_summary(operation, recoveries),
    }
    filename = f"operation-{operation.code}.csv"
    return _render(request, format, OperationStatistics, stats, figures.statistics_rows, filename)


@router.get(
    "/v1/stats/sdg-16-4-2",
    response_model=SdgIndicator,
    responses={**problems(401, 403, 422), **_CSV},
)
async def get_sdg_16_4_2(
    request: Request,
    session: SessionDep,
    principal: OperationsPrincipal,
    country: Annotated[CountryCode, Query()],
    year: Annotated[int, Query(ge=1900, le=2999)],
    format: Format = None,
) -> Any:
    """The proportion of seized, found or surrendered arms whose illicit origin or context was
    traced or established, with numerator, denominator, the method in words, and the split by
    recovery type."""
    await sdg.check_may_read(session, principal, country)
    figures_ = await sdg.indicator(session, country=country, year=year)
    return _render(
        request, format, SdgIndicator, figures_, figures.sdg_rows, f"sdg-16-4-2-{country}-{year}.csv"
    )
