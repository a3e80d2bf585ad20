"""Response shapes of the statistics: counts, waiting times, weekly series, SDG 16.4.2.

Only counts, rates and times: no firearm, case or person ever appears here.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field


class StatsScope(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    operation: str | None = None
    period_from: dt.date | None = Field(default=None, alias="from")
    period_to: dt.date | None = Field(default=None, alias="to")
    requesting_country: str | None = None
    requested_country: str | None = None
    party_country: str | None = Field(
        default=None, description="Without an operation, operations staff see their own country's requests"
    )


class DurationSummary(BaseModel):
    count: int = Field(description="Requests the time is known for")
    median: float | None
    p90: float | None


class RequestedCountryRow(BaseModel):
    country: str
    requests: int
    forwarded: int
    answered: int
    response_rate: float | None
    median_answer_hours: float | None


class WeekRow(BaseModel):
    week: dt.date = Field(description="Monday of the ISO week the requests were submitted in")
    submitted: int
    by_state: dict[str, int] = Field(description="What became of that week's requests: their state now")


class Statistics(BaseModel):
    scope: StatsScope
    generated_at: dt.datetime
    total_requests: int
    by_state: dict[str, int]
    by_outcome: dict[str, int]
    by_resolution: dict[str, int]
    by_priority: dict[str, int]
    by_requested_country: dict[str, int]
    forwarded: int = Field(description="Requests forwarded at least once")
    answered: int = Field(description="Requests answered at least once")
    response_rate: float | None = Field(description="answered / forwarded; null when none was forwarded")
    time_to_first_forward_hours: DurationSummary
    time_to_acknowledge_hours: DurationSummary = Field(description="From the latest forward")
    time_to_answer_hours: DurationSummary = Field(description="From the latest forward to its answer")
    overdue: int | None = Field(description="Requests past a deadline; null while requests carry none")
    requested_countries: list[RequestedCountryRow]
    weekly: list[WeekRow]


class OperationSummary(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    start: dt.date
    end: dt.date
    status: str
    countries: list[str]
    organisers: list[str]
    recovered: dict[str, int] = Field(
        description="Firearms reported recovered: seized, found, surrendered, total"
    )


class OperationStatistics(Statistics):
    operation: OperationSummary


class SdgPartPublic(BaseModel):
    numerator: int
    denominator: int
    proportion: float | None
    trace_requests: int
    reported_not_traced: int


class SdgIndicator(BaseModel):
    indicator: str
    country: str
    year: int
    numerator: int
    denominator: int
    proportion: float | None
    by_recovery_type: dict[str, SdgPartPublic]
    operations: list[str] = Field(description="Operations whose reported recoveries were counted")
    method: str
