"""A demo world: contact points and investigating agencies of a few countries, and trace requests
in every state, walked through the same workflow functions the API uses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import select

from tracing import agencies
from tracing.config import Settings
from tracing.db import create_engine, create_sessionmaker
from tracing.markings import demo as registries_demo
from tracing.models.agency import Agency, AgencyCreate
from tracing.models.exchange import Action
from tracing.models.trace_request import (
    AcknowledgeBody,
    AnswerBody,
    CloseBody,
    ForwardBody,
    TraceRequestCreate,
)
from tracing.security import Principal, Role
from tracing.stats.demo import load_trigger_iii
from tracing.workflow import service

AGENCIES = [
    ("NE-NCP", "Niger national contact point (Police nationale, INTERPOL NCB Niamey)", "NE", "contact_point"),
    ("NE-PJ", "Niger Police judiciaire, Niamey", "NE", "investigating_agency"),
    ("NG-NCP", "Nigeria national contact point (NCCSALW)", "NG", "contact_point"),
    ("NG-NPF", "Nigeria Police Force, Lagos", "NG", "investigating_agency"),
    ("RU-NCP", "Russian Federation national contact point", "RU", "contact_point"),
    ("BJ-NCP", "Benin national contact point", "BJ", "contact_point"),
    ("BJ-DOUANES", "Benin customs, Cotonou", "BJ", "investigating_agency"),
    ("BE-NCP", "Belgium national contact point", "BE", "contact_point"),
    ("AT-NCP", "Austria national contact point", "AT", "contact_point"),
]  # fmt: skip


def _principal(agency: str, country: str, role: Role, subject: str) -> Principal:
    return Principal(subject=subject, agency=agency, country=country, roles=frozenset({role}))


def _submission(**firearm: Any) -> TraceRequestCreate:
    base: dict[str, Any] = {
        "requested_country": firearm.pop("requested_country"),
        "operation_code": None,  # today's walks; the TRIGGER III replay has its own requests
        "case_reference": firearm.pop("case_reference"),
        "intended_use": "criminal investigation of trafficking",
        "handling": {"confidential": True, "restrictions": "not for court without consent"},
        "seizure": {
            "date": "2017-11-24", "place": "Niamey", "country": "NE",
            "recovery_type": "seized", "context": "trafficking",
        },
        "firearm": firearm,
    }  # fmt: skip
    return TraceRequestCreate.model_validate(base)


async def load_demo(settings: Settings) -> str:
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as session:
            if (await session.execute(select(Agency).limit(1))).first() is not None:
                return "demo data not loaded: the database already has agencies"
            for code, name, country, kind in AGENCIES:
                await agencies.create(
                    session=session,
                    body=AgencyCreate(code=code, name=name, country=country, kind=kind),
                )
        operation_replay = await load_trigger_iii(sessions)
        await registries_demo.load_registries(sessions, settings.demo_registry_url)
        investigator = _principal("NE-PJ", "NE", Role.investigator, "inspector.moussa")
        ne = _principal("NE-NCP", "NE", Role.contact_point, "ncp.officer.ne")
        ru = _principal("RU-NCP", "RU", Role.contact_point, "ncp.officer.ru")
        ng = _principal("NG-NCP", "NG", Role.contact_point, "ncp.officer.ng")

        akm = {"kind": "rifle", "make": "Izhmash", "model": "AKM", "calibre": "7.62x39mm",
               "country_of_manufacture": "RU", "year_of_manufacture": 1975,
               "import_marks": [{"country": "NG", "year": 2009, "text": "NG 09"}],
               "other_markings": ["star in circle on receiver"]}  # fmt: skip
        walks: list[tuple[str, list[tuple[Principal, Action, Any]]]] = [
            ("LX 10?3", []),
            ("LX 2201", [(ne, Action.forward, ForwardBody(to_country="RU", note="AKM, NG import mark"))]),
            ("LX 3310", [
                (ne, Action.forward, ForwardBody(to_country="RU")),
                (ru, Action.acknowledge, AcknowledgeBody(note="received")),
                (ru, Action.answer, AnswerBody(
                    outcome="partially_traced", suggest_forward_to="NG",
                    findings="Manufactured 1975, exported to NG in 2009 under licence 2009/445.",
                    transfers=[{"date": "2009-03-02", "from_party": "Rosoboronexport",
                                "to_party": "NG MoD", "country": "NG", "document": "EUC 2009/445"}])),
            ]),
            ("LX 4471", [
                (ne, Action.forward, ForwardBody(to_country="RU")),
                (ru, Action.answer, AnswerBody(
                    outcome="partially_traced", suggest_forward_to="NG",
                    findings="Exported to NG in 2009.")),
                (ne, Action.forward, ForwardBody(to_country="NG", note="per RU answer")),
                (ng, Action.acknowledge, AcknowledgeBody()),
                (ng, Action.answer, AnswerBody(
                    outcome="traced",
                    findings="Issued to a state armoury in 2010; reported lost from stock in 2016.")),
                (investigator, Action.close, CloseBody(resolution="origin_established")),
            ]),
            ("LX 5002", [(investigator, Action.close, CloseBody(resolution="withdrawn"))]),
        ]  # fmt: skip
        for number, (serial, moves) in enumerate(walks, start=1):
            async with sessions() as session:
                submitted = await service.submit(
                    session=session,
                    principal=investigator,
                    body=_submission(
                        **akm,
                        serial_number=serial,
                        serial_obliterated="partial" if "?" in serial else "none",
                        requested_country="RU",
                        case_reference=f"NE/2017/{1141 + number}",
                    ),
                    idempotency_key=None,
                )
                for actor, action, body in moves:
                    await service.apply(
                        session=session,
                        principal=actor,
                        request_id=submitted.request.id,
                        action=action,
                        body=body,
                    )
        confused = _submission(**akm, **registries_demo.CONFUSED_READING, requested_country="RU")
        registries_summary = await registries_demo.finish(sessions, investigator, confused)
        return (
            f"demo data loaded: {len(AGENCIES)} agencies and {len(walks)} trace requests"
            f" (as of {dt.date.today().isoformat()}); {operation_replay}{registries_summary}"
        )
    finally:
        await engine.dispose()
