"""Registries (admin) and bulk import: good rows kept, bad rows reported line by line, on both
databases; manufacturer aliases added through the API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens
from tests.registry_helpers import AKM_ROWS, create_registry, csv_text, import_csv
from tracing.config import Settings
from tracing.markings import registries


async def test_admin_creates_lists_and_updates_registries(client: httpx.AsyncClient, tokens: Tokens) -> None:
    created = await create_registry(client, tokens)
    assert (created["code"], created["adapter"], created["record_count"]) == ("NG-NFR", "local", 0)
    http = await create_registry(
        client, tokens, "RU-KC", kind="manufacturer_records", owner_country="RU", adapter="http",
        url="http://127.0.0.1:9/", auth_header="Authorization", auth_value="Bearer s3cret",
    )  # fmt: skip
    assert http["has_auth"] is True and "auth_value" not in http and "s3cret" not in json.dumps(http)
    listed = await client.get("/v1/registries", headers=tokens.admin)
    assert [r["code"] for r in listed.json()["items"]] == ["NG-NFR", "RU-KC"]
    patched = await client.patch("/v1/registries/RU-KC", json={"enabled": False}, headers=tokens.admin)
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    by_id = await client.get(f"/v1/registries/{created['id']}", headers=tokens.admin)
    assert by_id.json()["code"] == "NG-NFR"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"adapter": "http"}, "needs a url"),
        ({"url": "http://127.0.0.1:9"}, "takes no url"),
        ({"kind": "gun_shop"}, "kind"),
        ({"owner_country": "XX"}, "owner_country"),
        ({"code": "bad code!"}, "code"),
        ({"adapter": "http", "url": "http://127.0.0.1:9", "auth_header": "X-Key"}, "go together"),
    ],
)
async def test_bad_registry_settings_are_422(
    client: httpx.AsyncClient, tokens: Tokens, body: dict, field: str
) -> None:
    base = {"code": "R1", "name": "r", "kind": "national_registry", "owner_country": "NG"}
    response = await client.post("/v1/registries", json=base | body, headers=tokens.admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text


async def test_registries_are_for_admins_only(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    for headers in (tokens.investigator, tokens.ncp("NG")):
        assert (await client.get("/v1/registries", headers=headers)).status_code == 403
        response = await import_csv(client, Tokens(tokens.settings), "NG-NFR", csv_text(AKM_ROWS))
        assert response.status_code == 200  # the admin can
        forbidden = await client.post(
            "/v1/registries/NG-NFR/records",
            content=b"serial_number,make\n",
            headers={**headers, "Content-Type": "text/csv"},
        )
        assert forbidden.status_code == 403
    assert (await client.get("/v1/registries")).status_code == 401


async def test_duplicate_registry_code_is_409(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    response = await client.post(
        "/v1/registries",
        json={"code": "NG-NFR", "name": "again", "kind": "lost_stolen", "owner_country": "NG"},
        headers=tokens.admin,
    )
    assert response.status_code == 409


async def test_csv_import_keeps_good_rows_and_reports_bad_ones(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    rows = [
        *AKM_ROWS,
        ["NG-0004", "", "Beretta", "92FS", "9x19mm", "pistol", "IT"],  # line 5: empty serial
        ["NG-0005", "   ", "Beretta", "92FS", "9x19mm", "pistol", "IT"],  # whitespace only
        ["NG-0006", "X" * 200, "Beretta", "", "", "", ""],  # 200 characters
        ["NG-0007", "AB\x07123", "Beretta", "", "", "", ""],  # control character
        ["NG-0008", "🔫💥", "Beretta", "", "", "", ""],  # emoji only: nothing readable
        ["NG-0009", "ЛХ-2201", "Ижмаш", "АКМ", "", "rifle", "RU"],  # mixed scripts: fine
        ["NG-0010", "CZ 7788 🔫", "CZ", "75", "", "gun", "CZ"],  # unknown kind
        ["NG-0011", "CZ 7789", "CZ", "75", "", "pistol", "ZZ"],  # unknown country
        ["NG-0012", "CZ 7790", "Acme Backyard Gunworks", "", "", "", ""],  # unknown make: kept
        ["NG-0001", "LX 1023", "Izhmash", "AKM", "7.62x39mm", "rifle", "RU"],  # duplicate record_id
    ]
    response = await import_csv(client, tokens, "NG-NFR", csv_text(rows) + "NG-0013,CZ 1,CZ\n")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["received"], report["imported"], report["duplicates"], report["rejected"]) == (14, 5, 1, 8)
    by_line = {e["line"]: (e["field"], e["message"]) for e in report["errors"]}
    assert by_line[5] == ("serial_number", "is empty")
    assert by_line[6] == ("serial_number", "is empty")
    assert by_line[7] == ("serial_number", "longer than 64 characters")
    assert by_line[8][0] == "serial_number" and "U+0007" in by_line[8][1]
    assert by_line[9] == ("serial_number", "has no readable characters")
    assert by_line[11][0] == "kind"
    assert by_line[12][0] == "country_of_manufacture"
    assert by_line[14][0] == "record_id" and "duplicate" in by_line[14][1]
    assert "expected 7 fields" in by_line[15][1]
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert [r["record_id"] for r in records] == ["NG-0001", "NG-0002", "NG-0003", "NG-0009", "NG-0012"]
    registry = (await client.get("/v1/registries/NG-NFR", headers=tokens.admin)).json()
    assert registry["record_count"] == 5


async def test_missing_columns_refuse_the_file_and_write_nothing(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    response = await import_csv(client, tokens, "NG-NFR", "record_id,serial,maker\n1,LX1023,Izhmash\n")
    assert response.status_code == 422
    assert "lacks the column(s) serial_number, make" in response.json()["detail"]
    empty = await import_csv(client, tokens, "NG-NFR", "")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert records == []


async def test_wrong_encoding_rows_are_reported_and_a_named_encoding_reads_them(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    latin1 = (
        "record_id,serial_number,make\nA1,LX1023,Izhmash\n"
        "A2,FN 4471,Fabrique Nationale d'Armes de Guerre Liège\n"
    )
    raw = latin1.encode("latin-1")
    report = (await import_csv(client, tokens, "NG-NFR", raw)).json()
    assert (report["imported"], report["rejected"]) == (1, 1)
    assert report["errors"][0]["line"] == 3 and "not valid utf-8" in report["errors"][0]["message"]
    again = (await import_csv(client, tokens, "NG-NFR", raw, encoding="latin-1")).json()
    assert (again["imported"], again["duplicates"]) == (1, 1)
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert records[1]["make"].endswith("Liège")
    utf16 = await import_csv(client, tokens, "NG-NFR", latin1.encode("utf-16"))
    assert utf16.status_code == 422 and "UTF-16" in utf16.json()["detail"]
    unknown = await import_csv(client, tokens, "NG-NFR", raw, encoding="klingon")
    assert unknown.status_code == 422


@pytest.mark.parametrize(
    "encoding", ["undefined", "rot13", "base64", "utf-16", "utf-32", "unicode_escape", "cp037"]
)
async def test_an_encoding_that_cannot_be_split_into_lines_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, tokens: Tokens, encoding: str
) -> None:
    await create_registry(client, tokens)
    response = await import_csv(
        client, tokens, "NG-NFR", "record_id,serial_number,make\nA1,LX1023,Izhmash\n", encoding=encoding
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "not supported" in response.json()["detail"]
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert records == []


async def test_a_header_or_row_that_is_not_csv_is_reported_not_a_server_error(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    broken_header = await import_csv(client, tokens, "NG-NFR", "record_id,serial\rnumber,make\nA1,LX1,AKM\n")
    assert broken_header.status_code == 422
    assert "header line is not valid CSV" in broken_header.json()["detail"]
    rows = 'record_id,serial_number,make\nA1,LX\r1023,Izhmash\nA2,"LX"1024,Izhmash\nA3,LX1025,Izhmash\n'
    report = (await import_csv(client, tokens, "NG-NFR", rows)).json()
    assert (report["imported"], report["rejected"]) == (1, 2)
    assert [(e["line"], e["message"].startswith("not valid CSV")) for e in report["errors"]] == [
        (2, True),
        (3, True),
    ]


async def test_a_chinese_registry_file_in_gb18030_is_read(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    text = "record_id,serial_number,make\nC1,56-1 1234567,中国北方工业公司\nC2,XK 0042,国营296厂\n"
    report = (await import_csv(client, tokens, "NG-NFR", text.encode("gb18030"), encoding="gb18030")).json()
    assert (report["imported"], report["rejected"]) == (2, 0)
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert {record["make"] for record in records} == {"中国北方工业公司", "国营296厂"}


async def test_ten_thousand_bad_rows_in_a_file_of_good_ones(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    lines = ["record_id,serial_number,make"]
    for number in range(12_000):
        lines.append(f"G{number},SN{number:07d},Glock")
        if number < 10_000:
            lines.append(f"B{number},,Glock")  # no serial
    response = await import_csv(client, tokens, "NG-NFR", "\n".join(lines) + "\n")
    report = response.json()
    assert (report["received"], report["imported"], report["rejected"]) == (22_000, 12_000, 10_000)
    assert len(report["errors"]) == 1000 and report["errors_omitted"] == 9_000
    registry = (await client.get("/v1/registries/NG-NFR", headers=tokens.admin)).json()
    assert registry["record_count"] == 12_000


async def test_duplicate_rows_without_record_ids_are_detected_by_markings(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    content = "serial_number,make,model\nLX 1023,Izhmash,AKM\nlx-1023,IZHMASH,akm\nLX 1023,Izhmash,AK-74\n"
    report = (await import_csv(client, tokens, "NG-NFR", content)).json()
    assert (report["imported"], report["duplicates"]) == (2, 1)
    assert report["errors"][0]["line"] == 3


async def test_a_repeat_in_a_later_batch_is_reported_and_the_rest_of_its_batch_kept(
    client: httpx.AsyncClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the second file's first batches repeat nothing, so later ones are written
    # without looking up stored records first; the repeats must still be caught and reported.
    monkeypatch.setattr(registries, "BATCH_SIZE", 100)
    await create_registry(client, tokens)
    stored = [[f"S{n}", f"SN{n:06d}", "Glock"] for n in range(150)]
    header = ["record_id", "serial_number", "make"]
    assert (await import_csv(client, tokens, "NG-NFR", csv_text(stored, header))).json()["imported"] == 150
    fresh = [[f"F{n}", f"FN{n:06d}", "Beretta"] for n in range(600)]
    rows = fresh[:450] + [stored[7]] + fresh[450:520] + [fresh[3]] + fresh[520:]
    report = (await import_csv(client, tokens, "NG-NFR", csv_text(rows, header))).json()
    assert (report["received"], report["imported"], report["duplicates"]) == (602, 600, 2)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(452, "record_id"), (523, "record_id")]
    assert all("duplicate" in e["message"] for e in report["errors"])
    registry = (await client.get("/v1/registries/NG-NFR", headers=tokens.admin)).json()
    assert registry["record_count"] == 750
    refs, page = [], {"next_cursor": ""}
    while page["next_cursor"] is not None:
        url = f"/v1/registries/NG-NFR/records?limit=200&cursor={page['next_cursor']}"
        page = (await client.get(url.removesuffix("&cursor="), headers=tokens.admin)).json()
        refs += [record["record_id"] for record in page["items"]]
    assert sorted(refs) == sorted(row[0] for row in stored + fresh)


async def test_concurrent_imports_of_overlapping_files_store_each_record_once(
    client: httpx.AsyncClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registries, "BATCH_SIZE", 50)
    await create_registry(client, tokens)
    header = ["record_id", "serial_number", "make"]
    rows = [[f"C{n}", f"CN{n:06d}", "Glock"] for n in range(450)]
    first, second = await asyncio.gather(
        import_csv(client, tokens, "NG-NFR", csv_text(rows[:300], header)),
        import_csv(client, tokens, "NG-NFR", csv_text(rows[150:], header)),
    )
    reports = [first.json(), second.json()]
    assert [r["imported"] + r["duplicates"] for r in reports] == [300, 300]
    assert sum(r["imported"] for r in reports) == 450 and sum(r["duplicates"] for r in reports) == 150
    registry = (await client.get("/v1/registries/NG-NFR", headers=tokens.admin)).json()
    assert registry["record_count"] == 450


async def test_json_lines_import(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens, kind="lost_stolen")
    lines = [
        json.dumps(
            {"record_id": "L1", "serial_number": "LX 1023", "make": "Izhmash", "reported": "2016-05-02"}
        ),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"record_id": "L2", "serial_number": 1234, "make": "Glock"}),
        "",
        json.dumps(
            {"record_id": "L3", "serial_number": "AB 5521", "make": "Glock", "year_of_manufacture": 1999}
        ),
        json.dumps({"record_id": "L4", "serial_number": "AB 5522"}),
    ]
    response = await client.post(
        "/v1/registries/NG-NFR/records",
        content="\n".join(lines).encode(),
        headers={**tokens.admin, "Content-Type": "application/x-ndjson"},
    )
    report = response.json()
    assert (report["imported"], report["rejected"]) == (2, 4), report
    messages = {e["line"]: e["message"] for e in report["errors"]}
    assert "not valid JSON" in messages[2] and "JSON object" in messages[3]
    assert "must be text" in messages[4] and "make" in messages[7]
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert records[0]["details"] == {"reported": "2016-05-02"}


async def test_import_needs_a_known_format_and_a_local_registry(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await create_registry(client, tokens)
    await create_registry(client, tokens, "RU-KC", adapter="http", url="http://127.0.0.1:9")
    plain = await client.post(
        "/v1/registries/NG-NFR/records", content=b"x", headers={**tokens.admin, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 422
    remote = await import_csv(client, tokens, "RU-KC", csv_text(AKM_ROWS))
    assert remote.status_code == 422 and "HTTP" in remote.json()["detail"]
    missing = await import_csv(client, tokens, "NO-SUCH", csv_text(AKM_ROWS))
    assert missing.status_code == 404


async def test_imports_may_exceed_the_general_body_limit(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    rows = [[f"R{n}", f"QQ{n:08d}", "Beretta", "92FS", "9x19mm", "pistol", "IT"] for n in range(30_000)]
    content = csv_text(rows)
    assert len(content) > 1024 * 1024
    report = (await import_csv(client, tokens, "NG-NFR", content)).json()
    assert report["imported"] == 30_000
    elsewhere = await client.post(
        "/v1/agencies",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={**tokens.admin, "Content-Type": "application/json"},
    )
    assert elsewhere.status_code == 413


async def test_quoted_fields_may_span_lines(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    content = (
        'serial_number,make,notes\nLX1023,Izhmash,"stock marked\n""NG 09"""\nLX1024,Norinco,\n'
        '"LX1025,Izhmash,\n'
    )
    report = (await import_csv(client, tokens, "NG-NFR", content)).json()
    assert (report["imported"], report["rejected"]) == (2, 1)
    assert "not closed" in report["errors"][0]["message"]
    records = (await client.get("/v1/registries/NG-NFR/records", headers=tokens.admin)).json()["items"]
    assert records[0]["details"] == {"notes": 'stock marked\n"NG 09"'}


async def test_records_page_with_a_cursor(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await create_registry(client, tokens)
    await import_csv(client, tokens, "NG-NFR", csv_text(AKM_ROWS))
    first = (await client.get("/v1/registries/NG-NFR/records?limit=2", headers=tokens.admin)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = await client.get(
        f"/v1/registries/NG-NFR/records?limit=2&cursor={first['next_cursor']}", headers=tokens.admin
    )
    assert [r["record_id"] for r in second.json()["items"]] == ["NG-0003"]
    bad = await client.get("/v1/registries/NG-NFR/records?cursor=%%%", headers=tokens.admin)
    assert bad.status_code == 422


async def test_admin_adds_a_manufacturer_alias(client: httpx.AsyncClient, tokens: Tokens) -> None:
    unknown = await client.get(
        "/v1/manufacturers/resolve", params={"make": "Kalash Works"}, headers=tokens.investigator
    )
    assert unknown.json() == {"as_marked": "Kalash Works", "canonical": None, "country": None, "known": False}
    added = await client.post(
        "/v1/manufacturers/aliases",
        json={"alias": "Kalash Works", "canonical": "Ижмаш"},
        headers=tokens.admin,
    )
    assert added.status_code == 201, added.text
    assert (added.json()["canonical"], added.json()["country"]) == ("Kalashnikov Concern", "RU")
    known = await client.get(
        "/v1/manufacturers/resolve", params={"make": "KALASH-WORKS"}, headers=tokens.investigator
    )
    assert known.json()["canonical"] == "Kalashnikov Concern"
    listed = await client.get("/v1/manufacturers/aliases", headers=tokens.admin)
    assert [a["alias"] for a in listed.json()["items"]] == ["Kalash Works"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"alias": "Izhmash", "canonical": "Norinco"}, 409, "already names Kalashnikov Concern"),
        ({"alias": "IZH MASH", "canonical": "Kalashnikov Concern"}, 201, ""),
        ({"alias": "Backyard", "canonical": "Acme Backyard Gunworks"}, 422, "give its country"),
        ({"alias": "Backyard", "canonical": "Acme Backyard Gunworks", "country": "US"}, 201, ""),
        ({"alias": "Kalash", "canonical": "Glock", "country": "RU"}, 422, "not RU"),
        ({"alias": "---", "canonical": "Glock"}, 422, "no letters"),
    ],
)
async def test_alias_rules(
    client: httpx.AsyncClient, tokens: Tokens, body: dict, status: int, detail: str
) -> None:
    response = await client.post("/v1/manufacturers/aliases", json=body, headers=tokens.admin)
    assert response.status_code == status, response.text
    assert detail in response.text
    if status == 201:
        again = await client.post("/v1/manufacturers/aliases", json=body, headers=tokens.admin)
        assert again.status_code == 409
    forbidden = await client.post("/v1/manufacturers/aliases", json=body, headers=tokens.investigator)
    assert forbidden.status_code == 403


async def test_cli_import_streams_a_file_and_reports_bad_lines(
    client: httpx.AsyncClient, tokens: Tokens, settings: Settings, tmp_path: Path
) -> None:
    await create_registry(client, tokens)
    path = tmp_path / "records.csv"
    path.write_text(csv_text([*AKM_ROWS, ["NG-0009", "", "Glock", "", "", "", ""]]), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracing.cli", "registry", "import", "NG-NFR", str(path),
        env={**os.environ, "TRACING_DATABASE_URL": settings.database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 1  # some rows were rejected
    assert "line 5: serial_number: is empty" in err.decode()
    assert "NG-NFR: 4 rows read, 3 imported, 0 duplicates, 1 rejected" in out.decode()
    registry = (await client.get("/v1/registries/NG-NFR", headers=tokens.admin)).json()
    assert registry["record_count"] == 3
