"""The statistics' SQL: which requests a caller's figures cover, and the aggregates over them.

Everything is aggregated in the database: one GROUP BY over every published dimension together
(folded into per-dimension counts in Python), quantiles of the waiting times (percentile_cont on
PostgreSQL; the same interpolation from ranked rows on SQLite, which has no percentile function)
and one GROUP BY per week. No query returns a row per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from tracing.errors import Forbidden, Unprocessable
from tracing.models.operation import Operation
from tracing.models.trace_request import (
    Outcome,
    Priority,
    Resolution,
    State,
    TraceRequest,
    TraceRequestParty,
)
from tracing.models.types import utcnow
from tracing.security import Principal, Role
from tracing.stats import figures
from tracing.stats.overdue import overdue_condition

TR = TraceRequest.__table__.c
DIMENSIONS: dict[str, Sequence[str]] = {
    "state": [s.value for s in State],
    "outcome": [o.value for o in Outcome],
    "resolution": [r.value for r in Resolution],
    "priority": [p.value for p in Priority],
}


@dataclass(frozen=True)
class StatsFilters:
    start: dt.date | None = None
    end: dt.date | None = None
    """Inclusive period of submission dates (UTC)."""
    requesting_country: str | None = None
    requested_country: str | None = None
    operation: Operation | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise Unprocessable(f"the period ends ({self.end}) before it starts ({self.start})")


def scope(principal: Principal, filters: StatsFilters) -> sa.ColumnElement[bool]:
    """The requests the caller's figures cover, narrowed by the filters.

    Administrators: every request. Operations staff: with an operation (which they may see; the
    caller checked that), every request filed under it, whichever participating country filed it;
    without one, the requests their country is a party to (it filed them or they were forwarded to
    it)."""
    clauses: list[sa.ColumnElement[bool]] = []
    if filters.operation is not None:
        clauses.append(TR.operation_code == filters.operation.code)
    elif not principal.has(Role.admin):
        if not principal.has(Role.operations):
            raise Forbidden("statistics need the operations or admin role")
        party = TraceRequestParty.__table__.c
        clauses.append(sa.exists().where(party.trace_request_id == TR.id, party.country == principal.country))
    if filters.start is not None:
        clauses.append(TR.created_at >= _midnight(filters.start))
    if filters.end is not None:
        clauses.append(TR.created_at < _midnight(filters.end + dt.timedelta(days=1)))
    if filters.requesting_country is not None:
        clauses.append(TR.requesting_country == filters.requesting_country)
    if filters.requested_country is not None:
        clauses.append(TR.requested_country == filters.requested_country)
    return sa.and_(sa.true(), *clauses)


def _midnight(day: dt.date) -> sa.BindParameter[dt.datetime]:
    moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return sa.bindparam(None, moment, type_=TraceRequest.__table__.c.created_at.type)


def _seconds_between(later: Any, earlier: Any, dialect: str) -> sa.ColumnElement[float]:
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", later - earlier), sa.Float)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def _durations(dialect: str) -> dict[str, sa.ColumnElement[float]]:
    """Waiting times in seconds; NULL where the step has not happened (quantiles skip NULLs)."""
    answer = _seconds_between(TR.answered_at, TR.forwarded_at, dialect)
    return {
        "time_to_first_forward_hours": _seconds_between(TR.first_forwarded_at, TR.created_at, dialect),
        "time_to_acknowledge_hours": _seconds_between(TR.acknowledged_at, TR.forwarded_at, dialect),
        # The answer to the latest forward: after an onward forward the earlier answer predates it.
        "time_to_answer_hours": sa.case((TR.answered_at >= TR.forwarded_at, answer), else_=None),
    }


async def _count_roll(session: AsyncSession, where: sa.ColumnElement[bool]) -> figures.CountRoll:
    overdue = overdue_condition(utcnow())
    keys = [TR.state, TR.outcome, TR.resolution, TR.priority, TR.requested_country]
    columns: list[Any] = [
        *keys,
        sa.func.count().label("requests"),
        sa.func.count(TR.first_forwarded_at).label("forwarded"),
        sa.func.count(TR.answered_at).label("answered"),
    ]
    if overdue is not None:
        columns.append(sa.func.sum(sa.case((overdue, 1), else_=0)).label("overdue"))
    statement = sa.select(*columns).where(where).group_by(*keys)
    rows = (await session.execute(statement)).mappings()
    return figures.CountRoll.fold(rows, DIMENSIONS, count_overdue=overdue is not None)


async def _quantiles(
    session: AsyncSession,
    where: sa.ColumnElement[bool],
    durations: dict[str, sa.ColumnElement[float]],
    group: sa.ColumnElement[Any] | None = None,
) -> dict[Any, dict[str, dict[str, Any]]]:
    """{group value (None without a group): {duration name: {count, median, p90} in hours}}."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return await _quantiles_postgresql(session, where, durations, group)
    results: dict[Any, dict[str, dict[str, Any]]] = {}
    for name, duration in durations.items():
        for key, summary in (await _quantiles_ranked(session, where, duration, group)).items():
            results.setdefault(key, {})[name] = summary
    return results


async def _quantiles_postgresql(
    session: AsyncSession,
    where: sa.ColumnElement[bool],
    durations: dict[str, sa.ColumnElement[float]],
    group: sa.ColumnElement[Any] | None,
) -> dict[Any, dict[str, dict[str, Any]]]:
    points = postgresql.array([sa.literal(p, sa.Float) for p in figures.QUANTILES.values()])
    columns: list[Any] = [group.label("g") if group is not None else sa.null().label("g")]
    for name, duration in durations.items():
        columns.append(sa.func.count(duration).label(f"{name}_n"))
        columns.append(
            sa.func.percentile_cont(points, type_=postgresql.ARRAY(sa.Float))
            .within_group(duration)
            .label(f"{name}_q")
        )
    statement = sa.select(*columns).where(where)
    if group is not None:
        statement = statement.group_by(group)
    results: dict[Any, dict[str, dict[str, Any]]] = {}
    for row in (await session.execute(statement)).mappings():
        results[row["g"]] = {
            name: _summary(row[f"{name}_n"], row[f"{name}_q"] or [None] * len(figures.QUANTILES))
            for name in durations
        }
    return results


async def _quantiles_ranked(
    session: AsyncSession,
    where: sa.ColumnElement[bool],
    duration: sa.ColumnElement[float],
    group: sa.ColumnElement[Any] | None,
) -> dict[Any, dict[str, Any]]:
    """Quantiles from window functions: rank the durations per group and fetch only the order
    statistics each quantile interpolates between (at most four rows per group)."""
    key = group if group is not None else sa.null()
    values = sa.select(key.label("g"), duration.label("d")).where(where, duration.is_not(None)).subquery()
    ranked = sa.select(
        values.c.g,
        values.c.d,
        sa.func.row_number().over(partition_by=values.c.g, order_by=values.c.d).label("rn"),
        sa.func.count().over(partition_by=values.c.g).label("n"),
    ).subquery()
    wanted = []
    for p in figures.QUANTILES.values():
        lower = sa.cast((ranked.c.n - 1) * p, sa.Integer) + 1
        wanted += [ranked.c.rn == lower, ranked.c.rn == lower + 1]
    statement = sa.select(ranked.c.g, ranked.c.n, ranked.c.rn, ranked.c.d).where(sa.or_(*wanted))
    by_group: dict[Any, tuple[int, dict[int, float]]] = {}
    for g, n, rn, d in await session.execute(statement):
        by_group.setdefault(g, (n, {}))[1][rn] = d
    return {
        g: _summary(n, [figures.quantile_from_ranks(n, ranks, p) for p in figures.QUANTILES.values()])
        for g, (n, ranks) in by_group.items()
    }


def _summary(count: int, seconds: Sequence[float | None]) -> dict[str, Any]:
    summary: dict[str, Any] = {"count": int(count or 0)}
    for name, value in zip(figures.QUANTILES, seconds, strict=True):
        summary[name] = figures.hours(value) if count else None
    return summary


def _empty_summary() -> dict[str, Any]:
    return _summary(0, [None] * len(figures.QUANTILES))


async def _weekly(session: AsyncSession, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        week: sa.ColumnElement[Any] = sa.cast(
            sa.func.date_trunc(
                sa.literal_column("'week'"), sa.func.timezone(sa.literal_column("'UTC'"), TR.created_at)
            ),
            sa.Date,
        )
    else:
        week = sa.func.date(TR.created_at, sa.literal_column("'weekday 0'"), sa.literal_column("'-6 days'"))
    statement = sa.select(week, TR.state, sa.func.count()).where(where).group_by(week, TR.state)
    rows = []
    for monday, state, count in await session.execute(statement):
        if isinstance(monday, str):
            monday = dt.date.fromisoformat(monday)
        elif isinstance(monday, dt.datetime):
            monday = monday.date()
        rows.append((monday, getattr(state, "value", state), count))
    return figures.weekly_series(rows, DIMENSIONS["state"])


async def request_statistics(
    session: AsyncSession, principal: Principal, filters: StatsFilters
) -> dict[str, Any]:
    """The figures of GET /v1/stats and GET /v1/operations/{id}/stats, as plain data."""
    where = scope(principal, filters)
    dialect = session.get_bind().dialect.name
    durations = _durations(dialect)
    roll = await _count_roll(session, where)
    overall = (await _quantiles(session, where, durations)).get(None, {})
    answer_only = {"time_to_answer_hours": durations["time_to_answer_hours"]}
    per_country = await _quantiles(session, where, answer_only, group=TR.requested_country)
    weekly = await _weekly(session, where)

    requested_countries = []
    for country, counts in sorted(roll.by_requested_country.items(), key=lambda i: (-i[1]["requests"], i[0])):
        answer = per_country.get(country, {}).get("time_to_answer_hours", _empty_summary())
        requested_countries.append(
            {
                "country": country,
                **counts,
                "response_rate": figures.rate(counts["answered"], counts["forwarded"]),
                "median_answer_hours": answer["median"],
            }
        )
    return {
        "total_requests": roll.total,
        "by_state": roll.by["state"],
        "by_outcome": roll.by["outcome"],
        "by_resolution": roll.by["resolution"],
        "by_priority": roll.by["priority"],
        "by_requested_country": {row["country"]: row["requests"] for row in requested_countries},
        "forwarded": roll.forwarded,
        "answered": roll.answered,
        "response_rate": figures.rate(roll.answered, roll.forwarded),
        **{name: overall.get(name, _empty_summary()) for name in durations},
        "overdue": roll.overdue,
        "requested_countries": requested_countries,
        "weekly": weekly,
    }
