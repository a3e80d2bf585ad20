"""The event feed: the caller's agency's events in order, long-polled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from tracing import agencies
from tracing.api.deps import CurrentPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.errors import Forbidden
from tracing.models.notify import EventFeed, EventPublic
from tracing.notify import feed
from tracing.security import Role

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=EventFeed, responses=problems(401, 403, 422))
async def follow_events(
    http: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    after: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous call; omit to start")
    ] = None,
    wait_seconds: Annotated[
        float,
        Query(
            alias="timeout",
            ge=0,
            description="seconds to wait when there is nothing new (capped by the server)",
        ),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EventFeed:
    """Events addressed to the caller's agency after the cursor, oldest first. With none yet, the
    call waits up to `timeout` seconds for one. Loop on `next_cursor` to follow your work."""
    if not (principal.has(Role.contact_point) or principal.has(Role.investigator)):
        raise Forbidden("the event feed is for contact point officers and investigators")
    await agencies.require_registered(session, principal)
    position = feed.decode_cursor(after)
    wait = min(wait_seconds, http.app.state.settings.feed_max_wait_seconds)
    events = await feed.wait_for_events(
        session, agency=principal.agency, after=position, limit=limit, wait_seconds=wait
    )
    last = events[-1].seq if events else position
    return EventFeed(
        items=[EventPublic.model_validate(e) for e in events], next_cursor=feed.encode_cursor(last)
    )
