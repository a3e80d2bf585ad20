"""The pure helpers behind the statistics: quantiles, roll-ups, weekly series, SDG parts, CSV."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracing.stats import figures

durations = st.lists(st.floats(min_value=0, max_value=1e7, allow_nan=False), min_size=1, max_size=200)
probabilities = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])


@given(durations, probabilities)
def test_quantile_needs_only_the_ranks_it_names(values: list[float], p: float) -> None:
    ordered = sorted(values)
    lower, upper = figures.quantile_ranks(len(ordered), p)
    only_those = {rank: ordered[rank - 1] for rank in (lower, upper)}
    assert figures.quantile_from_ranks(len(ordered), only_those, p) == figures.quantile(values, p)


@given(durations)
def test_median_is_the_statistics_median(values: list[float]) -> None:
    assert figures.quantile(values, 0.5) == pytest.approx(statistics.median(values), rel=1e-12, abs=1e-9)


@given(durations, probabilities, probabilities)
def test_quantiles_lie_within_the_data_and_grow_with_p(values: list[float], p: float, q: float) -> None:
    low, high = sorted((p, q))
    assert min(values) <= figures.quantile(values, low) <= figures.quantile(values, high) <= max(values)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=100))
def test_p90_matches_statistics_inclusive_quantiles(values: list[float]) -> None:
    expected = statistics.quantiles(values, n=10, method="inclusive")[8]
    assert figures.quantile(values, 0.9) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_quantile_of_nothing_is_none_and_rate_of_nothing_is_none() -> None:
    assert figures.quantile([], 0.5) is None
    assert figures.rate(0, 0) is None
    assert figures.rate(2, 3) == 0.6667


days = st.dates(dt.date(2000, 1, 1), dt.date(2019, 12, 31))  # within MAX_FILLED_WEEKS


@given(st.lists(st.tuples(days, st.sampled_from(["submitted", "closed"]), st.integers(1, 50)), max_size=40))
def test_weekly_series_keeps_every_request_and_has_no_gaps(rows: list) -> None:
    series = figures.weekly_series(rows, ["submitted", "closed"])
    assert sum(week["submitted"] for week in series) == sum(count for _, _, count in rows)
    assert all(week["week"].weekday() == 0 for week in series)
    assert all(
        b["week"] - a["week"] == dt.timedelta(weeks=1) for a, b in zip(series, series[1:], strict=False)
    )
    assert all(week["submitted"] == sum(week["by_state"].values()) for week in series)


def test_weekly_series_of_a_very_long_span_lists_only_weeks_with_requests() -> None:
    rows = [(dt.date(1990, 1, 3), "closed", 1), (dt.date(2025, 1, 3), "closed", 2)]
    assert [w["week"] for w in figures.weekly_series(rows, ["closed"])] == [
        dt.date(1990, 1, 1),
        dt.date(2024, 12, 30),
    ]


counts = st.integers(min_value=0, max_value=1000)
kinds = ["seized", "found", "surrendered"]


@given(
    st.dictionaries(st.sampled_from(kinds), st.tuples(counts, counts).map(lambda t: (max(t), min(t)))),
    st.lists(st.tuples(st.fixed_dictionaries({k: counts for k in kinds}),
                       st.fixed_dictionaries({k: counts for k in kinds})), max_size=5),
)  # fmt: skip
def test_sdg_parts_never_exceed_one_and_count_every_request(requests: dict, operations: list) -> None:
    parts = figures.sdg_parts(requests, [r for r, _ in operations], [f for _, f in operations], kinds)
    for kind, part in parts.items():
        filed, established = requests.get(kind, (0, 0))
        assert part.numerator == established <= filed <= part.denominator
        assert part.denominator == filed + part.reported_not_traced
        assert part.proportion is None or 0 <= part.proportion <= 1


def test_sdg_untraced_remainder_is_reported_minus_requested_never_negative() -> None:
    parts = figures.sdg_parts(
        {"seized": (10, 3)},
        [{"seized": 22, "found": 1}, {"seized": 2}],
        [{"seized": 4, "found": 3}, {"seized": 5}],
        kinds,
    )
    assert (parts["seized"].reported_not_traced, parts["seized"].denominator) == (18, 28)
    assert parts["found"].reported_not_traced == 0


@given(st.text())
def test_no_csv_cell_starts_like_a_formula(text: str) -> None:
    cell = figures.csv_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell.removeprefix("'") == text or cell == text


def test_csv_cells_of_numbers_dates_and_nothing() -> None:
    assert [figures.csv_cell(v) for v in (0, 2.5, None, True, dt.date(2017, 11, 20))] == [
        "0", "2.5", "", "true", "2017-11-20",
    ]  # fmt: skip
    assert figures.csv_cell("-12") == "'-12"
