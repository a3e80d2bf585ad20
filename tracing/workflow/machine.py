"""The trace request state machine as data: one frozen table of legal moves and one pure `plan()`.

Every row says: this action, from this state, leads to that state; these roles may do it; the actor
must stand in this relation to the request (the party rule); and this country holds the request
afterwards. Any (state, action) pair missing from the table is refused with a Conflict that names
the current state. The API, the tests and the README table all derive from TRANSITIONS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tracing.errors import Conflict, Forbidden
from tracing.models.exchange import Action
from tracing.models.trace_request import Resolution, State
from tracing.security import Principal, Role


class RequestView(Protocol):
    state: State
    holder_country: str
    requesting_country: str
    requesting_agency: str
    acknowledged_at: dt.datetime | None


class PartyRule(StrEnum):
    requesting_agency = "requesting_agency"
    holder_contact_point = "holder_contact_point"
    requesting_side = "requesting_side"

    def admits(self, principal: Principal, request: RequestView) -> bool:
        investigator_of_requester = (
            principal.has(Role.investigator) and principal.agency == request.requesting_agency
        )
        if self is PartyRule.requesting_agency:
            return investigator_of_requester
        if self is PartyRule.holder_contact_point:
            return principal.has(Role.contact_point) and principal.country == request.holder_country
        return investigator_of_requester or (
            principal.has(Role.contact_point) and principal.country == request.requesting_country
        )

    @property
    def description(self) -> str:
        return {
            PartyRule.requesting_agency: "an investigator of the requesting agency",
            PartyRule.holder_contact_point: "the contact point of the country holding the request",
            PartyRule.requesting_side: (
                "the requesting agency's investigators or the requesting country's contact point"
            ),
        }[self]


class Holder(StrEnum):
    """Who holds the request after the move."""

    requesting_country = "requesting_country"
    destination = "destination"
    unchanged = "unchanged"


Condition = Callable[[RequestView, Principal, Any], str | None]
"""A further check on a legal move; returns why it is refused (409), or None."""


def _not_to_own_or_requesting_country(request: RequestView, principal: Principal, body: Any) -> str | None:
    if body.to_country == principal.country:
        return f"cannot forward a request to your own country ({principal.country})"
    if body.to_country == request.requesting_country:
        return f"cannot forward a request to the requesting country ({body.to_country})"
    return None


def _not_yet_acknowledged(request: RequestView, principal: Principal, body: Any) -> str | None:
    if request.acknowledged_at is not None:
        return "receipt of this forward was already acknowledged"
    return None


def _resolution_in(*allowed: Resolution) -> Condition:
    def check(request: RequestView, principal: Principal, body: Any) -> str | None:
        if body.resolution not in allowed:
            names = ", ".join(r.value for r in allowed)
            return (
                f"a request in state {request.state.value} closes with resolution {names},"
                f" not {body.resolution.value}"
            )
        return None

    return check


_ANSWERED_RESOLUTIONS = _resolution_in(
    Resolution.origin_established, Resolution.context_established, Resolution.not_established
)
_WITHDRAWAL = _resolution_in(Resolution.withdrawn)


@dataclass(frozen=True)
class Transition:
    action: Action
    source: State | None
    target: State
    roles: frozenset[Role]
    party: PartyRule
    holder: Holder
    conditions: tuple[Condition, ...] = ()


_CP = frozenset({Role.contact_point})
_REQUESTER = frozenset({Role.investigator, Role.contact_point})
_forward = (_not_to_own_or_requesting_country,)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Action.submit, None, State.submitted, frozenset({Role.investigator}),
               PartyRule.requesting_agency, Holder.requesting_country),
    Transition(Action.forward, State.submitted, State.forwarded, _CP,
               PartyRule.holder_contact_point, Holder.destination, _forward),
    Transition(Action.forward, State.forwarded, State.forwarded, _CP,
               PartyRule.holder_contact_point, Holder.destination, _forward),
    Transition(Action.forward, State.answered, State.forwarded, _CP,
               PartyRule.holder_contact_point, Holder.destination, _forward),
    Transition(Action.acknowledge, State.forwarded, State.forwarded, _CP,
               PartyRule.holder_contact_point, Holder.unchanged, (_not_yet_acknowledged,)),
    Transition(Action.answer, State.forwarded, State.answered, _CP,
               PartyRule.holder_contact_point, Holder.requesting_country),
    Transition(Action.close, State.answered, State.closed, _REQUESTER,
               PartyRule.requesting_side, Holder.unchanged, (_ANSWERED_RESOLUTIONS,)),
    Transition(Action.close, State.submitted, State.closed, _REQUESTER,
               PartyRule.requesting_side, Holder.unchanged, (_WITHDRAWAL,)),
    Transition(Action.close, State.forwarded, State.closed, _REQUESTER,
               PartyRule.requesting_side, Holder.unchanged, (_WITHDRAWAL,)),
)  # fmt: skip

_BY_KEY = {(t.action, t.source): t for t in TRANSITIONS}
assert len(_BY_KEY) == len(TRANSITIONS), "duplicate (action, source) in the transition table"


def roles_for(action: Action) -> frozenset[Role]:
    return frozenset().union(*(t.roles for t in TRANSITIONS if t.action == action))


def plan(action: Action, request: RequestView | None, principal: Principal, body: Any = None) -> Transition:
    """Choose the table row for this move, or raise why it is refused.

    Order: a caller without any role for the action gets 403; a (state, action) pair not in the
    table gets 409 naming the current state; a contact point not holding the request gets 409; any
    other caller outside the row's party rule gets 403; a failed condition gets 409.
    """
    allowed_roles = roles_for(action)
    if not principal.roles & allowed_roles:
        names = ", ".join(sorted(r.value for r in allowed_roles))
        raise Forbidden(f"{action.value} needs one of the roles: {names}")
    source = request.state if request is not None else None
    transition = _BY_KEY.get((action, source))
    if transition is None:
        current = source.value if source is not None else "none"
        raise Conflict(
            f"cannot {action.value} a request in state {current}",
            extra={"state": current},
        )
    if not principal.roles & transition.roles:
        raise Forbidden(f"only {transition.party.description} may {action.value} it now")
    if request is not None and not transition.party.admits(principal, request):
        if transition.party is PartyRule.holder_contact_point:
            # The holder changes as the request moves: not holding it now is a conflict with its
            # current state (the usual fate of the loser of two concurrent moves), not a lack of rights.
            raise Conflict(
                f"the request is held by {request.holder_country}; only its contact point may"
                f" {action.value} it in state {request.state.value}",
                extra={"state": request.state.value},
            )
        raise Forbidden(f"only {transition.party.description} may {action.value} it")
    for condition in transition.conditions:
        reason = condition(request, principal, body) if request is not None else None
        if reason:
            raise Conflict(reason, extra={"state": source.value if source else "none"})
    return transition


def acts_as_contact_point(transition: Transition, principal: Principal, request: RequestView) -> bool:
    """Whether the move is made in the principal's capacity as a contact point (which its agency
    must then be), rather than as an investigator of the requesting agency."""
    if transition.party is PartyRule.requesting_agency:
        return False
    if transition.party is PartyRule.requesting_side:
        return not PartyRule.requesting_agency.admits(principal, request)
    return True


def holder_after(transition: Transition, request: RequestView, destination: str | None) -> str:
    if transition.holder is Holder.requesting_country:
        return request.requesting_country
    if transition.holder is Holder.destination:
        assert destination is not None
        return destination
    return request.holder_country
