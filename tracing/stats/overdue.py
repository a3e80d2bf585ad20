"""Which trace requests are overdue, as a SQL condition, for the overdue count in the statistics.

Deadlines are not part of trace requests yet. Until they are, `overdue_condition` returns None and
the statistics publish `overdue: null` (unknown) rather than a misleading 0. Once requests carry due
dates, this is the one place to change: return a condition over TraceRequest columns that is true
for a request past a deadline it has not met, e.g. not acknowledged by `acknowledge_by` while
forwarded, or not answered by `answer_by` while forwarded, and the counts, CSV and dashboard follow.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa


def overdue_condition(now: dt.datetime) -> sa.ColumnElement[bool] | None:
    return None
