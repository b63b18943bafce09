"""The train's bookkeeping: requests, the queue, transitions, undo records and the audit log.

Every function here works in one database transaction, which also holds the audit record and
the notices of the change (`Outbox.write`), and talks to no outside system, except
`request_deploy`, which reads the pull request to validate it before queuing.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from flows.config import TrainConfig
from flows.deploy.eta import predict, stage_times
from flows.deploy.machine import (
    IN_FLIGHT,
    TERMINAL,
    Effect,
    Event,
    State,
    Transition,
    guard_holds,
    transition_for,
)
from flows.errors import Refused, Superseded, Why
from flows.flowchart import Actor
from flows.notices import SYSTEM, Frozen, Moved, Notice, Queued, QueueMoved, Unfrozen, YoureNext
from flows.outbox import Outbox
from flows.outside import GitHubApi, ask
from flows.views import DeployView, Placed, QueueEntry, QueueView, TrainView
from integrations.outside import NotFound, OutsideError
from storage.clock import utcnow
from storage.models import AuditEvent, Deploy, Train, UndoRecord
from storage.trains import ensure_train, take_queue_seq

MAX_REASON = 500
MAX_NOTES = 2000


@dataclass(frozen=True)
class DeployRequest:
    requester: str
    pr_number: int
    processes: tuple[str, ...] = ()  # empty: every process
    jump_queue: bool = False
    skip_build: bool = False
    reason: str | None = None
    notes: str | None = None


@dataclass
class Applied:
    """A transition that was taken."""

    transition: Transition
    deploy: Deploy
    reason: str | None = None


def audit(session: AsyncSession, actor: str, action: str, *, deploy_id: int | None = None, pea: str | None = None,
          train_id: str | None = None, detail: str | None = None, **outside_ids: Any) -> None:
    session.add(AuditEvent(actor=actor, action=action, deploy_id=deploy_id, pea=pea, train_id=train_id,
                           detail=detail, outside_ids={k: v for k, v in outside_ids.items() if v is not None}))


# -- requests -----------------------------------------------------------------------------------

def _check_request(config: TrainConfig, request: DeployRequest) -> tuple[str, ...]:
    """Everything that can be refused without asking GitHub; returns the processes to deploy."""
    permissions = config.permissions
    if not permissions.may_deploy(request.requester):
        raise Refused(Why.NOT_A_DEPLOYER)
    if request.pr_number <= 0:
        raise Refused(Why.NOT_A_PR_NUMBER, field="pr", pr=str(request.pr_number))
    unknown = [p for p in request.processes if p not in config.processes]
    if unknown:
        raise Refused(Why.UNKNOWN_PROCESS, field="processes", process=unknown[0], choices=list(config.processes),
                      pr=request.pr_number)
    if request.jump_queue or request.skip_build:
        if not permissions.may_use_emergency(request.requester):
            raise Refused(Why.NOT_ON_EMERGENCY_LIST, field="emergency")
        if not (request.reason or "").strip():
            raise Refused(Why.REASON_REQUIRED, field="reason")
    if request.reason and len(request.reason) > MAX_REASON:
        raise Refused(Why.TOO_LONG, field="reason", what="reason", length=len(request.reason), limit=MAX_REASON)
    if request.notes and len(request.notes) > MAX_NOTES:
        raise Refused(Why.TOO_LONG, field="notes", what="notes", length=len(request.notes), limit=MAX_NOTES)
    chosen = request.processes or tuple(config.processes)
    return tuple(dict.fromkeys(chosen))


async def request_deploy(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: TrainConfig,
                         github: GitHubApi, request: DeployRequest) -> Placed:
    """Validate a request against the config and the pull request, and put it on the train."""
    processes = _check_request(config, request)
    repo, base = config.github.repo, config.github.base_branch
    try:
        pr = await ask(lambda: github.get_pr(request.pr_number))
    except NotFound:
        raise Refused(Why.NO_SUCH_PR, field="pr", pr=request.pr_number, repo=repo) from None
    except OutsideError as exc:
        raise Refused(Why.UNREACHABLE, field="pr", system=exc.system, message=exc.message) from None
    if pr.merged:
        raise Refused(Why.PR_MERGED, field="pr", pr=pr.number)
    if pr.state != "open":
        raise Refused(Why.PR_CLOSED, field="pr", pr=pr.number)
    if pr.base_ref != base:
        raise Refused(Why.PR_WRONG_BASE, field="pr", pr=pr.number, base=pr.base_ref, expected=base)
    if pr.from_fork:
        raise Refused(Why.PR_FROM_FORK, field="pr", pr=pr.number, repo=repo)
    if pr.mergeable is False:  # None: GitHub is still computing; merging checks again
        raise Refused(Why.PR_CONFLICTS, field="pr", pr=pr.number, base=base)
    async with sessions() as session, session.begin():
        train = await ensure_train(session, config.name)
        existing = await session.scalar(
            sa.select(Deploy.id).where(
                Deploy.train_id == train.id, Deploy.pr_number == pr.number,
                Deploy.state.not_in([s.value for s in TERMINAL]),
            )
        )
        if existing is not None:
            raise Refused(Why.ALREADY_QUEUED, field="pr", pr=pr.number, deploy_id=existing)
        seq = await take_queue_seq(session, train.id)
        now = utcnow()
        deploy = Deploy(
            train_id=train.id, state=State.QUEUED.value, requester=request.requester,
            pr_number=pr.number, pr_title=pr.title, pr_url=pr.url, pr_author=pr.author,
            pr_head_sha=pr.head_sha, pr_created_at=pr.created_at, processes=list(processes),
            notes=request.notes, jump_queue=request.jump_queue, skip_build=request.skip_build,
            emergency_reason=(request.reason or None) if (request.jump_queue or request.skip_build) else None,
            queue_seq=float(seq), created_at=now, state_entered_at=now,
            state_times={State.QUEUED.value: now.isoformat()},
            # built ahead: its step looks at once whether it is near enough the deploy in flight
            due_at=now if config.deploy.speculate else None,
        )
        session.add(deploy)
        await session.flush()
        audit(session, request.requester, "requested", deploy_id=deploy.id, train_id=deploy.train_id,
              detail=_request_detail(deploy), pr=pr.number, head_sha=pr.head_sha)
        # A deploy joining at the back moves nobody; a jump moves everyone behind it.
        await outbox.write(session, Queued(deploy.id, train.id),
                           *((QueueMoved(train.id),) if deploy.jump_queue else ()))
        if deploy.jump_queue:
            await _wake_queued(session, train.id, 0, but=deploy.id)  # those built ahead behind it: on a wrong base
    outbox.wake()
    async with sessions() as session:
        view = await _queue_view(session, config)
        # A deploy can already have ended (a PR that no longer merges fails at once) before this read.
        entry = view.entry(deploy.id) or QueueEntry(DeployView.of(await session.get_one(Deploy, deploy.id)), 0,
                                                    timedelta(0))
    return Placed(entry, view.train)


def _request_detail(deploy: Deploy) -> str:
    flags = [name for name, on in (("jump the queue", deploy.jump_queue),
                                   ("skip build check", deploy.skip_build)) if on]
    detail = f"#{deploy.pr_number} {', '.join(deploy.processes)}"
    if flags:
        detail += f" [{', '.join(flags)}: {deploy.emergency_reason}]"
    return detail


# -- the queue ----------------------------------------------------------------------------------

def _train_order() -> tuple[Any, ...]:
    # Jumps go right behind the deploy in flight and keep their own order among themselves.
    return (Deploy.jump_queue.desc(), Deploy.queue_seq)


async def typical_stage(sessions: async_sessionmaker[AsyncSession], began: State, ended: State,
                        train_id: str, sample: int = 20) -> timedelta | None:
    """Median time from entering `began` to entering `ended` (e.g. building to canarying: a green build) of
    the train's recent deploys that went through both; None until there is such a deploy."""
    async with sessions() as session:
        rows: Sequence[dict[str, Any] | None] = (await session.scalars(
            sa.select(Deploy.state_times)
            .where(Deploy.train_id == train_id, Deploy.finished_at.is_not(None), Deploy.skip_build.is_(False))
            .order_by(Deploy.finished_at.desc()).limit(sample * 3)
        )).all()
    took = []
    for times in rows:
        start, end = (times or {}).get(began.value), (times or {}).get(ended.value)
        if start and end and end > start:
            took.append((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    return timedelta(seconds=statistics.median(took[:sample])) if took else None


async def _queue_view(session: AsyncSession, config: TrainConfig) -> QueueView:
    """The train and its entries, read in `session`, each with when it is predicted to start and finish."""
    train_id = config.name
    row = await session.get(Train, train_id)
    train = TrainView.of(row) if row is not None else TrainView.new(train_id)
    # One read, so that a deploy leaving the queue meanwhile is seen in exactly one of the two lists.
    waiting_or_moving = (await session.scalars(
        sa.select(Deploy).where(Deploy.train_id == train_id,
                                Deploy.state.in_([s.value for s in (*IN_FLIGHT, State.QUEUED)]))
        .order_by(*_train_order())
    )).all()
    in_flight = [d for d in waiting_or_moving if d.state != State.QUEUED.value]
    queued = [d for d in waiting_or_moving if d.state == State.QUEUED.value]
    times = await stage_times(session, train_id)
    left, predicted = predict(times, utcnow(), config.deploy.speculate, in_flight[0] if in_flight else None, queued)
    entries = [QueueEntry(DeployView.of(d), 0, timedelta(0), left) for d in in_flight]
    for position, (deploy, when) in enumerate(zip(queued, predicted, strict=True), start=1):
        # A frozen train starts nobody: no ETA holds until it is unfrozen.
        entries.append(QueueEntry(DeployView.of(deploy), position, None if train.frozen else when.start,
                                  None if train.frozen else when.finish))
    return QueueView(train, tuple(entries))


async def standing(sessions: async_sessionmaker[AsyncSession], deploy: Deploy) -> tuple[int, Deploy | None,
                                                                                      Deploy | None]:
    """Where a queued deploy stands: its place among the queued (1: next; 0: not queued any more), the train's
    deploy in flight, and the queued deploy right ahead of it."""
    async with sessions() as session:
        train = await session.get(Train, deploy.train_id)
        in_flight = await session.get(Deploy, train.in_flight_id) if train and train.in_flight_id else None
        queued = (await session.scalars(sa.select(Deploy).where(
            Deploy.train_id == deploy.train_id, Deploy.state == State.QUEUED.value).order_by(*_train_order()))).all()
    place = next((n for n, d in enumerate(queued, start=1) if d.id == deploy.id), 0)
    return place, in_flight, queued[place - 2] if place >= 2 else None


async def wake_queued(sessions: async_sessionmaker[AsyncSession], train_id: str, count: int) -> None:
    """The train's first `count` queued deploys, and every queued one built ahead, look now: what they would be
    built on has changed."""
    async with sessions() as session, session.begin():
        await _wake_queued(session, train_id, count)


async def _wake_queued(session: AsyncSession, train_id: str, count: int, *, but: int | None = None) -> None:
    queued = sa.and_(Deploy.train_id == train_id, Deploy.state == State.QUEUED.value, Deploy.id != (but or 0))
    woken: sa.ColumnElement[bool] = Deploy.candidate_base.is_not(None)
    if count > 0:
        first = sa.select(Deploy.id).where(queued).order_by(*_train_order()).limit(count).scalar_subquery()
        woken = sa.or_(woken, Deploy.id.in_(first))
    await session.execute(sa.update(Deploy).where(queued, woken).values(due_at=utcnow())
                          .execution_options(synchronize_session=False))


async def queues(sessions: async_sessionmaker[AsyncSession], trains: Sequence[TrainConfig]) -> list[QueueView]:
    """Each train's deploy in flight (position 0) and queued ones in train order, each with an ETA, read one train
    after another in one session: a read only (on SQLite, trains read side by side rather than queue for the
    database's one writer)."""
    async with sessions() as session:
        return [await _queue_view(session, config) for config in trains]


async def get_deploy(sessions: async_sessionmaker[AsyncSession], deploy_id: int) -> Deploy | None:
    async with sessions() as session:
        return await session.get(Deploy, deploy_id)


async def start_next(sessions: async_sessionmaker[AsyncSession], outbox: Outbox,
                     train_id: str) -> Applied | None:
    """Move the head of the queue to `merging` when nothing is in flight and the train is not frozen (a train
    nobody has asked anything of has no row yet: nothing to start)."""
    async with sessions() as session, session.begin():
        train = await session.get(Train, train_id)
        if train is None or train.frozen or train.in_flight_id is not None:
            return None
        head = await session.scalar(
            sa.select(Deploy).where(Deploy.train_id == train_id, Deploy.state == State.QUEUED.value)
            .order_by(*_train_order()).limit(1)
        )
        if head is None:
            return None
        # The train row is the mutex: of two workers starting deploys at once, one update wins.
        taken = await session.scalar(
            sa.update(Train).where(Train.id == train_id, Train.in_flight_id.is_(None), Train.frozen.is_(False))
            .values(in_flight_id=head.id).returning(Train.id)
        )
        if taken is None:
            return None
        applied = await _apply(session, outbox, head, Event.START, SYSTEM)
    outbox.wake()
    return applied


# -- transitions --------------------------------------------------------------------------------

# States whose step runs at once when entered; the others wait for a person or the train.
_WAITS_FOR_PERSON = frozenset({State.BUILD_FAILED})


async def _new_build(session: AsyncSession, deploy: Deploy, actor: str) -> None:
    deploy.build_previous, deploy.build_attempts = deploy.build_number, deploy.build_attempts + 1
    deploy.build_number = deploy.build_url = deploy.build_queue_id = None
    deploy.state_entered_at = utcnow()  # the new build has `jenkins.build_timeout` of its own


async def _undone_by_hand(session: AsyncSession, deploy: Deploy, actor: str) -> None:
    left = (await session.scalars(sa.select(UndoRecord).where(UndoRecord.deploy_id == deploy.id,
                                                              UndoRecord.done_at.is_(None)))).all()
    for record in left:
        record.done_at, record.result = utcnow(), f"undone by hand (marked by {actor})"
        audit(session, actor, f"undone_by_hand:{record.kind}", deploy_id=deploy.id, train_id=deploy.train_id,
              detail=f"{record.kind} left to people", **{k: v for k, v in record.data.items() if k != "key"})


async def _drop_candidate(session: AsyncSession, deploy: Deploy, actor: str) -> None:
    if deploy.candidate_sha is not None or deploy.candidate_queue_id is not None:
        deploy.due_at = utcnow()  # the step of its end state stops the candidate's build and deletes its branch


# What each effect of the table does, defined once.
EFFECTS: dict[Effect, Callable[[AsyncSession, Deploy, str], Awaitable[None]]] = {
    Effect.NEW_BUILD: _new_build,
    Effect.UNDONE_BY_HAND: _undone_by_hand,
    Effect.DROP_CANDIDATE: _drop_candidate,
}


def _moves_queue(transition: Transition) -> bool:
    """Whether the queue's order or ETAs change: a deploy left it, or the one in flight ended."""
    return transition.source is State.QUEUED or transition.target in TERMINAL


async def _apply(session: AsyncSession, outbox: Outbox, deploy: Deploy, event: Event, actor: str, *,
                 reason: str | None = None, updates: dict[str, Any] | None = None,
                 notices: tuple[Notice, ...] = ()) -> Applied:
    """Take one transition of the table on a deploy loaded in `session`, with its audit record and notices."""
    state = State(deploy.state)
    transition = transition_for(state, event)
    if transition is None or not guard_holds(
        transition.guard, needs_attention=deploy.needs_attention, skip_build=deploy.skip_build
    ):
        raise Refused(Why.NOT_POSSIBLE_NOW, deploy_id=deploy.id, pr=deploy.pr_number, state=state.value,
                      event=event.value)
    now = utcnow()
    for key, value in (updates or {}).items():
        setattr(deploy, key, value)
    # Whatever came of the step, it is not failing any more: a new failure starts a new backoff.
    deploy.retry_since, deploy.retry_attempts = None, 0
    target = transition.target
    if event.parks:
        deploy.needs_attention = True
        deploy.attention = reason
        deploy.due_at = None
    else:
        deploy.needs_attention = False
        deploy.attention = None
        if target is not state:
            deploy.state = target.value
            deploy.state_entered_at = now
            deploy.state_times[target.value] = now.isoformat()
            if target is State.AWAITING_CONFIRMATION:
                deploy.in_production_at = now
            elif target is State.ROLLING_BACK:
                deploy.rolling_back_at = now
        if target is State.ROLLING_BACK and state is not State.ROLLING_BACK:
            deploy.rollback_from = state.value
        if state is State.QUEUED and target is not State.CANCELLED:
            deploy.started_at = now
        if target in TERMINAL:
            deploy.finished_at = now
            deploy.due_at = None
            await session.execute(sa.update(Train).where(Train.id == deploy.train_id,
                                                         Train.in_flight_id == deploy.id)
                                  .values(in_flight_id=None))
        elif target in _WAITS_FOR_PERSON or target is State.QUEUED:
            deploy.due_at = None
        else:
            deploy.due_at = now
        if reason and (target in TERMINAL or target is State.ROLLING_BACK or target is State.BUILD_FAILED):
            deploy.outcome_reason = reason
    if transition.effect is not None:
        await EFFECTS[transition.effect](session, deploy, actor)
    if target is not state and (_moves_queue(transition) or target is State.ROLLING_BACK):
        # What the deploys built ahead were built on may be wrong now: each looks (DESIGN §8).
        await _wake_queued(session, deploy.train_id, 0, but=deploy.id)
    if target is State.ROLLING_OUT and state is not State.ROLLING_OUT:
        notices = (*notices, *await _next_told(session, deploy))
    audit(session, actor, f"transition:{event.value}", deploy_id=deploy.id, train_id=deploy.train_id,
          detail=f"{state.value} → {target.value}" + (f": {reason}" if reason else ""))
    moved = Moved(deploy.id, deploy.train_id, event, state, target, actor, reason)
    told = (*notices, moved, *((QueueMoved(deploy.train_id),) if _moves_queue(transition) else ()))
    await outbox.write(session, *told)
    await session.flush()
    return Applied(transition, deploy, reason)


async def _next_told(session: AsyncSession, deploy: Deploy) -> tuple[Notice, ...]:
    """The next queued deploy's requester hears it is next, as the one ahead starts its rollout."""
    following = await session.scalar(sa.select(Deploy).where(
        Deploy.train_id == deploy.train_id, Deploy.state == State.QUEUED.value).order_by(*_train_order()).limit(1))
    if following is None:
        return ()
    times = await stage_times(session, deploy.train_id)
    left = times.of(State.ROLLING_OUT) + times.after(State.ROLLING_OUT)
    return (YoureNext(following.id, following.train_id, left),)


async def apply_event(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, deploy_id: int, event: Event, *,
                      actor: str = SYSTEM, expected_version: int | None = None,
                      expected_state: str | None = None, reason: str | None = None,
                      updates: Callable[[Deploy], dict[str, Any]] | None = None,
                      notices: tuple[Notice, ...] = ()) -> Applied:
    """Take one transition of the table, atomically with its audit record and notices (`notices` go first).

    A worker passes the `expected_version` it read: any change since supersedes its result. A person
    passes the `expected_state` their button was offered in: bookkeeping writes in between (the next
    look-at time, a reminder) do not make the click stale, so a concurrent write is simply retried.
    """
    for _attempt in range(5):
        try:
            async with sessions() as session, session.begin():
                deploy = await session.get(Deploy, deploy_id)
                if deploy is None:
                    raise Refused(Why.NO_SUCH_DEPLOY, deploy_id=deploy_id)
                if expected_version is not None and deploy.version != expected_version:
                    raise Superseded(f"deploy {deploy_id} changed")
                if expected_state is not None and deploy.state != expected_state:
                    raise Superseded(f"deploy {deploy_id} is {deploy.state} now")
                applied = await _apply(session, outbox, deploy, event, actor, reason=reason,
                                       updates=updates(deploy) if updates else None, notices=notices)
            outbox.wake()
            return applied
        except StaleDataError:
            if expected_version is not None:
                raise Superseded(f"deploy {deploy_id} changed") from None
    raise Superseded(f"deploy {deploy_id} kept changing")


async def person_action(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: TrainConfig,
                        deploy_id: int, offered_state: str, event: Event, user: str) -> Applied:
    """A button press: bound to the state it was offered in, allowed to the requester and admins."""
    async with sessions() as session:
        deploy = await session.get(Deploy, deploy_id)
    if deploy is None or deploy.train_id != config.name:
        raise Refused(Why.NO_SUCH_DEPLOY, deploy_id=deploy_id)
    if user != deploy.requester and not config.permissions.is_admin(user):
        raise Refused(Why.NOT_YOURS, deploy_id=deploy_id, pr=deploy.pr_number, requester=deploy.requester)
    stale = Refused(Why.STALE_BUTTON, deploy_id=deploy_id, pr=deploy.pr_number, state=deploy.state)
    if deploy.state != offered_state:
        raise stale
    transition = transition_for(State(deploy.state), event)
    if transition is None or not guard_holds(transition.guard, needs_attention=deploy.needs_attention,
                                             skip_build=deploy.skip_build):
        raise Refused(Why.NOT_POSSIBLE_NOW, deploy_id=deploy_id, pr=deploy.pr_number, state=deploy.state,
                      event=event.value)
    if transition.actor is Actor.ADMIN and not config.permissions.is_admin(user):
        raise Refused(Why.ADMINS_ONLY, what=f"press {transition.button}")
    try:
        return await apply_event(sessions, outbox, deploy_id, event, actor=user, expected_state=offered_state)
    except Superseded:
        raise stale from None


async def cancel(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: TrainConfig, user: str,
                 deploy_id: int | None = None) -> Applied:
    """Leave the queue: a named deploy, or the user's own next queued one."""
    async with sessions() as session:
        if deploy_id is None:
            deploy = await session.scalar(
                sa.select(Deploy).where(Deploy.train_id == config.name, Deploy.requester == user,
                                        Deploy.state == State.QUEUED.value)
                .order_by(*_train_order()).limit(1)
            )
            if deploy is None:
                raise Refused(Why.NOTHING_QUEUED)
        else:
            deploy = await session.get(Deploy, deploy_id)
            if deploy is None or deploy.train_id != config.name:
                raise Refused(Why.NO_SUCH_DEPLOY, deploy_id=deploy_id)
    if deploy.state != State.QUEUED.value:
        raise Refused(Why.ONLY_QUEUED_CANCEL, deploy_id=deploy.id, pr=deploy.pr_number, state=deploy.state)
    return await person_action(sessions, outbox, config, deploy.id, State.QUEUED.value, Event.CANCEL, user)


# -- the train ----------------------------------------------------------------------------------

async def set_frozen(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: TrainConfig, user: str,
                     frozen: bool, reason: str | None = None) -> TrainView:
    if not config.permissions.is_admin(user):
        raise Refused(Why.ADMINS_ONLY, what="freeze the train" if frozen else "unfreeze the train")
    if frozen and not (reason or "").strip():
        raise Refused(Why.FREEZE_REASON_REQUIRED, field="reason")
    if reason and len(reason) > MAX_REASON:
        raise Refused(Why.TOO_LONG, field="reason", what="reason", length=len(reason), limit=MAX_REASON)
    async with sessions() as session, session.begin():
        train = await ensure_train(session, config.name)
        if train.frozen == frozen:
            raise Refused(Why.ALREADY_FROZEN if frozen else Why.NOT_FROZEN)
        train.frozen = frozen
        train.frozen_reason = reason if frozen else None
        train.frozen_by = user if frozen else None
        train.frozen_at = utcnow() if frozen else None
        audit(session, user, "freeze" if frozen else "unfreeze", train_id=train.id, detail=reason)
        told = Frozen(train.id, user, reason or "") if frozen else Unfrozen(train.id, user)
        await outbox.write(session, told, QueueMoved(train.id))
        view = TrainView.of(train)
    outbox.wake()
    return view


# -- what a step keeps ------------------------------------------------------------------------

async def record_undo(sessions: async_sessionmaker[AsyncSession], deploy_id: int, kind: str,
                      data: dict[str, Any], *, key: str) -> UndoRecord:
    """Write what undoing a step needs before the step acts; once per (kind, key) however often called."""
    async with sessions() as session, session.begin():
        records = (await session.scalars(
            sa.select(UndoRecord).where(UndoRecord.deploy_id == deploy_id).order_by(UndoRecord.seq)
        )).all()
        for record in records:
            if record.kind == kind and record.data.get("key") == key:
                return record
        record = UndoRecord(deploy_id=deploy_id, seq=len(records) + 1, kind=kind, data={**data, "key": key})
        session.add(record)
        await session.flush()
        return record


async def pending_undo(sessions: async_sessionmaker[AsyncSession], deploy_id: int) -> list[UndoRecord]:
    """The undo records not yet carried out, newest first."""
    async with sessions() as session:
        return list((await session.scalars(
            sa.select(UndoRecord).where(UndoRecord.deploy_id == deploy_id, UndoRecord.done_at.is_(None))
            .order_by(UndoRecord.seq.desc())
        )).all())


async def mark_undone(sessions: async_sessionmaker[AsyncSession], record_id: int, result: str) -> None:
    async with sessions() as session, session.begin():
        record = await session.get(UndoRecord, record_id)
        if record is not None and record.done_at is None:
            record.done_at = utcnow()
            record.result = result
