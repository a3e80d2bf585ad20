"""Accuracy on a generated corpus: registry records, then readings with one corruption each (a
read-off confusion, a Cyrillic look-alike, separators, case, an unreadable character, a typo, a
dropped, added or swapped character, the make under another name). The true record must rank first
for at least 99% of them, and no reading may be an exact match for another record."""

from __future__ import annotations

import random
from collections import Counter

from tracing.markings.corpus import CORRUPTIONS, corrupt, generate_records
from tracing.markings.index import MemoryIndex
from tracing.markings.keys import lookup_plan
from tracing.markings.matching import MatchClass, match_all

RECORDS = 20_000
READINGS = 3_000


def test_true_record_ranks_first_for_99_percent_of_single_corruption_readings() -> None:
    records = list(generate_records(RECORDS, seed=11))
    index = MemoryIndex(record.candidate() for record in records)
    rng = random.Random(2017)
    misses: Counter[str] = Counter()
    false_exact = 0
    for number in range(READINGS):
        record = rng.choice(records)
        how = CORRUPTIONS[number % len(CORRUPTIONS)]
        reading = corrupt(record, how, rng)
        plan = lookup_plan(reading.serial_number)
        matches = match_all(reading, index.lookup(plan), plan=plan)
        if not matches or matches[0].candidate.ref != record.ref:
            misses[how] += 1
        false_exact += sum(
            m.match_class is MatchClass.exact and m.candidate.ref != record.ref for m in matches
        )
    ranked_first = 1 - sum(misses.values()) / READINGS
    assert ranked_first >= 0.99, f"true record first for {ranked_first:.2%}; misses by corruption: {misses}"
    assert false_exact == 0
