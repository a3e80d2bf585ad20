"""Simulated users of the tracing service, the ledger of what the service acknowledged to them, and
the figures of a run (requests per second, latency percentiles, statuses).

A user plays whole trace requests through the workflow, with the principal each step belongs to:
the investigator submits (with an Idempotency-Key), the requesting country's contact point forwards,
the requested contact point acknowledges and answers, sometimes pointing onward to a third country
that is then asked too, and the investigator (or the requesting contact point) closes. Between the
moves the parties read: the request, their lists, the exchanges, the audit trail, and an operations
analyst reads the statistics. Every move carries `If-Match` with the version the user last saw.

The ledger keeps, per trace request, each step the service acknowledged with a 2xx (and each step
found committed after its response was lost), so that afterwards the database can be held to it.

In a fault run users are `resilient`: a 503 or a broken connection is retried after a short pause
(a submission with the same Idempotency-Key, a move with the same `If-Match`, whose 412 then means
"your earlier attempt committed", which the user confirms from the exchanges).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.harness import Secrets

# ---- the world ------------------------------------------------------------------------------

# Investigating agencies that file trace requests, and their countries.
REQUESTERS = [("NE-PJ", "NE"), ("NG-NPF", "NG"), ("BJ-DOUANES", "BJ"), ("ML-PJ", "ML")]
# Countries of manufacture asked to trace, with what their factories mark.
MANUFACTURERS = {
    "RU": ("Izhmash", "AKM", "7.62x39mm", "rifle"),
    "BE": ("FN Herstal", "FAL", "7.62x51mm", "rifle"),
    "AT": ("Glock", "17", "9x19mm", "pistol"),
    "CZ": ("Ceska zbrojovka", "vz. 58", "7.62x39mm", "rifle"),
    "RS": ("Zastava", "M70", "7.62x39mm", "rifle"),
    "BG": ("Arsenal", "AR-M1", "7.62x39mm", "rifle"),
}
CONTACT_POINT_COUNTRIES = sorted({country for _, country in REQUESTERS} | set(MANUFACTURERS))
OPERATION = {
    "code": "TRIGGER-III",
    "name": "Operation TRIGGER III",
    "start": "2017-11-20",
    "end": "2017-12-01",
    "countries": ["BJ", "BF", "TD", "GN", "ML", "MR", "NE", "NG"],
    "organisers": ["INTERPOL", "WCO", "UNODC"],
    "recoveries": [{"country": "NE", "seized": 22, "found": 0, "surrendered": 0}],
}


def agencies() -> list[dict[str, str]]:
    registered = [
        {"code": f"{c}-NCP", "name": f"{c} national contact point", "country": c, "kind": "contact_point"}
        for c in CONTACT_POINT_COUNTRIES
    ]
    registered += [
        {"code": code, "name": f"{code} investigators", "country": c, "kind": "investigating_agency"}
        for code, c in REQUESTERS
    ]
    return registered


async def set_up_world(client: httpx.AsyncClient, run_secrets: Secrets) -> None:
    """Contact points of ten countries, four investigating agencies, and one open operation,
    registered through the API by an administrator."""
    admin = run_secrets.bearer(subject="admin", agency="UN-ADMIN", country="AT", roles=["admin"])
    for agency in agencies():
        response = await client.post("/v1/agencies", json=agency, headers=admin)
        if response.status_code != 201:
            raise RuntimeError(f"registering {agency['code']}: {response.status_code} {response.text[:300]}")
    response = await client.post("/v1/operations", json=OPERATION, headers=admin)
    if response.status_code != 201:
        raise RuntimeError(f"registering the operation: {response.status_code} {response.text[:300]}")


def submission(rng: random.Random, requesting_country: str, requested_country: str) -> dict[str, Any]:
    make, model, calibre, kind = MANUFACTURERS[requested_country]
    obliterated = rng.random() < 0.2
    serial = f"{rng.choice('ABKLMX')}{rng.choice('ABKLMX')} {rng.randrange(10_000, 99_999)}"
    if obliterated:
        serial = serial[:-2] + "??"
    seized_on = dt.date(2017, 11, 20) + dt.timedelta(days=rng.randrange(0, 3000))
    urgent = rng.random() < 0.1
    return {
        "requested_country": requested_country,
        "priority": "urgent" if urgent else "routine",
        "priority_justification": "the suspect's hearing is next week" if urgent else None,
        "operation_code": "TRIGGER-III" if rng.random() < 0.3 else None,
        "case_reference": f"{requesting_country}/{seized_on.year}/{rng.randrange(1, 99_999)}",
        "intended_use": "criminal investigation of trafficking",
        "handling": {"confidential": True, "restrictions": "not for court without consent"},
        "seizure": {
            "date": seized_on.isoformat(),
            "place": "border post",
            "country": requesting_country,
            "recovery_type": rng.choice(["seized", "seized", "found", "surrendered"]),
            "context": "trafficking",
        },
        "firearm": {
            "kind": kind,
            "make": make,
            "model": model,
            "calibre": calibre,
            "serial_number": serial,
            "serial_obliterated": "partial" if obliterated else "none",
            "country_of_manufacture": requested_country,
            "year_of_manufacture": rng.randrange(1960, 2015),
            "import_marks": [{"country": "NG", "year": 2009, "text": "NG 09"}] if rng.random() < 0.3 else [],
            "other_markings": ["star in circle on receiver"] if rng.random() < 0.2 else [],
        },
    }


# ---- figures --------------------------------------------------------------------------------

TRANSPORT_ERROR = 0
"""The status recorded for a request that got no HTTP response (refused, reset, timed out)."""


@dataclass(frozen=True)
class Sample:
    operation: str
    status: int
    started: float
    """Seconds since the run started."""
    seconds: float


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, int(fraction * len(ordered) + 0.999999))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Recorder:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    """Broken promises seen by clients during the run (a stale read, an unverified chain, a race
    with two winners...)."""
    unexpected: list[str] = field(default_factory=list)
    """Responses whose status the step did not expect (a 5xx, a 409 outside a race, ...)."""

    def now(self) -> float:
        return time.monotonic() - self.started

    def add(self, operation: str, status: int, started: float, seconds: float) -> None:
        self.samples.append(Sample(operation, status, started, seconds))

    def violation(self, message: str) -> None:
        self.violations.append(message)

    def unexpected_response(self, operation: str, response: httpx.Response | None) -> None:
        if response is None:
            self.unexpected.append(f"{operation}: no response")
        else:
            self.unexpected.append(f"{operation}: HTTP {response.status_code} {response.text[:200]}")

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end]


@dataclass(frozen=True)
class OperationFigures:
    operation: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]


def figures(samples: Iterable[Sample]) -> tuple[OperationFigures, list[OperationFigures]]:
    """Figures over all samples, then per operation (in a stable order)."""
    by_operation: dict[str, list[Sample]] = defaultdict(list)
    everything: list[Sample] = []
    for sample in samples:
        by_operation[sample.operation].append(sample)
        everything.append(sample)

    def summarise(name: str, group: list[Sample]) -> OperationFigures:
        ordered = sorted(s.seconds * 1000 for s in group)
        return OperationFigures(
            name,
            len(group),
            percentile(ordered, 0.50),
            percentile(ordered, 0.99),
            ordered[-1] if ordered else float("nan"),
            dict(sorted(Counter(s.status for s in group).items())),
        )

    return summarise("all", everything), [summarise(n, g) for n, g in sorted(by_operation.items())]


def status_text(statuses: dict[int, int]) -> str:
    return " ".join(f"{'no-response' if s == TRANSPORT_ERROR else s}:{n}" for s, n in statuses.items())


def print_figures(samples: list[Sample], seconds: float, title: str = "requests") -> None:
    overall, per_operation = figures(samples)
    rate = overall.count / seconds if seconds > 0 else 0.0
    print(f"{title}: {overall.count} in {seconds:.1f} s = {rate:.1f} req/s")
    header = f"  {'operation':<16} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses"
    print(header)
    for row in [*per_operation, overall]:
        print(
            f"  {row.operation:<16} {row.count:>7} {row.p50_ms:>8.1f} {row.p99_ms:>8.1f} {row.max_ms:>8.1f}"
            f"  {status_text(row.statuses)}"
        )


# ---- the ledger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    seq: int
    action: str
    state: str
    acknowledged: bool
    """True when the client got the 2xx; False when the response was lost and the client found the
    step committed afterwards."""


@dataclass
class Case:
    """One trace request as the client knows it."""

    key: str
    agency: str
    subject: str
    requesting_country: str
    id: uuid.UUID | None = None
    steps: list[Step] = field(default_factory=list)
    in_doubt: bool = False
    """A move was sent whose outcome the client never learned (a fault run that ended mid-retry):
    the database may hold one step more than the ledger."""

    @property
    def version(self) -> int:
        return self.steps[-1].seq if self.steps else 0

    @property
    def state(self) -> str | None:
        return self.steps[-1].state if self.steps else None


@dataclass
class Ledger:
    cases: list[Case] = field(default_factory=list)
    submissions_in_doubt: list[Case] = field(default_factory=list)
    """Submissions that never got a 201 (a fault run that ended mid-retry): each key may or may not
    have created one request."""
    submissions_replayed: int = 0
    """Submissions whose first response was lost and whose retry came back as a replay: the
    original had committed, and the Idempotency-Key kept it from being filed twice."""

    @property
    def created(self) -> list[Case]:
        return [c for c in self.cases if c.id is not None]

    def acknowledged_steps(self) -> int:
        return sum(1 for c in self.cases for s in c.steps if s.acknowledged)

    def learned_steps(self) -> int:
        return sum(1 for c in self.cases for s in c.steps if not s.acknowledged)


# ---- the users ------------------------------------------------------------------------------


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass
class Run:
    """What every user of one run shares."""

    client: httpx.AsyncClient
    secrets: Secrets
    recorder: Recorder
    ledger: Ledger
    deadline: float
    """Seconds since the recorder started after which no new step begins."""
    resilient: bool = False
    grace: float = 30.0
    """In a resilient run: how long past the deadline a retry may go on to settle what it sent."""
    _tokens: dict[tuple[str, str, str, str], dict[str, str]] = field(default_factory=dict)

    def bearer(self, subject: str, agency: str, country: str, role: str) -> dict[str, str]:
        key = (subject, agency, country, role)
        if key not in self._tokens:
            self._tokens[key] = self.secrets.bearer(
                subject=subject, agency=agency, country=country, roles=[role]
            )
        return self._tokens[key]

    def stopping(self) -> bool:
        return self.recorder.now() >= self.deadline

    def given_up(self) -> bool:
        return self.recorder.now() >= self.deadline + self.grace


RETRY_PAUSE_SECONDS = 0.25


class User:
    """One simulated person at a keyboard who files trace requests and plays every party in turn."""

    def __init__(self, run: Run, number: int, seed: int) -> None:
        self.run = run
        self.number = number
        self.rng = random.Random(seed * 1_000_003 + number)
        self.agency, self.country = REQUESTERS[number % len(REQUESTERS)]
        self.subject = f"investigator-{number}@{self.agency}"
        self.investigator = run.bearer(self.subject, self.agency, self.country, "investigator")
        self.cases_played = 0

    def ncp(self, country: str) -> dict[str, str]:
        # A few officers per contact point, so two users may act for one contact point.
        officer = f"officer-{self.number % 3}@{country}-NCP"
        return self.run.bearer(officer, f"{country}-NCP", country, "contact_point")

    def ncp_subject(self, country: str) -> str:
        return f"officer-{self.number % 3}@{country}-NCP"

    async def play(self) -> None:
        while not self.run.stopping():
            await self.play_case()
            self.cases_played += 1

    # -- HTTP with figures --------------------------------------------------------------------

    async def send(
        self,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response | None:
        recorder = self.run.recorder
        started = recorder.now()
        clock = time.perf_counter()
        try:
            response = await self.run.client.request(method, path, headers=headers, json=body, params=params)
        except httpx.TransportError as exc:
            recorder.add(operation, TRANSPORT_ERROR, started, time.perf_counter() - clock)
            recorder.transport_errors[f"{operation}: {type(exc).__name__}"] += 1
            return None
        recorder.add(operation, response.status_code, started, time.perf_counter() - clock)
        return response

    def retryable(self, response: httpx.Response | None) -> bool:
        transient = response is None or response.status_code == 503
        return self.run.resilient and transient and not self.run.given_up()

    async def read(
        self, operation: str, path: str, headers: dict[str, str], params: dict[str, Any] | None = None
    ) -> httpx.Response | None:
        """A GET that must answer 200; retried in a resilient run while the service is down."""
        while True:
            response = await self.send(operation, "GET", path, headers, params=params)
            if response is not None and response.status_code == 200:
                return response
            if self.retryable(response):
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            self.run.recorder.unexpected_response(operation, response)
            return None

    # -- the steps -----------------------------------------------------------------------------

    async def submit(self, body: dict[str, Any]) -> Case | None:
        case = Case(str(uuid.uuid4()), self.agency, self.subject, self.country)
        headers = self.investigator | {"Idempotency-Key": case.key}
        sent_before = False
        while True:
            response = await self.send("submit", "POST", "/v1/trace-requests", headers, body)
            if response is not None and response.status_code == 201:
                created = response.json()
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                if replayed and not sent_before:
                    self.run.recorder.violation(
                        f"submission {case.key} answered as a replay on its first send"
                    )
                if replayed:
                    self.run.ledger.submissions_replayed += 1
                if created["state"] != "submitted" or created["version"] != 1:
                    self.run.recorder.violation(f"submission {created['id']} came back as {created['state']}")
                case.id = uuid.UUID(created["id"])
                case.steps.append(Step(1, "submit", "submitted", acknowledged=True))
                self.run.ledger.cases.append(case)
                return case
            if self.retryable(response):
                sent_before = True
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            self.run.recorder.unexpected_response("submit", response)
            if sent_before:
                self.run.ledger.submissions_in_doubt.append(case)
            return None

    async def replay(self, case: Case, body: dict[str, Any]) -> None:
        """The same submission again, as a client does after a timeout: the same request back."""
        headers = self.investigator | {"Idempotency-Key": case.key}
        response = await self.send("submit-replay", "POST", "/v1/trace-requests", headers, body)
        if response is None or response.status_code != 201:
            if not self.retryable(response):
                self.run.recorder.unexpected_response("submit-replay", response)
            return
        if response.headers.get("Idempotent-Replayed") != "true" or response.json()["id"] != str(case.id):
            self.run.recorder.violation(f"a replay of {case.key} did not return request {case.id}")

    async def move(
        self,
        case: Case,
        action: str,
        headers: dict[str, str],
        subject: str,
        body: dict[str, Any],
        target_state: str,
    ) -> bool:
        seq = case.version + 1
        path = f"/v1/trace-requests/{case.id}/{action}"
        sent_before = False
        while True:
            response = await self.send(action, "POST", path, headers | {"If-Match": etag(case.version)}, body)
            if response is not None and response.status_code == 200:
                moved = response.json()
                if moved["version"] != seq or moved["state"] != target_state:
                    self.run.recorder.violation(
                        f"{action} of {case.id} answered version {moved['version']} state {moved['state']},"
                        f" expected {seq} {target_state}"
                    )
                case.steps.append(Step(seq, action, target_state, acknowledged=True))
                return True
            if response is not None and response.status_code == 412 and sent_before:
                return await self.learn(case, action, subject, target_state)
            if self.retryable(response):
                sent_before = True
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            self.run.recorder.unexpected_response(action, response)
            case.in_doubt = case.in_doubt or sent_before
            return False

    async def learn(self, case: Case, action: str, subject: str, target_state: str) -> bool:
        """After a lost response and a 412: did our earlier attempt commit? The exchanges say."""
        seq = case.version + 1
        response = await self.read("exchanges", f"/v1/trace-requests/{case.id}/exchanges", self.investigator)
        if response is None:
            case.in_doubt = True
            return False
        items = {item["seq"]: item for item in response.json()["items"]}
        found = items.get(seq)
        if found is None or found["action"] != action or found["actor"] != subject:
            self.run.recorder.violation(
                f"{case.id}: 412 on a retried {action}, but exchange {seq} is {found}"
            )
            case.in_doubt = True
            return False
        case.steps.append(Step(seq, action, target_state, acknowledged=False))
        return True

    async def forward_race(self, case: Case, country: str, destination: str) -> bool:
        """Two officers of one contact point forward the same request at once: exactly one wins."""
        path = f"/v1/trace-requests/{case.id}/forward"
        body = {"to_country": destination, "note": "both officers pressed send"}
        officers = [f"officer-{n}@{country}-NCP" for n in (1, 2)]
        responses = await asyncio.gather(
            *(
                self.send(
                    "forward-race",
                    "POST",
                    path,
                    self.run.bearer(officer, f"{country}-NCP", country, "contact_point")
                    | {"If-Match": etag(case.version)},
                    body,
                )
                for officer in officers
            )
        )
        statuses = sorted(r.status_code if r is not None else TRANSPORT_ERROR for r in responses)
        winners = statuses.count(200)
        losers = [s for s in statuses if s != 200]
        if winners != 1 or losers[0] not in (409, 412):
            self.run.recorder.violation(f"a forward race on {case.id} ended {statuses}, not one winner")
            for response in responses:
                if response is None or response.status_code >= 500:
                    self.run.recorder.unexpected_response("forward-race", response)
            if winners != 1:
                case.in_doubt = winners > 1
                return False
        case.steps.append(Step(case.version + 1, "forward", "forwarded", acknowledged=True))
        return True

    async def check_request(self, case: Case, headers: dict[str, str]) -> None:
        response = await self.read("get", f"/v1/trace-requests/{case.id}", headers)
        if response is None:
            return
        seen = response.json()
        if not case.in_doubt and (seen["version"], seen["state"]) != (case.version, case.state):
            self.run.recorder.violation(
                f"stale read of {case.id}: version {seen['version']} {seen['state']},"
                f" the client was told {case.version} {case.state}"
            )

    async def list_held(self, country: str, state: str) -> None:
        await self.read("list", "/v1/trace-requests", self.ncp(country), params={"state": state, "limit": 20})

    async def check_exchanges(self, case: Case) -> None:
        response = await self.read("exchanges", f"/v1/trace-requests/{case.id}/exchanges", self.investigator)
        if response is None or case.in_doubt:
            return
        actions = [(item["seq"], item["action"]) for item in response.json()["items"]]
        if actions != [(step.seq, step.action) for step in case.steps]:
            self.run.recorder.violation(f"exchanges of {case.id} are {actions}, the client did {case.steps}")

    async def check_audit(self, case: Case) -> None:
        response = await self.read("audit", f"/v1/trace-requests/{case.id}/audit", self.investigator)
        if response is None:
            return
        verification = response.json()["verification"]
        if not verification["valid"] or (not case.in_doubt and verification["checked"] != case.version):
            self.run.recorder.violation(f"audit trail of {case.id}: {verification}, version {case.version}")

    async def read_statistics(self) -> None:
        analyst = self.run.bearer(
            f"analyst@{self.country}", f"{self.country}-NCP", self.country, "operations"
        )
        await self.read("stats", "/v1/stats", analyst)

    # -- one trace request, start to finish ----------------------------------------------------

    async def play_case(self) -> None:
        rng, run = self.rng, self.run
        requested = rng.choice(sorted(MANUFACTURERS))
        body = submission(rng, self.country, requested)
        case = await self.submit(body)
        if case is None or run.stopping():
            return
        if rng.random() < 0.05:
            await self.replay(case, body)
        await self.check_request(case, self.investigator)
        home = self.country
        await self.list_held(home, "submitted")
        if run.stopping():
            return
        if rng.random() < 0.04:
            await self.close(case, "withdrawn")
            return

        if not run.resilient and rng.random() < 0.10:
            forwarded = await self.forward_race(case, home, requested)
        else:
            note = {"to_country": requested, "note": "manufacture marks of your country"}
            forwarded = await self.move(
                case, "forward", self.ncp(home), self.ncp_subject(home), note, "forwarded"
            )
        if not forwarded or run.stopping():
            return
        outcome = await self.asked(case, requested, may_point_onward=True)
        if outcome is None or run.stopping():
            return
        if outcome[1] is not None:  # partially traced, pointing to a country of later import
            onward = outcome[1]
            note = {"to_country": onward, "note": f"per the {requested} answer"}
            if not await self.move(
                case, "forward", self.ncp(home), self.ncp_subject(home), note, "forwarded"
            ):
                return
            if run.stopping():
                return
            outcome = await self.asked(case, onward, may_point_onward=False)
            if outcome is None or run.stopping():
                return
        await self.check_exchanges(case)
        resolution = {"traced": "origin_established", "partially_traced": "context_established"}
        await self.close(case, resolution.get(outcome[0], "not_established"))
        if run.stopping():
            return
        await self.check_audit(case)
        if self.cases_played % 3 == 0:
            await self.read_statistics()

    async def asked(
        self, case: Case, country: str, *, may_point_onward: bool
    ) -> tuple[str, str | None] | None:
        """The asked contact point finds the request in its list, reads it, acknowledges (mostly) and
        answers; sometimes the requesting side withdraws first. Returns (outcome, onward country)."""
        rng, run = self.rng, self.run
        await self.list_held(country, "forwarded")
        await self.check_request(case, self.ncp(country))
        if run.stopping():
            return None
        officer, subject = self.ncp(country), self.ncp_subject(country)
        if rng.random() < 0.8:
            if not await self.move(case, "acknowledge", officer, subject, {"note": "received"}, "forwarded"):
                return None
            if run.stopping():
                return None
        if rng.random() < 0.03:
            await self.close(case, "withdrawn")
            return None
        draw = rng.random()
        onward = None
        if draw < 0.4:
            answer = {"outcome": "traced", "findings": "Sold to a licensed dealer in 2004; licence on file."}
        elif draw < 0.65 and may_point_onward:
            candidates = [c for c in CONTACT_POINT_COUNTRIES if c not in (self.country, country)]
            onward = rng.choice(candidates)
            answer = {
                "outcome": "partially_traced",
                "findings": f"Exported to {onward} in 2009 under licence 2009/445.",
                "transfers": [
                    {
                        "date": "2009-03-02",
                        "from_party": "exporter",
                        "to_party": "importer",
                        "country": onward,
                        "document": "EUC 2009/445",
                    }
                ],
                "suggest_forward_to": onward,
            }
        elif draw < 0.9:
            answer = {"outcome": "not_traced", "reason": rng.choice(["no_record", "insufficient_marking"])}
        else:
            answer = {"outcome": "declined", "reason": "the information is subject to an ongoing case"}
        if not await self.move(case, "answer", officer, subject, answer, "answered"):
            return None
        return answer["outcome"], onward

    async def close(self, case: Case, resolution: str) -> None:
        # The investigator mostly; sometimes the requesting country's contact point.
        if self.rng.random() < 0.7:
            headers, subject = self.investigator, self.subject
        else:
            headers, subject = self.ncp(self.country), self.ncp_subject(self.country)
        await self.move(case, "close", headers, subject, {"resolution": resolution, "note": "done"}, "closed")


async def run_users(run: Run, users: int, seed: int) -> list[User]:
    people = [User(run, number, seed) for number in range(users)]
    await asyncio.gather(*(person.play() for person in people))
    return people
