"""Registry adapters behind one small interface: a local registry in our database, and an HTTP
registry reached with httpx (explicit timeouts, bounded retries with backoff, a circuit breaker,
typed errors). Both return candidate records; classification and ranking happen in matching.py.

The HTTP registry contract (also in the README):
    POST {url}/lookup   {"serial_number", "normalized_serial", "confusable_key", "make", "model",
                         "calibre", "max_records"}
    200                 {"records": [{"record_id", "serial_number", "make", "model", "calibre", "kind",
                         "country_of_manufacture", "year_of_manufacture", "status", "details"}]}
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from tracing.markings import store
from tracing.markings.keys import LookupPlan
from tracing.markings.matching import Candidate, Reading
from tracing.models.registry import Registry, RegistryKind, RegistryRecord

MAX_RESPONSE_BYTES = 1024 * 1024
MAX_RECORDS = 200
ATTEMPTS = 3


class RegistryError(Exception):
    """A lookup failed; `status` is the cross-check status it leads to."""

    status = "error"


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, timed out, failed (5xx), or its circuit is open."""

    status = "unavailable"


class RegistryBadResponse(RegistryError):
    """The registry answered, but not with a usable lookup result."""

    status = "error"


class RegistryAdapter(abc.ABC):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @property
    def lost_or_stolen(self) -> bool:
        return self.registry.kind == RegistryKind.lost_stolen

    @abc.abstractmethod
    async def lookup(self, reading: Reading, plan: LookupPlan) -> list[Candidate]:
        """Candidate records for a reading; raises a RegistryError when the registry fails."""


def candidate_of(record: RegistryRecord) -> Candidate:
    return Candidate(
        ref=str(record.record_no),
        serial_number=record.serial_number,
        make=record.make,
        model=record.model,
        calibre=record.calibre,
        details={
            "record_no": record.record_no,
            "record_id": record.record_ref,
            "kind": record.firearm_kind,
            "country_of_manufacture": record.country_of_manufacture,
            "year_of_manufacture": record.year_of_manufacture,
            "details": record.details,
        },
    )


class LocalRegistry(RegistryAdapter):
    """Records imported into our database, found by index probes."""

    def __init__(self, registry: Registry, session: AsyncSession) -> None:
        super().__init__(registry)
        self.session = session

    async def lookup(self, reading: Reading, plan: LookupPlan) -> list[Candidate]:
        records = await store.find_candidates(self.session, self.registry.id, plan)
        return [candidate_of(record) for record in records]


class CircuitBreaker:
    """Opens after `threshold` consecutive failed lookups; while open, lookups fail at once (so a
    dead registry does not slow every cross-check); after `reset_seconds` one trial lookup is let
    through (half-open), and its outcome closes or reopens the circuit."""

    def __init__(
        self, threshold: int = 5, reset_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold, self.reset_seconds, self.clock = threshold, reset_seconds, clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self.failures, self.opened_at, self._trial_running = 0, None, False

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_running = False
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self.clock()


class _Retryable(Exception):
    def __init__(self, error: RegistryUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


class _RemoteRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    record_id: str | None = Field(default=None, max_length=128)
    serial_number: str = Field(min_length=1, max_length=200)
    make: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    calibre: str | None = Field(default=None, max_length=64)
    kind: str | None = Field(default=None, max_length=32)
    country_of_manufacture: str | None = Field(default=None, max_length=2)
    year_of_manufacture: int | None = None
    status: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict)


class _RemoteAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    records: list[_RemoteRecord] = Field(max_length=MAX_RECORDS)


@dataclass
class HttpPolicy:
    attempts: int = ATTEMPTS
    wait: wait_base = wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2)
    max_response_bytes: int = MAX_RESPONSE_BYTES


class HttpRegistry(RegistryAdapter):
    """A registry run by someone else, reached over HTTP."""

    def __init__(
        self,
        registry: Registry,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        policy: HttpPolicy | None = None,
    ) -> None:
        super().__init__(registry)
        self.client, self.breaker, self.policy = client, breaker, policy or HttpPolicy()

    async def lookup(self, reading: Reading, plan: LookupPlan) -> list[Candidate]:
        if not self.breaker.allow():
            raise RegistryUnavailable(
                f"registry {self.registry.code} failed {self.breaker.failures} times in a row;"
                " not asked again until its circuit half-opens"
            )
        try:
            answer = await self._with_retries(reading, plan)
        except RegistryError:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return [
            Candidate(
                ref=record.record_id or f"#{position}",
                serial_number=record.serial_number,
                make=record.make or "",
                model=record.model,
                calibre=record.calibre,
                details=record.model_dump(exclude={"serial_number", "make", "model", "calibre"}),
            )
            for position, record in enumerate(answer.records, start=1)
        ]

    async def _with_retries(self, reading: Reading, plan: LookupPlan) -> _RemoteAnswer:
        timeout = self.registry.timeout_seconds
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts) | stop_after_delay(timeout * self.policy.attempts),
            wait=self.policy.wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(reading, plan)
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, reading: Reading, plan: LookupPlan) -> _RemoteAnswer:
        registry = self.registry
        headers = {"Accept": "application/json"}
        if registry.auth_header and registry.auth_value:
            headers[registry.auth_header] = registry.auth_value
        body = {
            "serial_number": reading.serial_number,
            "normalized_serial": plan.normalized,
            "confusable_key": plan.confusable,
            "make": reading.make,
            "model": reading.model,
            "calibre": reading.calibre,
            "max_records": MAX_RECORDS,
        }
        timeout = httpx.Timeout(registry.timeout_seconds, connect=min(2.0, registry.timeout_seconds))
        try:
            async with self.client.stream(
                "POST", f"{registry.url}/lookup", json=body, headers=headers, timeout=timeout
            ) as response:
                if response.status_code in (408, 429) or response.status_code >= 500:
                    raise _Retryable(RegistryUnavailable(f"registry answered HTTP {response.status_code}"))
                if response.status_code != 200:
                    raise RegistryBadResponse(f"registry refused the lookup: HTTP {response.status_code}")
                content = await self._read_limited(response)
        except httpx.TimeoutException as exc:
            raise _Retryable(RegistryUnavailable(f"registry timed out ({exc.__class__.__name__})")) from exc
        except httpx.TransportError as exc:
            raise _Retryable(RegistryUnavailable(f"registry unreachable ({exc.__class__.__name__})")) from exc
        return self._parse(content)

    async def _read_limited(self, response: httpx.Response) -> bytes:
        limit = self.policy.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RegistryBadResponse(f"registry response is larger than {limit} bytes")
        content = bytearray()
        async for chunk in response.aiter_bytes():
            content += chunk
            if len(content) > limit:
                raise RegistryBadResponse(f"registry response is larger than {limit} bytes")
        return bytes(content)

    @staticmethod
    def _parse(content: bytes) -> _RemoteAnswer:
        try:
            document = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise RegistryBadResponse(f"registry response is not valid JSON: {exc}") from exc
        try:
            return _RemoteAnswer.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "response"
            raise RegistryBadResponse(
                f"registry response does not follow the contract: {where}: {first['msg']}"
            ) from exc
