"""Marking normalisation and the manufacturer table: pure functions, so plain tests and hypothesis
properties without a database."""

from __future__ import annotations

import encodings.aliases

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracing.markings.imports import ImportRefused, check_encoding
from tracing.markings.manufacturers import (
    Manufacturer,
    ManufacturerTableError,
    build_alias_index,
    manufacturers,
    resolve_make,
)
from tracing.markings.normalize import (
    _normalize_serial_unicode,
    confusable_key,
    normalize_make,
    normalize_serial,
    serial_pattern_matches,
)
from tracing.models.trace_request import FirearmKind

PROPERTY = settings(max_examples=200, deadline=None)

# Every code point, lone surrogates, private use and unassigned ones included.
any_text = st.text(alphabet=st.characters(exclude_categories=()))
# Text that looks like a hand-typed serial, so the properties exercise the interesting cases often.
serial_like_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789?*_ -./"),
        st.sampled_from("АВЕКМНОРСТХУІЈЅабвекмнорстхуіјѕΑΒΕΖΗΙΚΜΝΟΡΤΥΧ"),
        st.sampled_from("\u0301\u0308\u0338\u200d\u200f\u00a0\u2013\u2116\ufffd\ud800٣０ｏ"),
        st.characters(exclude_categories=()),
    ),
    max_size=20,
)
texts = st.one_of(any_text, serial_like_text)

SEPARATORS = st.one_of(
    st.characters(categories=("Pd", "Zs", "Zl", "Zp")),
    st.sampled_from(".,/\\:;|'\"()[]#+\t\n\r\u00b7\u2044\u2212\u200b\u200c\u200d\u200e\u200f\u202e\ufeff"),
)
# Latin capitals and the Cyrillic or Greek letters that look like them (both cases of each).
LOOK_ALIKES = {
    "A": "АаΑα", "B": "ВвΒβ", "C": "Сс", "E": "ЕеΕε", "H": "НнΗη", "I": "ІіΙι", "J": "Јј",
    "K": "КкΚκ", "M": "МмΜμ", "N": "Νν", "O": "ОоΟο", "P": "РрΡρ", "S": "Ѕѕ", "T": "ТтΤτ",
    "X": "ХхΧχ", "Y": "УуΥυ", "Z": "Ζζ",
}  # fmt: skip
CONFUSIONS = [("O", "0"), ("I", "1"), ("L", "1"), ("S", "5"), ("B", "8"), ("Z", "2"), ("G", "6")]


# --- serials: properties ----------------------------------------------------------------------------


@PROPERTY
@given(texts)
def test_normalize_serial_is_idempotent(text: str) -> None:
    once = normalize_serial(text)
    assert normalize_serial(once) == once


@PROPERTY
@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=127)), serial_like_text))
def test_ascii_fast_path_agrees_with_the_unicode_steps(text: str) -> None:
    assert normalize_serial(text) == _normalize_serial_unicode(text)


@PROPERTY
@given(texts)
def test_confusable_key_is_idempotent(text: str) -> None:
    once = confusable_key(text)
    assert confusable_key(once) == once


@PROPERTY
@given(texts)
def test_normalize_make_is_idempotent(text: str) -> None:
    once = normalize_make(text)
    assert normalize_make(once) == once


@PROPERTY
@given(texts, texts)
def test_normalisers_never_raise_on_any_text(text: str, other: str) -> None:
    assert isinstance(normalize_serial(text), str)
    assert isinstance(confusable_key(text), str)
    assert isinstance(normalize_make(text), str)
    assert isinstance(serial_pattern_matches(text, other), bool)
    assert resolve_make(text) is None or resolve_make(text).country


@PROPERTY
@given(texts)
def test_normalised_serial_has_no_separators_lower_case_or_marks(text: str) -> None:
    serial = normalize_serial(text)
    assert serial == serial.upper()
    assert not any(char.isspace() or char in "-./*_\ufffd" for char in serial)


@PROPERTY
@given(st.sampled_from(CONFUSIONS), st.lists(st.tuples(texts, st.booleans(), st.booleans()), max_size=6))
def test_read_off_confusions_leave_confusable_key_unchanged(
    confusion: tuple[str, str], parts: list[tuple[str, bool, bool]]
) -> None:
    letter, digit = confusion
    as_read = "".join(
        text + ((letter if upper else letter.lower()) if confused else digit)
        for text, confused, upper in parts
    )
    as_marked = "".join(text + digit for text, _, _ in parts)
    assert confusable_key(as_read) == confusable_key(as_marked)


@PROPERTY
@given(st.lists(st.tuples(texts, st.sampled_from(sorted(LOOK_ALIKES)), st.integers(0, 3)), max_size=6))
def test_cyrillic_and_greek_look_alikes_leave_normalize_serial_unchanged(
    parts: list[tuple[str, str, int]],
) -> None:
    latin = "".join(text + capital for text, capital, _ in parts)
    mixed = "".join(
        text + LOOK_ALIKES[capital][choice % len(LOOK_ALIKES[capital])] for text, capital, choice in parts
    )
    assert normalize_serial(mixed) == normalize_serial(latin)


@PROPERTY
@given(st.lists(st.tuples(texts, st.lists(SEPARATORS, max_size=3)), max_size=6))
def test_separators_are_ignored(parts: list[tuple[str, list[str]]]) -> None:
    plain = "".join(text for text, _ in parts)
    separated = "".join("".join(separators) + text for text, separators in parts)
    assert normalize_serial(separated) == normalize_serial(plain)


@PROPERTY
@given(texts, st.sets(st.integers(0, 40)))
def test_serial_matches_itself_with_any_characters_unreadable(text: str, unreadable: set[int]) -> None:
    serial = normalize_serial(text)
    pattern = "".join("?" if position in unreadable else char for position, char in enumerate(serial))
    assert serial_pattern_matches(pattern, serial) == bool(serial)


# --- serials: examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marked", "normalised"),
    [
        ("LX 10?3", "LX10?3"),
        ("lx-1023", "LX1023"),
        ("ｌｘ１０２３", "LX1023"),  # fullwidth, as typed on a CJK keyboard
        ("LX–10.23/A", "LX1023A"),  # en dash, dot and slash
        ("№ 1023", "1023"),  # the numero sign is not the letters N and O
        ("АК 47", "AK47"),  # Cyrillic А and К
        ("ΑΒ-12", "AB12"),  # Greek Alpha and Beta
        ("١٢٣٤", "1234"),  # Arabic-Indic digits
        ("Ä-Ø1", "A01"),  # diacritics dropped, slashed O is zero
        ("12*4_6\ufffd", "12?4?6?"),  # every unreadable mark is the wildcard
        ("\u202bAB12\u202c\u200d", "AB12"),  # bidi and joiner controls vanish
        ("A\ud800B", "A?B"),  # a lone surrogate from a bad decoder is an unreadable character
        ("", ""),
    ],
)
def test_normalize_serial_examples(marked: str, normalised: str) -> None:
    assert normalize_serial(marked) == normalised


def test_confusable_key_folds_letters_read_as_digits() -> None:
    assert confusable_key("SB-1O2") == confusable_key("58-102") == "58102"
    assert confusable_key("ZG l I") == "2611"
    assert confusable_key("O?0") == "0?0"


def test_partial_serial_with_wildcard_matches_full_serial() -> None:
    assert serial_pattern_matches("LX 10?3", "LX1023")
    assert serial_pattern_matches("lx-10?3", "LX1093")
    assert serial_pattern_matches("??1023", "LX1023")


def test_partial_serial_does_not_match_other_characters_or_lengths() -> None:
    assert not serial_pattern_matches("LX 10?3", "LX1024")
    assert not serial_pattern_matches("LX 10?3", "LX10233")
    assert not serial_pattern_matches("LX 10?3", "LX103")
    assert not serial_pattern_matches("LX1023", "LX10?3")  # an unreadable record matches no letter
    assert not serial_pattern_matches("", "")
    assert not serial_pattern_matches("---", "")


def test_wildcard_matching_on_confusable_keys_tolerates_read_off_errors() -> None:
    assert not serial_pattern_matches("LX 1O?3", "LX1023")
    assert serial_pattern_matches(confusable_key("LX 1O?3"), confusable_key("LX1023"))


# --- manufacturer names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Izhmash", "izhmash"),
        ("ИЖМАШ", "ижмаш"),  # all-Cyrillic words stay Cyrillic
        ("Izhmаsh", "izhmash"),  # a Cyrillic а inside a Latin word is folded
        ("OAO Izhmash", "izhmash"),
        ("АО «Концерн Калашников»", "концерн калашников"),
        ("Česká Zbrojovka a.s.", "ceska zbrojovka"),
        ("Heckler & Koch GmbH", "heckler koch"),
        ("H. & K.", "hk"),
        ("Smith and Wesson Inc.", "smith wesson"),
        ("Fratelli Tanfoglio S.p.A.", "fratelli tanfoglio"),
        ("Sturm, Ruger & Co., Inc.", "sturm ruger"),
        ("Fabryka Broni Łucznik-Radom Sp. z o.o.", "fabryka broni lucznik radom"),
        ("Sarsılmaz Silah Sanayi A.Ş.", "sarsilmaz silah sanayi"),
        ("中国北方工业公司", "中国北方工业"),
        ("Ltd", "ltd"),  # a name that is only a legal form keeps it
        ("", ""),
    ],
)
def test_normalize_make_examples(written: str, key: str) -> None:
    assert normalize_make(written) == key


def test_cyrillic_izhmash_resolves_to_kalashnikov_concern() -> None:
    match = resolve_make("Ижмаш")
    assert match is not None
    assert (match.canonical, match.country, match.matched_alias) == ("Kalashnikov Concern", "RU", "Ижмаш")


@pytest.mark.parametrize(
    ("written", "canonical", "country"),
    [
        ("IZHMASH", "Kalashnikov Concern", "RU"),
        ("Izhevsk Mechanical Plant", "Kalashnikov Concern", "RU"),
        ("Концерн Калашников", "Kalashnikov Concern", "RU"),
        ("China North Industries Corp.", "Norinco", "CN"),
        ("Застава", "Zastava Arms", "RS"),
        ("fabrique nationale d’herstal s.a.", "FN Herstal", "BE"),
        ("S & W", "Smith & Wesson", "US"),
        ("Ceska zbrojovka", "Česká zbrojovka Uherský Brod", "CZ"),
        ("Makina ve Kimya Endüstrisi Kurumu", "Makina ve Kimya Endüstrisi", "TR"),
        ("ZORAKI", "Atak Arms", "TR"),
    ],
)
def test_make_resolves_whatever_the_script_case_punctuation_or_legal_form(
    written: str, canonical: str, country: str
) -> None:
    match = resolve_make(written)
    assert match is not None
    assert (match.canonical, match.country) == (canonical, country)


def test_unknown_make_is_not_resolved() -> None:
    assert resolve_make("Acme Backyard Gunworks") is None
    assert resolve_make("") is None
    assert resolve_make("   ") is None


def test_manufacturer_table_has_at_least_60_entries_without_alias_collisions() -> None:
    table = manufacturers()
    assert len(table) >= 60
    assert len({entry.canonical for entry in table}) == len(table)
    index = build_alias_index(table)  # raises on a key claimed by two manufacturers
    for entry in table:
        for name in entry.names:
            assert index[normalize_make(name)][0] is entry, name


def test_manufacturer_table_countries_are_iso_alpha_2_and_kinds_are_firearm_kinds() -> None:
    firearm_kinds = {kind.value for kind in FirearmKind}
    for entry in manufacturers():
        assert pycountry.countries.get(alpha_2=entry.country) is not None, entry.canonical
        assert set(entry.kinds) <= firearm_kinds, entry.canonical


def test_every_name_in_the_table_resolves_to_its_own_manufacturer() -> None:
    for entry in manufacturers():
        for name in entry.names:
            match = resolve_make(name)
            assert match is not None and match.canonical == entry.canonical, name


def test_alias_index_refuses_a_name_claimed_by_two_manufacturers() -> None:
    first = Manufacturer(canonical="Arsenal AD", country="BG", aliases=("Arsenal",))
    second = Manufacturer(canonical="Arsenal Inc.", country="US", aliases=())
    with pytest.raises(ManufacturerTableError, match="arsenal"):
        build_alias_index([first, second])


@given(st.text(max_size=40) | st.sampled_from(sorted(set(encodings.aliases.aliases.values()))))
@settings(max_examples=400)
def test_any_encoding_name_is_either_usable_for_line_splitting_or_refused(name: str) -> None:
    try:
        codec = check_encoding(name)
    except ImportRefused:
        return
    assert "\n".encode(codec) == b"\n" and "serial,make".encode(codec) == b"serial,make"
