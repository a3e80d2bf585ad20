"""After a load or fault run: hold the database to what the service told its clients, and verify
every audit chain with the server's signing key.

What is checked:
- every trace request the service answered 201 for exists, and every move it answered 2xx for is
  its exchange at the step's sequence number, by the same action; the request's state and version
  are the last the client saw (one step more is allowed only where a fault left a move in doubt);
- nothing is half-written: each request has exactly `version` exchanges, numbered 1..version, and
  exactly `version` audit entries of exchanges, with the chain head after every entry of its chain
  (cross-check results and webhook deliveries add entries of their own);
- nothing appeared that no client asked for: every request in the database is one the ledger
  holds, or the one a submission in doubt may have created (its Idempotency-Key says which);
- every audit chain and the latest checkpoint verify (`tracing.audit.log.verify_everything`);
- every exchange has its outbox events, once there is an outbox (`outbox_problems`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bench.workload import Ledger
from tracing.audit.log import verify_everything
from tracing.db import create_engine, create_sessionmaker
from tracing.models.audit import AuditCheckpoint, AuditEntry, AuditHead
from tracing.models.exchange import Action, Exchange
from tracing.models.trace_request import IdempotencyKey, TraceRequest

MAX_PROBLEMS_SHOWN = 20


_EXCHANGE_ACTIONS = {action.value for action in Action}


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def print(self) -> None:
        print("database after the run: " + ", ".join(f"{n} {name}" for name, n in self.counts.items()))
        for problem in self.problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  PROBLEM {problem}")
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            print(f"  ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")


async def check_database(database_url: str, ledger: Ledger, public_pem: str) -> Verdict:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            verdict = Verdict()
            await _check_requests(session, ledger, verdict)
            report = await verify_everything(session, public_pem)
            verdict.counts["audit chains verified"] = report.chains
            verdict.counts["audit entries verified"] = report.entries
            for chain_id, verification in report.broken.items():
                verdict.problems.append(f"audit chain {chain_id} does not verify: {verification}")
            verdict.problems += [f"checkpoint: {p}" for p in report.checkpoint_problems]
            checkpoints = await session.scalar(sa.select(sa.func.count()).select_from(AuditCheckpoint))
            verdict.counts["signed checkpoints"] = int(checkpoints or 0)
            verdict.problems += await outbox_problems(session)
            return verdict
    finally:
        await engine.dispose()


async def _check_requests(session: AsyncSession, ledger: Ledger, verdict: Verdict) -> None:
    stored = {
        row.id: row
        for row in await session.execute(
            sa.select(
                TraceRequest.id, TraceRequest.state, TraceRequest.version, TraceRequest.requesting_agency
            )
        )
    }
    exchanges: dict[uuid.UUID, dict[int, tuple[str, str]]] = defaultdict(dict)
    for request_id, seq, action, actor in await session.execute(
        sa.select(Exchange.trace_request_id, Exchange.seq, Exchange.action, Exchange.actor)
    ):
        exchanges[request_id][seq] = (action.value, actor)
    entries: dict[uuid.UUID, int] = defaultdict(int)
    exchange_entries: dict[uuid.UUID, int] = defaultdict(int)
    for chain_id, action, count in await session.execute(
        sa.select(AuditEntry.chain_id, AuditEntry.action, sa.func.count()).group_by(
            AuditEntry.chain_id, AuditEntry.action
        )
    ):
        entries[chain_id] += count
        if action in _EXCHANGE_ACTIONS:
            exchange_entries[chain_id] += count
    heads = dict((await session.execute(sa.select(AuditHead.chain_id, AuditHead.seq))).all())
    keys = {
        (agency, subject, key): request_id
        for agency, subject, key, request_id in await session.execute(
            sa.select(
                IdempotencyKey.agency,
                IdempotencyKey.subject,
                IdempotencyKey.key,
                IdempotencyKey.trace_request_id,
            )
        )
    }
    verdict.counts["trace requests"] = len(stored)
    verdict.counts["exchanges"] = sum(len(e) for e in exchanges.values())
    problems = verdict.problems

    # Nothing half-written, whoever wrote it.
    for request_id, row in stored.items():
        seqs = sorted(exchanges.get(request_id, {}))
        if seqs != list(range(1, row.version + 1)):
            problems.append(f"{request_id} is at version {row.version} but has exchanges {seqs}")
        if exchange_entries[request_id] != row.version or heads.get(request_id) != entries[request_id]:
            problems.append(
                f"{request_id} is at version {row.version} but has {exchange_entries[request_id]} audit"
                f" entries of exchanges, {entries[request_id]} in all, and its chain head at"
                f" {heads.get(request_id)}"
            )

    # Everything acknowledged is there, as the client last saw it.
    accounted: set[uuid.UUID] = set()
    for case in ledger.created:
        assert case.id is not None
        accounted.add(case.id)
        row = stored.get(case.id)
        if row is None:
            problems.append(f"{case.id} was acknowledged with 201 but is not in the database")
            continue
        if keys.get((case.agency, case.subject, case.key)) != case.id:
            problems.append(f"Idempotency-Key {case.key} does not lead to {case.id}")
        for step in case.steps:
            found = exchanges[case.id].get(step.seq)
            if found is None or found[0] != step.action:
                how = "acknowledged" if step.acknowledged else "found committed"
                problems.append(
                    f"{case.id}: step {step.seq} {step.action} was {how} but exchange {step.seq} is {found}"
                )
        expected = {case.version, case.version + 1} if case.in_doubt else {case.version}
        if row.version not in expected or (not case.in_doubt and row.state.value != case.state):
            problems.append(
                f"{case.id} is at version {row.version} {row.state.value}; the client last saw"
                f" {case.version} {case.state}{' (a move in doubt)' if case.in_doubt else ''}"
            )

    # Nothing nobody asked for: a request outside the ledger must be one a submission in doubt made.
    for case in ledger.submissions_in_doubt:
        request_id = keys.get((case.agency, case.subject, case.key))
        if request_id is not None:
            accounted.add(request_id)
    strangers = set(stored) - accounted
    if strangers:
        problems.append(
            f"{len(strangers)} trace requests no client was told about, e.g. {sorted(strangers)[:3]}"
        )
    verdict.counts["acknowledged submissions"] = len(ledger.created)
    verdict.counts["acknowledged moves"] = ledger.acknowledged_steps() - len(ledger.created)
    verdict.counts["steps found committed after a lost response"] = ledger.learned_steps()
    verdict.counts["submissions in doubt"] = len(ledger.submissions_in_doubt)


# ---- the outbox -----------------------------------------------------------------------------

# The event each workflow action emits, in the notifications branch's vocabulary
# (tracing/models/notify.py: EventType). An event row is written in the transaction of its
# exchange, so an exchange without its event is a lost notification.
EVENT_OF_ACTION = {
    "submit": "request.submitted",
    "forward": "request.forwarded",
    "acknowledge": "request.acknowledged",
    "answer": "request.answered",
    "close": "request.closed",
}
_EXCHANGES = sa.table(
    "exchange", sa.column("trace_request_id", sa.Uuid()), sa.column("seq", sa.Integer()), sa.column("action")
)
_EVENTS = sa.table(
    "event", sa.column("trace_request_id", sa.Uuid()), sa.column("type"), sa.column("data", sa.JSON())
)


async def outbox_problems(session: AsyncSession) -> list[str]:
    """Every exchange has at least one outbox event of its action, carrying the request's version
    after the step (`data.version`, which equals the exchange's `seq`).

    Before the notifications branch is merged there is no `event` table and nothing to check; once
    it exists this check runs by itself. Extend it here when the outbox grows (e.g. deliveries for
    agencies with webhooks: one `webhook_delivery` row per such event)."""
    tables = await session.run_sync(lambda sync: sa.inspect(sync.connection()).get_table_names())
    if "event" not in tables:
        return []
    emitted: set[tuple[uuid.UUID, str, int]] = set()
    for request_id, event_type, data in await session.execute(
        sa.select(_EVENTS.c.trace_request_id, _EVENTS.c.type, _EVENTS.c.data).where(
            _EVENTS.c.trace_request_id.is_not(None)
        )
    ):
        emitted.add((request_id, event_type, (data or {}).get("version")))
    missing = [
        f"exchange {seq} ({action}) of {request_id} has no {EVENT_OF_ACTION.get(action, '?')} event"
        for request_id, seq, action in await session.execute(
            sa.select(_EXCHANGES.c.trace_request_id, _EXCHANGES.c.seq, _EXCHANGES.c.action)
        )
        if (request_id, EVENT_OF_ACTION.get(action, "?"), seq) not in emitted
    ]
    return missing
