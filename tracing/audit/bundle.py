"""Signed MLA evidence bundles: everything about one trace request, verifiable offline.

A bundle is a compact JWS (ES256) whose payload holds the request, every exchange, every audit
entry with its canonical bytes and hashes, and the latest checkpoint that covers the chain with a
Merkle inclusion proof. `verify_bundle` needs only the bundle and the service's public key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tracing.audit.chain import StoredEntry, head_leaf, inclusion_proof, root_from_proof, verify_chain
from tracing.audit.signing import SignatureInvalid, Signer, verify_jws
from tracing.models.audit import AuditCheckpoint, AuditEntry
from tracing.models.exchange import Exchange, ExchangePublic
from tracing.models.trace_request import TraceRequestPublic
from tracing.models.types import utcnow
from tracing.security import Principal

FORMAT = "tracing-evidence-bundle/1"


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "action": entry.action,
        "at": entry.at.isoformat(),
        "prev_hash": bytes(entry.prev_hash).hex(),
        "hash": bytes(entry.hash).hex(),
        "canonical": bytes(entry.canonical).decode("utf-8"),
    }


def _checkpoint_proof(checkpoint: AuditCheckpoint | None, chain_id: uuid.UUID) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    index = next((i for i, head in enumerate(checkpoint.heads) if head[0] == str(chain_id)), None)
    if index is None:
        return None
    leaves = [head_leaf(uuid.UUID(c), s, bytes.fromhex(h)) for c, s, h in checkpoint.heads]
    _, seq, hash_hex = checkpoint.heads[index]
    return {
        "id": checkpoint.id,
        "signed": checkpoint.signed,
        "size": checkpoint.size,
        "index": index,
        "leaf": {"chain": str(chain_id), "seq": seq, "hash": hash_hex},
        "proof": [node.hex() for node in inclusion_proof(leaves, index)],
    }


def build_bundle(
    *,
    signer: Signer,
    principal: Principal,
    request: TraceRequestPublic,
    exchanges: list[Exchange],
    entries: list[AuditEntry],
    checkpoint: AuditCheckpoint | None,
) -> str:
    payload = {
        "format": FORMAT,
        "generated_at": utcnow().isoformat(),
        "generated_for": {
            "subject": principal.subject,
            "agency": principal.agency,
            "country": principal.country,
        },
        "trace_request": request.model_dump(mode="json"),
        "exchanges": [ExchangePublic.model_validate(e).model_dump(mode="json") for e in exchanges],
        "audit": {"chain_id": str(request.id), "entries": [entry_json(e) for e in entries]},
        "checkpoint": _checkpoint_proof(checkpoint, request.id),
        "signing_key_id": signer.kid,
    }
    return signer.sign(payload)


def verify_bundle(token: str, public_pem: str) -> tuple[list[str], dict[str, Any] | None]:
    """Problems found (empty when the bundle is intact) and the payload when its signature holds."""
    try:
        payload = verify_jws(token.strip(), public_pem)
    except SignatureInvalid as exc:
        return [f"bundle signature: {exc}"], None
    if payload.get("format") != FORMAT:
        return [f"unknown bundle format {payload.get('format')!r}"], payload
    problems: list[str] = []
    try:
        chain_id = uuid.UUID(payload["audit"]["chain_id"])
        entries = [
            StoredEntry(
                e["seq"],
                bytes.fromhex(e["prev_hash"]),
                bytes.fromhex(e["hash"]),
                e["canonical"].encode("utf-8"),
            )
            for e in payload["audit"]["entries"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"bundle is malformed: {exc}"], payload
    verification = verify_chain(chain_id, entries)
    if not verification.valid:
        problems.append(f"audit chain: {verification.reason}")
    problems += _exchanges_match_entries(payload.get("exchanges", []), entries)
    problems += _checkpoint_problems(payload.get("checkpoint"), entries, public_pem)
    return problems, payload


def _exchanges_match_entries(exchanges: list[dict[str, Any]], entries: list[StoredEntry]) -> list[str]:
    recorded = {}
    for entry in entries:
        content = json.loads(entry.canonical)
        if "exchange_seq" in content:
            recorded[content["exchange_seq"]] = content
    problems = []
    for exchange in exchanges:
        content = recorded.get(exchange.get("seq"))
        actor = {
            "subject": exchange.get("actor"),
            "agency": exchange.get("agency"),
            "country": exchange.get("country"),
        }
        if content is None:
            problems.append(f"exchange {exchange.get('seq')} has no audit entry")
        elif (
            content["payload"] != exchange.get("payload")
            or content["actor"] != actor
            or content["action"] != exchange.get("action")
            or content["to_state"] != exchange.get("to_state")
        ):
            problems.append(f"exchange {exchange.get('seq')} differs from its audit entry")
    if len(recorded) != len(exchanges):
        problems.append(f"{len(recorded)} audited exchanges but {len(exchanges)} exchanges in the bundle")
    return problems


def _checkpoint_problems(
    checkpoint: dict[str, Any] | None, entries: list[StoredEntry], public_pem: str
) -> list[str]:
    if checkpoint is None:
        return []
    try:
        statement = verify_jws(checkpoint["signed"], public_pem)
        leaf = checkpoint["leaf"]
        leaf_hash = head_leaf(uuid.UUID(leaf["chain"]), leaf["seq"], bytes.fromhex(leaf["hash"]))
        proof = [bytes.fromhex(node) for node in checkpoint["proof"]]
        root = root_from_proof(leaf_hash, checkpoint["index"], statement["size"], proof)
    except SignatureInvalid as exc:
        return [f"checkpoint signature: {exc}"]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"checkpoint is malformed: {exc}"]
    problems = []
    if root is None or root.hex() != statement["root"]:
        problems.append("checkpoint: the inclusion proof does not lead to the signed root")
    seq = leaf["seq"]
    if seq > len(entries) or entries[seq - 1].hash.hex() != leaf["hash"]:
        problems.append(f"checkpoint: entry {seq} in the bundle is not the one the checkpoint signed")
    return problems
