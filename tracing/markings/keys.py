"""Match keys for registry lookups, computed once when a record is imported and once per query.

A record is indexed by its normalised serial (exact matches), its confusable key (O/0, I/1... read-off
confusions), the confusable key reversed (so a serial whose first characters are unreadable can still
be found by a range scan on its readable end), and the one-character deletion neighbourhood of the
confusable key (one-edit matches and single unreadable characters). Every
lookup is then a handful of equality or range probes on indexed columns, never a scan.
"""

from __future__ import annotations

import hashlib
import itertools
import string
from dataclasses import dataclass

from tracing.markings.normalize import UNREADABLE, confusable_key, fold_confusables, normalize_serial

# Shorter keys have deletion neighbourhoods that match a large part of any registry.
MIN_FUZZY_LENGTH = 4
# A partial serial needs this many readable characters, and at least half of it readable.
MIN_READABLE_FOR_PARTIAL = 3
# Up to this many unreadable characters, all but one are filled with every character a key can hold
# and the last one is a stored deletion: equality probes (29 for two, 841 for three). With more, a
# range scan on the longer readable end.
MAX_ENUMERATED_UNREADABLE = 3
MAX_KEY_LENGTH = 64
# What a confusable key is made of (Latin letters that look like digits are folded away), so what an
# unreadable character in a key may stand for. Keys with other scripts' letters are rare.
KEY_ALPHABET = "".join(sorted({fold_confusables(char) for char in string.ascii_uppercase + string.digits}))


def key_hash(text: str) -> int:
    """A stable signed 64-bit hash (a BIGINT on SQLite and PostgreSQL), for record identities."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def deletions(key: str) -> set[str]:
    """The key with any one character removed (its deletion neighbourhood, without the key itself)."""
    return {key[:position] + key[position + 1 :] for position in range(len(key))}


@dataclass(frozen=True)
class RecordKeys:
    """What a registry record is indexed by."""

    normalized: str
    confusable: str
    reversed: str
    length: int
    deletions: frozenset[str]


def record_keys(serial_number: str, *, normalized: str | None = None) -> RecordKeys:
    """The keys of a serial (pass `normalized` when normalize_serial was already applied)."""
    if normalized is None:
        normalized = normalize_serial(serial_number)
    normalized = normalized[:MAX_KEY_LENGTH]
    confusable = fold_confusables(normalized)
    neighbourhood = (
        frozenset(deletions(confusable))
        if len(confusable) >= MIN_FUZZY_LENGTH and UNREADABLE not in confusable
        else frozenset()
    )
    return RecordKeys(normalized, confusable, confusable[::-1], len(confusable), neighbourhood)


@dataclass(frozen=True)
class LookupPlan:
    """The index probes that find every record a reading could match.

    `searchable` is False, with a `reason`, when the reading has too few readable characters to
    search without returning a large part of the registry.
    """

    normalized: str
    confusable: str
    searchable: bool
    reason: str | None = None
    # one-edit probes (readings without unreadable characters)
    neighbour_deletions: frozenset[str] = frozenset()  # the key and its deletions, against stored ones
    neighbour_keys: frozenset[str] = frozenset()  # the key's deletions, against the records' own keys
    # partial probes (readings with unreadable characters)
    unreadable: int = 0
    gap_deletions: frozenset[str] = frozenset()  # stored deletions a partial reading can match
    prefix: str = ""  # readable characters before the first unreadable one
    suffix_reversed: str = ""  # readable characters after the last unreadable one, reversed

    @property
    def is_partial(self) -> bool:
        return self.unreadable > 0

    @property
    def anchor(self) -> tuple[str, str]:
        """For two or more unreadable characters: the longer readable end to range-scan from, as
        ("prefix" | "suffix", the readable characters in index order)."""
        if len(self.suffix_reversed) > len(self.prefix):
            return "suffix", self.suffix_reversed
        return "prefix", self.prefix


def lookup_plan(serial_number: str) -> LookupPlan:
    normalized = normalize_serial(serial_number)[:MAX_KEY_LENGTH]
    confusable = confusable_key(normalized)
    if not confusable.strip(UNREADABLE):
        return LookupPlan(normalized, confusable, False, "the serial has no readable characters")
    unreadable = confusable.count(UNREADABLE)
    if unreadable == 0:
        fuzzy = len(confusable) >= MIN_FUZZY_LENGTH
        return LookupPlan(
            normalized,
            confusable,
            True,
            neighbour_deletions=frozenset({confusable, *deletions(confusable)}) if fuzzy else frozenset(),
            neighbour_keys=frozenset(deletions(confusable)) if fuzzy else frozenset(),
        )
    readable = len(confusable) - unreadable
    if readable < MIN_READABLE_FOR_PARTIAL or readable * 2 < len(confusable):
        return LookupPlan(
            normalized,
            confusable,
            False,
            f"only {readable} of {len(confusable)} characters are readable; too few to search",
            unreadable=unreadable,
        )
    first, last = confusable.index(UNREADABLE), confusable.rindex(UNREADABLE)
    gap_deletions = (
        _gap_deletions(confusable)
        if unreadable <= MAX_ENUMERATED_UNREADABLE and len(confusable) >= MIN_FUZZY_LENGTH
        else frozenset()
    )
    return LookupPlan(
        normalized,
        confusable,
        True,
        unreadable=unreadable,
        gap_deletions=gap_deletions,
        prefix=confusable[:first],
        suffix_reversed=confusable[last + 1 :][::-1],
    )


def _gap_deletions(pattern: str) -> frozenset[str]:
    """The last unreadable character deleted, every other one filled with each key character."""
    positions = [i for i, char in enumerate(pattern) if char == UNREADABLE]
    last = positions[-1]
    base = list(pattern[:last] + pattern[last + 1 :])
    filled = set()
    for fill in itertools.product(KEY_ALPHABET, repeat=len(positions) - 1):
        for position, char in zip(positions[:-1], fill, strict=True):
            base[position] = char
        filled.add("".join(base))
    return frozenset(filled)


def within_one_edit(first: str, second: str) -> bool:
    """Whether two keys differ by at most one substitution, insertion, deletion or swap of two
    neighbouring characters."""
    if first == second:
        return True
    if abs(len(first) - len(second)) > 1:
        return False
    if len(first) == len(second):
        differing = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        if len(differing) == 1:
            return True
        return (
            len(differing) == 2
            and differing[1] == differing[0] + 1
            and first[differing[0]] == second[differing[1]]
            and first[differing[1]] == second[differing[0]]
        )
    shorter, longer = sorted((first, second), key=len)
    position = next(
        (i for i, (a, b) in enumerate(zip(shorter, longer, strict=False)) if a != b), len(shorter)
    )
    return shorter[position:] == longer[position + 1 :]
