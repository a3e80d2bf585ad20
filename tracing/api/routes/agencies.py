"""Agencies (admin): contact points and investigating agencies."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from tracing import agencies
from tracing.api.deps import AdminPrincipal, SessionDep
from tracing.api.responses import problems
from tracing.models.agency import AgencyCreate, AgencyList, AgencyPublic, AgencyUpdate
from tracing.models.types import CountryCode

router = APIRouter(prefix="/v1/agencies", tags=["agencies"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgencyPublic,
    responses=problems(401, 403, 409, 422),
)
async def create_agency(body: AgencyCreate, session: SessionDep, _: AdminPrincipal) -> AgencyPublic:
    agency = await agencies.create(session=session, body=body)
    return AgencyPublic.model_validate(agency)


@router.get("", response_model=AgencyList, responses=problems(401, 403, 422))
async def list_agencies(
    session: SessionDep, _: AdminPrincipal, country: CountryCode | None = Query(default=None)
) -> AgencyList:
    found = await agencies.list_all(session=session, country=country)
    return AgencyList(items=[AgencyPublic.model_validate(a) for a in found])


@router.get("/{code}", response_model=AgencyPublic, responses=problems(401, 403, 404))
async def get_agency(code: str, session: SessionDep, _: AdminPrincipal) -> AgencyPublic:
    return AgencyPublic.model_validate(await agencies.get(session=session, code=code))


@router.patch("/{code}", response_model=AgencyPublic, responses=problems(401, 403, 404, 422))
async def update_agency(
    code: str, body: AgencyUpdate, session: SessionDep, _: AdminPrincipal
) -> AgencyPublic:
    agency = await agencies.update(session=session, code=code, body=body)
    return AgencyPublic.model_validate(agency)
