"""The authorisation matrix, generated from the app's own routes (its OpenAPI document): every route
x every role x party / non-party / unknown object -> the expected status class. A route without a
rule here fails the test, so nothing new ships without a decision about who may call it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TRIGGER_III, Tokens, submission
from tracing.security import Role

ALL = frozenset(Role)
PUBLIC = None
REQUEST_PARTIES = frozenset({Role.investigator, Role.contact_point})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role] | None
    """Roles that pass authorisation (None: no token needed)."""
    scope: str | None = None
    """'request': only parties of the trace request; 'operation': only who may see the operation;
    'agency': only the agency's own users (and admins)."""
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    object_may_be_missing: bool = False
    """The path names an object the fixture cannot create (a webhook delivery): 404 counts as passing."""


MATRIX_REGISTRY = {
    "code": "MATRIX-REG",
    "name": "Matrix registry",
    "kind": "national_registry",
    "owner_country": "RU",
}
MOVE_BODIES = {
    "forward": {"to_country": "NG"},
    "acknowledge": {},
    "answer": {"outcome": "not_traced", "reason": "no_record"},
    "close": {"resolution": "withdrawn"},
}

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(PUBLIC),
    ("GET", "/readyz"): Rule(PUBLIC),
    ("GET", "/metrics"): Rule(PUBLIC),
    ("GET", "/v1/audit/public-key"): Rule(PUBLIC),
    ("POST", "/v1/agencies"): Rule(
        frozenset({Role.admin}),
        body={"code": "MX-NCP", "name": "Mexico", "country": "MX", "kind": "contact_point"},
    ),
    ("GET", "/v1/agencies"): Rule(frozenset({Role.admin})),
    ("GET", "/v1/agencies/{code}"): Rule(frozenset({Role.admin})),
    ("PATCH", "/v1/agencies/{code}"): Rule(frozenset({Role.admin}), body={"name": "renamed"}),
    ("POST", "/v1/agencies/{code}/webhook-secret"): Rule(frozenset({Role.admin})),
    ("GET", "/v1/agencies/{code}/deliveries"): Rule(
        frozenset({Role.admin, Role.contact_point, Role.investigator}), scope="agency"
    ),
    ("GET", "/v1/agencies/{code}/deliveries/{delivery_id}"): Rule(
        frozenset({Role.admin, Role.contact_point, Role.investigator}),
        scope="agency",
        object_may_be_missing=True,
    ),
    ("POST", "/v1/agencies/{code}/deliveries/{delivery_id}/redeliver"): Rule(
        frozenset({Role.admin, Role.contact_point, Role.investigator}),
        scope="agency",
        object_may_be_missing=True,
    ),
    ("POST", "/v1/trace-requests"): Rule(frozenset({Role.investigator}), body=submission()),
    ("GET", "/v1/trace-requests"): Rule(ALL),
    ("GET", "/v1/trace-requests/{request_id}"): Rule(REQUEST_PARTIES, scope="request"),
    ("GET", "/v1/trace-requests/{request_id}/exchanges"): Rule(REQUEST_PARTIES, scope="request"),
    **{
        ("POST", f"/v1/trace-requests/{{request_id}}/{action}"): Rule(
            frozenset({Role.contact_point}) if action != "close" else REQUEST_PARTIES,
            scope="request",
            body=body,
        )
        for action, body in MOVE_BODIES.items()
    },
    ("GET", "/v1/trace-requests/{request_id}/audit"): Rule(REQUEST_PARTIES | {Role.auditor}, scope="request"),
    ("GET", "/v1/trace-requests/{request_id}/audit/bundle"): Rule(
        REQUEST_PARTIES | {Role.auditor}, scope="request"
    ),
    ("POST", "/v1/audit/checkpoints"): Rule(frozenset({Role.auditor, Role.admin})),
    ("GET", "/v1/audit/access-log"): Rule(frozenset({Role.auditor})),
    ("GET", "/v1/operations"): Rule(frozenset({Role.operations, Role.admin})),
    ("POST", "/v1/operations"): Rule(
        frozenset({Role.operations, Role.admin}),
        body={**TRIGGER_III, "code": "MATRIX-OP", "countries": ["NE"]},
    ),
    ("GET", "/v1/operations/{key}"): Rule(frozenset({Role.operations, Role.admin}), scope="operation"),
    ("PATCH", "/v1/operations/{key}"): Rule(
        frozenset({Role.operations, Role.admin}), scope="operation", body={"name": "Operation TRIGGER III"}
    ),
    ("GET", "/v1/operations/{key}/stats"): Rule(frozenset({Role.operations, Role.admin}), scope="operation"),
    ("GET", "/v1/stats"): Rule(frozenset({Role.operations, Role.admin})),
    ("GET", "/v1/stats/sdg-16-4-2"): Rule(
        frozenset({Role.operations, Role.admin}), query={"country": "NE", "year": "2017"}
    ),
    ("GET", "/v1/events"): Rule(frozenset({Role.contact_point, Role.investigator})),
    ("GET", "/v1/trace-requests/{request_id}/cross-checks"): Rule(REQUEST_PARTIES, scope="request"),
    ("POST", "/v1/trace-requests/{request_id}/cross-checks"): Rule(REQUEST_PARTIES, scope="request"),
    ("GET", "/v1/registries"): Rule(frozenset({Role.admin})),
    ("POST", "/v1/registries"): Rule(frozenset({Role.admin}), body=MATRIX_REGISTRY),
    ("GET", "/v1/registries/{registry}"): Rule(frozenset({Role.admin})),
    ("PATCH", "/v1/registries/{registry}"): Rule(frozenset({Role.admin}), body={"name": "renamed"}),
    ("POST", "/v1/registries/{registry}/records"): Rule(frozenset({Role.admin})),
    ("GET", "/v1/registries/{registry}/records"): Rule(frozenset({Role.admin})),
    ("GET", "/v1/registry-notices"): Rule(frozenset({Role.contact_point, Role.admin})),
    ("GET", "/v1/manufacturers/aliases"): Rule(frozenset({Role.admin})),
    ("POST", "/v1/manufacturers/aliases"): Rule(
        frozenset({Role.admin}), body={"alias": "Izh. Mash. Zavod", "canonical": "Izhmash"}
    ),
    ("GET", "/v1/manufacturers/resolve"): Rule(ALL, query={"make": "Ижмаш"}),
}

# Who each role is, as a party of the fixture's request (filed by NE-PJ, forwarded by NE to RU) and
# of operation TRIGGER-III, and as an outsider to both.
PARTY = {
    Role.investigator: ("NE-PJ", "NE"),
    Role.contact_point: ("NE-NCP", "NE"),
    Role.auditor: ("NE-AUD", "NE"),
    Role.operations: ("NE-STATS", "NE"),
    Role.admin: ("UN-ADMIN", "AT"),
}
OUTSIDER = {
    Role.investigator: ("BJ-PR", "BJ"),
    Role.contact_point: ("RU-NCP", "RU"),  # a party of the request, never of NE's agency records
    Role.auditor: ("CN-AUD", "CN"),
    Role.operations: ("RU-STATS", "RU"),
    Role.admin: ("UN-ADMIN", "AT"),
}
REQUEST_OUTSIDER_CONTACT_POINT = ("BJ-NCP", "BJ")


def routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


def test_every_route_has_a_rule(app: FastAPI) -> None:
    missing = [route for route in routes(app) if route not in RULES]
    assert not missing, f"routes without an authorisation rule: {missing}"
    stale = [route for route in RULES if route not in routes(app)]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def _url(path: str, request_id: str, *, agency: str = "NE-NCP") -> str:
    return (
        path.replace("{request_id}", request_id)
        .replace("{code}", agency)
        .replace("{key}", "TRIGGER-III")
        .replace("{delivery_id}", str(uuid.uuid4()))
        .replace("{registry}", "MATRIX-REG")
    )


async def _call(
    client: httpx.AsyncClient, method: str, path: str, rule: Rule, url: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, url, json=rule.body, params=rule.query, headers=headers)


PASSED = {200, 201, 202, 204, 400, 409, 412, 422}  # past authorisation: answered on the merits


async def test_authorisation_matrix(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    created = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    request_id = created.json()["id"]
    forwarded = await client.post(
        f"/v1/trace-requests/{request_id}/forward", json={"to_country": "RU"}, headers=tokens.ncp("NE")
    )
    assert forwarded.status_code == 200
    registry = await client.post("/v1/registries", json=MATRIX_REGISTRY, headers=tokens.admin)
    assert registry.status_code == 201, registry.text
    failures: list[str] = []

    def expect(ok: bool, what: str, response: httpx.Response) -> None:
        if not ok:
            failures.append(f"{what}: got {response.status_code} {response.text[:160]}")
        if response.status_code >= 500:
            failures.append(f"{what}: server error {response.status_code}")

    for method, path in routes(app):
        rule = RULES[(method, path)]
        url = _url(path, request_id)
        anonymous = await _call(client, method, path, rule, url, {})
        if rule.roles is PUBLIC:
            expect(anonymous.status_code == 200, f"{method} {path} without a token", anonymous)
            continue
        expect(anonymous.status_code == 401, f"{method} {path} without a token", anonymous)
        for role in Role:
            own_agency = PARTY[role][0] if role in REQUEST_PARTIES else "NE-NCP"
            url = _url(path, request_id, agency=own_agency)  # an agency's own records, for its users
            party = await _call(client, method, path, rule, url, tokens.headers(*PARTY[role], role.value))
            allowed_statuses = PASSED | ({404} if rule.object_may_be_missing else set())
            if role in rule.roles:
                expect(party.status_code in allowed_statuses, f"{method} {path} as {role.value} party", party)
            else:
                expect(
                    party.status_code in {403, 404}, f"{method} {path} as {role.value} (not allowed)", party
                )
                continue
            if rule.scope is None or role is Role.admin:
                continue
            outsider = (
                REQUEST_OUTSIDER_CONTACT_POINT
                if rule.scope == "request" and role is Role.contact_point
                else OUTSIDER[role]
            )
            other = await _call(client, method, path, rule, url, tokens.headers(*outsider, role.value))
            hidden = {404} if rule.scope in ("request", "operation") else {403, 404}
            expect(other.status_code in hidden, f"{method} {path} as {role.value} outsider {outsider}", other)
            if rule.scope == "request":
                unknown = _url(path, str(uuid.uuid4()), agency=own_agency)
                guessed = await _call(
                    client, method, path, rule, unknown, tokens.headers(*PARTY[role], role.value)
                )
                expect(
                    guessed.status_code == 404, f"{method} {path} as {role.value} with a guessed id", guessed
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", [Role.operations, Role.auditor, Role.admin])
async def test_roles_without_case_access_never_see_case_details(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict, role: Role
) -> None:
    headers = tokens.headers(*PARTY[role], role.value)
    listed = await client.get("/v1/trace-requests", headers=headers)
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert (await client.get(f"/v1/trace-requests/{submitted['id']}", headers=headers)).status_code == 404
