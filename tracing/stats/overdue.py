"""Which trace requests are overdue, as a SQL condition, for the overdue count in the statistics:
the same rule as a request's `due.overdue` (tracing/workflow/deadlines.py)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from tracing.workflow.deadlines import overdue


def overdue_condition(now: dt.datetime) -> sa.ColumnElement[bool] | None:
    return overdue(now)
