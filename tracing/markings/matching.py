"""Classifying and ranking registry records against the markings read off a firearm (pure).

Each candidate a registry returns is compared with the reading: how the serial agrees (exact,
confusable, one edit apart, or a partial serial whose unreadable characters are wildcards), whether
make, model and calibre agree, and whether the record comes from a lost/stolen list. The result is a
match class with a score in [0, 1]; candidates that do not match are dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from tracing.markings.keys import MAX_KEY_LENGTH, LookupPlan, lookup_plan, within_one_edit
from tracing.markings.manufacturers import resolve_make
from tracing.markings.normalize import (
    UNREADABLE,
    confusable_key,
    normalize_make,
    normalize_serial,
    serial_pattern_matches,
)


class MatchClass(StrEnum):
    exact = "exact"
    confusable = "confusable"
    fuzzy = "fuzzy"
    partial = "partial"
    make_conflict = "make_conflict"
    reported_lost_or_stolen = "reported_lost_or_stolen"


class SerialAgreement(StrEnum):
    exact = "exact"
    confusable = "confusable"
    fuzzy = "fuzzy"
    partial = "partial"


class Agreement(StrEnum):
    same = "same"
    different = "different"
    unknown = "unknown"  # missing on one side, or a make the manufacturer table does not know


MakeResolver = Callable[[str], str | None]
"""A make as marked -> its canonical manufacturer, or None when unknown."""


def default_resolver(make: str) -> str | None:
    found = resolve_make(make)
    return found.canonical if found else None


@dataclass(frozen=True)
class Reading:
    """The markings of a firearm as read by an investigator."""

    serial_number: str
    make: str = ""
    model: str | None = None
    calibre: str | None = None
    other_names: tuple[str, ...] = ()
    """Other markings that may name a maker: an imported firearm often carries the importer's name
    as well as the manufacturer's (import marks, other markings)."""


@dataclass(frozen=True)
class Candidate:
    """A registry record as returned by a lookup."""

    ref: str
    serial_number: str
    make: str = ""
    model: str | None = None
    calibre: str | None = None
    details: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Match:
    match_class: MatchClass
    serial: SerialAgreement
    score: float
    candidate: Candidate
    make: Agreement
    model: Agreement
    calibre: Agreement
    warnings: tuple[str, ...] = ()

    @property
    def agreeing(self) -> int:
        return sum(a is Agreement.same for a in (self.make, self.model, self.calibre))


_SERIAL_SCORE = {
    SerialAgreement.exact: 1.0,
    SerialAgreement.confusable: 0.95,
    SerialAgreement.partial: 0.9,
    SerialAgreement.fuzzy: 0.75,
}


def serial_agreement(plan: LookupPlan, serial_number: str) -> SerialAgreement | None:
    normalized = normalize_serial(serial_number)[:MAX_KEY_LENGTH]
    confusable = confusable_key(normalized)
    if not plan.searchable or not normalized:
        return None
    if plan.is_partial:
        if serial_pattern_matches(plan.confusable, confusable):
            return SerialAgreement.partial
        return None
    if normalized == plan.normalized:
        return SerialAgreement.exact
    if confusable == plan.confusable:
        return SerialAgreement.confusable
    if plan.neighbour_keys and UNREADABLE not in confusable and within_one_edit(plan.confusable, confusable):
        return SerialAgreement.fuzzy
    return None


def _serial_score(plan: LookupPlan, agreement: SerialAgreement, serial_number: str) -> float:
    score = _SERIAL_SCORE[agreement]
    if agreement is SerialAgreement.confusable:
        other = normalize_serial(serial_number)
        confusions = sum(a != b for a, b in zip(plan.normalized, other, strict=False))
        score -= 0.01 * min(confusions, 5)
    elif agreement is SerialAgreement.partial:
        readable = 1 - plan.unreadable / max(len(plan.confusable), 1)
        score = 0.5 + 0.4 * readable
    return score


def make_agreement(reading: str, recorded: str, resolve: MakeResolver) -> Agreement:
    if not normalize_make(reading) or not normalize_make(recorded):
        return Agreement.unknown
    if normalize_make(reading) == normalize_make(recorded):
        return Agreement.same
    ours, theirs = resolve(reading), resolve(recorded)
    if ours is None or theirs is None:
        return Agreement.unknown
    return Agreement.same if ours == theirs else Agreement.different


def _leading_names(marking: str) -> list[str]:
    """A marking's words, then ever fewer of its leading words: "CAI GEORGIA VT" may name "CAI"."""
    words = normalize_make(marking).split(" ")[:6]
    return [" ".join(words[:end]) for end in range(len(words), 0, -1)]


def attribute_key(text: str | None) -> str:
    """Model or calibre as a comparable key: "7.62×39 mm" and "7.62x39mm" agree."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("×", "x")
    key = "".join(char for char in folded if char.isalnum())
    return key.removesuffix("mm") if key[:-2].replace("x", "").isdigit() else key


def attribute_agreement(reading: str | None, recorded: str | None) -> Agreement:
    ours, theirs = attribute_key(reading), attribute_key(recorded)
    if not ours or not theirs:
        return Agreement.unknown
    # "AK" read off a receiver agrees with "AKM" in a registry: one is the other's beginning.
    return Agreement.same if ours.startswith(theirs) or theirs.startswith(ours) else Agreement.different


def classify(
    plan: LookupPlan,
    reading: Reading,
    candidate: Candidate,
    *,
    lost_or_stolen: bool = False,
    resolve: MakeResolver = default_resolver,
) -> Match | None:
    """How a candidate record matches a reading, or None when it does not."""
    serial = serial_agreement(plan, candidate.serial_number)
    if serial is None:
        return None
    make = make_agreement(reading.make, candidate.make, resolve)
    if make is not Agreement.same and any(
        make_agreement(name, candidate.make, resolve) is Agreement.same
        for marking in reading.other_names
        for name in _leading_names(marking)
    ):
        make = Agreement.same  # the record names the other maker marked on the firearm
    model = attribute_agreement(reading.model, candidate.model)
    calibre = attribute_agreement(reading.calibre, candidate.calibre)
    disagreeing = [
        name
        for name, agreement in (("make", make), ("model", model), ("calibre", calibre))
        if agreement is Agreement.different
    ]
    if serial is SerialAgreement.fuzzy and disagreeing:
        return None  # one edit away and a different firearm: not worth reporting
    score = _serial_score(plan, serial, candidate.serial_number)
    score *= 0.9 if make is Agreement.unknown else 1.0
    warnings = []
    match_class = MatchClass(serial.value)
    if disagreeing:
        match_class = MatchClass.make_conflict
        score *= 0.5
        warnings.append(
            f"serial agrees but {', '.join(disagreeing)} disagree: check for a false or altered marking"
        )
    if make is Agreement.unknown and normalize_make(reading.make) and resolve(reading.make) is None:
        warnings.append(f"make {reading.make!r} is not in the manufacturer table")
    if lost_or_stolen:
        match_class = MatchClass.reported_lost_or_stolen
        warnings.insert(0, "reported lost or stolen")
    return Match(
        match_class=match_class,
        serial=serial,
        score=round(score, 4),
        candidate=candidate,
        make=make,
        model=model,
        calibre=calibre,
        warnings=tuple(warnings),
    )


def rank(matches: Iterable[Match]) -> list[Match]:
    """Best first: score, then how many of make, model and calibre agree; ties by record reference."""
    return sorted(matches, key=lambda m: (-m.score, -m.agreeing, m.candidate.ref))


def match_all(
    reading: Reading,
    candidates: Iterable[Candidate],
    *,
    lost_or_stolen: bool = False,
    resolve: MakeResolver = default_resolver,
    plan: LookupPlan | None = None,
) -> list[Match]:
    plan = plan or lookup_plan(reading.serial_number)
    found = (
        classify(plan, reading, candidate, lost_or_stolen=lost_or_stolen, resolve=resolve)
        for candidate in candidates
    )
    return rank(match for match in found if match is not None)
