"""Pure hashing and verification of audit chains and checkpoint Merkle trees (RFC 6962 style).

An entry's hash commits to its chain, its sequence number, the previous entry's hash and the
canonical bytes of its content:

    hash = SHA-256(0x00 || chain id (16 bytes) || seq (8 bytes, big-endian) || prev_hash || canonical)

so verifying a chain needs no JSON parsing: only the stored columns and the stored canonical bytes.
Checkpoints put each chain's head in a Merkle tree with leaves SHA-256(0x00 || chain id || seq ||
head hash) and nodes SHA-256(0x01 || left || right).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)
LEAF, NODE = b"\x00", b"\x01"


def canonical_bytes(content: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: the exact bytes that are hashed and kept."""
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(chain_id: uuid.UUID, seq: int, prev_hash: bytes, canonical: bytes) -> bytes:
    return _entry_hasher(chain_id)(seq, prev_hash, canonical)


def _entry_hasher(chain_id: uuid.UUID) -> Callable[[int, bytes, bytes], bytes]:
    """entry_hash for one chain, with the chain's prefix hashed once (verification's hot loop)."""
    prefix = hashlib.sha256(LEAF + chain_id.bytes)

    def digest(seq: int, prev_hash: bytes, canonical: bytes) -> bytes:
        state = prefix.copy()
        state.update(seq.to_bytes(8, "big"))
        state.update(prev_hash)
        state.update(canonical)
        return state.digest()

    return digest


@dataclass(frozen=True)
class StoredEntry:
    seq: int
    prev_hash: bytes
    hash: bytes
    canonical: bytes


@dataclass(frozen=True)
class Verification:
    valid: bool
    checked: int
    first_invalid_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "checked": self.checked,
            "first_invalid_seq": self.first_invalid_seq,
            "reason": self.reason,
        }


def verify_chain(
    chain_id: uuid.UUID,
    entries: Iterable[StoredEntry],
    *,
    head: tuple[int, bytes] | None = None,
) -> Verification:
    """Check one chain, given its entries in stored `seq` order (never by timestamp).

    Names the first entry that is missing, reordered, altered or forged. With `head` (the chain
    head row's seq and hash), entries cut from the end or appended behind the head are caught too.
    """
    expected_seq, prev = 1, GENESIS
    checked = 0
    hasher = _entry_hasher(chain_id)
    for entry in entries:
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                return Verification(False, checked, expected_seq, f"entry {expected_seq} is missing")
            return Verification(False, checked, entry.seq, f"entry {entry.seq} is out of order")
        if entry.prev_hash != prev:
            return Verification(
                False, checked, entry.seq, f"entry {entry.seq} does not link to entry {entry.seq - 1}"
            )
        if hasher(entry.seq, entry.prev_hash, entry.canonical) != entry.hash:
            return Verification(False, checked, entry.seq, f"entry {entry.seq} was altered")
        prev = entry.hash
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return Verification(
                False, checked, last_seq + 1, f"entries {last_seq + 1}..{head_seq} are missing"
            )
        if head_seq < last_seq:
            return Verification(
                False, checked, head_seq + 1, f"entry {head_seq + 1} lies beyond the chain head"
            )
        if head_seq and head_hash != prev:
            return Verification(False, checked, head_seq, f"entry {head_seq} differs from the chain head")
    return Verification(True, checked)


# ---- Merkle tree over chain heads (RFC 6962 section 2.1) -------------------------------------


def head_leaf(chain_id: uuid.UUID, seq: int, head: bytes) -> bytes:
    return hashlib.sha256(LEAF + chain_id.bytes + seq.to_bytes(8, "big") + head).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path for leaves[index] (RFC 6962 PATH)."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), merkle_root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), merkle_root(leaves[:k])]


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """Recompute the root from a leaf and its audit path; None if the path has the wrong shape."""
    if not 0 <= index < size:
        return None
    remaining = list(proof)

    def walk(index: int, size: int) -> bytes | None:
        if size == 1:
            return leaf
        k = _split(size)
        if not remaining:
            return None
        sibling = remaining.pop()
        if index < k:
            left = walk(index, k)
            return None if left is None else _node(left, sibling)
        right = walk(index - k, size - k)
        return None if right is None else _node(sibling, right)

    root = walk(index, size)
    return root if root is not None and not remaining else None
