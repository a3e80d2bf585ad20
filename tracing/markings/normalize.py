"""Pure normalisation of firearm markings: serial numbers as read off a seized weapon, and manufacturer
names as written by investigators in any script, turned into comparable keys.

Nothing here does I/O or raises on a `str`: markings arrive hand-typed, half-obliterated, in Cyrillic or
Arabic script, or mangled by a bad decoder, and they must still be normalised, never rejected.
"""

from __future__ import annotations

import functools
import unicodedata

UNREADABLE = "?"

# Marks investigators use for a character they cannot read; all become the one wildcard.
_UNREADABLE_MARKS = frozenset("?*_\ufffd\u00bf\u061f\u2217\u204e")
# Code points with no readable meaning (lone surrogates from bad decoding, private use, unassigned).
_UNREADABLE_CATEGORIES = frozenset({"Cs", "Co", "Cn"})
_KEPT_LETTER_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo", "Nl", "No"})

# Upper-case Cyrillic and Greek letters that look like a Latin capital on a stamped serial.
_HOMOGLYPHS_UPPER: dict[str, str] = {
    # Cyrillic
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "І": "I", "Ӏ": "I", "Ј": "J", "Ѕ": "S", "Ԛ": "Q",
    "Ԝ": "W",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C", "Ϳ": "J",
}  # fmt: skip
_HOMOGLYPHS_LOWER: dict[str, str] = {
    cyrillic_or_greek.lower(): latin.lower() for cyrillic_or_greek, latin in _HOMOGLYPHS_UPPER.items()
}

# Latin letters whose stroke or slash is not a combining mark, so NFKD does not strip it.
# A slashed O on a serial is how people write zero.
_SERIAL_LATIN_FOLD: dict[str, str] = {"Ø": "0", "Ł": "L", "Đ": "D", "Ð": "D", "Ħ": "H", "Ŧ": "T"}
_MAKE_LATIN_FOLD: dict[str, str] = {
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ŧ": "t", "æ": "ae", "œ": "oe",
    "þ": "th",
}  # fmt: skip

# Read-off confusions between letters and digits; the digit is the key.
_CONFUSABLES = str.maketrans({"O": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2", "G": "6"})

# The numero sign: NFKC turns it into the letters "No", which are not part of any serial.
_NUMERO_SIGN = "\u2116"

# Inside a manufacturer name these join rather than split ("d'Herstal", "S.p.A.", "O.F.").
_MAKE_JOINERS = frozenset("'.\u2018\u2019\u02bc`")
_MAKE_CONNECTORS = frozenset({"and", "und"})
_LEGAL_FORMS_TRAILING: frozenset[tuple[str, ...]] = frozenset(
    (form,)
    for form in (
        "ltd", "limited", "gmbh", "gesmbh", "mbh", "ag", "kg", "ohg", "co", "company", "corp",
        "corporation", "inc", "incorporated", "llc", "llp", "lp", "plc", "pte", "pty", "pvt", "private",
        "spa", "srl", "sas", "sarl", "sa", "ad", "doo", "dd", "as", "sro", "kft", "zrt", "nyrt", "nv",
        "bv", "oy", "oyj", "ab", "asa", "ltda", "sl", "tbk", "persero", "jsc", "ojsc", "pjsc", "cjsc",
        "oao", "ao", "zao", "pao", "ooo", "оао", "ао", "зао", "пао", "ооо", "ад", "доо",
    )
) | {("sp", "z", "oo")}  # fmt: skip
_LEGAL_FORMS_LEADING = frozenset(
    {"jsc", "ojsc", "pjsc", "cjsc", "oao", "ao", "zao", "pao", "ooo", "fgup", "pt",
     "оао", "ао", "зао", "пао", "ооо", "фгуп"}
)  # fmt: skip
# Chinese company-form suffixes, written without a space after the name; longest first.
_CJK_COMPANY_SUFFIXES = ("股份有限公司", "有限责任公司", "有限公司", "集团公司", "公司")


# ASCII needs none of the Unicode steps: letters upper-cased, digits kept, unreadable marks to `?`,
# everything else (separators, punctuation, controls) dropped. Registry imports are mostly ASCII.
_ASCII_SERIAL = str.maketrans(
    {chr(code): None for code in range(128) if not chr(code).isalnum()} | dict.fromkeys("?*_", UNREADABLE)
)


def normalize_serial(text: str) -> str:
    """Reduce a serial as read off a firearm to a comparable form.

    Upper case, no separators of any script, no diacritics, Cyrillic and Greek look-alikes folded to
    Latin, digits of any script as ASCII digits, every unreadable mark as `?`. Idempotent.
    """
    if text.isascii():
        return text.upper().translate(_ASCII_SERIAL)
    return _normalize_serial_unicode(text)


def _normalize_serial_unicode(text: str) -> str:
    text = text.replace(_NUMERO_SIGN, " ")
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).upper())
    kept = "".join(_serial_char(char) for char in decomposed)
    # Recompose only what NFKD split that is not a dropped mark (Hangul syllables).
    return unicodedata.normalize("NFC", kept)


def _serial_char(char: str) -> str:
    if char in _UNREADABLE_MARKS:
        return UNREADABLE
    category = unicodedata.category(char)
    if category in _UNREADABLE_CATEGORIES:
        return UNREADABLE
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if category in _KEPT_LETTER_CATEGORIES:
        return _HOMOGLYPHS_UPPER.get(char) or _SERIAL_LATIN_FOLD.get(char, char)
    # Separators, punctuation, symbols, controls, format characters, combining marks.
    return ""


def confusable_key(text: str) -> str:
    """The serial with O/0, I/L/1, S/5, B/8, Z/2 and G/6 read-off confusions folded to the digit.

    Two serials that differ only by those confusions (or by anything normalize_serial ignores) share a
    key; `?` wildcards are kept. Idempotent.
    """
    return fold_confusables(normalize_serial(text))


def fold_confusables(normalized: str) -> str:
    """confusable_key for a serial that is already normalised."""
    return normalized.translate(_CONFUSABLES)


def serial_pattern_matches(pattern: str, serial: str) -> bool:
    """Whether a serial with `?` for unreadable characters matches a full serial of the same length.

    Both sides are normalised first (a no-op on normalised input). A `?` in the serial itself matches
    only a `?` in the pattern; an empty pattern or serial matches nothing.
    """
    pattern, serial = normalize_serial(pattern), normalize_serial(serial)
    if not pattern or len(pattern) != len(serial):
        return False
    return all(wanted in (UNREADABLE, seen) for wanted, seen in zip(pattern, serial, strict=True))


@functools.lru_cache(maxsize=8192)  # a registry or a lookup meets the same few hundred names again and again
def normalize_make(text: str) -> str:
    """A lookup key for a manufacturer name: "Česká Zbrojovka a.s." and "CESKA ZBROJOVKA" agree.

    Case-folded, without diacritics and punctuation, digits as ASCII, Cyrillic and Greek look-alikes
    folded only inside otherwise Latin words (so "Ижмаш" stays Cyrillic), initials joined ("H & K" is
    "hk"), "and"/"und" and legal forms (Ltd, GmbH, S.p.A., JSC, ОАО ...) dropped, single spaces.
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    cleaned = unicodedata.normalize("NFC", "".join(_make_char(char) for char in folded))
    tokens = cleaned.split(" ")
    previous: list[str] = []
    while tokens != previous:
        previous = tokens
        tokens = _strip_legal_forms(_join_initials(_drop_connectors(_fold_latin_words(tokens))))
    return " ".join(tokens)


def _make_char(char: str) -> str:
    category = unicodedata.category(char)
    if category[0] == "M" or char in _MAKE_JOINERS:
        return ""
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if category in _KEPT_LETTER_CATEGORIES or category == "Lm":
        return _MAKE_LATIN_FOLD.get(char, char)
    return " "


def _is_latin(char: str) -> bool:
    return "a" <= char <= "z" or unicodedata.name(char, "").startswith("LATIN ")


def _fold_latin_words(tokens: list[str]) -> list[str]:
    folded = []
    for token in tokens:
        letters = [char for char in token if unicodedata.category(char)[0] == "L"]
        has_latin = any(_is_latin(char) for char in letters)
        if has_latin and all(_is_latin(char) or char in _HOMOGLYPHS_LOWER for char in letters):
            token = "".join(_HOMOGLYPHS_LOWER.get(char, char) for char in token)
        folded.append(token)
    return folded


def _drop_connectors(tokens: list[str]) -> list[str]:
    return [token for token in tokens if token and token not in _MAKE_CONNECTORS]


def _join_initials(tokens: list[str]) -> list[str]:
    joined: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1:
            run.append(token)
            continue
        if run:
            joined.append(unicodedata.normalize("NFC", "".join(run)))
            run = []
        if token:
            joined.append(token)
    return joined


def _strip_legal_forms(tokens: list[str]) -> list[str]:
    tokens = list(tokens)
    while tokens:
        if (stripped := _strip_cjk_suffix(tokens[-1])) != tokens[-1]:
            tokens[-1] = stripped
            continue
        form = next(
            (
                form
                for form in _LEGAL_FORMS_TRAILING
                if len(tokens) > len(form) and tuple(tokens[-len(form) :]) == form
            ),
            None,
        )
        if form is None:
            break
        del tokens[-len(form) :]
    while len(tokens) > 1 and tokens[0] in _LEGAL_FORMS_LEADING:
        del tokens[0]
    return tokens


def _strip_cjk_suffix(token: str) -> str:
    for suffix in _CJK_COMPANY_SUFFIXES:
        if token.endswith(suffix) and len(token) > len(suffix):
            return token[: -len(suffix)]
    return token
