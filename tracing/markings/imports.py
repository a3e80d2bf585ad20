"""Parsing registry record files as they stream in: CSV with a header row, or JSON lines.

Bytes arrive in chunks of any size; records are yielded one by one, each either a valid RecordRow or
a RowProblem naming the line and the field. A bad row never stops the file: only a file that
cannot be read at all (no header, missing required columns, an unsupported encoding) raises
ImportRefused. Memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import re
import warnings
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from tracing.markings.keys import MAX_KEY_LENGTH
from tracing.markings.normalize import UNREADABLE, normalize_serial
from tracing.models.trace_request import FirearmKind
from tracing.models.types import is_country_code

REQUIRED_COLUMNS = ("serial_number", "make")
KNOWN_COLUMNS = (
    "record_id", "serial_number", "make", "model", "calibre", "kind", "country_of_manufacture",
    "year_of_manufacture",
)  # fmt: skip
MAX_LINE_BYTES = 64 * 1024
MAX_DETAILS = 20
_LIMITS = {"record_id": 128, "serial_number": MAX_KEY_LENGTH, "make": 200, "model": 200, "calibre": 64}


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class ImportRefused(ValueError):
    """The file as a whole cannot be imported (nothing was written)."""


class RecordRow(NamedTuple):
    """A valid record. A named tuple: one is made per imported record, and a tuple of text and
    numbers is one the garbage collector stops tracking (a class instance is walked at every pass
    while the import holds it)."""

    line: int
    serial_number: str
    make: str
    record_ref: str | None
    model: str | None
    calibre: str | None
    kind: str | None
    country_of_manufacture: str | None
    year_of_manufacture: int | None
    details: dict[str, Any]
    normalized: str  # normalize_serial(serial_number), computed once while validating


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str | None
    message: str


def check_encoding(name: str) -> str:
    """The codec name for a supported encoding: UTF-8 or an ASCII-compatible text encoding (Latin-1,
    Windows-1251, KOI8-R, GB18030, Shift JIS...), so lines can be split on the newline byte before
    decoding. Anything else (unknown names, UTF-16/32, escape and bytes-to-bytes codecs, codecs that
    refuse every input) is refused with ImportRefused."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError) as exc:  # ValueError: a name with NUL in it
        raise ImportRefused(f"unknown encoding {name!r}") from exc
    if info.name == "utf-8":
        return info.name
    if not _ascii_compatible(info.name):
        raise ImportRefused(
            f"encoding {name!r} is not supported; send UTF-8 or an ASCII-compatible encoding"
            " such as latin-1, cp1251 or gb18030"
        )
    return info.name


_ASCII = bytes(range(128))


def _ascii_compatible(codec: str) -> bool:
    """ASCII bytes decode to themselves (no escapes), and any other byte alone decodes to one character
    or fails: true of single-byte code pages and of the multi-byte CJK ones, false of UTF-16/32."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # escape codecs warn about the escapes in the probe
            return _probe(codec)
    except (UnicodeError, ValueError, TypeError, LookupError):
        return False


def _probe(codec: str) -> bool:
    if not getattr(codecs.lookup(codec), "_is_text_encoding", True):
        return False
    if _ASCII.decode(codec) != _ASCII.decode("ascii") or b"\\u0041".decode(codec) != "\\u0041":
        return False
    return all(len(bytes([byte]).decode(codec, "replace")) == 1 for byte in range(128, 256))


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """Physical lines with their 1-based numbers. A line longer than MAX_LINE_BYTES is yielded cut
    short (one byte over the limit, so it is reported) and the rest of it is skipped."""
    pending = b""
    number = 0
    skipping = False
    async for chunk in chunks:
        *complete, rest = (pending + chunk).split(b"\n")
        for line in complete:
            if skipping:
                skipping = False  # the end of an over-long line
                continue
            number += 1
            yield number, line
        pending = rest
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                number += 1
                yield number, pending[: MAX_LINE_BYTES + 1]
            skipping, pending = True, b""
    if pending and not skipping:
        yield number + 1, pending


def _decode(raw: bytes, encoding: str, number: int) -> str | RowProblem:
    if number == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    if number == 1 and raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ImportRefused("the file is UTF-16; save it as UTF-8")
    if len(raw) > MAX_LINE_BYTES:
        return RowProblem(number, None, f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        return raw.decode(encoding).removesuffix("\r")
    except UnicodeDecodeError as exc:
        return RowProblem(
            number,
            None,
            f"not valid {encoding} (byte 0x{raw[exc.start]:02X} at position {exc.start + 1});"
            " send UTF-8, or name the file's encoding",
        )


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _bad_characters(value: str) -> str | None:
    found = _CONTROL.search(value)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "contains an unpaired surrogate"
    return f"contains the control character U+{ord(char):04X}"


# Any year before the one this process started in is in the past; later ones are checked against today.
_PAST_YEARS_BEFORE = dt.date.today().year


def _is_year(year: int) -> bool:
    return 1800 <= year and (year < _PAST_YEARS_BEFORE or year <= dt.date.today().year)


_KNOWN = frozenset(KNOWN_COLUMNS)
_COLUMN_LIMITS = tuple((name, _LIMITS.get(name, 0)) for name in KNOWN_COLUMNS)
_KINDS = frozenset(FirearmKind.__members__)


def validate(line: int, values: dict[str, Any], *, suspect: bool | None = None) -> RecordRow | RowProblem:
    """Check one record's fields; unknown fields are kept as details. `suspect` says whether the row
    may hold a control character or an unpaired surrogate (a CSV row knows from its line's text);
    only a suspect row is checked field by field. Runs once per imported record: kept tight."""
    if suspect is None:
        suspect = _CONTROL.search("\n".join(v for v in values.values() if isinstance(v, str))) is not None
    clean: list[str | None] = []
    for name, limit in _COLUMN_LIMITS:
        value = values.get(name)
        if value is None:
            clean.append(None)
            continue
        if not isinstance(value, str):
            if name != "year_of_manufacture" or not isinstance(value, int) or isinstance(value, bool):
                return RowProblem(line, name, f"must be text, not {type(value).__name__}")
            value = str(value)
        if suspect and (problem := _bad_characters(value)):
            return RowProblem(line, name, problem)
        value = value.strip()
        if limit and len(value) > limit:
            return RowProblem(line, name, f"longer than {limit} characters")
        clean.append(value or None)
    record_ref, serial, make, model, calibre, kind, country, year = clean
    if not serial:
        return RowProblem(line, "serial_number", "is empty")
    normalized = normalize_serial(serial)
    if not normalized.strip(UNREADABLE):
        return RowProblem(line, "serial_number", "has no readable characters")
    if make is None and "make" not in values:
        return RowProblem(line, "make", "is missing (give an empty make when it is unknown)")
    if kind is not None and kind not in _KINDS:
        return RowProblem(line, "kind", f"must be one of {', '.join(FirearmKind)}")
    if country is not None:
        country = country.upper()
        if not is_country_code(country):
            return RowProblem(
                line, "country_of_manufacture", f"{country!r} is not an ISO 3166-1 alpha-2 code"
            )
    if year is not None:
        if not year.isdigit() or not _is_year(int(year)):
            return RowProblem(line, "year_of_manufacture", f"{year!r} is not a year between 1800 and now")
        year = int(year)
    details = {}
    if values.keys() - _KNOWN:
        details = {k: v for k, v in values.items() if k not in _KNOWN and v not in (None, "")}
    if details and (len(details) > MAX_DETAILS or len(json.dumps(details, ensure_ascii=False)) > 4000):
        return RowProblem(line, None, f"more than {MAX_DETAILS} extra fields or 4000 characters of them")
    for name, value in details.items() if suspect else ():
        if isinstance(value, str) and (problem := _bad_characters(value)):
            return RowProblem(line, name, problem)
    return RecordRow(
        line, serial, make or "", record_ref, model, calibre, kind, country, year, details, normalized
    )


async def parse(
    chunks: AsyncIterable[bytes], fmt: ImportFormat, *, encoding: str = "utf-8"
) -> AsyncIterator[RecordRow | RowProblem]:
    encoding = check_encoding(encoding)
    lines = _lines(chunks)
    if fmt is ImportFormat.jsonl:
        async for number, raw in lines:
            text = _decode(raw, encoding, number)
            if isinstance(text, RowProblem):
                yield text
            elif text.strip():
                yield _json_row(number, text)
        return
    async for row in _csv_rows(lines, encoding):
        yield row


def _json_row(number: int, text: str) -> RecordRow | RowProblem:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return RowProblem(number, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return RowProblem(number, None, "not valid JSON: nested too deeply")
    if not isinstance(document, dict):
        return RowProblem(number, None, "each line must be a JSON object")
    return validate(number, document)


async def _csv_rows(
    lines: AsyncIterator[tuple[int, bytes]], encoding: str
) -> AsyncIterator[RecordRow | RowProblem]:
    header: list[str] | None = None
    record_start, parts = 0, []
    async for number, raw in lines:
        text = _decode(raw, encoding, number)
        if header is None:
            if isinstance(text, RowProblem):
                raise ImportRefused(f"the header line cannot be read: {text.message}")
            if not text.strip():
                continue
            try:
                header = [name.strip().lower() for name in next(csv.reader([text], strict=True))]
            except csv.Error as exc:  # a bare carriage return or a stray quote, say
                raise ImportRefused(f"the header line is not valid CSV: {exc}") from exc
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ImportRefused(
                    f"the CSV header lacks the column(s) {', '.join(missing)}; found: {', '.join(header)}"
                )
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                raise ImportRefused(f"the CSV header names column(s) twice: {', '.join(duplicated)}")
            continue
        if isinstance(text, RowProblem):
            record_start, parts = 0, []
            yield text
            continue
        if not parts:
            record_start = number
        parts.append(text)
        joined = "\n".join(parts)
        # A quoted field may hold a line break: the record ends once its quotes balance.
        if joined.count('"') % 2 == 1 and len(joined) <= MAX_LINE_BYTES:
            continue
        parts = []
        if not joined.strip():
            continue
        yield _csv_row(record_start, joined, header)
    if parts:
        yield RowProblem(record_start, None, "a quoted field is not closed before the end of the file")
    if header is None:
        raise ImportRefused("the file is empty: a CSV file needs a header row")


_CSV_SPECIAL = re.compile('["\r\n\x00]')


def csv_cells(text: str) -> list[str]:
    """The fields of one CSV record (raises csv.Error). A record without quotes, line ends or NUL
    characters is split on commas, as the csv module would: most registry rows take that path."""
    if text and not _CSV_SPECIAL.search(text):
        return text.split(",")
    return next(csv.reader([text], strict=True))


def _csv_row(number: int, text: str, header: list[str]) -> RecordRow | RowProblem:
    try:
        cells = csv_cells(text)
    except csv.Error as exc:
        return RowProblem(number, None, f"not valid CSV: {exc}")
    if len(cells) != len(header):
        return RowProblem(number, None, f"expected {len(header)} fields as in the header, found {len(cells)}")
    return validate(number, dict(zip(header, cells, strict=True)), suspect=_CONTROL.search(text) is not None)
