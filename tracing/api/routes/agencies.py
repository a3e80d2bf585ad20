"""Agencies (admin): contact points and investigating agencies."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from tracing import agencies
from tracing.api.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.models.agency import AgencyCreate, AgencyList, AgencyPublic, AgencyUpdate, AgencyWithSecret
from tracing.models.notify import DeliveryList, DeliveryPublic, DeliveryStatus
from tracing.models.types import CountryCode
from tracing.notify import deliveries

router = APIRouter(prefix="/v1/agencies", tags=["agencies"])


def _with_secret(saved: agencies.Saved) -> AgencyWithSecret:
    public = AgencyPublic.model_validate(saved.agency)
    return AgencyWithSecret(**public.model_dump(), webhook_secret=saved.new_webhook_secret)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgencyWithSecret,
    responses=problems(401, 403, 409, 422),
)
async def create_agency(
    body: AgencyCreate, http: Request, session: SessionDep, _: AdminPrincipal
) -> AgencyWithSecret:
    """Register an agency. With a `webhook_url`, the answer carries the webhook signing secret,
    once."""
    saved = await agencies.create(session=session, body=body, address_policy=http.app.state.address_policy)
    return _with_secret(saved)


@router.get("", response_model=AgencyList, responses=problems(401, 403, 422))
async def list_agencies(
    session: SessionDep, _: AdminPrincipal, country: CountryCode | None = Query(default=None)
) -> AgencyList:
    found = await agencies.list_all(session=session, country=country)
    return AgencyList(items=[AgencyPublic.model_validate(a) for a in found])


@router.get("/{code}", response_model=AgencyPublic, responses=problems(401, 403, 404))
async def get_agency(code: str, session: SessionDep, _: AdminPrincipal) -> AgencyPublic:
    return AgencyPublic.model_validate(await agencies.get(session=session, code=code))


@router.patch("/{code}", response_model=AgencyWithSecret, responses=problems(401, 403, 404, 422))
async def update_agency(
    code: str, body: AgencyUpdate, http: Request, session: SessionDep, _: AdminPrincipal
) -> AgencyWithSecret:
    """Change the name or the webhook URL. Setting a URL on an agency without a webhook generates
    its signing secret (in this answer only); setting it again re-enables a webhook disabled by a
    410 Gone; `null` removes the webhook and its secret."""
    saved = await agencies.update(
        session=session, code=code, body=body, address_policy=http.app.state.address_policy
    )
    return _with_secret(saved)


@router.post(
    "/{code}/webhook-secret", response_model=AgencyWithSecret, responses=problems(401, 403, 404, 409)
)
async def rotate_webhook_secret(code: str, session: SessionDep, _: AdminPrincipal) -> AgencyWithSecret:
    """Replace the webhook signing secret (shown in this answer only); the old one stops at once."""
    return _with_secret(await agencies.rotate_webhook_secret(session=session, code=code))


@router.get("/{code}/deliveries", response_model=DeliveryList, responses=problems(401, 403, 404, 422))
async def list_deliveries(
    code: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> DeliveryList:
    """The agency's webhook deliveries, newest first (admins and the agency's own users)."""
    await deliveries.check_may_see_deliveries(session, principal, code)
    await agencies.get(session=session, code=code)
    items, next_cursor = await deliveries.list_for_agency(
        session, agency=code, status=status, limit=limit, cursor=cursor
    )
    return DeliveryList(items=items, next_cursor=next_cursor)


@router.get(
    "/{code}/deliveries/{delivery_id}", response_model=DeliveryPublic, responses=problems(401, 403, 404, 422)
)
async def get_delivery(
    code: str, delivery_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> DeliveryPublic:
    """One delivery with every attempt: when, how long, the receiver's status code or the error."""
    await deliveries.check_may_see_deliveries(session, principal, code)
    return await deliveries.get_for_agency(session, agency=code, delivery_id=delivery_id)


@router.post(
    "/{code}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryPublic,
    responses=problems(401, 403, 404, 409, 422),
)
async def redeliver(
    code: str, delivery_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> DeliveryPublic:
    """Queue a failed delivery again, due now, with a fresh retry window and the same event id."""
    await deliveries.check_may_see_deliveries(session, principal, code)
    return await deliveries.redeliver(session, agency=code, delivery_id=delivery_id)
