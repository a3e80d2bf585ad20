"""The transition table and plan(), as pure functions: derived from the table, not restated."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracing.errors import Conflict, Forbidden
from tracing.models.exchange import Action
from tracing.models.trace_request import Resolution, State
from tracing.security import Principal, Role
from tracing.workflow.machine import TRANSITIONS, PartyRule, plan


@dataclass
class Request:
    state: State
    holder_country: str = "RU"
    requesting_country: str = "NE"
    requesting_agency: str = "NE-PJ"
    acknowledged_at: dt.datetime | None = None


EVERYONE = Principal("root", "NE-PJ", "NE", frozenset(Role))
MOVES = [a for a in Action if a is not Action.submit]


def _body(action: Action, state: State) -> SimpleNamespace:
    resolution = Resolution.not_established if state is State.answered else Resolution.withdrawn
    return SimpleNamespace(to_country="NG", resolution=resolution)


def _admitted(transition, request: Request) -> Principal:
    """A principal the row's party rule admits."""
    if transition.party is PartyRule.holder_contact_point:
        return Principal(
            "ncp", f"{request.holder_country}-NCP", request.holder_country, frozenset({Role.contact_point})
        )
    return EVERYONE


@pytest.mark.parametrize("action", MOVES)
@pytest.mark.parametrize("state", list(State))
def test_every_pair_outside_the_table_is_a_conflict_naming_the_state(action: Action, state: State) -> None:
    rows = [t for t in TRANSITIONS if t.action == action and t.source == state]
    request = Request(state=state)
    if rows:
        principal = _admitted(rows[0], request)
        assert plan(action, request, principal, _body(action, state)) is rows[0]
    else:
        with pytest.raises(Conflict, match=state.value):
            plan(action, request, EVERYONE, _body(action, state))


def test_closed_is_final() -> None:
    assert not [t for t in TRANSITIONS if t.source is State.closed]


def test_submit_only_for_investigators() -> None:
    ncp = Principal("ncp", "NE-NCP", "NE", frozenset({Role.contact_point}))
    with pytest.raises(Forbidden):
        plan(Action.submit, None, ncp)
    assert plan(Action.submit, None, EVERYONE).target is State.submitted


principals = st.builds(
    Principal,
    subject=st.just("someone"),
    agency=st.sampled_from(["NE-PJ", "NE-NCP", "RU-NCP", "BJ-PR"]),
    country=st.sampled_from(["NE", "RU", "NG", "BJ"]),
    roles=st.frozensets(st.sampled_from(list(Role))),
)


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(MOVES),
    state=st.sampled_from(list(State)),
    principal=principals,
    holder=st.sampled_from(["NE", "RU", "NG"]),
    acknowledged=st.booleans(),
    to_country=st.sampled_from(["NE", "RU", "NG", "BJ"]),
    resolution=st.sampled_from(list(Resolution)),
)
def test_plan_only_admits_moves_the_table_allows(
    action, state, principal, holder, acknowledged, to_country, resolution
) -> None:
    request = Request(
        state=state, holder_country=holder, acknowledged_at=dt.datetime.now(dt.UTC) if acknowledged else None
    )
    body = SimpleNamespace(to_country=to_country, resolution=resolution)
    try:
        transition = plan(action, request, principal, body)
    except (Conflict, Forbidden):
        return
    assert (transition.action, transition.source) == (action, state)
    assert principal.roles & transition.roles
    assert transition.party.admits(principal, request)
    if action is Action.forward:
        assert to_country not in (principal.country, request.requesting_country)
    if action is Action.acknowledge:
        assert not acknowledged
