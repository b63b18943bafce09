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

The dashboard's charts (`weekly_stats`) count the same figures per week, grouped by the database; and its
history (`history_page`) pages through every deploy, newest first, filtered in SQL.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.deploy.machine import State
from storage.clock import utcnow
from storage.models import Deploy, UTCDateTime

DEFAULT_WINDOW = timedelta(days=28)
DEFAULT_WEEKS = 12
WEEK = timedelta(days=7)
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


@dataclass(frozen=True)
class WeekStats:
    """One week of a train's delivery figures, over the deploys that finished in it."""

    start: datetime  # Monday 00:00 UTC (naive) of the week
    completed: int  # deploy frequency
    rolled_back: int
    lead_time: timedelta | None  # medians; None when nothing to measure
    time_to_restore: timedelta | None  # from entering rolling_back to rolled_back

    @property
    def change_failure_rate(self) -> float | None:
        """Rolled back ÷ (completed + rolled back); None when nothing reached production."""
        shipped_or_undone = self.completed + self.rolled_back
        return self.rolled_back / shipped_or_undone if shipped_or_undone else None


def _week_of(dialect: str, since: sa.BindParameter[datetime]) -> sa.ColumnElement[int]:
    """Which week since `since` a deploy finished in (0, 1, ...), computed by the database."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", Deploy.finished_at - since) / WEEK.total_seconds()),
                       sa.Integer)
    # SQLite keeps timestamps as ISO text, which julianday reads; a cast truncates, and both are >= since here.
    return sa.cast((sa.func.julianday(Deploy.finished_at) - sa.func.julianday(since)) / 7, sa.Integer)


@cache
def _weekly_queries(dialect: str) -> tuple[sa.Select[tuple[object, ...]], sa.Select[tuple[object, ...]] | None]:
    """The per-week counts (with the medians on PostgreSQL), and on SQLite, which has no median, the durations
    to take the medians of; parameters `train_id`, `since` and `until`."""
    since, until = sa.bindparam("since", type_=UTCDateTime()), sa.bindparam("until", type_=UTCDateTime())
    done, undone = Deploy.state == State.COMPLETED.value, Deploy.state == State.ROLLED_BACK.value
    window = (Deploy.train_id == sa.bindparam("train_id"), Deploy.finished_at >= since, Deploy.finished_at < until,
              sa.or_(done, undone))
    # Grouped in an outer query: PostgreSQL would not match a GROUP BY expression holding a parameter of its own.
    rows = sa.select(_week_of(dialect, since).label("week"), Deploy.state.label("state"),
                     Deploy.lead_time_us.label("lead"), Deploy.time_to_roll_back_us.label("restore")
                     ).where(*window).subquery()
    counts = [sa.func.count().filter(rows.c.state == State.COMPLETED.value).label("completed"),
              sa.func.count().filter(rows.c.state == State.ROLLED_BACK.value).label("rolled_back")]
    if dialect == "postgresql":
        medians = [sa.func.percentile_cont(0.5).within_group(rows.c[name]).filter(rows.c[name] >= 0).label(name)
                   for name in ("lead", "restore")]
        return sa.select(rows.c.week, *counts, *medians).group_by(rows.c.week), None
    durations = (sa.select(rows.c.week, rows.c.lead, rows.c.restore)
                 .where(sa.or_(rows.c.lead >= 0, rows.c.restore >= 0)))
    return sa.select(rows.c.week, *counts).group_by(rows.c.week), durations


def week_start(at: datetime) -> datetime:
    """Monday 00:00 of the week `at` is in."""
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


async def weekly_stats(sessions: async_sessionmaker[AsyncSession], *, train_id: str, weeks: int = DEFAULT_WEEKS,
                       now: datetime | None = None) -> tuple[WeekStats, ...]:
    """The train's figures for each of the last `weeks` weeks (Monday to Monday, UTC), oldest first; this week
    so far is the last."""
    until = now or utcnow()
    since = week_start(until) - (weeks - 1) * WEEK
    params = {"train_id": train_id, "since": since, "until": until}
    async with sessions() as session:
        dialect = (await session.connection()).dialect.name
        grouped, durations = _weekly_queries(dialect)
        found = {row.week: row for row in (await session.execute(grouped, params)).all()}
        medians: dict[int, tuple[timedelta | None, timedelta | None]] = {}
        if durations is None:
            medians = {week: (_duration(row.lead), _duration(row.restore)) for week, row in found.items()}
        else:
            leads: dict[int, list[int]] = defaultdict(list)
            restores: dict[int, list[int]] = defaultdict(list)
            for row in (await session.execute(durations, params)).all():
                week, lead, restore = row.week, row.lead, row.restore
                if lead is not None and lead >= 0:
                    leads[week].append(lead)
                if restore is not None and restore >= 0:
                    restores[week].append(restore)
            medians = {week: (_duration(statistics.median(leads[week])) if leads[week] else None,
                              _duration(statistics.median(restores[week])) if restores[week] else None)
                       for week in found}
    series = []
    for week in range(weeks):
        counted = found.get(week)
        lead, restore = medians.get(week, (None, None))
        series.append(WeekStats(since + week * WEEK, counted.completed if counted else 0,
                                counted.rolled_back if counted else 0, lead, restore))
    return tuple(series)


async def history_page(sessions: async_sessionmaker[AsyncSession], train_ids: Sequence[str], *,
                       state: State | None = None, person: str | None = None, limit: int = 25,
                       offset: int = 0) -> tuple[list[Deploy], int]:
    """Deploys of `train_ids`, newest first, from `offset`: at most `limit`, and how many match in all (`person`:
    the requester's Slack id or the pull request's author)."""
    where: list[sa.ColumnElement[bool]] = [Deploy.train_id.in_(list(train_ids))]
    if state is not None:
        where.append(Deploy.state == state.value)
    if person:
        where.append(sa.or_(Deploy.requester == person, Deploy.pr_author == person))
    async with sessions() as session:
        total = await session.scalar(sa.select(sa.func.count()).select_from(Deploy).where(*where)) or 0
        rows = (await session.scalars(sa.select(Deploy).where(*where).order_by(Deploy.id.desc())
                                      .limit(limit).offset(offset))).all()
    return list(rows), total
