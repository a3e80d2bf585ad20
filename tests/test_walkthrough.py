"""The scripted walk from the issue: investigator -> NE contact point -> RU -> NG -> closed."""

from __future__ import annotations

import httpx

from tests.conftest import Tokens, submission


async def test_request_walks_through_two_contact_points_to_closure(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    created = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    assert created.status_code == 201, created.text
    request = created.json()
    assert request["state"] == "submitted"
    assert request["holder_country"] == "NE"
    assert request["reference"].startswith("TR-")
    assert request["firearm"]["serial_number"] == "LX 10?3"
    url = f"/v1/trace-requests/{request['id']}"

    step = await client.post(
        f"{url}/forward", json={"to_country": "RU", "note": "AKM"}, headers=tokens.ncp("NE")
    )
    assert step.status_code == 200, step.text
    assert (step.json()["state"], step.json()["holder_country"]) == ("forwarded", "RU")

    assert (await client.post(f"{url}/acknowledge", json={}, headers=tokens.ncp("RU"))).status_code == 200
    answer = {
        "outcome": "partially_traced",
        "findings": "Manufactured 1975, exported to NG in 2009 under licence 2009/445.",
        "transfers": [{"date": "2009-03-02", "from_party": "Rosoboronexport", "to_party": "NG MoD",
                       "country": "NG", "document": "EUC 2009/445"}],
        "suggest_forward_to": "NG",
    }  # fmt: skip
    step = await client.post(f"{url}/answer", json=answer, headers=tokens.ncp("RU"))
    assert step.status_code == 200, step.text
    assert (step.json()["state"], step.json()["holder_country"]) == ("answered", "NE")

    step = await client.post(f"{url}/forward", json={"to_country": "NG"}, headers=tokens.ncp("NE"))
    assert (step.status_code, step.json()["holder_country"]) == (200, "NG")
    step = await client.post(
        f"{url}/answer",
        json={"outcome": "traced", "findings": "State armoury, lost 2016."},
        headers=tokens.ncp("NG"),
    )
    assert step.status_code == 200, step.text

    step = await client.post(
        f"{url}/close",
        json={"resolution": "origin_established", "note": "done"},
        headers=tokens.investigator,
    )
    assert step.status_code == 200, step.text
    closed = step.json()
    assert (closed["state"], closed["resolution"], closed["outcome"]) == (
        "closed",
        "origin_established",
        "traced",
    )
    assert closed["parties"] == ["NE", "NG", "RU"]

    exchanges = (await client.get(f"{url}/exchanges", headers=tokens.ncp("RU"))).json()["items"]
    assert [(e["seq"], e["action"], e["country"]) for e in exchanges] == [
        (1, "submit", "NE"), (2, "forward", "NE"), (3, "acknowledge", "RU"), (4, "answer", "RU"),
        (5, "forward", "NE"), (6, "answer", "NG"), (7, "close", "NE"),
    ]  # fmt: skip
    assert exchanges[3]["payload"]["transfers"][0]["document"] == "EUC 2009/445"
    assert exchanges[1]["to_country"] == "RU"
    assert closed["version"] == 7
