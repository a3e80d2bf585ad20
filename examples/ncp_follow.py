"""Follow a national contact point's work through the event feed, and answer what arrives.

No public URL needed: the script long-polls GET /v1/events with the cursor it was last given (kept
in a file, so a restart resumes where it stopped). For every request forwarded to this contact
point it reads the request, acknowledges receipt (ITI), looks the serial number up in a local
records file, and answers: traced when the serial is there, not traced (no record) otherwise.
Other events are printed.

    python examples/ncp_follow.py --url http://127.0.0.1:8000 --token "$RU_TOKEN" \\
        [--records records.json] [--cursor-file .ru-cursor] [--once]

records.json maps serial numbers to findings: {"LX 2201": "Exported to NG in 2009, EUC 2009/445"}.
Needs httpx (installed with the service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

FEED_WAIT_SECONDS = 30


async def handle_forwarded(client: httpx.AsyncClient, event: dict[str, Any], records: dict[str, str]) -> str:
    """Acknowledge and answer one forwarded request; returns what was done, in words."""
    url = f"/v1/trace-requests/{event['trace_request_id']}"
    request = (await client.get(url)).raise_for_status().json()
    if request["state"] != "forwarded" or request["holder_country"] != event["data"]["holder_country"]:
        return f"{request['reference']}: no longer ours to answer ({request['state']})"
    acknowledged = await client.post(f"{url}/acknowledge", json={"note": "received"})
    if acknowledged.status_code not in (200, 409):  # 409: acknowledged already (a replayed event)
        acknowledged.raise_for_status()
    serial = request["firearm"]["serial_number"]
    if serial in records:
        answer = {"outcome": "traced", "findings": records[serial]}
    else:
        answer = {"outcome": "not_traced", "reason": "no_record"}
    answered = await client.post(f"{url}/answer", json=answer)
    if answered.status_code == 409:
        return f"{request['reference']}: already answered"
    answered.raise_for_status()
    return f"{request['reference']}: answered {answer['outcome']}"


async def follow(
    client: httpx.AsyncClient,
    *,
    cursor: str | None,
    records: dict[str, str],
    once: bool = False,
    wait_seconds: float = FEED_WAIT_SECONDS,
    save_cursor: Any = None,
) -> str | None:
    """Read the feed from `cursor` and handle each event; returns the cursor to resume from."""
    failures = 0
    while True:
        params = {"timeout": wait_seconds} | ({"after": cursor} if cursor else {})
        try:
            page = (
                await client.get("/v1/events", params=params, timeout=wait_seconds + 10)
            ).raise_for_status()
        except httpx.HTTPError as exc:
            failures += 1
            print(f"feed unavailable ({exc.__class__.__name__}); retrying", file=sys.stderr)
            await asyncio.sleep(min(60, 2**failures))
            continue
        failures = 0
        feed = page.json()
        for event in feed["items"]:
            reference = event["data"].get("reference", "")
            if event["type"] == "request.forwarded":
                print(await handle_forwarded(client, event, records))
            else:
                print(f"{event['at']} {event['type']} {reference}")
        cursor = feed["next_cursor"]
        if save_cursor is not None:
            save_cursor(cursor)
        if once:
            return cursor


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="a contact point officer's bearer token")
    parser.add_argument("--records", type=Path, help="JSON file: serial number -> findings")
    parser.add_argument("--cursor-file", type=Path, default=Path(".ncp-feed-cursor"))
    parser.add_argument("--once", action="store_true", help="handle what is there (waiting briefly) and exit")
    args = parser.parse_args()
    records = json.loads(args.records.read_text()) if args.records else {}
    cursor = args.cursor_file.read_text().strip() if args.cursor_file.exists() else None
    headers = {"Authorization": f"Bearer {args.token}"}

    async def run() -> None:
        async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=10) as client:
            await follow(
                client,
                cursor=cursor,
                records=records,
                once=args.once,
                wait_seconds=2 if args.once else FEED_WAIT_SECONDS,
                save_cursor=lambda value: args.cursor_file.write_text(value),
            )

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
