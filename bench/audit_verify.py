"""Audit chain verification throughput, as a ratio of plain SHA-256 over the same bytes.

Builds a log of 1,000,000 entries (default) in memory with realistic canonical content, spread
over chains of 10 entries like real trace requests, then times `verify_chain` over every chain
against `hashlib.sha256(canonical)` over the same canonical bytes, in the same process.
Target: ratio >= 0.3.

    .venv/bin/python bench/audit_verify.py [--entries 1000000] [--chain-length 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
import uuid

from tracing.audit.chain import GENESIS, StoredEntry, canonical_bytes, entry_hash, verify_chain


def build_log(entries: int, chain_length: int) -> list[tuple[uuid.UUID, list[StoredEntry]]]:
    chains = []
    at = dt.datetime(2017, 11, 24, tzinfo=dt.UTC)
    for _ in range(entries // chain_length):
        chain_id = uuid.uuid4()
        prev, chain = GENESIS, []
        for seq in range(1, chain_length + 1):
            canonical = canonical_bytes(
                {
                    "chain": str(chain_id), "seq": seq, "action": "forward", "at": at.isoformat(),
                    "exchange_seq": seq, "from_state": "submitted", "to_state": "forwarded",
                    "to_country": "RU",
                    "actor": {"subject": "officer@NE", "agency": "NE-NCP", "country": "NE"},
                    "payload": {"to_country": "RU", "note": "AKM, NG import mark, serial LX 10?3"},
                }
            )  # fmt: skip
            digest = entry_hash(chain_id, seq, prev, canonical)
            chain.append(StoredEntry(seq, prev, digest, canonical))
            prev = digest
        chains.append((chain_id, chain))
    return chains


def time_hashlib(chains: list[tuple[uuid.UUID, list[StoredEntry]]]) -> float:
    started = time.perf_counter()
    sha256 = hashlib.sha256
    for _, chain in chains:
        for entry in chain:
            sha256(entry.canonical).digest()
    return time.perf_counter() - started


def time_verify(chains: list[tuple[uuid.UUID, list[StoredEntry]]]) -> float:
    started = time.perf_counter()
    for chain_id, chain in chains:
        result = verify_chain(chain_id, chain, head=(chain[-1].seq, chain[-1].hash))
        if not result.valid:
            raise SystemExit(f"chain {chain_id} did not verify: {result.reason}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--chain-length", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    chains = build_log(args.entries, args.chain_length)
    total = sum(len(chain) for _, chain in chains)
    size = sum(len(entry.canonical) for _, chain in chains for entry in chain)
    baseline = min(time_hashlib(chains) for _ in range(args.rounds))
    verify = min(time_verify(chains) for _ in range(args.rounds))
    print(f"entries: {total:,} in {len(chains):,} chains, {size / total:.0f} canonical bytes each on average")
    print(f"hashlib sha256 baseline: {total / baseline:,.0f} entries/s ({size / baseline / 1e6:,.0f} MB/s)")
    print(f"verify_chain:            {total / verify:,.0f} entries/s")
    print(f"ratio verify/baseline = {baseline / verify:.2f} (target >= 0.30)")


if __name__ == "__main__":
    main()
