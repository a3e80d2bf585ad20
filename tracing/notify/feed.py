"""The event feed: an agency's events in order, long-polled, for contact points without a public URL.

A reader passes the cursor it was last given; events come back in feed order (each agency's own
sequence, which is commit order), so a loop of `GET /v1/events?after=CURSOR&timeout=30` sees every
event once, in order, without gaps. With nothing new the call waits up to the timeout, woken at
once by commits in this process and by polling the database for commits elsewhere; it holds no
database connection while it waits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Unprocessable
from tracing.models.notify import Event
from tracing.notify.doorbell import doorbell

POLL_SECONDS = 1.0


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, seq = raw.split(":", 1)
        if prefix != "e" or int(seq) < 0:
            raise ValueError(prefix)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable("cursor is not one the event feed issued") from exc


async def read(session: AsyncSession, *, agency: str, after: int, limit: int) -> list[Event]:
    statement = (
        select(Event).where(Event.agency == agency, Event.seq > after).order_by(Event.seq).limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def wait_for_events(
    session: AsyncSession,
    *,
    agency: str,
    after: int,
    limit: int,
    wait_seconds: float,
    poll_seconds: float = POLL_SECONDS,
) -> list[Event]:
    """The agency's events after `after`; when there are none yet, wait up to `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        generation = doorbell.generation
        events = await read(session, agency=agency, after=after, limit=limit)
        session.expunge_all()  # keep the rows loaded as they are...
        await session.rollback()  # ...and end the read: no connection (nor snapshot) held while waiting
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            return events
        await doorbell.wait(generation, min(poll_seconds, remaining))
        await asyncio.sleep(0)
