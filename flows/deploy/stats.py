"""The train's record: recent deploys for `/deploy history`, and delivery figures for `/deploy stats`.

Figures come from the deploy rows, whose state times, start and finish are written in the
same transaction as the audit log's transition records, so both always tell the same story.

- lead time: from the pull request being opened to its change running in production (the
  rollout finishing, i.e. entering `awaiting_confirmation`), over completed deploys;
- queue wait: from the request to leaving the queue, over deploys that left it;
- deploy duration: from leaving the queue to `completed`;
- change failure rate: rolled back ÷ (completed + rolled back); failed merges and
  cancellations changed nothing in production, so they do not count either way;
- time to roll back: from entering `rolling_back` to `rolled_back`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.deploy.machine import TERMINAL, State
from flows.deploy.service import TRAIN
from storage.clock import utcnow
from storage.models import Deploy

DEFAULT_WINDOW = timedelta(days=28)


@dataclass(frozen=True)
class TrainStats:
    since: datetime  # the start of the window the figures cover (naive UTC)
    until: datetime
    completed: int
    rolled_back: int
    failed: int
    cancelled: int
    last_day: int  # completed in the 24 hours before `until`
    last_week: int  # completed in the 7 days before `until`
    per_day: float  # completed per day over the window
    per_week: float
    lead_time: timedelta | None  # medians; None when nothing to measure
    queue_wait: timedelta | None
    deploy_duration: timedelta | None
    time_to_roll_back: timedelta | None
    change_failure_rate: float | None  # None when nothing reached production or was rolled back


def state_time(deploy: Deploy, state: State) -> datetime | None:
    """When the deploy last entered `state`, if it did."""
    value = (deploy.state_times or {}).get(state.value)
    return datetime.fromisoformat(value) if value else None


def duration(deploy: Deploy) -> timedelta | None:
    """How long a finished deploy took from leaving the queue (None if it never left it)."""
    if deploy.started_at is None or deploy.finished_at is None:
        return None
    return deploy.finished_at - deploy.started_at


def _median(values: Iterable[timedelta | None]) -> timedelta | None:
    seconds = [v.total_seconds() for v in values if v is not None and v >= timedelta(0)]
    return timedelta(seconds=statistics.median(seconds)) if seconds else None


def _in_production_at(deploy: Deploy) -> datetime | None:
    return state_time(deploy, State.AWAITING_CONFIRMATION) or deploy.finished_at


def compute_stats(deploys: Sequence[Deploy | sa.Row], since: datetime, until: datetime) -> TrainStats:
    """The figures over the deploys that finished in [since, until)."""
    finished = [d for d in deploys if d.finished_at is not None and since <= d.finished_at < until]
    by_state: dict[str, list[Deploy]] = {state.value: [] for state in TERMINAL}
    for deploy in finished:
        by_state.setdefault(deploy.state, []).append(deploy)
    completed = by_state[State.COMPLETED.value]
    rolled_back = by_state[State.ROLLED_BACK.value]
    days = max((until - since).total_seconds() / 86400, 1 / 24)
    shipped_or_undone = len(completed) + len(rolled_back)

    def lead_time(deploy: Deploy) -> timedelta | None:
        arrived = _in_production_at(deploy)
        return arrived - deploy.pr_created_at if arrived and deploy.pr_created_at else None

    def roll_back_time(deploy: Deploy) -> timedelta | None:
        began = state_time(deploy, State.ROLLING_BACK)
        return deploy.finished_at - began if began and deploy.finished_at else None

    return TrainStats(
        since=since, until=until, completed=len(completed), rolled_back=len(rolled_back),
        failed=len(by_state[State.FAILED.value]), cancelled=len(by_state[State.CANCELLED.value]),
        last_day=sum(1 for d in completed if d.finished_at >= until - timedelta(days=1)),
        last_week=sum(1 for d in completed if d.finished_at >= until - timedelta(days=7)),
        per_day=len(completed) / days, per_week=len(completed) / days * 7,
        lead_time=_median(lead_time(d) for d in completed),
        queue_wait=_median(d.started_at - d.created_at for d in finished if d.started_at is not None),
        deploy_duration=_median(duration(d) for d in completed),
        time_to_roll_back=_median(roll_back_time(d) for d in rolled_back),
        change_failure_rate=len(rolled_back) / shipped_or_undone if shipped_or_undone else None,
    )


async def train_stats(sessions: async_sessionmaker[AsyncSession], *, window: timedelta = DEFAULT_WINDOW,
                      now: datetime | None = None, train_id: str = TRAIN) -> TrainStats:
    """The train's figures over the last `window` (28 days by default)."""
    until = now or utcnow()
    since = until - window
    # Plain rows of the columns the figures need: a month of a busy train is thousands of deploys, and
    # whole ORM objects of them took over a second.
    async with sessions() as session:
        deploys = (await session.execute(
            sa.select(Deploy.state, Deploy.created_at, Deploy.pr_created_at, Deploy.started_at, Deploy.finished_at,
                      Deploy.state_times)
            .where(Deploy.train_id == train_id, Deploy.finished_at >= since, Deploy.finished_at < until)
        )).all()
    return compute_stats(deploys, since, until)


async def recent_deploys(sessions: async_sessionmaker[AsyncSession], *, limit: int = 10,
                         requester: str | None = None, train_id: str = TRAIN) -> list[Deploy]:
    """Finished deploys, newest first (only `requester`'s when given)."""
    query = (sa.select(Deploy).where(Deploy.train_id == train_id, Deploy.finished_at.is_not(None))
             .order_by(Deploy.finished_at.desc(), Deploy.id.desc()).limit(limit))
    if requester is not None:
        query = query.where(Deploy.requester == requester)
    async with sessions() as session:
        return list((await session.scalars(query)).all())


async def count_by_state(sessions: async_sessionmaker[AsyncSession], train_id: str = TRAIN) -> dict[str, int]:
    """How many deploys are in each state of the flowchart (every state present, zeros included)."""
    async with sessions() as session:
        rows = (await session.execute(
            sa.select(Deploy.state, sa.func.count()).where(Deploy.train_id == train_id).group_by(Deploy.state)
        )).all()
    counts = {state.value: 0 for state in State}
    counts.update({state: count for state, count in rows})
    return counts
