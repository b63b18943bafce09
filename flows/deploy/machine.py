"""The deploy flowchart as data: states, events and the transition table.

Every state change of a deploy is one row of `TRANSITIONS`; nothing moves a deploy otherwise.
A transition says whether the requester must be told of it (`tells_requester`: "your turn", the
buttons they must press, a failure); the buttons people see come from its person transitions.
The README's diagram is rendered from this table (`mermaid()`), and a test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flows.flowchart import Actor, ReadmeBlock, mermaid


class State(StrEnum):
    QUEUED = "queued"
    MERGING = "merging"
    BUILDING = "building"
    BUILD_FAILED = "build_failed"
    CANARYING = "canarying"
    CANARY_CHECK = "canary_check"
    ROLLING_OUT = "rolling_out"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    ROLLING_BACK = "rolling_back"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        """The name people see: `canary check`, `rolled back`."""
        return self.value.replace("_", " ")

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.COMPLETED, State.ROLLED_BACK, State.FAILED, State.CANCELLED})
# States in which the deploy holds the train (everything past the queue that has not ended).
IN_FLIGHT = frozenset(set(State) - TERMINAL - {State.QUEUED})
# States whose step talks to outside systems, so their retries can run out.
WORKING = frozenset({State.MERGING, State.BUILDING, State.CANARYING, State.ROLLING_OUT, State.ROLLING_BACK})
# States in which the watched CloudWatch alarms are read (DESIGN §9): from the canaries up until the deploy ends.
WATCHED = (State.CANARY_CHECK, State.ROLLING_OUT, State.AWAITING_CONFIRMATION)


class Event(StrEnum):
    START = "start"
    MERGED = "merged"
    MERGE_REFUSED = "merge_refused"
    BUILD_GREEN = "build_green"
    BUILD_RED = "build_red"
    BUILD_TIMEOUT = "build_timeout"
    BUILD_FLAKED = "build_flaked"  # red, with `jenkins.build_retries` left
    IMAGE_PRESENT = "image_present"
    RETRY_BUILD = "retry_build"
    CANARIES_UP = "canaries_up"
    CANARY_FAILED = "canary_failed"
    BAKED = "baked"  # the canaries up and every watched alarm OK for `deploy.canary_bake`
    ALARM = "alarm"  # a watched alarm is in ALARM
    ALARM_MISSING = "alarm_missing"  # a watched alarm does not exist: a blind canary is not trusted
    PROCEED = "proceed"
    ROLLOUT_DONE = "rollout_done"
    ROLLOUT_FAILED = "rollout_failed"
    DONE = "done"
    CONFIRM_TIMEOUT = "confirm_timeout"
    ROLL_BACK = "roll_back"
    UNDONE = "undone"
    CANCEL = "cancel"
    RETRIES_EXHAUSTED = "retries_exhausted"
    STEP_FAILED = "step_failed"  # the step raised an error nothing expected
    UNDO_STUCK = "undo_stuck"  # an undo cannot finish without people (a revert pull request to merge, ...)
    RETRY = "retry"
    MARK_ROLLED_BACK = "mark_rolled_back"  # an admin has undone what was left by hand

    @property
    def parks(self) -> bool:
        """The deploy stays where it is, needing attention (a person's button moves it on)."""
        return self in (Event.RETRIES_EXHAUSTED, Event.STEP_FAILED, Event.UNDO_STUCK, Event.ALARM_MISSING)


class Guard(StrEnum):
    """A condition on the deploy that must hold for a transition to be taken."""

    SKIP_BUILD = "skip build check"
    NEEDS_ATTENTION = "needs attention"


class Effect(StrEnum):
    """What a transition does besides moving the deploy (each defined once, in `flows.deploy.service`)."""

    NEW_BUILD = "new build"  # the failed build is kept aside, and the next one is started through the API
    UNDONE_BY_HAND = "undone by hand"  # whatever was left to undo is recorded as done by people
    DROP_CANDIDATE = "drop candidate"  # a deploy built ahead: its candidate's build is stopped, its branch deleted


@dataclass(frozen=True)
class Transition:
    source: State
    event: Event
    target: State
    label: str
    actor: Actor = Actor.SYSTEM
    guard: Guard | None = None
    button: str | None = None  # the Slack button that asks for it, for person transitions
    tells_requester: bool = False  # the requester gets a direct message about it
    effect: Effect | None = None


S, E = State, Event
_WORKING_IN_ORDER = [state for state in State if state in WORKING]
_PERSON, _ADMIN = Actor.PERSON, Actor.ADMIN

TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.QUEUED, E.START, S.MERGING, "reaches the head of the train, train not frozen", tells_requester=True),
    Transition(S.QUEUED, E.CANCEL, S.CANCELLED, "Cancel / leave the queue", _PERSON, button="Cancel",
               effect=Effect.DROP_CANDIDATE),
    Transition(S.MERGING, E.MERGED, S.BUILDING, "PR merged into the base branch"),
    Transition(S.MERGING, E.MERGE_REFUSED, S.FAILED, "not mergeable / conflict / closed / built red ahead",
               tells_requester=True),
    Transition(S.BUILDING, E.BUILD_GREEN, S.CANARYING, "build of the merge commit green"),
    Transition(S.BUILDING, E.BUILD_RED, S.BUILD_FAILED, "build red / aborted", tells_requester=True),
    Transition(S.BUILDING, E.BUILD_TIMEOUT, S.BUILD_FAILED, "build timed out", tells_requester=True),
    Transition(S.BUILDING, E.BUILD_FLAKED, S.BUILDING, "build red, started again by itself (build_retries)",
               effect=Effect.NEW_BUILD),
    Transition(S.BUILDING, E.IMAGE_PRESENT, S.CANARYING, "skip build check, image in the registry",
               guard=Guard.SKIP_BUILD),
    Transition(S.BUILD_FAILED, E.RETRY_BUILD, S.BUILDING, "Retry build", _PERSON, button="Retry build",
               effect=Effect.NEW_BUILD),
    Transition(S.BUILD_FAILED, E.ROLL_BACK, S.ROLLING_BACK, "Roll back", _PERSON, button="Roll back"),
    Transition(S.CANARYING, E.CANARIES_UP, S.CANARY_CHECK, "one canary per process up", tells_requester=True),
    Transition(S.CANARYING, E.CANARY_FAILED, S.ROLLING_BACK, "canary fails to start"),
    Transition(S.CANARY_CHECK, E.PROCEED, S.ROLLING_OUT, "Proceed", _PERSON, button="Proceed"),
    Transition(S.CANARY_CHECK, E.BAKED, S.ROLLING_OUT, "healthy for canary_bake: proceeds by itself",
               tells_requester=True),
    Transition(S.CANARY_CHECK, E.ROLL_BACK, S.ROLLING_BACK, "Roll back", _PERSON, button="Roll back"),
    Transition(S.ROLLING_OUT, E.ROLLOUT_DONE, S.AWAITING_CONFIRMATION, "rolled out, canaries removed",
               tells_requester=True),
    Transition(S.ROLLING_OUT, E.ROLLOUT_FAILED, S.ROLLING_BACK, "rollout fails (circuit breaker, timeout)"),
    Transition(S.AWAITING_CONFIRMATION, E.DONE, S.COMPLETED, "Done", _PERSON, button="Done"),
    Transition(S.AWAITING_CONFIRMATION, E.CONFIRM_TIMEOUT, S.COMPLETED, "confirm timeout passes"),
    Transition(S.AWAITING_CONFIRMATION, E.ROLL_BACK, S.ROLLING_BACK, "Roll back", _PERSON, button="Roll back"),
    Transition(S.ROLLING_BACK, E.UNDONE, S.ROLLED_BACK, "services restored, merge reverted", tells_requester=True),
    # The watched alarms (DESIGN §9): one in ALARM rolls back by itself; one that does not exist needs people.
    *(Transition(state, E.ALARM, S.ROLLING_BACK, "a watched alarm in ALARM", tells_requester=True)
      for state in WATCHED),
    *(Transition(state, E.ALARM_MISSING, state, "a watched alarm does not exist (needs attention)",
                 tells_requester=True) for state in WATCHED),
    *(Transition(state, E.RETRY, state, "Retry", _PERSON, guard=Guard.NEEDS_ATTENTION, button="Retry")
      for state in WATCHED if state not in WORKING),
    # An outside system failing past its retries, or a step failing in a way nothing expected, parks the
    # deploy where it is, for a person to act.
    *(
        Transition(state, E.RETRIES_EXHAUSTED, state, "outside system keeps failing (needs attention)",
                   tells_requester=True)
        for state in _WORKING_IN_ORDER
    ),
    *(
        Transition(state, E.STEP_FAILED, state, "step fails unexpectedly (needs attention)", tells_requester=True)
        for state in _WORKING_IN_ORDER
    ),
    *(
        Transition(state, E.RETRY, state, "Retry", _PERSON, guard=Guard.NEEDS_ATTENTION, button="Retry")
        for state in _WORKING_IN_ORDER
    ),
    *(
        Transition(state, E.ROLL_BACK, S.ROLLING_BACK, "Roll back", _PERSON, guard=Guard.NEEDS_ATTENTION,
                   button="Roll back")
        for state in _WORKING_IN_ORDER if state is not S.ROLLING_BACK
    ),
    Transition(S.ROLLING_BACK, E.UNDO_STUCK, S.ROLLING_BACK, "an undo needs people, e.g. a revert PR to merge "
               "(needs attention)", tells_requester=True),
    # However a rollback is stuck, an admin can always end it once people have undone the rest by hand.
    Transition(S.ROLLING_BACK, E.MARK_ROLLED_BACK, S.ROLLED_BACK, "Mark rolled back by hand", _ADMIN,
               guard=Guard.NEEDS_ATTENTION, button="Mark rolled back by hand", tells_requester=True,
               effect=Effect.UNDONE_BY_HAND),
)

_INDEX: dict[tuple[State, Event], Transition] = {}
for _t in TRANSITIONS:
    if (_t.source, _t.event) in _INDEX:
        raise ValueError(f"two transitions for {_t.source} on {_t.event}")
    _INDEX[(_t.source, _t.event)] = _t

# Every event a person can ask for with a button, in table order.
BUTTON_EVENTS: tuple[Event, ...] = tuple(dict.fromkeys(t.event for t in TRANSITIONS if t.actor.presses))


def transition_for(state: State, event: Event) -> Transition | None:
    return _INDEX.get((state, event))


def guard_holds(guard: Guard | None, *, needs_attention: bool, skip_build: bool) -> bool:
    if guard is None:
        return True
    if guard is Guard.NEEDS_ATTENTION:
        return needs_attention
    return skip_build


def person_transitions(state: State, *, needs_attention: bool, skip_build: bool = False) -> list[Transition]:
    """What a person may ask for in this state: the buttons to show, in table order."""
    offered = [
        t for t in TRANSITIONS
        if t.source == state and t.actor.presses
        and guard_holds(t.guard, needs_attention=needs_attention, skip_build=skip_build)
    ]
    return list({t.button: t for t in offered}.values())


README = ReadmeBlock("flowchart", "flows/deploy/machine.py", lambda: mermaid(S.QUEUED, TRANSITIONS, sorted(TERMINAL)))
