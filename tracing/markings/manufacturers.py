"""The manufacturer reference table (package data `manufacturers.json`) and resolution of a make, as
marked or typed in any script, to its canonical manufacturer and country.

A make that is not in the table resolves to None: callers keep it as marked and flag it, never reject it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from tracing.markings.normalize import normalize_make

TABLE_RESOURCE = "manufacturers.json"
TABLE_VERSION = 1


class ManufacturerTableError(ValueError):
    """The packaged manufacturer table is malformed or two entries claim the same name."""


@dataclass(frozen=True)
class Manufacturer:
    canonical: str
    country: str  # ISO 3166-1 alpha-2
    aliases: tuple[str, ...]
    kinds: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name first, then the aliases: every name this manufacturer is known by."""
        return (self.canonical, *self.aliases)


@dataclass(frozen=True)
class ManufacturerMatch:
    canonical: str
    country: str
    matched_alias: str  # the name in the table whose key matched, as the table spells it


def parse_manufacturer_table(document: Mapping[str, Any]) -> tuple[Manufacturer, ...]:
    """Validate the decoded table document and turn its entries into Manufacturers."""
    if document.get("version") != TABLE_VERSION:
        raise ManufacturerTableError(f"unsupported manufacturer table version {document.get('version')!r}")
    entries = []
    for raw in document.get("manufacturers", []):
        canonical, country = raw.get("canonical"), raw.get("country")
        if not isinstance(canonical, str) or not canonical.strip():
            raise ManufacturerTableError(f"entry without a canonical name: {raw!r}")
        if not (isinstance(country, str) and len(country) == 2 and country.isascii() and country.isupper()):
            raise ManufacturerTableError(f"{canonical}: country must be ISO 3166-1 alpha-2, got {country!r}")
        entries.append(
            Manufacturer(
                canonical=canonical,
                country=country,
                aliases=tuple(raw.get("aliases", [])),
                kinds=tuple(raw.get("kinds", [])),
            )
        )
    return tuple(entries)


def build_alias_index(entries: Iterable[Manufacturer]) -> dict[str, tuple[Manufacturer, str]]:
    """Map normalize_make(name) -> (manufacturer, name) for every canonical name and alias.

    Two names of one manufacturer may share a key (the first wins); two manufacturers may not, since a
    make would then resolve to whichever came last.
    """
    index: dict[str, tuple[Manufacturer, str]] = {}
    for entry in entries:
        for name in entry.names:
            key = normalize_make(name)
            if not key:
                raise ManufacturerTableError(f"{entry.canonical}: name {name!r} normalises to nothing")
            claimed = index.get(key)
            if claimed is None:
                index[key] = (entry, name)
            elif claimed[0] is not entry:
                raise ManufacturerTableError(
                    f"{name!r} ({entry.canonical}) and {claimed[1]!r} ({claimed[0].canonical}) "
                    f"share the key {key!r}"
                )
    return index


@cache
def manufacturers() -> tuple[Manufacturer, ...]:
    """The packaged manufacturer table, read once."""
    text = resources.files(__package__).joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    return parse_manufacturer_table(json.loads(text))


@cache
def _alias_index() -> dict[str, tuple[Manufacturer, str]]:
    return build_alias_index(manufacturers())


def resolve_make(text: str) -> ManufacturerMatch | None:
    """The canonical manufacturer for a make as marked or typed, or None when the table does not know it."""
    found = _alias_index().get(normalize_make(text))
    if found is None:
        return None
    entry, name = found
    return ManufacturerMatch(canonical=entry.canonical, country=entry.country, matched_alias=name)
