"""An in-memory registry index over the same match keys as the database tables: the example HTTP
registry serves from it, and the accuracy tests rank against it without a database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tracing.markings.keys import LookupPlan, record_keys
from tracing.markings.matching import Candidate
from tracing.markings.normalize import serial_pattern_matches

MAX_CANDIDATES = 2000


class MemoryIndex:
    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self._records: list[Candidate] = []
        self._by_normalized: dict[str, list[int]] = defaultdict(list)
        self._by_confusable: dict[str, list[int]] = defaultdict(list)
        self._by_deletion: dict[str, list[int]] = defaultdict(list)
        self._by_length: dict[int, list[int]] = defaultdict(list)
        for candidate in candidates:
            self.add(candidate)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, candidate: Candidate) -> None:
        position = len(self._records)
        self._records.append(candidate)
        keys = record_keys(candidate.serial_number)
        if not keys.normalized:
            return
        self._by_normalized[keys.normalized].append(position)
        self._by_confusable[keys.confusable].append(position)
        self._by_length[keys.length].append(position)
        for deletion in keys.deletions:
            self._by_deletion[deletion].append(position)

    def lookup(self, plan: LookupPlan) -> list[Candidate]:
        """Every record the plan's probes reach (a superset of the matches; classify filters)."""
        if not plan.searchable:
            return []
        found: set[int] = set()
        if plan.is_partial:
            if plan.fills:
                for key in plan.fills:
                    found.update(self._by_confusable.get(key, ()))
                for deletion in plan.gap_deletions:
                    found.update(self._by_deletion.get(deletion, ()))
            else:
                # The in-memory index has no ordered keys; scan the records of that length.
                found.update(
                    p
                    for p in self._by_length.get(len(plan.confusable), ())
                    if serial_pattern_matches(plan.confusable, self._records[p].serial_number)
                    or serial_pattern_matches(
                        plan.confusable, record_keys(self._records[p].serial_number).confusable
                    )
                )
        else:
            found.update(self._by_normalized.get(plan.normalized, ()))
            for key in (plan.confusable, *plan.neighbours):
                found.update(self._by_confusable.get(key, ()))
            for deletion in plan.neighbour_deletions:
                found.update(self._by_deletion.get(deletion, ()))
        return [self._records[p] for p in sorted(found)[:MAX_CANDIDATES]]
