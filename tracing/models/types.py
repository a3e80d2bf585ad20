"""Column and field types shared by every model: UTC timestamps, country codes, clean text."""

from __future__ import annotations

import datetime as dt
import functools
from enum import StrEnum
from typing import Annotated, Any

import pycountry
import sqlalchemy as sa
from pydantic import AfterValidator, BeforeValidator, Field
from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

# Codes in wide use by police cooperation that ISO 3166-1 leaves user-assigned.
EXTRA_COUNTRY_CODES = frozenset({"XK"})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp that reads back aware on SQLite too (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def enum_type(enum: type[StrEnum], length: int = 32) -> sa.Enum:
    """Store an enum as its value in a VARCHAR (no native enum type) and read it back as the enum."""
    return sa.Enum(
        enum,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


def is_country_code(code: str) -> bool:
    return code in EXTRA_COUNTRY_CODES or (len(code) == 2 and _is_iso_alpha_2(code))


@functools.lru_cache(maxsize=1024)
def _is_iso_alpha_2(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _known_country(code: str) -> str:
    if not is_country_code(code):
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _clean_text(value: str) -> str:
    """Refuse text that no database can store faithfully: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (unpaired surrogate found)") from exc
    return value


CountryCode = Annotated[
    str,
    BeforeValidator(_upper),
    Field(min_length=2, max_length=2, examples=["NE"]),
    AfterValidator(_known_country),
]
Text = Annotated[str, AfterValidator(_clean_text)]


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A clean text field, stripped, with length bounds."""
    return Annotated[
        str,
        BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
        Field(min_length=min_length, max_length=max_length),
        AfterValidator(_clean_text),
    ]


ShortText = text(200, min_length=1)
Note = text(10_000)
LongText = text(50_000)
