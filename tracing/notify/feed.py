"""The event feed: an agency's events in order, long-polled, for contact points without a public URL.

A reader passes the cursor it was last given; events come back in feed order (each agency's own
sequence, which is commit order), so a loop of `GET /v1/events?after=CURSOR&timeout=30` sees every
event once, in order, without gaps.

Writers do not number events: an agency's submissions and moves would all queue on one counter.
A reader places the committed events not yet placed after the last position given (`place`), under
the agency's feed head row lock, then reads by position. An event still being written is not seen
by any reader, so it is placed after whatever was placed before its commit: positions never appear
behind a cursor already handed out. With nothing new the call waits up to the timeout, woken at
once by commits in this process and by polling the database for commits elsewhere; it holds no
database connection while it waits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from tracing.errors import Unprocessable
from tracing.models.notify import Event, EventFeedHead
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


async def place(session: AsyncSession, agency: str) -> int:
    """Give the agency's committed, unplaced events the next feed positions, in insertion order, and
    commit; returns how many were placed. Readers of one agency take turns on its feed head row."""
    unplaced = select(Event.number).where(Event.agency == agency, Event.seq.is_(None)).limit(1)
    if (await session.execute(unplaced)).first() is None:
        return 0
    table = EventFeedHead.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    lock_head = (
        insert(table)
        .values(agency=agency, seq=0)
        .on_conflict_do_update(index_elements=[table.c.agency], set_={"seq": table.c.seq})
        .returning(table.c.seq)
    )
    head = (await session.execute(lock_head)).scalar_one()
    placed = await session.execute(_PLACE, {"agency": agency, "head": head})
    if placed.rowcount:
        await session.execute(
            sa.update(table).where(table.c.agency == agency).values(seq=head + placed.rowcount)
        )
    await session.commit()
    return placed.rowcount


_PLACE = sa.text(
    "UPDATE event SET seq = :head + placed.n"
    " FROM (SELECT number, row_number() OVER (ORDER BY number) AS n"
    "       FROM event WHERE agency = :agency AND seq IS NULL) AS placed"
    " WHERE event.number = placed.number"
)


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
        await place(session, agency)
        events = await read(session, agency=agency, after=after, limit=limit)
        session.expunge_all()  # keep the rows loaded as they are...
        await session.rollback()  # ...and end the read: no connection (nor snapshot) held while waiting
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            return events
        await doorbell.wait(generation, min(poll_seconds, remaining))
        await asyncio.sleep(0)
