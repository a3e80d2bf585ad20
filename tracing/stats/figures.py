"""Pure helpers that turn the database's aggregates into the published figures: quantiles, rates,
the roll-up of one GROUP BY into counts per dimension, weekly series, SDG 16.4.2, and CSV.

No I/O here, so each piece is tested on its own (with hypothesis where a property says more than
an example).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

QUANTILES = {"median": 0.5, "p90": 0.9}
MAX_FILLED_WEEKS = 1100
"""Weekly series with a longer span (over 20 years) list only the weeks that have requests."""


# ---- quantiles ------------------------------------------------------------------------------


def quantile_ranks(count: int, p: float) -> tuple[int, int]:
    """The 1-based ranks of the two order statistics the p-quantile interpolates between."""
    position = (count - 1) * p
    lower = int(position) + 1
    return lower, min(lower + 1, count)


def quantile_from_ranks(count: int, values_by_rank: Mapping[int, float], p: float) -> float | None:
    """The p-quantile by linear interpolation between order statistics (Hyndman-Fan type 7, as
    PostgreSQL's percentile_cont), given only the ranks `quantile_ranks` names."""
    if count <= 0:
        return None
    position = (count - 1) * p
    lower = int(position)
    fraction = position - lower
    low = values_by_rank[lower + 1]
    if fraction == 0 or lower + 2 > count:
        return float(low)
    return float(low + fraction * (values_by_rank[lower + 2] - low))


def quantile(values: Iterable[float], p: float) -> float | None:
    ordered = sorted(values)
    return quantile_from_ranks(len(ordered), dict(enumerate(ordered, start=1)), p)


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def rate(numerator: int, denominator: int) -> float | None:
    """A proportion rounded to 4 places; None (not 0, not an error) when nothing was counted."""
    return None if denominator == 0 else round(numerator / denominator, 4)


# ---- counts ---------------------------------------------------------------------------------


@dataclass
class CountRoll:
    """Counts per dimension folded from one GROUP BY over all of them together, so the database
    scans the requests once however many dimensions are published."""

    total: int = 0
    forwarded: int = 0
    answered: int = 0
    overdue: int | None = None
    by: dict[str, dict[str, int]] = field(default_factory=dict)
    by_requested_country: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def fold(
        cls,
        rows: Iterable[Mapping[str, Any]],
        dimensions: Mapping[str, Sequence[str]],
        *,
        count_overdue: bool,
    ) -> CountRoll:
        """`rows` carry one value per dimension (None where unset) and the counts `requests`,
        `forwarded`, `answered` (and `overdue`); `dimensions` lists each dimension's known values,
        which appear with 0 when no request has them."""
        roll = cls(overdue=0 if count_overdue else None)
        roll.by = {name: dict.fromkeys(values, 0) for name, values in dimensions.items()}
        for row in rows:
            requests = int(row["requests"])
            roll.total += requests
            roll.forwarded += int(row["forwarded"])
            roll.answered += int(row["answered"])
            if count_overdue:
                roll.overdue = (roll.overdue or 0) + int(row["overdue"] or 0)
            for name in dimensions:
                value = row[name]
                if value is not None:
                    key = getattr(value, "value", value)
                    roll.by[name][key] = roll.by[name].get(key, 0) + requests
            country = roll.by_requested_country.setdefault(
                row["requested_country"], {"requests": 0, "forwarded": 0, "answered": 0}
            )
            country["requests"] += requests
            country["forwarded"] += int(row["forwarded"])
            country["answered"] += int(row["answered"])
        return roll


# ---- weekly series --------------------------------------------------------------------------


def week_start(day: dt.date) -> dt.date:
    """The Monday of the ISO week `day` falls in."""
    return day - dt.timedelta(days=day.weekday())


def weekly_series(rows: Iterable[tuple[dt.date, str, int]], states: Sequence[str]) -> list[dict[str, Any]]:
    """Requests submitted per week, split by the state they are in now, from the first week with a
    request to the last, weeks without requests included (as zeros)."""
    weeks: dict[dt.date, dict[str, int]] = {}
    for week, state, count in rows:
        monday = week_start(week)
        counts = weeks.setdefault(monday, dict.fromkeys(states, 0))
        counts[state] = counts.get(state, 0) + int(count)
    if not weeks:
        return []
    first, last = min(weeks), max(weeks)
    span = (last - first).days // 7 + 1
    mondays = (
        [first + dt.timedelta(weeks=n) for n in range(span)] if span <= MAX_FILLED_WEEKS else sorted(weeks)
    )
    return [
        {
            "week": monday,
            "submitted": sum(weeks.get(monday, {}).values()),
            "by_state": weeks.get(monday, dict.fromkeys(states, 0)),
        }
        for monday in mondays
    ]


# ---- SDG 16.4.2 -----------------------------------------------------------------------------

ESTABLISHED = ("origin_established", "context_established")
SDG_METHOD = (
    "SDG indicator 16.4.2 (proportion of seized, found or surrendered arms whose illicit origin or"
    " context has been traced or established by a competent authority), computed from this"
    " service's records for the country and year asked. Each trace request stands for one recovered"
    " firearm, counted in the year of its seizure date in the country where it was seized. Numerator:"
    " those whose request was closed with resolution origin_established or context_established."
    " Denominator: every such trace request (whatever its state, withdrawn ones included), plus the"
    " firearms the country reported recovering in joint operations that started in that year and"
    " for which no trace request names the operation (reported count minus that operation's trace"
    " requests from the country, per recovery type, never below zero). Proportion is numerator /"
    " denominator, or null when the denominator is 0. Arms recovered outside operations and never"
    " submitted for tracing are not known to the service and are not counted."
)


@dataclass(frozen=True)
class SdgPart:
    numerator: int
    denominator: int
    trace_requests: int
    reported_not_traced: int

    @property
    def proportion(self) -> float | None:
        return rate(self.numerator, self.denominator)


def sdg_parts(
    requests: Mapping[str, tuple[int, int]],
    reported: Iterable[Mapping[str, int]],
    requested_in_operations: Iterable[Mapping[str, int]],
    recovery_types: Sequence[str],
) -> dict[str, SdgPart]:
    """Per recovery type: `requests` maps it to (trace requests, established); `reported` holds one
    mapping per operation of the arms the country reported, and `requested_in_operations` the
    trace requests the country filed under the same operations, in the same order."""
    untraced = dict.fromkeys(recovery_types, 0)
    for reported_counts, requested_counts in zip(reported, requested_in_operations, strict=True):
        for kind in recovery_types:
            untraced[kind] += max(0, reported_counts.get(kind, 0) - requested_counts.get(kind, 0))
    parts = {}
    for kind in recovery_types:
        filed, established = requests.get(kind, (0, 0))
        parts[kind] = SdgPart(
            numerator=established,
            denominator=filed + untraced[kind],
            trace_requests=filed,
            reported_not_traced=untraced[kind],
        )
    return parts


# ---- CSV ------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: strings that it would read as a formula get a leading
    apostrophe (OWASP's advice on CSV injection). Numbers are written as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "" if isinstance(value, float) and math.isnan(value) else str(value)
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_document(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(cell) for cell in row])
    return buffer.getvalue()


STATS_CSV_HEADER = ("section", "key", "metric", "value")


def statistics_rows(stats: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The statistics flattened to (section, key, metric, value) rows, in the JSON's order."""
    rows: list[tuple[Any, ...]] = []
    for name, value in (stats.get("scope") or {}).items():
        rows.append(("scope", name, "", value))
    operation = stats.get("operation")
    if operation:
        for name in ("code", "name", "start", "end", "status"):
            rows.append(("operation", name, "", operation[name]))
        rows.append(("operation", "countries", "", " ".join(operation["countries"])))
        rows.append(("operation", "organisers", "", " ".join(operation["organisers"])))
        for kind, count in operation["recovered"].items():
            rows.append(("operation", "recovered", kind, count))
    for name in ("total_requests", "forwarded", "answered", "response_rate", "overdue"):
        rows.append(("total", name, "", stats[name]))
    for section in ("by_state", "by_outcome", "by_resolution", "by_priority"):
        for key, count in stats[section].items():
            rows.append((section, key, "requests", count))
    for section in ("time_to_first_forward_hours", "time_to_acknowledge_hours", "time_to_answer_hours"):
        for metric, value in stats[section].items():
            rows.append((section, "", metric, value))
    for row in stats["requested_countries"]:
        for metric, value in row.items():
            if metric != "country":
                rows.append(("requested_country", row["country"], metric, value))
    for week in stats["weekly"]:
        rows.append(("week", week["week"], "submitted", week["submitted"]))
        for state, count in week["by_state"].items():
            rows.append(("week", week["week"], state, count))
    return rows


def sdg_rows(sdg: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        ("indicator", "", "", sdg["indicator"]),
        ("indicator", "country", "", sdg["country"]),
        ("indicator", "year", "", sdg["year"]),
    ]
    for name in ("numerator", "denominator", "proportion"):
        rows.append(("total", name, "", sdg[name]))
    for kind, part in sdg["by_recovery_type"].items():
        for metric, value in part.items():
            rows.append(("recovery_type", kind, metric, value))
    rows.extend(("operation", code, "", "") for code in sdg["operations"])
    rows.append(("method", "", "", sdg["method"]))
    return rows
