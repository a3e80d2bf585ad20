"""Due dates for the holder of a trace request, and the sweep that notices missed ones.

The International Tracing Instrument asks the requested state to acknowledge receipt and to answer
within a reasonable time. On every forward the new holder gets both due dates, computed by a pure
function of the request's priority and the moment of the forward; the hours per priority come from
settings. A request is overdue while it is forwarded and a due date passed unmet. The sweep emits
request.overdue once per missed due date: it marks the miss with a compare-and-set on the due date
itself, so several sweeps running at once, or a forward racing a sweep, never double an event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.config import Settings
from tracing.models.trace_request import Priority, State, TraceRequest
from tracing.notify import outbox


@dataclass(frozen=True)
class DeadlinePolicy:
    """Hours from a forward to the acknowledgement and to the answer, per priority."""

    urgent_acknowledge_hours: float = 24
    urgent_answer_hours: float = 72
    routine_acknowledge_hours: float = 5 * 24
    routine_answer_hours: float = 30 * 24

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadlinePolicy:
        return cls(
            urgent_acknowledge_hours=settings.deadline_urgent_acknowledge_hours,
            urgent_answer_hours=settings.deadline_urgent_answer_hours,
            routine_acknowledge_hours=settings.deadline_routine_acknowledge_hours,
            routine_answer_hours=settings.deadline_routine_answer_hours,
        )


@dataclass(frozen=True)
class DueDates:
    acknowledge_by: dt.datetime
    answer_by: dt.datetime


def due_dates(priority: Priority, forwarded_at: dt.datetime, policy: DeadlinePolicy) -> DueDates:
    if priority is Priority.urgent:
        acknowledge, answer = policy.urgent_acknowledge_hours, policy.urgent_answer_hours
    else:
        acknowledge, answer = policy.routine_acknowledge_hours, policy.routine_answer_hours
    return DueDates(
        acknowledge_by=forwarded_at + dt.timedelta(hours=acknowledge),
        answer_by=forwarded_at + dt.timedelta(hours=answer),
    )


def on_forward(priority: Priority, now: dt.datetime, policy: DeadlinePolicy) -> dict[str, dt.datetime | None]:
    """The columns a forward sets: fresh due dates for the new holder, no misses noticed yet."""
    due = due_dates(priority, now, policy)
    return {
        "acknowledge_by": due.acknowledge_by,
        "answer_by": due.answer_by,
        "acknowledge_missed_at": None,
        "answer_missed_at": None,
    }


def missed_acknowledgement(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        TraceRequest.state == State.forwarded,
        TraceRequest.acknowledged_at.is_(None),
        TraceRequest.acknowledge_by.is_not(None),
        TraceRequest.acknowledge_by < now,
    )


def missed_answer(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        TraceRequest.state == State.forwarded,
        TraceRequest.answer_by.is_not(None),
        TraceRequest.answer_by < now,
    )


def overdue(now: dt.datetime) -> sa.ColumnElement[bool]:
    """SQL for `due.overdue` (the same rule as models.trace_request.is_overdue): for list filters
    and for counting overdue requests in statistics."""
    return sa.or_(missed_acknowledgement(now), missed_answer(now))


class OverdueCounts(NamedTuple):
    overdue: int
    acknowledgement_overdue: int
    answer_overdue: int


async def count_overdue(
    session: AsyncSession, *, now: dt.datetime, where: sa.ColumnElement[bool] | None = None
) -> OverdueCounts:
    """How many requests are overdue now, and for which due date (a request late on both counts
    in each): for statistics, optionally narrowed by `where` (an operation, a country...)."""
    statement = select(
        sa.func.count().filter(overdue(now)),
        sa.func.count().filter(missed_acknowledgement(now)),
        sa.func.count().filter(missed_answer(now)),
    ).select_from(TraceRequest)
    if where is not None:
        statement = statement.where(where)
    total, acknowledgement, answer = (await session.execute(statement)).one()
    return OverdueCounts(total, acknowledgement, answer)


class SweepResult(NamedTuple):
    acknowledgements_missed: int = 0
    answers_missed: int = 0


async def sweep_overdue(session: AsyncSession, *, now: dt.datetime, limit: int = 500) -> SweepResult:
    """Emit request.overdue for each due date missed since the last sweep, one transaction per miss."""
    counts = {"acknowledge": 0, "answer": 0}
    for missed, is_missed, due_column, marker in (
        ("acknowledge", missed_acknowledgement(now), TraceRequest.acknowledge_by, "acknowledge_missed_at"),
        ("answer", missed_answer(now), TraceRequest.answer_by, "answer_missed_at"),
    ):
        marker_column = getattr(TraceRequest, marker)
        statement = (
            select(TraceRequest.id, due_column)
            .where(is_missed, marker_column.is_(None))
            .order_by(due_column)
            .limit(limit)
        )
        candidates = list(await session.execute(statement))
        await session.rollback()
        for request_id, due_at in candidates:
            claim = (
                sa.update(TraceRequest)
                .where(
                    TraceRequest.id == request_id,
                    due_column == due_at,  # a forward since the query set new due dates: not missed
                    is_missed,
                    marker_column.is_(None),
                )
                .values({marker: now})
                .returning(TraceRequest)
            )
            request = (
                await session.execute(claim, execution_options={"populate_existing": True})
            ).scalar_one_or_none()
            if request is None:
                await session.rollback()
                continue
            await outbox.emit_overdue(session, request, missed=missed, due_at=due_at, at=now)
            await session.commit()
            counts[missed] += 1
    return SweepResult(acknowledgements_missed=counts["acknowledge"], answers_missed=counts["answer"])
