"""Match keys, match classes and ranking: pure functions, plain tests and hypothesis properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracing.markings.index import MemoryIndex
from tracing.markings.keys import (
    KEY_ALPHABET,
    MIN_FUZZY_LENGTH,
    deletions,
    dump_shape,
    filled_keys,
    fitting_fills,
    fitting_neighbours,
    is_enumerable,
    key_hash,
    key_shape,
    load_shape,
    lookup_plan,
    merge_shapes,
    one_edit_keys,
    record_keys,
    shape_admits,
    within_one_edit,
)
from tracing.markings.matching import (
    Agreement,
    Candidate,
    MatchClass,
    Reading,
    SerialAgreement,
    attribute_key,
    match_all,
)

PROPERTY = settings(max_examples=300, deadline=None)
keys_text = st.text(alphabet="ABCDEFGHKLMNPX0123456789", min_size=MIN_FUZZY_LENGTH, max_size=12)
# Ж and ع are not folded to Latin: keys holding them are not enumerable and store their deletions.
mixed_keys = st.text(alphabet="ABKMX0179Жع", min_size=MIN_FUZZY_LENGTH, max_size=12)


def osa_distance(a: str, b: str) -> int:
    """Reference optimal string alignment distance (edits plus swaps of neighbours)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@PROPERTY
@given(st.text(alphabet="AB12", max_size=7), st.text(alphabet="AB12", max_size=7))
def test_within_one_edit_agrees_with_the_reference_distance(a: str, b: str) -> None:
    assert within_one_edit(a, b) == (osa_distance(a, b) <= 1)
    assert within_one_edit(a, b) == within_one_edit(b, a)


one_edit = st.tuples(mixed_keys, st.integers(0, 20), st.sampled_from("sdit"), st.sampled_from("ABX079Жع"))


def _edit(key: str, position: int, how: str, char: str) -> str:
    p = position % len(key)
    if how == "s":
        return key[:p] + char + key[p + 1 :]
    if how == "d":
        return key[:p] + key[p + 1 :]
    if how == "i":
        return key[:p] + char + key[p:]
    p = min(p, len(key) - 2)
    return key[:p] + key[p + 1] + key[p] + key[p + 2 :]


@PROPERTY
@given(one_edit)
def test_every_one_edit_reading_reaches_its_record_through_the_index_probes(edit: tuple) -> None:
    key = edit[0]
    reading = _edit(*edit)
    plan = lookup_plan(reading)
    stored = record_keys(key)
    if len(plan.confusable) < MIN_FUZZY_LENGTH:
        return  # too short to search fuzzily, by design
    assert bool(stored.deletions) == (not is_enumerable(stored.confusable))
    reached = (
        plan.confusable == stored.confusable
        or stored.confusable in plan.neighbours
        or bool(plan.neighbour_deletions & stored.deletions)
    )
    assert reached
    assert MemoryIndex([Candidate("r1", key, "Glock")]).lookup(plan)  # the in-memory index probes alike


@PROPERTY
@given(st.text(alphabet="AX0Жع?", max_size=9))
def test_one_edit_keys_are_enumerable_keys_one_edit_away(key: str) -> None:
    for neighbour in one_edit_keys(key):
        assert osa_distance(key, neighbour) == 1
        assert set(neighbour) - set(key) <= set(KEY_ALPHABET)


@pytest.mark.parametrize("key", ["", "A", "7Q", "Ж1"])
def test_one_edit_keys_holds_every_enumerable_key_one_edit_away(key: str) -> None:
    expected = {
        "".join(chars)
        for length in range(max(len(key) - 1, 0), len(key) + 2)
        for chars in itertools.product(KEY_ALPHABET, repeat=length)
        if osa_distance(key, "".join(chars)) == 1
    }
    assert {k for k in one_edit_keys(key) if is_enumerable(k)} == expected


@PROPERTY
@given(mixed_keys, st.sets(st.integers(0, 20), min_size=1, max_size=2))
def test_up_to_two_unreadable_characters_reach_the_record_through_equality_probes(
    key: str, positions: set[int]
) -> None:
    unreadable = {p % len(key) for p in positions}
    plan = lookup_plan("".join("?" if p in unreadable else char for p, char in enumerate(key)))
    if not plan.searchable:
        return  # too few readable characters, by design
    stored = record_keys(key)
    if not is_enumerable("".join(stored.confusable[position] for position in sorted(unreadable)[:-1])):
        return  # the first of two is filled with key characters only; another script's letter there is missed
    assert stored.confusable in plan.fills or plan.gap_deletions & stored.deletions


@PROPERTY
@given(st.lists(mixed_keys, max_size=20), st.lists(mixed_keys, max_size=20), one_edit)
def test_a_registry_key_shape_admits_every_stored_key_so_no_probe_for_one_is_skipped(
    first: list[str], second: list[str], edit: tuple
) -> None:
    stored = [record_keys(key).confusable for key in first + second]
    # Two import batches, merged as the registry row keeps them, through the stored text.
    shape = dump_shape(merge_shapes(key_shape(stored[: len(first)]), key_shape(stored[len(first) :])))
    assert load_shape(shape) == key_shape(stored)
    admits = shape_admits(shape)
    assert all(admits(key) for key in stored)
    plan = lookup_plan(_edit(*edit))
    probed = {plan.confusable, *plan.neighbours}
    assert {key for key in probed if admits(key)} >= probed & set(stored)


shape_keys = st.text(alphabet="AX07Жع", min_size=1, max_size=7)


@PROPERTY
@given(st.lists(shape_keys, max_size=12), shape_keys)
def test_keys_made_from_a_shape_are_exactly_the_probe_keys_it_admits(stored: list[str], key: str) -> None:
    shape = dump_shape(key_shape(stored))
    admits = shape_admits(shape)
    probes = {key, *one_edit_keys(key)} if len(key) >= MIN_FUZZY_LENGTH else {key}
    assert fitting_neighbours(key, shape) == {probe for probe in probes if admits(probe)}
    for position in range(len(key)):
        for second in (None, *range(position + 1, len(key))):
            pattern = "".join("?" if p in (position, second) else c for p, c in enumerate(key))
            assert fitting_fills(pattern, shape) == {k for k in filled_keys(pattern) if admits(k)}


def test_a_key_shape_skips_keys_no_record_can_have() -> None:
    stored = [record_keys(serial).confusable for serial in ("LX102345", "AX998877", "12345678")]
    admits = shape_admits(dump_shape(key_shape(stored)))
    probed = {key for key in lookup_plan("LX102346").neighbours if admits(key)}
    assert stored[0] in probed and len(probed) < 30  # of 492: digits only where the records have digits
    assert not admits("LX1023456") and not admits("")


def test_three_unreadable_characters_are_a_range_scan_on_the_longer_readable_end() -> None:
    plan = lookup_plan("LX??2?3456")
    assert plan.searchable and not plan.fills and not plan.gap_deletions
    assert plan.anchor == ("suffix", "6543")


@PROPERTY
@given(st.text(max_size=80), st.text(max_size=80))
def test_matching_never_raises_on_any_text(serial: str, other: str) -> None:
    for match in match_all(Reading(serial, other), [Candidate("r1", other, serial)]):
        assert 0 < match.score <= 1


def test_deletions_and_hashes() -> None:
    assert deletions("AB1") == {"B1", "A1", "AB"}
    assert key_hash("LX1023") == key_hash("LX1023") != key_hash("LX1024")
    assert -(2**63) <= key_hash("LX1023") < 2**63


AKM = Candidate("NG-1", "LX 1023", "Izhmash", "AKM", "7.62x39mm")
INDEX = MemoryIndex([AKM, Candidate("NG-2", "LX1024", "Norinco", "Type 56", "7.62x39mm")])


def _best(reading: Reading, *, lost_or_stolen: bool = False):  # noqa: ANN202
    plan = lookup_plan(reading.serial_number)
    matches = match_all(reading, INDEX.lookup(plan), lost_or_stolen=lost_or_stolen)
    return matches[0] if matches else None


@pytest.mark.parametrize(
    ("serial", "make", "expected", "serial_agreement"),
    [
        ("LX-1023", "Kalashnikov Concern", MatchClass.exact, SerialAgreement.exact),
        ("lx 1023", "Ижмаш", MatchClass.exact, SerialAgreement.exact),
        ("LХ 1023", "IZHMASH", MatchClass.exact, SerialAgreement.exact),  # Cyrillic Х
        ("LX 1О23", "Izhmash", MatchClass.confusable, SerialAgreement.confusable),  # Cyrillic О
        ("LX 1O23", "Izhmash", MatchClass.confusable, SerialAgreement.confusable),  # letter O
        ("IX 1023", "Izhmash", MatchClass.confusable, SerialAgreement.confusable),  # I for L
        ("LX 10?3", "Izhmash", MatchClass.partial, SerialAgreement.partial),
        ("LX 1?2?", "Izhmash", MatchClass.partial, SerialAgreement.partial),
        ("LX 1032", "Izhmash", MatchClass.fuzzy, SerialAgreement.fuzzy),  # swapped digits
        ("LX 10234", "Izhmash", MatchClass.fuzzy, SerialAgreement.fuzzy),  # one extra digit
        ("LX 1023", "Norinco", MatchClass.make_conflict, SerialAgreement.exact),
    ],
)
def test_match_classes(
    serial: str, make: str, expected: MatchClass, serial_agreement: SerialAgreement
) -> None:
    best = _best(Reading(serial, make, "AKM", "7.62x39"))
    assert best is not None
    assert (best.match_class, best.serial, best.candidate.ref) == (expected, serial_agreement, "NG-1")


def test_scores_order_the_classes() -> None:
    scores = {
        serial: _best(Reading(serial, "Izhmash", "AKM")).score
        for serial in ("LX1023", "LX1O23", "LX10?3", "LX1032")
    }
    assert scores["LX1023"] == 1.0
    assert scores["LX1023"] > scores["LX1O23"] > scores["LX10?3"] > scores["LX1032"]
    plan = lookup_plan("LX1023")
    found = match_all(Reading("LX1023", "Norinco"), INDEX.lookup(plan))
    # the Norinco record one digit away ranks above the exact serial under another make
    assert [m.match_class for m in found] == [MatchClass.fuzzy, MatchClass.make_conflict]
    conflict = found[1]
    assert conflict.score < scores["LX1032"]
    assert "make" in conflict.warnings[0]


def test_model_or_calibre_disagreement_is_a_make_conflict() -> None:
    best = _best(Reading("LX1023", "Izhmash", "AK-74", "5.45x39mm"))
    assert best.match_class is MatchClass.make_conflict
    assert (best.make, best.model, best.calibre) == (Agreement.same, Agreement.different, Agreement.different)


def test_another_maker_marked_on_an_imported_firearm_agrees_with_the_record() -> None:
    index = MemoryIndex([Candidate("US-1", "CG 4471", "Century Arms", "WASR-10", "7.62x39mm")])
    reading = Reading("CG-4471", "Cugir", "WASR-10", other_names=("Century Arms Georgia VT", "CAI GA VT"))
    found = match_all(reading, index.lookup(lookup_plan(reading.serial_number)))
    assert (found[0].match_class, found[0].make) == (MatchClass.exact, Agreement.same)
    alone = match_all(Reading("CG-4471", "Cugir", "WASR-10"), index.lookup(lookup_plan("CG-4471")))
    assert alone[0].match_class is MatchClass.make_conflict


def test_fuzzy_match_with_a_different_make_is_dropped() -> None:
    assert _best(Reading("LX1032", "Glock")) is None


def test_lost_or_stolen_hit_is_its_own_class_and_warns() -> None:
    best = _best(Reading("LX1O23", "Izhmash"), lost_or_stolen=True)
    assert best.match_class is MatchClass.reported_lost_or_stolen
    assert best.serial is SerialAgreement.confusable
    assert best.warnings[0] == "reported lost or stolen"


def test_unknown_make_is_kept_and_flagged_not_rejected() -> None:
    best = _best(Reading("LX1023", "Acme Backyard Gunworks"))
    assert best.match_class is MatchClass.exact
    assert best.make is Agreement.unknown
    assert any("not in the manufacturer table" in w for w in best.warnings)


@pytest.mark.parametrize(
    ("serial", "reason"),
    [
        ("", "no readable characters"),
        ("   ", "no readable characters"),
        ("\x00\x07\x1b", "no readable characters"),  # control characters only
        ("🔫💥", "no readable characters"),  # emoji only
        ("??1?", "too few"),
        ("L?????", "too few"),
    ],
)
def test_unsearchable_readings_say_why_and_match_nothing(serial: str, reason: str) -> None:
    plan = lookup_plan(serial)
    assert not plan.searchable and reason in (plan.reason or "")
    assert INDEX.lookup(plan) == []
    assert match_all(Reading(serial), [AKM]) == []


def test_odd_input_still_matches_what_it_can() -> None:
    assert _best(Reading("L\x00X\u200b10😀23", "Izhmash")).match_class is MatchClass.exact  # controls, emoji
    # Cyrillic Л looks like no Latin letter: the reading is one character off, not exact
    assert _best(Reading("ЛX1023")).match_class is MatchClass.fuzzy
    long_serial = "LX1023" * 34  # 204 characters: looked up, matches nothing, no error
    assert _best(Reading(long_serial)) is None


def test_short_serials_are_not_searched_fuzzily() -> None:
    plan = lookup_plan("A12")
    assert plan.searchable and not plan.neighbour_deletions


def test_attribute_keys_fold_calibre_spellings() -> None:
    assert attribute_key("7.62×39 mm") == attribute_key("7.62x39mm") == "762x39"
    assert attribute_key("AK-47") == "ak47"
    assert attribute_key(None) == ""
