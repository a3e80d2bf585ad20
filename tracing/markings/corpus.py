"""Generated registry records and corrupted readings of them, for demo data, the example HTTP
registry, benchmarks and the accuracy tests. Deterministic for a given seed."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass

from tracing.markings.manufacturers import manufacturers
from tracing.markings.matching import Candidate, Reading
from tracing.markings.normalize import confusable_key

_MODELS = {
    "rifle": ["AKM", "AK-47", "AK-74", "Type 56", "M70", "FAL", "G3", "SKS", "Mosin-Nagant", "AR-15"],
    "pistol": ["PM", "TT-33", "17", "19", "92FS", "CZ 75", "P226", "PPK", "Hi-Power", "M1911"],
    "shotgun": ["500", "870", "MP-153", "IZh-27", "Nova"],
    "revolver": ["Model 10", "Model 686", "GP100", "Python", "RT85"],
    "machine_gun": ["PKM", "RPK", "MG3", "FN MAG", "DShK"],
    "submachine_gun": ["MP5", "Uzi", "PPSh-41", "Scorpion", "P90"],
}
_CALIBRES = {
    "rifle": ["7.62x39mm", "5.45x39mm", "7.62x51mm", "5.56x45mm", "7.62x54mmR"],
    "pistol": ["9x18mm", "9x19mm", "7.62x25mm", ".45 ACP", ".380 ACP"],
    "shotgun": ["12 gauge", "20 gauge"],
    "revolver": [".38 Special", ".357 Magnum"],
    "machine_gun": ["7.62x54mmR", "7.62x51mm", "12.7x108mm"],
    "submachine_gun": ["9x19mm", "7.62x25mm", "5.7x28mm"],
}
_LETTERS = string.ascii_uppercase
_DIGITS = string.digits
_SERIAL_FORMATS = ("LLDDDDDD", "LLDDDD", "LLLDDD", "DDDDDDDD", "LDDDDDDD", "DDLLDDDD", "LLLDDDDD", "DDDDDDL")
_CONFUSIONS = {"0": "O", "O": "0", "1": "I", "I": "1", "L": "1", "5": "S", "S": "5", "8": "B", "B": "8",
               "2": "Z", "Z": "2", "6": "G", "G": "6"}  # fmt: skip
_HOMOGLYPHS = {"A": "А", "B": "В", "E": "Е", "K": "К", "M": "М", "H": "Н", "O": "О", "P": "Р", "C": "С",
               "T": "Т", "X": "Х", "Y": "У"}  # fmt: skip


@dataclass(frozen=True)
class Record:
    ref: str
    serial_number: str
    make: str
    model: str
    calibre: str
    kind: str
    country_of_manufacture: str
    year_of_manufacture: int

    def candidate(self) -> Candidate:
        return Candidate(self.ref, self.serial_number, self.make, self.model, self.calibre)

    def as_row(self) -> dict[str, str]:
        return {
            "record_id": self.ref,
            "serial_number": self.serial_number,
            "make": self.make,
            "model": self.model,
            "calibre": self.calibre,
            "kind": self.kind,
            "country_of_manufacture": self.country_of_manufacture,
            "year_of_manufacture": str(self.year_of_manufacture),
        }


def _serial(rng: random.Random) -> str:
    pattern = rng.choice(_SERIAL_FORMATS)
    return "".join(rng.choice(_LETTERS if slot == "L" else _DIGITS) for slot in pattern)


def generate_records(count: int, *, seed: int = 1, prefix: str = "R") -> Iterator[Record]:
    """`count` records with distinct confusable keys (so every reading has one true record)."""
    rng = random.Random(seed)
    makers = [m for m in manufacturers() if m.kinds]
    seen: set[str] = set()
    produced = 0
    while produced < count:
        serial = _serial(rng)
        key = confusable_key(serial)
        if key in seen:
            continue
        seen.add(key)
        maker = rng.choice(makers)
        kind = rng.choice([k for k in maker.kinds if k in _MODELS] or ["rifle"])
        produced += 1
        yield Record(
            ref=f"{prefix}{produced:07d}",
            serial_number=serial,
            make=rng.choice(maker.names),
            model=rng.choice(_MODELS[kind]),
            calibre=rng.choice(_CALIBRES[kind]),
            kind=kind,
            country_of_manufacture=maker.country,
            year_of_manufacture=rng.randint(1950, 2020),
        )


CORRUPTIONS = (
    "confusion", "homoglyph", "separators", "lower_case", "unreadable", "substitution", "deletion",
    "insertion", "transposition", "make_alias",
)  # fmt: skip


def corrupt(record: Record, how: str, rng: random.Random) -> Reading:
    """A reading of the record's markings with one corruption of the given kind."""
    serial, make = record.serial_number, record.make
    positions = list(range(len(serial)))
    if how == "confusion":
        confusable = [p for p in positions if serial[p] in _CONFUSIONS]
        if confusable:
            p = rng.choice(confusable)
            serial = serial[:p] + _CONFUSIONS[serial[p]] + serial[p + 1 :]
    elif how == "homoglyph":
        latin = [p for p in positions if serial[p] in _HOMOGLYPHS]
        if latin:
            p = rng.choice(latin)
            serial = serial[:p] + _HOMOGLYPHS[serial[p]] + serial[p + 1 :]
    elif how == "separators":
        p = rng.randint(1, len(serial) - 1)
        serial = serial[:p] + rng.choice([" ", "-", ".", "/"]) + serial[p:]
    elif how == "lower_case":
        serial = serial.lower()
    elif how == "unreadable":
        p = rng.choice(positions)
        serial = serial[:p] + "?" + serial[p + 1 :]
    elif how == "substitution":
        p = rng.choice(positions)
        pool = _DIGITS if serial[p].isdigit() else _LETTERS
        replacement = rng.choice([c for c in pool if confusable_key(c) != confusable_key(serial[p])])
        serial = serial[:p] + replacement + serial[p + 1 :]
    elif how == "deletion":
        p = rng.choice(positions)
        serial = serial[:p] + serial[p + 1 :]
    elif how == "insertion":
        p = rng.randint(0, len(serial))
        serial = serial[:p] + rng.choice(_DIGITS) + serial[p:]
    elif how == "transposition":
        swappable = [p for p in positions[:-1] if serial[p] != serial[p + 1]]
        p = rng.choice(swappable)
        serial = serial[:p] + serial[p + 1] + serial[p] + serial[p + 2 :]
    elif how == "make_alias":
        maker = next(m for m in manufacturers() if make in m.names)
        make = rng.choice(maker.names)
    else:
        raise ValueError(f"unknown corruption {how!r}")
    return Reading(serial_number=serial, make=make, model=record.model, calibre=record.calibre)
