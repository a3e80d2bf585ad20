"""A replay of a joint operation shaped like INTERPOL/WCO/UNODC operation TRIGGER III (eight West
African countries, 20 November - 1 December 2017): 130 firearms reported recovered, 49 of them
Kalashnikov-type, and 50 trace requests walked through the real workflow with timestamps in the
past, so the statistics and the dashboard show realistic waiting times on first run.

The firearms, serials and answers are invented; the shape (countries, counts, how long contact
points take to answer) follows what such operations report. The replay is deterministic.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from tracing import agencies
from tracing.errors import NotFound
from tracing.models.agency import Agency, AgencyCreate, AgencyKind
from tracing.models.exchange import Action
from tracing.models.operation import OperationCreate
from tracing.models.trace_request import (
    AcknowledgeBody,
    AnswerBody,
    CloseBody,
    ForwardBody,
    TraceRequestCreate,
)
from tracing.security import Principal, Role
from tracing.stats import operations
from tracing.workflow import service

CODE = "TRIGGER-III"
PARTICIPANTS = ["BJ", "BF", "TD", "GN", "ML", "MR", "NE", "NG"]
# country: (seized, found, surrendered) as reported; 130 in all
RECOVERED = {
    "NE": (20, 2, 0), "NG": (27, 3, 1), "BJ": (13, 1, 0), "BF": (14, 1, 1),
    "TD": (12, 0, 0), "GN": (10, 1, 0), "ML": (13, 1, 1), "MR": (9, 0, 0),
}  # fmt: skip
KALASHNIKOV_RECOVERED = 49
# requesting country: (trace requests, of which found, of which surrendered); 50 in all
REQUESTS = {
    "NG": (12, 1, 1), "NE": (9, 1, 0), "BF": (6, 0, 0), "ML": (6, 0, 1),
    "BJ": (5, 1, 0), "TD": (5, 0, 0), "GN": (4, 1, 0), "MR": (3, 0, 0),
}  # fmt: skip
PLACES = {
    "NE": ["Niamey", "Agadez", "Zinder"], "NG": ["Lagos", "Kano", "Maiduguri", "Sokoto"],
    "BJ": ["Cotonou", "Malanville"], "BF": ["Ouagadougou", "Bobo-Dioulasso"], "TD": ["N'Djamena", "Abeche"],
    "GN": ["Conakry", "Kankan"], "ML": ["Bamako", "Gao", "Mopti"], "MR": ["Nouakchott", "Nema"],
}  # fmt: skip
INVESTIGATORS = {
    "NE": "NE-PJ", "NG": "NG-NPF", "BJ": "BJ-DOUANES", "BF": "BF-GENDARMERIE",
    "TD": "TD-PJ", "GN": "GN-PJ", "ML": "ML-PJ", "MR": "MR-PJ",
}  # fmt: skip
# (kind, make, model, calibre, country of manufacture, typical answer time in days)
KALASHNIKOV_TYPES = [
    ("rifle", "Izhmash", "AKM", "7.62x39mm", "RU", 55),
    ("rifle", "Izhevsk Mechanical Plant", "AK-47", "7.62x39mm", "RU", 55),
    ("rifle", "Norinco", "Type 56", "7.62x39mm", "CN", 80),
    ("rifle", "Arsenal", "AKMS", "7.62x39mm", "BG", 30),
    ("rifle", "Cugir", "PM md. 63", "7.62x39mm", "RO", 35),
]
OTHER_TYPES = [
    ("pistol", "FN Herstal", "Browning HP", "9x19mm", "BE", 12),
    ("rifle", "FN Herstal", "FAL", "7.62x51mm", "BE", 12),
    ("pistol", "Glock", "17", "9x19mm", "AT", 9),
    ("pistol", "Ceska zbrojovka", "CZ 75", "9x19mm", "CZ", 18),
    ("pistol", "Beretta", "92", "9x19mm", "IT", 28),
    ("shotgun", "Hatsan", "Escort", "12 gauge", "TR", 40),
    ("rifle", "MAS", "MAS 36", "7.5x54mm", "FR", 25),
    ("pistol", "Izhmash", "Makarov PM", "9x18mm", "RU", 55),
]
REQUESTED_AGENCIES = {
    "CN": "China national contact point", "BG": "Bulgaria national contact point",
    "RO": "Romania national contact point", "CZ": "Czechia national contact point",
    "IT": "Italy national contact point", "TR": "Turkiye national contact point",
    "FR": "France national contact point", "RU": "Russian Federation national contact point",
    "BE": "Belgium national contact point", "AT": "Austria national contact point",
}  # fmt: skip
# final states of the 50 requests: 6 submitted, 12 forwarded, 9 answered, 23 closed
ENDINGS = (
    ["submitted"] * 6 + ["forwarded"] * 12 + ["answered"] * 9
    + ["origin_established"] * 9 + ["context_established"] * 5 + ["not_established"] * 6 + ["withdrawn"] * 3
)  # fmt: skip
Move = tuple[dt.datetime, Principal, Action, Any]


def _principal(agency: str, country: str, role: Role) -> Principal:
    subject = f"{role.value}@{agency.lower()}"
    return Principal(subject=subject, agency=agency, country=country, roles=frozenset({role}))


def _ncp(country: str) -> Principal:
    return _principal(f"{country}-NCP", country, Role.contact_point)


async def _register_agencies(session: AsyncSession) -> int:
    """Contact points and investigating agencies the replay needs and the database lacks."""
    wanted = [(f"{c}-NCP", f"{c} national contact point", c, AgencyKind.contact_point) for c in PARTICIPANTS]
    wanted += [
        (code, f"{code} investigators", c, AgencyKind.investigating_agency)
        for c, code in INVESTIGATORS.items()
    ]
    wanted += [(f"{c}-NCP", name, c, AgencyKind.contact_point) for c, name in REQUESTED_AGENCIES.items()]
    existing = list((await session.execute(select(Agency))).scalars())
    codes = {a.code for a in existing}
    contact_points = {a.country for a in existing if a.kind == AgencyKind.contact_point}
    added = 0
    for code, name, country, kind in wanted:
        if code in codes or (kind == AgencyKind.contact_point and country in contact_points):
            continue
        body = AgencyCreate(code=code, name=name, country=country, kind=kind)
        await agencies.create(session=session, body=body)
        added += 1
    return added


@dataclass(frozen=True)
class PlannedRequest:
    country: str
    recovery_type: str
    firearm: tuple[str, str, str, str, str, int]
    ending: str
    number: int


def _plan(rng: random.Random) -> list[PlannedRequest]:
    slots = []
    for country, (count, found, surrendered) in REQUESTS.items():
        kinds = ["found"] * found + ["surrendered"] * surrendered
        slots += [(country, kinds[i] if i < len(kinds) else "seized") for i in range(count)]
    firearms = [rng.choice(KALASHNIKOV_TYPES) for _ in range(30)] + [
        rng.choice(OTHER_TYPES) for _ in range(20)
    ]
    rng.shuffle(firearms)
    endings = list(ENDINGS)
    rng.shuffle(endings)
    return [
        PlannedRequest(country, kind, firearm, ending, number)
        for number, ((country, kind), firearm, ending) in enumerate(
            zip(slots, firearms, endings, strict=True)
        )
    ]


def _submission(plan: PlannedRequest, rng: random.Random, seized_on: dt.date) -> TraceRequestCreate:
    kind, make, model, calibre, made_in, _ = plan.firearm
    obliterated = rng.random() < 0.2
    serial = f"{rng.choice(['LX', 'KT', 'AB', 'NR', 'M'])} {rng.randint(1000, 99999)}"
    if obliterated:
        serial = serial[:-2] + "?" + serial[-1]
    body = {
        "requested_country": made_in,
        "operation_code": CODE,
        "case_reference": f"{plan.country}/2017/TRIII-{plan.number + 1:03d}",
        "intended_use": "criminal investigation of trafficking (operation TRIGGER III)",
        "seizure": {
            "date": seized_on.isoformat(),
            "place": rng.choice(PLACES[plan.country]),
            "country": plan.country,
            "recovery_type": plan.recovery_type,
            "context": rng.choice(["border control", "vehicle search", "market inspection", "trafficking"]),
        },
        "firearm": {
            "kind": kind, "make": make, "model": model, "calibre": calibre,
            "serial_number": serial, "serial_obliterated": "partial" if obliterated else "none",
            "country_of_manufacture": made_in, "year_of_manufacture": rng.randint(1961, 2012),
        },
    }  # fmt: skip
    return TraceRequestCreate.model_validate(body)


def _answer_for(ending: str, rng: random.Random) -> AnswerBody:
    if ending == "origin_established":
        return AnswerBody(outcome="traced", findings="Exported under licence; last legal holder identified.")
    if ending == "context_established":
        return AnswerBody(
            outcome="partially_traced", findings="Exported to a state buyer; transfer documented."
        )
    if ending == "not_established":
        return rng.choice([
            AnswerBody(outcome="not_traced", reason="no_record"),
            AnswerBody(outcome="not_traced", reason="insufficient_marking"),
            AnswerBody(outcome="declined", reason="records older than the retention period were destroyed"),
        ])  # fmt: skip
    return rng.choice([
        AnswerBody(outcome="traced", findings="Sold to a licensed dealer in 2004."),
        AnswerBody(outcome="partially_traced", findings="Left the factory in 1979; no later record."),
        AnswerBody(outcome="not_traced", reason="records_unavailable"),
    ])  # fmt: skip


def _moves(plan: PlannedRequest, rng: random.Random, submitted_at: dt.datetime) -> list[Move]:
    """The steps of one request after its submission, with realistic delays."""
    requester, destination = _ncp(plan.country), _ncp(plan.firearm[4])
    investigator = _principal(INVESTIGATORS[plan.country], plan.country, Role.investigator)
    answer_days = plan.firearm[5]
    if plan.ending == "submitted":
        return []
    at = submitted_at + dt.timedelta(hours=rng.uniform(10, 9 * 24))
    moves: list[Move] = [(at, requester, Action.forward, ForwardBody(to_country=plan.firearm[4]))]
    if plan.ending == "withdrawn":
        later = at + dt.timedelta(days=rng.uniform(3, 20))
        return [
            *moves,
            (later, investigator, Action.close, CloseBody(resolution="withdrawn", note="duplicate")),
        ]
    answered = at + dt.timedelta(days=answer_days * rng.uniform(0.4, 1.8))
    if rng.random() < 0.7:
        # receipt is acknowledged within days, always before the answer
        ack = at + min(dt.timedelta(hours=rng.uniform(6, 12 * 24)), (answered - at) / 2)
        moves.append((ack, destination, Action.acknowledge, AcknowledgeBody(note="received")))
    if plan.ending == "forwarded":
        if plan.country != "NG" and rng.random() < 0.3:
            # answered in part, then sent onward to the country of import, which has not answered yet
            partial = AnswerBody(
                outcome="partially_traced", findings="Exported to NG.", suggest_forward_to="NG"
            )
            onward = answered + dt.timedelta(days=rng.uniform(1, 6))
            moves += [
                (answered, destination, Action.answer, partial),
                (onward, requester, Action.forward, ForwardBody(to_country="NG", note="per answer")),
            ]
        return moves
    moves.append((answered, destination, Action.answer, _answer_for(plan.ending, rng)))
    if plan.ending != "answered":
        closed = answered + dt.timedelta(days=rng.uniform(2, 25))
        moves.append((closed, requester, Action.close, CloseBody(resolution=plan.ending)))
    return sorted(moves, key=lambda move: move[0])


async def load_trigger_iii(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Create the operation (if missing) and replay its 50 trace requests; a no-op when it exists."""
    admin = Principal(subject="demo", agency="DEMO", country="AT", roles=frozenset({Role.admin}))
    async with sessions() as session:
        try:
            await operations.get_visible(session=session, principal=admin, key=CODE)
            return f"operation {CODE} already present"
        except NotFound:
            pass
        added = await _register_agencies(session)
        body = OperationCreate(
            code=CODE,
            name="Operation TRIGGER III (replay)",
            start=dt.date(2017, 11, 20),
            end=dt.date(2017, 12, 1),
            countries=PARTICIPANTS,
            organisers=["INTERPOL", "WCO", "UNODC"],
            recoveries=[
                {"country": c, "seized": s, "found": f, "surrendered": r}
                for c, (s, f, r) in RECOVERED.items()
            ],
        )
        await operations.create(session=session, principal=admin, body=body)

    rng = random.Random(20171120)
    for plan in _plan(rng):
        seized_on = dt.date(2017, 11, 20) + dt.timedelta(days=rng.randint(0, 11))
        # most requests are filed within the week; the rest as the cases are worked, up to six weeks on
        days_later = rng.uniform(0.2, 6) if rng.random() < 0.6 else rng.uniform(7, 42)
        submitted_at = dt.datetime.combine(seized_on, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(
            days=days_later
        )
        investigator = _principal(INVESTIGATORS[plan.country], plan.country, Role.investigator)
        async with sessions() as session:
            submitted = await service.submit(
                session=session,
                principal=investigator,
                body=_submission(plan, rng, seized_on),
                idempotency_key=None,
                now=submitted_at,
            )
            for at, actor, action, move in _moves(plan, rng, submitted_at):
                await service.apply(
                    session=session,
                    principal=actor,
                    request_id=submitted.request.id,
                    action=action,
                    body=move,
                    now=at,
                )
    recovered = sum(sum(counts) for counts in RECOVERED.values())
    return (
        f"operation {CODE} replayed: {len(PARTICIPANTS)} countries, {recovered} firearms recovered"
        f" ({KALASHNIKOV_RECOVERED} Kalashnikov-type), {len(ENDINGS)} trace requests"
        f" ({added} agencies added)"
    )
