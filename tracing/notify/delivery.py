"""The webhook delivery worker: claims due deliveries, posts them signed, records what happened.

Posting is concurrent (`webhook_concurrency` posters fed from a queue); the database work is not:
the worker's loop records every post finished since its last turn and claims the next batch in one
transaction, so the cost per delivery falls as the load rises.

A claim moves a delivery's `next_attempt_at` forward by a lease and gives it a fresh claim token,
in one statement (with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so workers running side by
side take different rows; SQLite serialises writers, so the conditional UPDATE is the
compare-and-set). The result is recorded only if the token is still ours. A worker that dies
mid-delivery leaves its claim to expire, and the delivery is posted again: at-least-once, with the
same `webhook-id`, so receivers can drop duplicates.

Posts are signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), go to
the address checked by the SSRF guard, never follow redirects, have a whole-exchange time limit
and read at most a bounded answer. A 2xx delivers; 410 Gone disables the agency's webhook and
stops its deliveries; anything else is retried with exponential backoff and jitter until the
retry window (at least 24 hours from the first failure) closes, then the delivery is failed and
may be redelivered from the API.

A delivery's end (delivered, or failed for good) is appended to its trace request's audit trail in
the transaction that records it: what was posted, to which agency, and how it ended.

The worker survives the database going away: errors are logged and the loop backs off and carries
on. It also runs the overdue sweep at its interval. Time comes from an injectable clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from tracing import __version__
from tracing.audit import log as audit_log
from tracing.config import Settings
from tracing.errors import TracingError
from tracing.models.agency import Agency
from tracing.models.notify import DeliveryAttempt, DeliveryStatus, Event, WebhookDelivery
from tracing.models.types import utcnow
from tracing.notify.addresses import (
    AddressPolicy,
    WebhookAddressRefused,
    pinned,
    resolve_allowed,
)
from tracing.notify.doorbell import delivery_doorbell
from tracing.notify.outbox import iso_utc
from tracing.workflow.deadlines import sweep_overdue

log = structlog.get_logger("tracing.notify")
Clock = Callable[[], dt.datetime]


# ---- pure parts -----------------------------------------------------------------------------


def retry_delay(attempts: int, *, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after `attempts` failures: exponential, capped, with "equal
    jitter" (half fixed, half random), so receivers coming back up are not hit by every worker at
    once."""
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 32))
    return ceiling / 2 + rng() * ceiling / 2


def webhook_payload(event: Event) -> dict[str, object]:
    """The posted object: the same as an item of the event feed."""
    return {
        "id": str(event.id),
        "type": event.type.value,
        "at": iso_utc(event.at),
        "trace_request_id": str(event.trace_request_id) if event.trace_request_id else None,
        "data": event.data,
    }


def webhook_body(event: Event) -> str:
    return json.dumps(webhook_payload(event), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Notified:
    """A delivery that reached its end (delivered, or failed for good): what its audit entry says.

    Every party of the request reads its trail, so the entry says why a delivery failed in fixed
    words (`audit_reason`), never with the recipient's webhook host or addresses that the attempt
    log shows to the recipient's own users."""

    delivery_id: uuid.UUID
    event: Event
    agency: str
    status: DeliveryStatus
    attempts: int
    status_code: int | None
    reason: str | None
    at: dt.datetime

    def audit_content(self) -> dict[str, object]:
        return {
            "delivery": str(self.delivery_id),
            "to_agency": self.agency,
            "status": self.status.value,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "reason": self.reason,
            "payload": webhook_payload(self.event),
        }


def audit_reason(result: PostResult) -> str | None:
    if result.verdict is Verdict.delivered:
        return None
    if result.verdict is Verdict.refused:
        return "not sent: the agency's webhook address was refused, removed or disabled"
    if result.status_code is not None:
        return f"the receiver answered {result.status_code}"
    return "the receiver could not be reached or did not answer in time"


def signed_headers(secret: str, event_id: uuid.UUID, body: str, at: dt.datetime) -> dict[str, str]:
    """Standard Webhooks headers; the signature covers id, timestamp and body."""
    at = at.replace(microsecond=0)
    return {
        "webhook-id": str(event_id),
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(str(event_id), at, body),
        "content-type": "application/json",
        "user-agent": f"tracing-webhooks/{__version__}",
    }


class Verdict(StrEnum):
    delivered = "delivered"
    gone = "gone"
    retry = "retry"
    refused = "refused"


@dataclass(frozen=True)
class PostResult:
    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0


def judge(status_code: int) -> tuple[Verdict, str | None]:
    if 200 <= status_code < 300:
        return Verdict.delivered, None
    if status_code == 410:
        return Verdict.gone, "the receiver answered 410 Gone; the webhook is disabled"
    if 300 <= status_code < 400:
        return Verdict.retry, f"the receiver redirected ({status_code}); redirects are not followed"
    return Verdict.retry, f"the receiver answered {status_code}"


# ---- the worker -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    token: uuid.UUID
    event_id: uuid.UUID
    agency: str
    attempts: int
    retry_until: dt.datetime | None


@dataclass(frozen=True)
class Job:
    """A claimed delivery with what posting it needs, loaded in the claim's transaction."""

    claimed: Claimed
    event: Event
    agency: Agency | None


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    result: PostResult
    at: dt.datetime
    event: Event


_DATABASE_ERRORS = (sa.exc.SQLAlchemyError, OSError, ConnectionError)


class DeliveryWorker:
    """Posts run concurrently; the database work (claiming, recording outcomes in batches) is done
    by the worker's loop alone, one transaction at a time, so a worker never contends with itself
    for SQLite's single writer."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Clock = utcnow,
        http: httpx.AsyncClient | None = None,
        rng: Callable[[], float] = random.random,
        sweep: bool = True,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.sweep_enabled = sweep and settings.overdue_sweep_seconds > 0
        self.policy = AddressPolicy.from_settings(settings)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                settings.webhook_timeout_seconds, connect=settings.webhook_connect_timeout_seconds
            ),
            limits=httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=32),
        )
        self._postgres = not settings.is_sqlite

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # -- the loop --

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until `stop` is set (or the task is cancelled). Database outages are waited out.

        `webhook_concurrency` posters take claimed jobs from a queue; the loop keeps the queue
        topped up (claiming when it falls to one batch, up to two) and records finished posts. Each
        transaction covers however many posts finished meanwhile, so batches grow with the load.
        """
        stop = stop or asyncio.Event()
        concurrency = self.settings.webhook_concurrency
        queue: asyncio.Queue[Job] = asyncio.Queue()
        finished: list[Outcome] = []
        posted = asyncio.Event()
        busy = 0
        next_sweep = time.monotonic()
        failures = 0

        async def poster() -> None:
            nonlocal busy
            while True:
                job = await queue.get()
                busy += 1
                try:
                    finished.append(await self.post(job))
                finally:
                    busy -= 1
                    posted.set()

        posters = [asyncio.create_task(poster()) for _ in range(concurrency)]
        log.info("worker_started", concurrency=concurrency, sweep=self.sweep_enabled)
        try:
            while not stop.is_set():
                generation = delivery_doorbell.generation
                posted.clear()
                wanted = claimed = 0
                try:
                    batch = finished[:]
                    outstanding = queue.qsize() + busy
                    wanted = 2 * concurrency - outstanding if outstanding <= concurrency else 0
                    if batch or wanted:
                        # One transaction records what finished and claims what is due: the fewer
                        # write transactions, the less a worker waits for (or holds) SQLite's lock.
                        async with self.sessions() as session:
                            logged = await self._record_in(session, batch) if batch else []
                            jobs = await self._claim_in(session, wanted) if wanted else []
                            await session.commit()
                        del finished[: len(batch)]  # posts may have finished meanwhile: keep those
                        self._log_attempts(logged)
                        for job in jobs:
                            queue.put_nowait(job)
                        claimed = len(jobs)
                    if self.sweep_enabled and time.monotonic() >= next_sweep:
                        await self.sweep()
                        next_sweep = time.monotonic() + self.settings.overdue_sweep_seconds
                    failures = 0
                except _DATABASE_ERRORS as exc:
                    failures += 1
                    pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.warning("worker_database_error", error=exc.__class__.__name__, retry_in_s=pause)
                    self._forget_expired(finished)
                    await _wait_for(stop, pause)
                    continue
                if finished or (wanted and claimed == wanted):
                    continue  # outcomes to record, or a full batch: more may be due already
                await self._idle(stop, generation, posted)
            await self._drain(queue, lambda: busy, posted, finished)
        finally:
            for task in posters:
                task.cancel()
            await asyncio.gather(*posters, return_exceptions=True)
            log.info("worker_stopped")

    async def _drain(
        self,
        queue: asyncio.Queue[Job],
        busy: Callable[[], int],
        posted: asyncio.Event,
        finished: list[Outcome],
    ) -> None:
        """On a requested stop: let claimed posts finish (bounded by the post time limit) and record
        them, so a restart does not post them again."""
        deadline = time.monotonic() + self.settings.webhook_timeout_seconds + 1
        while (queue.qsize() or busy()) and (remaining := deadline - time.monotonic()) > 0:
            posted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(posted.wait(), remaining)
        try:
            await self.record(finished[:])
        except _DATABASE_ERRORS as exc:
            log.warning("worker_database_error", error=exc.__class__.__name__, retry_in_s=None)

    def _forget_expired(self, finished: list[Outcome]) -> None:
        """Outcomes whose claim has expired will be retried anyway; stop trying to record them."""
        lease = dt.timedelta(seconds=self.settings.webhook_lease_seconds)
        now = self.clock()
        finished[:] = [outcome for outcome in finished if now - outcome.at < lease]

    async def _idle(self, stop: asyncio.Event, generation: int, posted: asyncio.Event) -> None:
        """Until a commit rings the delivery doorbell, a post finishes, stop is asked, or the poll
        interval."""
        waits = [
            asyncio.create_task(delivery_doorbell.wait(generation, self.settings.worker_poll_seconds)),
            asyncio.create_task(stop.wait()),
            asyncio.create_task(posted.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim every delivery due now, post and record them (tests, `tracing worker --once`)."""
        total = 0
        while jobs := await self.claim(self.settings.webhook_concurrency):
            await self.record(list(await asyncio.gather(*(self.post(job) for job in jobs))))
            total += len(jobs)
        return total

    async def sweep(self) -> None:
        async with self.sessions() as session:
            result = await sweep_overdue(session, now=self.clock())
        if result.acknowledgements_missed or result.answers_missed:
            log.info(
                "overdue_swept",
                acknowledgements_missed=result.acknowledgements_missed,
                answers_missed=result.answers_missed,
            )

    # -- claiming --

    async def claim(self, limit: int) -> list[Job]:
        async with self.sessions() as session:
            jobs = await self._claim_in(session, limit)
            await session.commit()
        return jobs

    async def _claim_in(self, session: AsyncSession, limit: int) -> list[Job]:
        """Claim up to `limit` due deliveries in the caller's transaction, with what posting needs."""
        now = self.clock()
        token = uuid.uuid4()
        due = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if self._postgres:
            due = due.with_for_update(skip_locked=True)
        statement = (
            sa.update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(due.scalar_subquery()),
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                claim_token=token,
                next_attempt_at=now + dt.timedelta(seconds=self.settings.webhook_lease_seconds),
            )
            .returning(
                WebhookDelivery.id,
                WebhookDelivery.event_id,
                WebhookDelivery.agency,
                WebhookDelivery.attempts,
                WebhookDelivery.retry_until,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = [
            Claimed(row[0], token, row[1], row[2], row[3], row[4]) for row in await session.execute(statement)
        ]
        if not claimed:
            return []
        events = await session.execute(select(Event).where(Event.id.in_([c.event_id for c in claimed])))
        by_id = {event.id: event for event in events.scalars()}
        codes = {c.agency for c in claimed}
        agencies = await session.execute(select(Agency).where(Agency.code.in_(codes)))
        by_code = {agency.code: agency for agency in agencies.scalars()}
        return [Job(c, by_id[c.event_id], by_code.get(c.agency)) for c in claimed]

    # -- posting --

    async def post(self, job: Job) -> Outcome:
        """Post one claimed delivery; never raises (an unexpected error is a failed attempt)."""
        try:
            result = await self._post(job.event, job.agency)
        except Exception as exc:  # noqa: BLE001 (recorded as the attempt's error, then retried)
            result = PostResult(Verdict.retry, error=f"{exc.__class__.__name__} while posting")
        return Outcome(job.claimed, result, self.clock(), job.event)

    async def _post(self, event: Event, agency: Agency | None) -> PostResult:
        if agency is None or not agency.webhook_url or not agency.webhook_secret:
            return PostResult(Verdict.refused, error="the agency no longer has a webhook")
        if agency.webhook_disabled_at is not None:
            return PostResult(Verdict.refused, error="the agency's webhook is disabled (410 Gone earlier)")
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            url, addresses = await resolve_allowed(agency.webhook_url, self.policy)
        except WebhookAddressRefused as exc:
            return PostResult(Verdict.refused, error=exc.detail[:500], duration_ms=elapsed())
        except TracingError as exc:
            return PostResult(Verdict.retry, error=exc.detail[:500], duration_ms=elapsed())
        target, host_header, extensions = pinned(url, addresses[0])
        body = webhook_body(event)
        # Signed with the wall clock, which receivers compare against (the injectable clock schedules).
        headers = signed_headers(agency.webhook_secret, event.id, body, utcnow()) | host_header
        deadline = asyncio.get_running_loop().time() + self.settings.webhook_timeout_seconds
        request = self.http.build_request(
            "POST", target, content=body.encode(), headers=headers, extensions=extensions
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await self.http.send(request, stream=True)
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_seconds:g} s"
            return PostResult(Verdict.retry, error=error, duration_ms=elapsed())
        except httpx.HTTPError as exc:
            return PostResult(Verdict.retry, error=_describe(exc), duration_ms=elapsed())
        try:
            # The status decides; the body is read (bounded, within the same time limit) only so the
            # connection can be reused, and a body that never ends does not undo a 2xx.
            async with asyncio.timeout_at(deadline):
                await _read_bounded(response, self.settings.webhook_max_response_bytes)
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:
            await response.aclose()
        verdict, error = judge(response.status_code)
        return PostResult(verdict, status_code=response.status_code, error=error, duration_ms=elapsed())

    # -- recording --

    def _changes(self, outcome: Outcome) -> dict[str, object]:
        """The delivery's columns after this attempt: delivered, failed, or due again later."""
        claimed, result, now = outcome.claimed, outcome.result, outcome.at
        attempts = claimed.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "claim_token": None,
            "updated_at": now,
            "last_status_code": result.status_code,
            "last_error": result.error,
        }
        if result.verdict is Verdict.delivered:
            return values | {"status": DeliveryStatus.delivered, "delivered_at": now}
        if result.verdict in (Verdict.gone, Verdict.refused):
            return values | {"status": DeliveryStatus.failed, "failed_at": now}
        retry_until = claimed.retry_until or now + dt.timedelta(hours=self.settings.webhook_retry_hours)
        values["retry_until"] = retry_until
        if now >= retry_until:
            return values | {"status": DeliveryStatus.failed, "failed_at": now}
        delay = retry_delay(
            attempts,
            base=self.settings.webhook_backoff_base_seconds,
            cap=self.settings.webhook_backoff_max_seconds,
            rng=self.rng,
        )
        return values | {"next_attempt_at": now + dt.timedelta(seconds=delay)}

    async def record(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        async with self.sessions() as session:
            logged = await self._record_in(session, outcomes)
            await session.commit()
        self._log_attempts(logged)

    async def _record_in(self, session: AsyncSession, outcomes: list[Outcome]) -> list[tuple[Outcome, dict]]:
        """Record attempts in the caller's transaction with one UPDATE (a CASE per column,
        compare-and-set on each delivery's claim token); returns what to log once committed. An
        outcome whose claim was taken over (its lease ran out) is dropped: the new claimant posts
        and records it."""
        table = WebhookDelivery.__table__
        latest = {outcome.claimed.delivery_id: outcome for outcome in outcomes}
        changes = {delivery_id: self._changes(outcome) for delivery_id, outcome in latest.items()}
        columns: dict[str, sa.ColumnElement[object]] = {}
        for name in _RECORDED_COLUMNS:
            column = table.c[name]
            whens = {
                delivery_id: sa.bindparam(None, change[name], type_=column.type)
                for delivery_id, change in changes.items()
                if name in change
            }
            if whens:
                columns[name] = sa.case(whens, value=table.c.id, else_=column)
        claims = [(o.claimed.delivery_id, o.claimed.token) for o in latest.values()]
        statement = (
            sa.update(table)
            .where(sa.tuple_(table.c.id, table.c.claim_token).in_(claims))
            .values(columns)
            .returning(table.c.id)
        )
        recorded = set((await session.execute(statement)).scalars())
        attempts = [
            {
                "delivery_id": delivery_id,
                "number": outcome.claimed.attempts + 1,
                "at": outcome.at,
                "duration_ms": outcome.result.duration_ms,
                "status_code": outcome.result.status_code,
                "error": outcome.result.error,
            }
            for delivery_id, outcome in latest.items()
            if delivery_id in recorded
        ]
        if attempts:
            await session.execute(sa.insert(DeliveryAttempt.__table__), attempts)
        notified = [
            Notified(
                delivery_id,
                outcome.event,
                outcome.claimed.agency,
                changes[delivery_id]["status"],
                outcome.claimed.attempts + 1,
                outcome.result.status_code,
                audit_reason(outcome.result),
                outcome.at,
            )
            for delivery_id, outcome in latest.items()
            if delivery_id in recorded and "status" in changes[delivery_id]
        ]
        for delivery_id, outcome in latest.items():
            if delivery_id in recorded and outcome.result.verdict is Verdict.gone:
                notified += await _disable_webhook(session, outcome.claimed.agency, outcome.at)
        await audit_notifications(session, notified)
        for delivery_id in latest.keys() - recorded:
            log.info("delivery_claim_lost", delivery=str(delivery_id))
        return [(latest[d], changes[d]) for d in latest if d in recorded]

    @staticmethod
    def _log_attempts(logged: list[tuple[Outcome, dict]]) -> None:
        for outcome, change in logged:
            claimed, result = outcome.claimed, outcome.result
            log.info(
                "webhook_attempt",
                delivery=str(claimed.delivery_id),
                agency=claimed.agency,
                attempt=claimed.attempts + 1,
                outcome=str(change.get("status", DeliveryStatus.pending)),
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
            )


_RECORDED_COLUMNS = (
    "attempts",
    "claim_token",
    "updated_at",
    "last_status_code",
    "last_error",
    "status",
    "delivered_at",
    "failed_at",
    "retry_until",
    "next_attempt_at",
)


async def audit_notifications(session: AsyncSession, notified: list[Notified]) -> None:
    """Append each finished delivery to its trace request's audit trail, in the caller's transaction
    (the one that records the delivery's end)."""
    appends = [
        audit_log.Append(item.event.trace_request_id, "notification", item.at, item.audit_content())
        for item in sorted(notified, key=lambda item: item.at)
        if item.event.trace_request_id is not None
    ]
    await audit_log.append_many(session, appends)


async def _disable_webhook(session: AsyncSession, agency: str, now: dt.datetime) -> list[Notified]:
    """410 Gone: stop sending to this agency until an admin sets its webhook URL again. Its other
    pending deliveries fail with it; returns them for the audit trail."""
    reason = "the receiver answered 410 Gone"
    await session.execute(
        sa.update(Agency)
        .where(Agency.code == agency)
        .values(webhook_disabled_at=now, webhook_disabled_reason=reason)
        .execution_options(synchronize_session=False)
    )
    failed = (
        await session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.agency == agency, WebhookDelivery.status == DeliveryStatus.pending)
            .values(
                status=DeliveryStatus.failed, failed_at=now, updated_at=now, last_error=f"{reason} earlier"
            )
            .returning(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.attempts)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not failed:
        return []
    events = await session.execute(select(Event).where(Event.id.in_([row.event_id for row in failed])))
    by_id = {event.id: event for event in events.scalars()}
    return [
        Notified(
            row.id,
            by_id[row.event_id],
            agency,
            DeliveryStatus.failed,
            row.attempts,
            None,
            "not sent again: the receiver answered 410 Gone to another delivery",
            now,
        )
        for row in failed
    ]


async def _read_bounded(response: httpx.Response, limit: int) -> None:
    """Read at most `limit` bytes of the answer; the rest is dropped with the connection."""
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received >= limit:
            break


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "could not connect to the receiver"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({exc.__class__.__name__})"
    return f"{exc.__class__.__name__} while posting"[:500]


async def _wait_for(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
