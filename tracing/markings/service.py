"""Cross-checking a trace request's markings against every registry we know.

`schedule` adds one pending cross-check per enabled registry inside the caller's transaction (submit,
forward, or a party asking again), so the 201 never waits on a registry. A runner claims due rows
(SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the claiming UPDATE is atomic because
writes are serialised), asks the registry, classifies and ranks what it found, and stores the result,
its audit entry and any lost/stolen notice in one transaction. A registry that is down leaves an
`unavailable` result that is retried later with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from tracing.agencies import contact_point_of
from tracing.audit import log as audit_log
from tracing.markings.adapters import (
    CircuitBreaker,
    HttpPolicy,
    HttpRegistry,
    LocalRegistry,
    RegistryAdapter,
    RegistryError,
)
from tracing.markings.keys import key_hash, lookup_plan
from tracing.markings.matching import Match, MatchClass, Reading, match_all
from tracing.markings.registries import alias_table, make_resolver, resolver
from tracing.models.registry import (
    AdapterKind,
    CrossCheck,
    CrossCheckPublic,
    CrossCheckStatus,
    CrossCheckTrigger,
    MakeResolutionPublic,
    MatchPublic,
    RecordPublic,
    Registry,
    RegistryNotice,
)
from tracing.models.trace_request import TraceRequest
from tracing.models.types import utcnow
from tracing.notify import outbox

log = structlog.get_logger("tracing.cross_checks")

MAX_MATCHES = 20
MAX_ATTEMPTS = 8
_RETRYABLE = (CrossCheckStatus.unavailable, CrossCheckStatus.error)


async def schedule(
    session: AsyncSession, request: TraceRequest, trigger: CrossCheckTrigger
) -> list[CrossCheck]:
    """Add a pending cross-check per enabled registry (none twice while one is still pending), in the
    caller's transaction; the caller commits."""
    registries = (await session.execute(select(Registry.id).where(Registry.enabled))).scalars().all()
    if not registries:
        return []
    waiting = set(
        (
            await session.execute(
                select(CrossCheck.registry_id).where(
                    CrossCheck.trace_request_id == request.id, CrossCheck.status == CrossCheckStatus.pending
                )
            )
        ).scalars()
    )
    now = utcnow()
    added = [
        CrossCheck(
            trace_request_id=request.id,
            registry_id=registry_id,
            trigger=trigger,
            status=CrossCheckStatus.pending,
            next_attempt_at=now,
            created_at=now,
        )
        for registry_id in registries
        if registry_id not in waiting
    ]
    session.add_all(added)
    return added


def reading_of(request: TraceRequest) -> Reading:
    return Reading(
        serial_number=request.serial_number,
        make=request.firearm_make,
        model=request.firearm_model,
        calibre=request.firearm_calibre,
        other_names=tuple(
            name
            for name in [*(mark.get("text") for mark in request.import_marks), *request.other_markings]
            if name
        ),
    )


def retry_delay(attempts: int, base_seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 3600))


def match_json(match: Match) -> dict[str, Any]:
    details = {k: v for k, v in match.candidate.details.items() if k != "record_no"}
    details.update(details.pop("details", None) or {})
    return {
        "match_class": match.match_class.value,
        "serial": match.serial.value,
        "score": match.score,
        "make": match.make.value,
        "model": match.model.value,
        "calibre": match.calibre.value,
        "warnings": list(match.warnings),
        "record": {
            "record_id": details.pop("record_id", None) or match.candidate.ref,
            "serial_number": match.candidate.serial_number,
            "make": match.candidate.make,
            "model": match.candidate.model,
            "calibre": match.candidate.calibre,
            "kind": details.pop("kind", None),
            "country_of_manufacture": details.pop("country_of_manufacture", None),
            "year_of_manufacture": details.pop("year_of_manufacture", None),
            "details": {k: v for k, v in details.items() if v is not None},
        },
    }


class CrossCheckRunner:
    """Claims due cross-checks and runs them; one per app instance, several instances are safe."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        http: httpx.AsyncClient | None = None,
        poll_seconds: float = 1.0,
        retry_base_seconds: float = 30.0,
        lease_seconds: float = 300.0,
        policy: HttpPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        self._owns_http = http is None
        self.poll_seconds = poll_seconds
        self.retry_base_seconds = retry_base_seconds
        self.lease_seconds = lease_seconds
        self.policy = policy
        self.worker = uuid.uuid4().hex[:16]
        self.breakers: dict[uuid.UUID, CircuitBreaker] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def serve(self) -> None:
        """Run due cross-checks until cancelled; sleeps between polls unless woken."""
        while True:
            try:
                done = await self.run_pending()
            except Exception as exc:  # a database hiccup must not stop the runner for good
                log.warning("cross_check_runner_failed", error=exc.__class__.__name__)
                done = 0
            if done == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def run_pending(self, limit: int = 20) -> int:
        """Claim and run the cross-checks due by now until none is left; returns how many ran.
        (One that fails is due again later, so it is not retried within the same call.)"""
        total = 0
        started = utcnow()
        while claimed := await self._claim(limit, started):
            for check_id in claimed:
                await self.run_one(check_id)
            total += len(claimed)
        return total

    async def _claim(self, limit: int, due_by: dt.datetime) -> list[uuid.UUID]:
        now = utcnow()
        due = sa.or_(
            sa.and_(
                CrossCheck.status.in_([CrossCheckStatus.pending, *_RETRYABLE]),
                CrossCheck.next_attempt_at <= due_by,
            ),
            sa.and_(
                CrossCheck.status == CrossCheckStatus.running,
                CrossCheck.claimed_at < now - dt.timedelta(seconds=self.lease_seconds),
            ),
        )
        candidates = (
            select(CrossCheck.id)
            .where(due)
            .order_by(CrossCheck.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.update(CrossCheck)
            .where(CrossCheck.id.in_(candidates), due)
            .values(status=CrossCheckStatus.running, claimed_by=self.worker, claimed_at=now)
            .returning(CrossCheck.id)
        )
        async with self.sessions() as session:
            claimed = list((await session.execute(statement)).scalars())
            await session.commit()
        return claimed

    def _adapter(self, registry: Registry, session: AsyncSession) -> RegistryAdapter:
        if registry.adapter == AdapterKind.http:
            breaker = self.breakers.setdefault(registry.id, CircuitBreaker())
            return HttpRegistry(registry, self.http, breaker, self.policy)
        return LocalRegistry(registry, session)

    async def run_one(self, check_id: uuid.UUID) -> None:
        async with self.sessions() as session:
            check = await session.get(CrossCheck, check_id)
            if check is None or check.claimed_by != self.worker:
                return
            registry = await session.get(Registry, check.registry_id)
            statement = select(TraceRequest).where(TraceRequest.id == check.trace_request_id)
            request = (await session.execute(statement)).scalar_one_or_none()
            assert registry is not None and request is not None
            reading = reading_of(request)
            plan = lookup_plan(reading.serial_number)
            status, outcome, detail, found = CrossCheckStatus.completed, "no_match", None, []
            if not plan.searchable:
                outcome, detail = "not_searchable", plan.reason
            else:
                adapter = self._adapter(registry, session)
                try:
                    candidates = await adapter.lookup(reading, plan)
                except RegistryError as exc:
                    status, outcome, detail = CrossCheckStatus(exc.status), None, str(exc)
                else:
                    resolve = make_resolver(await alias_table(session))
                    found = match_all(
                        reading, candidates, lost_or_stolen=adapter.lost_or_stolen, resolve=resolve, plan=plan
                    )[:MAX_MATCHES]
                    outcome = found[0].match_class.value if found else "no_match"
            await session.commit()  # end the read before writing (SQLite upgrades no read to a write)
            await self._store(session, check, registry, request, status, outcome, detail, found)

    async def _store(
        self,
        session: AsyncSession,
        check: CrossCheck,
        registry: Registry,
        request: TraceRequest,
        status: CrossCheckStatus,
        outcome: str | None,
        detail: str | None,
        found: Sequence[Match],
    ) -> None:
        now = utcnow()
        attempts = check.attempts + 1
        first_attempt = check.attempts == 0  # read before the UPDATE below refreshes `check`
        retry_at = None
        if status in _RETRYABLE and attempts < MAX_ATTEMPTS:
            retry_at = now + retry_delay(attempts, self.retry_base_seconds)
        matches = [match_json(m) for m in found]
        updated = await session.execute(
            sa.update(CrossCheck)
            .where(CrossCheck.id == check.id, CrossCheck.claimed_by == self.worker)
            .values(
                status=status,
                outcome=outcome,
                detail=(detail or "")[:2000] or None,
                matches=matches,
                attempts=attempts,
                next_attempt_at=retry_at,
                claimed_by=None,
                claimed_at=None,
                completed_at=now if status == CrossCheckStatus.completed else None,
            )
        )
        if updated.rowcount != 1:
            await session.rollback()  # another runner took it over after our lease ran out
            return
        # Audit each result once: the first failure, and the completed result.
        if status == CrossCheckStatus.completed or first_attempt:
            await audit_log.append(
                session,
                chain_id=request.id,
                action="cross_check",
                at=now,
                content={
                    "cross_check": str(check.id),
                    "registry": registry.code,
                    "registry_kind": registry.kind.value,
                    "trigger": check.trigger.value,
                    "status": status.value,
                    "outcome": outcome,
                    "detail": detail,
                    "matches": [
                        {k: m[k] for k in ("match_class", "serial", "score")}
                        | {"record": m["record"]["record_id"]}
                        for m in matches[:5]
                    ],
                },
            )
        for match in found:
            if match.match_class is MatchClass.reported_lost_or_stolen:
                await _notify_owner(session, registry, request, check, match)
        await session.commit()
        log.info("cross_check_done", registry=registry.code, status=status.value, outcome=outcome)


async def _notify_owner(
    session: AsyncSession, registry: Registry, request: TraceRequest, check: CrossCheck, match: Match
) -> None:
    """Keep a notice for the lost/stolen list owner's contact point, once per request and record."""
    details = match.candidate.details
    record_no = details.get("record_no") or key_hash("remote\x1f" + match.candidate.ref)
    statement = select(RegistryNotice.id).where(
        RegistryNotice.trace_request_id == request.id,
        RegistryNotice.registry_id == registry.id,
        RegistryNotice.record_no == record_no,
    )
    if (await session.execute(statement)).first() is not None:
        return
    contact_point = await contact_point_of(session, registry.owner_country)
    session.add(
        RegistryNotice(
            registry_id=registry.id,
            owner_country=registry.owner_country,
            contact_point=contact_point.code if contact_point else None,
            trace_request_id=request.id,
            cross_check_id=check.id,
            record_no=record_no,
            content={
                "registry": registry.code,
                "trace_request": request.reference,
                "requesting_country": request.requesting_country,
                "seizure_country": request.seizure_country,
                "seizure_date": request.seizure_date.isoformat(),
                "match": match_json(match),
            },
        )
    )
    # The same hit as an event for the owner's contact point (webhook and event feed), in this
    # transaction: the registry, the record's number and how sure the match is; no possessor details.
    await outbox.emit_crosscheck_hit(
        session,
        request,
        registry_owner_country=registry.owner_country,
        hit={
            "registry": registry.code,
            "record_no": record_no,
            "match_class": match.match_class.value,
            "score": match.score,
        },
        at=utcnow(),
    )


# ---- reading results ----------------------------------------------------------------------------


def to_public(check: CrossCheck, registry: Registry) -> CrossCheckPublic:
    matches = [
        MatchPublic(**{k: v for k, v in m.items() if k != "record"}, record=RecordPublic(**m["record"]))
        for m in check.matches
    ]
    return CrossCheckPublic(
        id=check.id,
        registry=registry.code,
        registry_name=registry.name,
        registry_kind=registry.kind,
        owner_country=registry.owner_country,
        trigger=check.trigger,
        status=check.status,
        outcome=check.outcome,
        highlight=any(m.match_class == MatchClass.reported_lost_or_stolen for m in matches),
        attempts=check.attempts,
        detail=check.detail,
        matches=matches,
        created_at=check.created_at,
        completed_at=check.completed_at,
        next_attempt_at=check.next_attempt_at,
    )


async def latest_for(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[CrossCheckPublic]]:
    """The latest cross-check per registry for each request, lost/stolen hits first."""
    found: dict[uuid.UUID, list[CrossCheckPublic]] = {request_id: [] for request_id in request_ids}
    if not request_ids:
        return found
    statement = (
        select(CrossCheck, Registry)
        .join(Registry, Registry.id == CrossCheck.registry_id)
        .where(CrossCheck.trace_request_id.in_(request_ids))
        .order_by(CrossCheck.created_at.desc(), CrossCheck.id)
    )
    seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for check, registry in await session.execute(statement):
        if (check.trace_request_id, registry.id) in seen:
            continue
        seen.add((check.trace_request_id, registry.id))
        found[check.trace_request_id].append(to_public(check, registry))
    for items in found.values():
        items.sort(key=lambda c: (not c.highlight, -(c.matches[0].score if c.matches else 0), c.registry))
    return found


async def make_resolution(session: AsyncSession, make: str) -> MakeResolutionPublic:
    resolved = resolver(await alias_table(session))(make)
    return MakeResolutionPublic(
        as_marked=make,
        canonical=resolved[0] if resolved else None,
        country=resolved[1] if resolved else None,
        known=resolved is not None,
    )


async def notices(session: AsyncSession, *, owner_country: str | None) -> list[RegistryNotice]:
    statement = select(RegistryNotice).order_by(RegistryNotice.created_at.desc()).limit(500)
    if owner_country is not None:
        statement = statement.where(RegistryNotice.owner_country == owner_country)
    return list((await session.execute(statement)).scalars())
