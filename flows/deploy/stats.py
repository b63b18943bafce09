"""The train's record: recent deploys for `/deploy history`, and delivery figures for `/deploy stats`.

Figures come from the deploy rows, whose state times, start and finish are written in the
same transaction as the audit log's transition records, so both always tell the same story; a
finished deploy's four durations are kept on it in microseconds (`flows.deploy.figures`). The
database computes the figures in one query over the deploys that finished in the window, read
from indexes: counts with FILTER (from one covering index), medians with percentile_cont on
PostgreSQL and, on SQLite, which has none, ORDER BY / LIMIT / OFFSET along each duration's own
index; durations are exact to the microsecond on both.

- lead time: from the pull request being opened to its change running in production (the
  rollout finishing, i.e. entering `awaiting_confirmation`), over completed deploys;
- queue wait: from the request to leaving the queue, over deploys that left it;
- deploy duration: from leaving the queue to `completed`;
- change failure rate: rolled back ÷ (completed + rolled back); failed merges and
  cancellations changed nothing in production, so they do not count either way;
- time to roll back: from entering `rolling_back` to `rolled_back`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.deploy.machine import State
from storage.clock import utcnow
from storage.models import Deploy, UTCDateTime

DEFAULT_WINDOW = timedelta(days=28)
_MEDIANS = ("lead_time", "queue_wait", "deploy_duration", "time_to_roll_back")


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


@cache
def _stats_query(dialect: str) -> sa.Select[tuple[object, ...]]:
    """One row: the counts and the medians (in microseconds) over the train's deploys that finished in the window.

    Built once per dialect (building it takes milliseconds); its parameters are `train_id`, `since`,
    `until`, `day_ago` and `week_ago`.
    """
    since, until = sa.bindparam("since", type_=UTCDateTime()), sa.bindparam("until", type_=UTCDateTime())
    window = (Deploy.train_id == sa.bindparam("train_id"), Deploy.finished_at >= since, Deploy.finished_at < until)
    durations = {name: getattr(Deploy, f"{name}_us") for name in _MEDIANS}
    # Negative durations (clocks that disagree) are left out of the medians rather than pull them down.
    if dialect == "postgresql":
        medians = [sa.func.percentile_cont(0.5).within_group(column).filter(column >= 0).label(name)
                   for name, column in durations.items()]
    else:
        # No median in SQLite: the middle value, or the mean of the middle two, read in the order of the
        # duration's own index (train, duration, finish), so nothing is sorted.
        medians = []
        for name, column in durations.items():
            size = sa.select(sa.func.count()).where(*window, column >= 0).scalar_subquery()
            middle = (sa.select(column.label("value")).where(*window, column >= 0).order_by(column)
                      .limit(2 - size % 2).offset((size - 1) // 2).subquery())
            medians.append(sa.select(sa.type_coerce(sa.func.avg(middle.c.value), sa.Double)).scalar_subquery()
                           .label(name))

    def count(*where: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count().filter(sa.and_(*where))

    done = Deploy.state == State.COMPLETED.value
    return sa.select(
        count(done).label("completed"),
        count(Deploy.state == State.ROLLED_BACK.value).label("rolled_back"),
        count(Deploy.state == State.FAILED.value).label("failed"),
        count(Deploy.state == State.CANCELLED.value).label("cancelled"),
        count(done, Deploy.finished_at >= sa.bindparam("day_ago", type_=UTCDateTime())).label("last_day"),
        count(done, Deploy.finished_at >= sa.bindparam("week_ago", type_=UTCDateTime())).label("last_week"),
        *medians,
    ).where(*window)


def _duration(micros: float | None) -> timedelta | None:
    return None if micros is None else timedelta(microseconds=float(micros))


async def train_stats(sessions: async_sessionmaker[AsyncSession], *, window: timedelta = DEFAULT_WINDOW,
                      now: datetime | None = None, train_id: str) -> TrainStats:
    """The train's figures over the last `window` (28 days by default), counted by the database."""
    until = now or utcnow()
    since = until - window
    async with sessions() as session:
        dialect = (await session.connection()).dialect.name
        row = (await session.execute(_stats_query(dialect), {
            "train_id": train_id, "since": since, "until": until,
            "day_ago": until - timedelta(days=1), "week_ago": until - timedelta(days=7)})).one()
    days = max((until - since).total_seconds() / 86400, 1 / 24)
    shipped_or_undone = row.completed + row.rolled_back
    return TrainStats(
        since=since, until=until, completed=row.completed, rolled_back=row.rolled_back, failed=row.failed,
        cancelled=row.cancelled, last_day=row.last_day, last_week=row.last_week,
        per_day=row.completed / days, per_week=row.completed / days * 7,
        lead_time=_duration(row.lead_time), queue_wait=_duration(row.queue_wait),
        deploy_duration=_duration(row.deploy_duration), time_to_roll_back=_duration(row.time_to_roll_back),
        change_failure_rate=row.rolled_back / shipped_or_undone if shipped_or_undone else None,
    )


async def recent_deploys(sessions: async_sessionmaker[AsyncSession], *, limit: int = 10,
                         requester: str | None = None, train_id: str) -> list[Deploy]:
    """Finished deploys, newest first (only `requester`'s when given)."""
    query = (sa.select(Deploy).where(Deploy.train_id == train_id, Deploy.finished_at.is_not(None))
             .order_by(Deploy.finished_at.desc(), Deploy.id.desc()).limit(limit))
    if requester is not None:
        query = query.where(Deploy.requester == requester)
    async with sessions() as session:
        return list((await session.scalars(query)).all())


async def count_by_state(sessions: async_sessionmaker[AsyncSession], train_id: str) -> dict[str, int]:
    """How many deploys are in each state of the flowchart (every state present, zeros included)."""
    async with sessions() as session:
        rows = (await session.execute(
            sa.select(Deploy.state, sa.func.count()).where(Deploy.train_id == train_id).group_by(Deploy.state)
        )).all()
    counts = {state.value: 0 for state in State}
    counts.update({state: count for state, count in rows})
    return counts
