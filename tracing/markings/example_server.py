"""A tiny reference HTTP registry (`tracing registry serve-example`): answers the lookup contract
from an in-memory index of generated records (or a CSV file), for tests, demos and as a model for a
real registry's adapter. Not for production."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from tracing.markings.corpus import generate_records
from tracing.markings.index import MemoryIndex
from tracing.markings.keys import lookup_plan
from tracing.markings.matching import Candidate

# Records every demo knows: the AKM of the README, as the manufacturer recorded it.
DEMO_RECORDS = [
    Candidate(
        "KC-1975-1023", "LX 1023", "Izhevsk Machine-Building Plant", "AKM", "7.62x39mm",
        {"kind": "rifle", "country_of_manufacture": "RU", "year_of_manufacture": 1975,
         "status": "exported", "details": {"exported_to": "NG", "licence": "2009/445"}},
    ),
]  # fmt: skip


class LookupBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    serial_number: str = Field(max_length=200)
    make: str | None = Field(default=None, max_length=200)
    max_records: int = Field(default=50, ge=1, le=200)


def load_csv(text: str) -> list[Candidate]:
    return [
        Candidate(
            row.get("record_id") or f"row-{number}",
            row["serial_number"],
            row.get("make", ""),
            row.get("model") or None,
            row.get("calibre") or None,
        )
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=1)
    ]


def generated(count: int, seed: int) -> Iterable[Candidate]:
    for record in generate_records(count, seed=seed, prefix="EX"):
        yield Candidate(
            record.ref,
            record.serial_number,
            record.make,
            record.model,
            record.calibre,
            {
                "kind": record.kind,
                "country_of_manufacture": record.country_of_manufacture,
                "year_of_manufacture": record.year_of_manufacture,
            },
        )


def create_example_app(candidates: Iterable[Candidate], *, token: str | None = None) -> FastAPI:
    index = MemoryIndex(candidates)
    app = FastAPI(title="Example firearms registry", version="1")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "records": len(index)}

    @app.post("/lookup")
    async def lookup(
        body: LookupBody, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, list[dict[str, Any]]]:
        if token is not None and authorization != f"Bearer {token}":
            raise HTTPException(401, "a valid bearer token is required")
        found = index.lookup(lookup_plan(body.serial_number))[: body.max_records]
        return {
            "records": [
                {
                    "record_id": c.ref,
                    "serial_number": c.serial_number,
                    "make": c.make,
                    "model": c.model,
                    "calibre": c.calibre,
                    "kind": c.details.get("kind"),
                    "country_of_manufacture": c.details.get("country_of_manufacture"),
                    "year_of_manufacture": c.details.get("year_of_manufacture"),
                    "status": c.details.get("status"),
                    "details": c.details.get("details", {}),
                }
                for c in found
            ]
        }

    return app
