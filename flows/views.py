"""What surfaces see of the domain: frozen snapshots, made from rows inside `flows` and never tied to a session.

A view stays put while the row it was read from moves on; surfaces render views and notices
(`flows.notices`) and never see an ORM object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flows.deploy.machine import State, Transition, person_transitions
from flows.pea.machine import PeaState, PeaTransition, Stale
from flows.pea.machine import person_transitions as pea_person_transitions
from storage.models import AuditEvent, Deploy, Pea, Train, UndoRecord


@dataclass(frozen=True)
class TargetView:
    """One process of a deploy: its service, canary, the task definitions before and after, rollout counts."""

    process: str
    service: str | None
    canary: str | None
    old_task_definition: str | None
    new_task_definition: str | None
    running: int | None  # during the rollout
    desired: int | None
    # the canary is only a Service Connect client: its service publishes endpoints there, which no other may
    canary_client_only: bool
    # the canary's running and desired tasks, and its healthy targets (None without a load balancer), as last read
    canary_health: tuple[int, int, int | None] | None = None


@dataclass(frozen=True)
class CandidateView:
    """A deploy built ahead (DESIGN §8): its candidate commit and that commit's build."""

    sha: str | None  # None: its PR's head conflicts with the base it would land on
    on: int | None  # the PR of the deploy it was built on top of (None: on the base branch as it was)
    build_number: int | None
    build_url: str | None
    result: str | None  # Jenkins' result once the build ended
    retries: int  # started again by itself (`jenkins.build_retries`)

    @property
    def green(self) -> bool | None:
        """Whether its build passed; None while it has not ended."""
        return None if self.result is None else self.result == "SUCCESS"

    @classmethod
    def of(cls, deploy: Deploy) -> CandidateView | None:
        if deploy.candidate_base is None:
            return None
        return cls(deploy.candidate_sha, deploy.candidate_on, deploy.candidate_build_number,
                   deploy.candidate_build_url, deploy.candidate_result, deploy.candidate_retries)


@dataclass(frozen=True)
class DeployView:
    id: int
    train: str
    state: State
    needs_attention: bool
    attention: str | None  # which outside system failed, and how
    requester: str
    pr_number: int
    pr_title: str | None
    pr_url: str | None
    pr_author: str | None
    pr_head_sha: str | None
    processes: tuple[str, ...]
    notes: str | None
    jump_queue: bool
    skip_build: bool
    emergency_reason: str | None
    build_number: int | None
    build_url: str | None
    build_retries: int  # builds started again (with Retry build, or by themselves: `jenkins.build_retries`)
    image: str | None
    merge_sha: str | None
    revert_sha: str | None
    revert_status: str | None  # reverted, already, manual, pull_request (see integrations.github.RevertResult)
    revert_pull_request: str | None  # the revert's pull request (its URL), when the base branch required one
    outcome_reason: str | None  # why it failed or was rolled back
    rollback_from: State | None
    created_at: datetime
    state_entered_at: datetime
    started_at: datetime | None  # when it left the queue
    finished_at: datetime | None
    state_times: tuple[tuple[State, datetime], ...]  # when it last entered each state, in order
    targets: tuple[TargetView, ...]
    candidate: CandidateView | None  # built ahead (kept once it landed: `merge_sha` is then its commit)
    alarms: tuple[tuple[str, str], ...]  # each watched alarm's state as last read (DESIGN §9)

    @classmethod
    def of(cls, deploy: Deploy) -> DeployView:
        targets = deploy.targets or {}
        return cls(
            id=deploy.id, train=deploy.train_id, state=State(deploy.state), needs_attention=deploy.needs_attention,
            attention=deploy.attention, requester=deploy.requester, pr_number=deploy.pr_number,
            pr_title=deploy.pr_title, pr_url=deploy.pr_url, pr_author=deploy.pr_author,
            pr_head_sha=deploy.pr_head_sha, processes=tuple(deploy.processes), notes=deploy.notes,
            jump_queue=deploy.jump_queue, skip_build=deploy.skip_build, emergency_reason=deploy.emergency_reason,
            build_number=deploy.build_number, build_url=deploy.build_url, build_retries=deploy.build_attempts,
            image=deploy.image,
            merge_sha=deploy.merge_sha, revert_sha=deploy.revert_sha, revert_status=deploy.revert_status,
            revert_pull_request=deploy.revert_pull_request, outcome_reason=deploy.outcome_reason,
            rollback_from=State(deploy.rollback_from) if deploy.rollback_from else None,
            created_at=deploy.created_at, state_entered_at=deploy.state_entered_at, started_at=deploy.started_at,
            finished_at=deploy.finished_at,
            state_times=tuple(sorted(((State(s), datetime.fromisoformat(at)) for s, at in
                                      (deploy.state_times or {}).items()), key=lambda item: item[1])),
            targets=tuple(_target(process, targets.get(process) or {}) for process in deploy.processes),
            candidate=CandidateView.of(deploy),
            alarms=tuple((deploy.alarm_states or {}).items()),
        )

    @property
    def landed_ahead(self) -> bool:
        """It landed the candidate it was built ahead as (a fast-forward, not a merge)."""
        return self.candidate is not None and self.merge_sha is not None and self.candidate.sha == self.merge_sha

    def entered(self, state: State) -> datetime | None:
        """When the deploy last entered `state`, if it did."""
        return next((at for s, at in self.state_times if s is state), None)

    @property
    def duration(self) -> timedelta | None:
        """How long a finished deploy took from leaving the queue (None if it never left it)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def offered(self, state: State | None = None, *, needs_attention: bool | None = None) -> list[Transition]:
        """The person transitions (buttons) valid in `state` (by default the deploy's own, as it is now)."""
        return person_transitions(state or self.state,
                                  needs_attention=self.needs_attention if needs_attention is None else needs_attention,
                                  skip_build=self.skip_build)


def _target(process: str, values: dict[str, Any]) -> TargetView:
    counts = values.get("counts") or [None, None]
    health = values.get("canary_health")
    return TargetView(process, values.get("service"), values.get("canary"), values.get("old_td"),
                      values.get("new_td"), counts[0], counts[1], bool(values.get("canary_client_only")),
                      (health[0], health[1], health[2]) if health else None)


@dataclass(frozen=True)
class TrainView:
    """A train's own state: frozen or not, by whom and why."""

    name: str
    frozen: bool
    frozen_by: str | None
    frozen_reason: str | None
    frozen_at: datetime | None

    @classmethod
    def of(cls, train: Train) -> TrainView:
        return cls(train.id, train.frozen, train.frozen_by, train.frozen_reason, train.frozen_at)

    @classmethod
    def new(cls, name: str) -> TrainView:
        """A train nobody has used yet (it has no row): running, empty."""
        return cls(name, False, None, None, None)


@dataclass(frozen=True)
class QueueEntry:
    deploy: DeployView  # read with its place, so the two agree
    position: int  # 0: past the queue (in flight, or already ended); 1 for the next to start, 2, ... in train order
    # until it starts (0 once past the queue); None while the train is frozen: it starts once unfrozen
    eta: timedelta | None
    finish: timedelta | None = None  # until it is predicted to finish (DESIGN §8); None while frozen


@dataclass(frozen=True)
class QueueView:
    """A train and its deploys past the queue (position 0) and in it, in train order."""

    train: TrainView
    entries: tuple[QueueEntry, ...]

    @property
    def in_flight(self) -> DeployView | None:
        return next((e.deploy for e in self.entries if e.position == 0), None)

    @property
    def queued(self) -> tuple[QueueEntry, ...]:
        return tuple(e for e in self.entries if e.position > 0)

    def entry(self, deploy_id: int) -> QueueEntry | None:
        return next((e for e in self.entries if e.deploy.id == deploy_id), None)


@dataclass(frozen=True)
class Placed:
    """Where an accepted request went: its entry, read just after it joined, and the train it waits on."""

    entry: QueueEntry
    train: TrainView

    @property
    def deploy(self) -> DeployView:
        return self.entry.deploy


@dataclass(frozen=True)
class AuditView:
    """One line of the audit trail: who did what, when, with the outside ids."""

    at: datetime
    actor: str
    action: str
    detail: str | None
    outside_ids: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditView:
        return cls(event.at, event.actor, event.action, event.detail, tuple(sorted((event.outside_ids or {}).items())))


@dataclass(frozen=True)
class UndoView:
    """One undo step of a deploy's saga: what it undoes, and how it went."""

    seq: int
    kind: str  # merge, task_definition, canary, service_update
    data: tuple[tuple[str, Any], ...]
    done_at: datetime | None
    result: str | None

    @classmethod
    def of(cls, record: UndoRecord) -> UndoView:
        data = {k: v for k, v in (record.data or {}).items() if k != "key"}
        return cls(record.seq, record.kind, tuple(sorted(data.items())), record.done_at, record.result)


@dataclass(frozen=True)
class DeployDetail:
    """A deploy with its whole story: the audit trail and the undo steps, oldest first."""

    deploy: DeployView
    audit: tuple[AuditView, ...]
    undo: tuple[UndoView, ...]


@dataclass(frozen=True)
class HistoryPage:
    """One page of deploys, newest first, and how many match the filters in all."""

    deploys: tuple[DeployView, ...]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.deploys) < self.total


@dataclass(frozen=True)
class PullRequestOption:
    """An open pull request offered in a picker."""

    number: int
    title: str
    author: str


@dataclass(frozen=True)
class PeaView:
    """A pea as people see it."""

    name: str
    train: str
    state: PeaState
    holder: str | None
    pr_number: int | None
    pr_title: str | None
    pr_url: str | None
    head_sha: str | None
    pr_base: str | None
    built_sha: str | None  # what Jenkins built for the head: the head, or its merge with pr_base
    image: str | None
    build_url: str | None
    url: str | None
    claimed_at: datetime | None  # since when it is held
    claim_expires_at: datetime | None  # until when the claim lasts
    state_entered_at: datetime | None
    failure_reason: str | None
    stale_reason: Stale | None
    newer_sha: str | None

    @classmethod
    def of(cls, pea: Pea, train: str) -> PeaView:
        return cls(
            name=pea.name, train=train, state=PeaState(pea.state), holder=pea.holder, pr_number=pea.pr_number,
            pr_title=pea.pr_title, pr_url=pea.pr_url, head_sha=pea.head_sha, pr_base=pea.pr_base,
            built_sha=pea.built_sha, image=pea.image,
            build_url=pea.build_url, url=pea.url, claimed_at=pea.claimed_at, claim_expires_at=pea.claim_expires_at,
            state_entered_at=pea.state_entered_at, failure_reason=pea.failure_reason,
            stale_reason=Stale(pea.stale_reason) if pea.stale_reason else None, newer_sha=pea.newer_sha,
        )

    @property
    def held(self) -> bool:
        return self.state.held

    def offered(self) -> list[PeaTransition]:
        """The buttons valid for the pea as it is, in table order."""
        return pea_person_transitions(self.state, newer_build=self.stale_reason is Stale.NEWER_BUILD)

    @property
    def claim(self) -> str:
        """Which claim this is (buttons belong to one claim): when it began."""
        return self.claimed_at.isoformat() if self.claimed_at else ""
