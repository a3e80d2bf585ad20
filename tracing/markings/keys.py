"""Match keys for registry lookups, computed once when a record is imported and once per query.

A record is indexed by its normalised serial (exact matches), its confusable key (O/0, I/1... read-off
confusions) and the confusable key reversed (so a serial whose first characters are unreadable can
still be found by a range scan on its readable end). One-edit and partial readings are expanded at
lookup time instead: every key one edit away from the reading, or every way of filling its unreadable
characters, made of the characters a key can hold, is probed against the records' confusable keys.
Only the rare record whose key holds other characters (letters of scripts that are not folded to
Latin) also stores its one-character deletion neighbourhood, which the reading's own deletions probe.
Every lookup is then a set of equality or range probes on indexed columns, never a scan, and an
import writes one row per record.

A registry also keeps its key shape: for each key length, the characters seen at each position.
A probe key with a character never seen at its position in keys of its length cannot be any
record's key, so it is not probed: serials are mostly made to a pattern (letters here, digits
there), and an 8-character reading's 492 one-edit keys shrink to the few that fit one.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from tracing.markings.normalize import UNREADABLE, confusable_key, fold_confusables, normalize_serial

# Shorter keys have deletion neighbourhoods that match a large part of any registry.
MIN_FUZZY_LENGTH = 4
# A partial serial needs this many readable characters, and at least half of it readable.
MIN_READABLE_FOR_PARTIAL = 3
# Up to this many unreadable characters, each is filled with every character a key can hold: equality
# probes (29 for one, 841 for two). With more, a range scan on the longer readable end.
MAX_FILLED_UNREADABLE = 2
MAX_KEY_LENGTH = 64
# What a confusable key is made of (Latin letters that look like digits are folded away), so what an
# unreadable or mistyped character in a key may stand for. Keys with other scripts' letters are rare.
KEY_ALPHABET = "".join(sorted({fold_confusables(char) for char in string.ascii_uppercase + string.digits}))


def key_hash(text: str) -> int:
    """A stable signed 64-bit hash (a BIGINT on SQLite and PostgreSQL), for record identities."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def deletions(key: str) -> set[str]:
    """The key with any one character removed (its deletion neighbourhood, without the key itself)."""
    return {key[:position] + key[position + 1 :] for position in range(len(key))}


def is_enumerable(key: str) -> bool:
    """Whether a key is made of KEY_ALPHABET only, so that lookups reach it by enumerating the
    neighbours of a reading."""
    return not key.strip(KEY_ALPHABET)


def one_edit_keys(key: str) -> set[str]:
    """Every key one substitution, insertion, deletion or swap of neighbouring characters away from
    `key`, where a substituted or inserted character is one of KEY_ALPHABET (without the key itself).
    An enumerable key is within one edit of `key` exactly when it is in this set or equal to `key`."""
    found = deletions(key)
    for position in range(len(key) + 1):
        before, after = key[:position], key[position:]
        found.update(before + char + after for char in KEY_ALPHABET)
        if after:
            rest = after[1:]
            found.update(before + char + rest for char in KEY_ALPHABET)
            if rest:
                found.add(before + rest[0] + after[0] + rest[1:])
    found.discard(key)
    return found


def filled_keys(pattern: str) -> set[str]:
    """Every way of filling the unreadable characters of a pattern with characters of KEY_ALPHABET."""
    parts = pattern.split(UNREADABLE)
    filled = set()
    for fill in itertools.product(KEY_ALPHABET, repeat=len(parts) - 1):
        filled.add("".join(itertools.chain.from_iterable(zip(parts, (*fill, ""), strict=True))))
    return filled


class RecordKeys(NamedTuple):
    """What a registry record is indexed by. `deletions` is the stored deletion neighbourhood: empty
    for an enumerable key (lookups reach it through one_edit_keys and filled_keys of the reading).
    A named tuple: one is made for every imported record."""

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
    stored = len(confusable) >= MIN_FUZZY_LENGTH and UNREADABLE not in confusable
    neighbourhood = (
        frozenset(deletions(confusable)) if stored and not is_enumerable(confusable) else frozenset()
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
    # one-edit probes (readings without unreadable characters); `neighbours` below
    neighbour_deletions: frozenset[str] = frozenset()  # the key and its deletions, against stored ones
    neighbour_keys: frozenset[str] = frozenset()  # the key's deletions (a record that lost a character)
    # partial probes (readings with unreadable characters); `fills` below
    unreadable: int = 0
    gap_deletions: frozenset[str] = frozenset()  # stored deletions a partial reading can match
    prefix: str = ""  # readable characters before the first unreadable one
    suffix_reversed: str = ""  # readable characters after the last unreadable one, reversed

    @property
    def is_partial(self) -> bool:
        return self.unreadable > 0

    @property
    def is_fuzzy(self) -> bool:
        """A reading without unreadable characters, long enough to look for one-edit neighbours."""
        return self.searchable and not self.is_partial and len(self.confusable) >= MIN_FUZZY_LENGTH

    @property
    def is_filled(self) -> bool:
        """A partial reading whose unreadable characters are few enough to probe every filling."""
        return self.searchable and 0 < self.unreadable <= MAX_FILLED_UNREADABLE

    @functools.cached_property
    def neighbours(self) -> frozenset[str]:
        """one_edit_keys of the reading, against the records' own keys (made when first used: a
        registry's key shape makes far fewer, see fitting_neighbours)."""
        return frozenset(one_edit_keys(self.confusable)) if self.is_fuzzy else frozenset()

    @functools.cached_property
    def fills(self) -> frozenset[str]:
        """filled_keys of the reading, against the records' own keys (made when first used)."""
        return frozenset(filled_keys(self.confusable)) if self.is_filled else frozenset()

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
    filled = unreadable <= MAX_FILLED_UNREADABLE
    return LookupPlan(
        normalized,
        confusable,
        True,
        unreadable=unreadable,
        gap_deletions=(
            _gap_deletions(confusable) if filled and len(confusable) >= MIN_FUZZY_LENGTH else frozenset()
        ),
        prefix=confusable[:first],
        suffix_reversed=confusable[last + 1 :][::-1],
    )


def _gap_deletions(pattern: str) -> frozenset[str]:
    """The last unreadable character deleted, every other one filled with each key character."""
    last = pattern.rindex(UNREADABLE)
    return frozenset(filled_keys(pattern[:last] + pattern[last + 1 :]))


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


Shape = dict[int, tuple[str, ...]]
"""Key length -> the characters seen at each position of keys of that length (sorted, as text)."""


def key_shape(keys: Iterable[str]) -> Shape:
    by_length: dict[int, list[str]] = {}
    for key in keys:
        if key:
            by_length.setdefault(len(key), []).append(key)
    return {
        length: tuple("".join(sorted(set(column))) for column in zip(*group, strict=True))
        for length, group in by_length.items()
    }


def merge_shapes(first: Shape, second: Shape) -> Shape:
    merged = dict(first)
    for length, columns in second.items():
        known = merged.get(length)
        merged[length] = (
            columns
            if known is None
            else tuple("".join(sorted(set(a) | set(b))) for a, b in zip(known, columns, strict=True))
        )
    return merged


def dump_shape(shape: Shape) -> str:
    return json.dumps(
        {str(length): list(columns) for length, columns in sorted(shape.items())},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def load_shape(text: str) -> Shape:
    return {int(length): tuple(columns) for length, columns in json.loads(text).items()}


@functools.lru_cache(maxsize=256)
def shape_admits(text: str) -> Callable[[str], bool]:
    """Whether a key fits a stored shape: every character seen at its position in keys of its length."""
    patterns = {
        length: re.compile("".join(f"[{''.join(re.escape(char) for char in column)}]" for column in columns))
        for length, columns in load_shape(text).items()
    }

    def admits(key: str) -> bool:
        pattern = patterns.get(len(key))
        return pattern is not None and pattern.fullmatch(key) is not None

    return admits


@functools.lru_cache(maxsize=256)
def _shape_columns(text: str) -> dict[int, tuple[tuple[frozenset[str], str], ...]]:
    """A stored shape as, per length and position: every character seen, and those of KEY_ALPHABET."""
    alphabet = set(KEY_ALPHABET)
    return {
        length: tuple((frozenset(column), "".join(sorted(alphabet & set(column)))) for column in columns)
        for length, columns in load_shape(text).items()
    }


def fitting_neighbours(key: str, shape: str) -> set[str]:
    """The reading's own key and its one_edit_keys (for a key long enough to look for neighbours),
    only those a stored shape admits; made directly from the shape's characters, not by filtering."""
    columns = _shape_columns(shape)
    length = len(key)
    found: set[str] = set()
    same = columns.get(length)
    if same:
        fits = [char in seen for char, (seen, _) in zip(key, same, strict=True)]
        if all(fits):
            found.add(key)
        if length >= MIN_FUZZY_LENGTH:
            before = list(itertools.accumulate(fits, lambda a, b: a and b, initial=True))  # key[:i] fits
            after = list(itertools.accumulate(reversed(fits), lambda a, b: a and b, initial=True))[::-1]
            for i in range(length):
                if before[i] and after[i + 1]:
                    found.update(key[:i] + char + key[i + 1 :] for char in same[i][1] if char != key[i])
            for i in range(length - 1):
                if key[i] != key[i + 1] and before[i] and after[i + 2]:
                    if key[i + 1] in same[i][0] and key[i] in same[i + 1][0]:
                        found.add(key[:i] + key[i + 1] + key[i] + key[i + 2 :])
    if length < MIN_FUZZY_LENGTH:
        return found
    longer = columns.get(length + 1)
    if longer:
        left = [char in seen for char, (seen, _) in zip(key, longer, strict=False)]
        right = [char in seen for char, (seen, _) in zip(key, longer[1:], strict=True)]
        before = list(itertools.accumulate(left, lambda a, b: a and b, initial=True))
        after = list(itertools.accumulate(reversed(right), lambda a, b: a and b, initial=True))[::-1]
        for i in range(length + 1):
            if before[i] and after[i]:
                found.update(key[:i] + char + key[i:] for char in longer[i][1])
    shorter = columns.get(length - 1)
    if shorter:
        for i in range(length):
            dropped = key[:i] + key[i + 1 :]
            if all(char in seen for char, (seen, _) in zip(dropped, shorter, strict=True)):
                found.add(dropped)
    return found


def fitting_fills(pattern: str, shape: str) -> set[str]:
    """filled_keys of a partial reading, only those a stored shape admits: each unreadable
    character is filled with the key characters seen at its position, if the readable ones fit."""
    same = _shape_columns(shape).get(len(pattern))
    if not same:
        return set()
    choices = []
    for char, (seen, alphabet) in zip(pattern, same, strict=True):
        if char == UNREADABLE:
            choices.append(alphabet)
        elif char in seen:
            choices.append(char)
        else:
            return set()
    return {"".join(chars) for chars in itertools.product(*choices)}
