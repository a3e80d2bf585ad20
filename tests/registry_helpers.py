"""Helpers shared by the registry and cross-check tests."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests.conftest import Tokens

HEADER = ["record_id", "serial_number", "make", "model", "calibre", "kind", "country_of_manufacture"]
AKM_ROWS = [
    ["NG-0001", "LX 1023", "Izhmash", "AKM", "7.62x39mm", "rifle", "RU"],
    ["NG-0002", "LX 1024", "Norinco", "Type 56", "7.62x39mm", "rifle", "CN"],
    ["NG-0003", "AB 5521", "Glock", "17", "9x19mm", "pistol", "AT"],
]


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def create_registry(
    client: httpx.AsyncClient, tokens: Tokens, code: str = "NG-NFR", **fields: Any
) -> dict[str, Any]:
    body = {"code": code, "name": f"{code} registry", "kind": "national_registry", "owner_country": "NG"}
    body.update(fields)
    response = await client.post("/v1/registries", json=body, headers=tokens.admin)
    assert response.status_code == 201, response.text
    return response.json()


async def import_csv(
    client: httpx.AsyncClient, tokens: Tokens, registry: str, content: str | bytes, **params: str
) -> httpx.Response:
    return await client.post(
        f"/v1/registries/{registry}/records",
        content=content.encode() if isinstance(content, str) else content,
        headers={**tokens.admin, "Content-Type": "text/csv"},
        params=params,
    )
