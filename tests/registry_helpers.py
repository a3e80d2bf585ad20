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


class ServerThread:
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, in a thread of its own."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> ServerThread:
        import time

        self.thread.start()
        for _ in range(500):  # up to ~5 s for the server to start
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("the example registry did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
