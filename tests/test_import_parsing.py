"""Whatever bytes an import receives, parsing yields rows or row problems, or refuses the file as a
whole: never another exception (which the API would turn into a 500)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from tracing.markings.imports import ImportFormat, ImportRefused, RecordRow, RowProblem, csv_cells, parse

HEADER = "record_id,serial_number,make,model,year_of_manufacture,country_of_manufacture\n"
# Characters that matter to CSV and JSON: quotes, separators, line ends, escapes, controls.
TRICKY = st.sampled_from(list(',"\r\n\\{}[]:\x00\x0b\x1f\x7f\x85\u2028\ufeff?') + ["1", "A", "é", "Ж", "的"])
LINES = st.lists(st.one_of(TRICKY, st.characters()), max_size=120).map("".join)


def _outcome(data: bytes, fmt: ImportFormat, chunk: int) -> list[RecordRow | RowProblem] | None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    async def run() -> list[RecordRow | RowProblem] | None:
        try:
            return [item async for item in parse(chunks(), fmt)]
        except ImportRefused:
            return None

    return asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(
    body=LINES, fmt=st.sampled_from(list(ImportFormat)), chunk=st.integers(1, 64), with_header=st.booleans()
)
def test_any_text_is_rows_problems_or_a_refusal(
    body: str, fmt: ImportFormat, chunk: int, with_header: bool
) -> None:
    text = (HEADER if with_header and fmt is ImportFormat.csv else "") + body
    outcome = _outcome(text.encode("utf-8", "surrogatepass"), fmt, chunk)
    assert outcome is None or all(isinstance(item, RecordRow | RowProblem) for item in outcome)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(list(ImportFormat)))
def test_any_bytes_are_rows_problems_or_a_refusal(data: bytes, fmt: ImportFormat) -> None:
    outcome = _outcome(HEADER.encode() + data if fmt is ImportFormat.csv else data, fmt, 7)
    assert outcome is None or all(isinstance(item, RecordRow | RowProblem) for item in outcome)


@settings(max_examples=500, deadline=None)
@given(LINES)
def test_csv_cells_agree_with_the_csv_module(text: str) -> None:
    try:
        expected: list[str] | type[csv.Error] = next(csv.reader([text], strict=True))
    except csv.Error:
        expected = csv.Error
    except StopIteration:  # the csv module reads an empty text as no record at all
        return
    try:
        found: list[str] | type[csv.Error] = csv_cells(text)
    except csv.Error:
        found = csv.Error
    assert found == expected
