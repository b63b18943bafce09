"""The pea flowchart as data: states, events and the transition table.

Every state change of a pea is one row of `TRANSITIONS`, taken by `flows.pea.service.apply` in one
transaction with its audit record and its notices; nothing moves a pea otherwise. A transition
names what it resets (`Reset`): a new claim starts from a clean deploy, a release lets go of the
holder, a pea scaled to zero keeps nothing of its last deploy. The README's diagram is rendered
from this table (`mermaid()`), and a test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flows.flowchart import Actor, ReadmeBlock, mermaid


class PeaState(StrEnum):
    FREE = "free"
    DEPLOYING = "deploying"
    UP = "up"
    FAILED = "failed"
    RELEASING = "releasing"  # scaling to zero; nobody holds it, anyone may claim it

    @property
    def held(self) -> bool:
        return self in HELD


HELD = frozenset({PeaState.DEPLOYING, PeaState.UP, PeaState.FAILED})


class Stale(StrEnum):
    """Why the PR on an `up` pea deserves a look."""

    NEWER_BUILD = "newer build"
    CLOSED = "closed"
    MERGED = "merged"


class PeaEvent(StrEnum):
    CLAIM = "claim"  # a person claims a pea nobody holds and deploys a PR to it
    DEPLOY = "deploy"  # the holder (or an admin) deploys a PR, again or another one
    REDEPLOY = "redeploy"  # the holder deploys the PR's newest head again, from a button
    EXTEND = "extend"
    RELEASE = "release"
    LEASE_ENDED = "lease_ended"
    UP = "up"
    FAIL = "fail"
    SCALED_TO_ZERO = "scaled_to_zero"


class PeaGuard(StrEnum):
    """A condition on the pea that must hold for a transition to be taken."""

    NEWER_BUILD = "newer build"  # the PR has a newer green build than the one running


class Reset(StrEnum):
    """What a transition clears on the pea (the fields of each are defined once, in `flows.pea.service`)."""

    DEPLOY = "deploy"  # a new deploy: nothing of the previous one's build, task definitions or checks is left
    RELEASE = "release"  # nobody holds it: holder, lease, reminder gone
    FREE = "free"  # scaled to zero: nothing of the last deploy is left


@dataclass(frozen=True)
class PeaTransition:
    source: PeaState
    event: PeaEvent
    target: PeaState
    label: str
    actor: Actor = Actor.SYSTEM
    button: str | None = None  # the Slack button that asks for it, for person transitions
    guard: PeaGuard | None = None
    reset: Reset | None = None


S, E = PeaState, PeaEvent
_PERSON = Actor.PERSON
_HELD_IN_ORDER = [state for state in PeaState if state in HELD]

TRANSITIONS: tuple[PeaTransition, ...] = (
    PeaTransition(S.FREE, E.CLAIM, S.DEPLOYING, "claimed for a PR", _PERSON, reset=Reset.DEPLOY),
    PeaTransition(S.RELEASING, E.CLAIM, S.DEPLOYING, "claimed for a PR", _PERSON, reset=Reset.DEPLOY),
    *(PeaTransition(state, E.DEPLOY, S.DEPLOYING, "deploy a PR (again)", _PERSON, reset=Reset.DEPLOY)
      for state in _HELD_IN_ORDER),
    PeaTransition(S.UP, E.REDEPLOY, S.DEPLOYING, "Redeploy", _PERSON, button="Redeploy",
                  guard=PeaGuard.NEWER_BUILD, reset=Reset.DEPLOY),
    PeaTransition(S.FAILED, E.REDEPLOY, S.DEPLOYING, "Redeploy", _PERSON, button="Redeploy", reset=Reset.DEPLOY),
    PeaTransition(S.DEPLOYING, E.UP, S.UP, "build green, services stable"),
    PeaTransition(S.DEPLOYING, E.FAIL, S.FAILED, "build red or timed out, a service fails, an outside system fails"),
    *(PeaTransition(state, E.EXTEND, state, "Extend", _PERSON, button="Extend") for state in _HELD_IN_ORDER),
    *(PeaTransition(state, E.RELEASE, S.RELEASING, "Release", _PERSON, button="Release", reset=Reset.RELEASE)
      for state in _HELD_IN_ORDER),
    *(PeaTransition(state, E.LEASE_ENDED, S.RELEASING, "the lease ends", reset=Reset.RELEASE)
      for state in _HELD_IN_ORDER),
    PeaTransition(S.RELEASING, E.SCALED_TO_ZERO, S.FREE, "no task runs any more", reset=Reset.FREE),
)

_INDEX: dict[tuple[PeaState, PeaEvent], PeaTransition] = {}
for _t in TRANSITIONS:
    if (_t.source, _t.event) in _INDEX:
        raise ValueError(f"two pea transitions for {_t.source} on {_t.event}")
    _INDEX[(_t.source, _t.event)] = _t

BUTTONS: tuple[str, ...] = tuple(dict.fromkeys(t.button for t in TRANSITIONS if t.button))


def transition_for(state: PeaState, event: PeaEvent) -> PeaTransition | None:
    return _INDEX.get((state, event))


def guard_holds(guard: PeaGuard | None, *, newer_build: bool) -> bool:
    return guard is None or (guard is PeaGuard.NEWER_BUILD and newer_build)


def person_transitions(state: PeaState, *, newer_build: bool) -> list[PeaTransition]:
    """What a person may ask for in this state with a button, in table order."""
    return [t for t in TRANSITIONS if t.source is state and t.button and guard_holds(t.guard, newer_build=newer_build)]


README = ReadmeBlock("pea flowchart", "flows/pea/machine.py", lambda: mermaid(S.FREE, TRANSITIONS))
