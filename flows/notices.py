"""What the domain tells people: one frozen dataclass per kind of notice, carrying ids and facts, no wording.

A notice is written to the outbox (`flows.outbox`) in the same transaction as the change it
reports, and delivered in order within its stream (one per deploy, pea or train) to every sink
(the Slack surface; GitHub reporting). Surfaces word notices; `flows` never formats text for them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import TypeAdapter

from flows.deploy.machine import Event, State, Transition, transition_for
from flows.pea.machine import Stale

SYSTEM = "fatcontroller"  # the actor of what nobody asked for


@dataclass(frozen=True)
class Notice:
    """Every notice belongs to one stream; notices of one stream are delivered in the order written."""

    @property
    def stream(self) -> str:
        raise NotImplementedError


# -- deploys --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeployNotice(Notice):
    deploy_id: int
    train: str

    @property
    def stream(self) -> str:
        return f"deploy:{self.deploy_id}"


@dataclass(frozen=True)
class Moved(DeployNotice):
    """A transition of the deploy flowchart was taken (`source` → `target` on `event`)."""

    event: Event
    source: State
    target: State
    actor: str = SYSTEM  # a person's id, or SYSTEM
    reason: str | None = None  # why it failed, needs attention or was rolled back

    @property
    def transition(self) -> Transition:
        found = transition_for(self.source, self.event)
        if found is None:
            raise LookupError(f"no transition {self.source} on {self.event}")
        return found

    @property
    def by_person(self) -> bool:
        return self.actor != SYSTEM


@dataclass(frozen=True)
class Queued(DeployNotice):
    """A request joined the train (its place in the queue is in the queue's view)."""


@dataclass(frozen=True)
class Merged(DeployNotice):
    sha: str


@dataclass(frozen=True)
class HeadFollowed(DeployNotice):
    """The pull request's head moved since it was queued: the new head is the one merged."""

    old: str
    new: str
    updated: bool  # it moved because the train updated it with the base branch (not a push)


@dataclass(frozen=True)
class BranchUpdating(DeployNotice):
    """The base branch requires pull requests to be up to date: GitHub was asked to update this one."""

    head: str


@dataclass(frozen=True)
class BuildStarted(DeployNotice):
    number: int
    url: str


@dataclass(frozen=True)
class BuildPassed(DeployNotice):
    number: int
    url: str


@dataclass(frozen=True)
class BuildRetried(DeployNotice):
    """A red build was started once more by itself (`jenkins.build_retries`), before anyone is asked."""

    number: int  # the red build
    url: str
    ahead: bool  # the build of a candidate built ahead (else of the landed commit)


@dataclass(frozen=True)
class CandidateBuilding(DeployNotice):
    """A queued deploy is built ahead (DESIGN §8): its candidate's build has started."""

    number: int
    url: str
    on: int | None  # the PR of the deploy it is built on top of (None: on the base branch as it is)


@dataclass(frozen=True)
class CandidateBuildFailed(DeployNotice):
    """A queued deploy's build ahead ended red, its retries spent: its requester hears it before their turn."""

    number: int
    url: str
    result: str


@dataclass(frozen=True)
class CandidateDropped(DeployNotice):
    """A queued deploy's candidate was dropped (build stopped, branch deleted): what it was built on changed."""

    why: str


@dataclass(frozen=True)
class YoureNext(DeployNotice):
    """The deploy ahead of this queued one started its rollout: this one is next, in about `starts_in`."""

    starts_in: timedelta


@dataclass(frozen=True)
class CanaryReminder(DeployNotice):
    """The canaries have waited `deploy.canary_reminder` for the requester."""

    bake_left: timedelta | None = None  # with `deploy.canary_bake`: how long until it proceeds by itself


@dataclass(frozen=True)
class AlarmsRead(DeployNotice):
    """The watched alarms' states changed (DESIGN §9): (name, state) each, OK, ALARM or INSUFFICIENT_DATA."""

    states: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RolloutProgress(DeployNotice):
    counts: tuple[tuple[str, int, int], ...]  # (process, running, desired)


@dataclass(frozen=True)
class RevertPullRequest(DeployNotice):
    """The base branch refused the revert pushed directly: it went through a pull request (`merged`), or waits in
    one for people to merge."""

    url: str
    merged: bool
    detail: str


@dataclass(frozen=True)
class RevertByHand(DeployNotice):
    """The merge could not be reverted without touching others' work: people must revert it."""

    detail: str
    manual_url: str | None
    paths: tuple[str, ...]


# -- trains ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainNotice(Notice):
    train: str

    @property
    def stream(self) -> str:
        return f"train:{self.train}"


@dataclass(frozen=True)
class Frozen(TrainNotice):
    by: str
    reason: str


@dataclass(frozen=True)
class Unfrozen(TrainNotice):
    by: str


@dataclass(frozen=True)
class QueueMoved(TrainNotice):
    """The queue's order or its ETAs changed: queued deploys show their place anew."""


# -- peas -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeaNotice(Notice):
    pea: str
    train: str
    holder: str | None  # whom it concerns (None: nobody holds the pea)
    progress: ClassVar[bool] = False  # a step on the way, rather than something that needs the holder

    @property
    def stream(self) -> str:
        return f"pea:{self.pea}"


@dataclass(frozen=True)
class PeaDeploying(PeaNotice):
    """The pea was claimed (or deployed again) for a PR's head."""

    progress: ClassVar[bool] = True
    actor: str
    pr: int
    sha: str
    build_number: int | None


@dataclass(frozen=True)
class PeaTakenOver(PeaNotice):
    """An admin deployed over the holder's claim: `holder` is the one who lost it."""

    by: str
    pr: int


@dataclass(frozen=True)
class PeaExtended(PeaNotice):
    progress: ClassVar[bool] = True
    until: datetime


@dataclass(frozen=True)
class PeaBuildFound(PeaNotice):
    progress: ClassVar[bool] = True
    number: int
    url: str
    sha: str


@dataclass(frozen=True)
class PeaBuildRequested(PeaNotice):
    """No build of the head started by itself in time: the bot started one through Jenkins' API."""

    progress: ClassVar[bool] = True
    job: str
    sha: str


@dataclass(frozen=True)
class PeaStarting(PeaNotice):
    """The build is green: the pea's services are being pointed at the image of what it built."""

    progress: ClassVar[bool] = True
    sha: str  # the PR head
    # (defaults: notices stored before these existed) what the build built for the head: the head itself, or
    # (GitHub Branch Source's default) the head merged with `base`, the branch the PR merges into
    pr: int | None = None
    built: str | None = None
    base: str | None = None


@dataclass(frozen=True)
class PeaUp(PeaNotice):
    url: str | None
    pr: int | None
    sha: str | None  # the PR head
    built: str | None = None  # what runs, as in PeaStarting
    base: str | None = None


@dataclass(frozen=True)
class PeaFailed(PeaNotice):
    reason: str
    system: str | None  # the outside system that failed, if one did


@dataclass(frozen=True)
class PeaLeaseEnding(PeaNotice):
    until: datetime


@dataclass(frozen=True)
class PeaStale(PeaNotice):
    """The PR on an up pea has a newer green build, or was closed or merged."""

    why: Stale
    pr: int
    sha: str | None


@dataclass(frozen=True)
class PeaReopened(PeaNotice):
    progress: ClassVar[bool] = True
    pr: int


@dataclass(frozen=True)
class PeaReleased(PeaNotice):
    """Nobody holds the pea any more: `holder` is who held it, `by` who let it go (None: the lease ended)."""

    by: str | None


@dataclass(frozen=True)
class PeaReleaseRetrying(PeaNotice):
    """Scaling the pea to zero keeps failing; it is tried again."""

    error: str
    retry_seconds: float


@dataclass(frozen=True)
class PeaFree(PeaNotice):
    """The pea is scaled to zero and free."""


# -- the codec of the outbox ------------------------------------------------------------------------

def _kinds() -> dict[str, type[Notice]]:
    found: dict[str, type[Notice]] = {}
    pending: list[type[Notice]] = [Notice]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


KINDS: dict[str, type[Notice]] = _kinds()
_ADAPTERS: dict[type[Notice], TypeAdapter[Any]] = {cls: TypeAdapter(cls) for cls in KINDS.values()}


def encode(notice: Notice) -> tuple[str, dict[str, Any]]:
    """The notice as its kind and a JSON-able payload."""
    payload = _ADAPTERS[type(notice)].dump_python(notice, mode="json")
    return type(notice).__name__, {f.name: payload[f.name] for f in fields(notice)}


def decode(kind: str, payload: dict[str, Any]) -> Notice:
    """The notice `encode` made (KeyError for a kind this version does not know)."""
    cls = KINDS[kind]
    notice: Notice = _ADAPTERS[cls].validate_python(payload)
    return notice
