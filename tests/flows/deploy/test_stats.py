"""`/deploy stats` and `/deploy history`: figures computed from deploy rows seeded in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from flows.deploy.machine import Event, State
from flows.deploy.service import apply_event
from flows.deploy.stats import count_by_state, history_page, recent_deploys, train_stats, weekly_stats
from flows.outbox import Outbox
from storage.clock import utcnow
from storage.migrate import upgrade
from storage.models import Deploy
from storage.trains import ensure_train
from tests.fixtures.storage import Database

NOW = datetime(2024, 6, 28, 12, 0, 0)
MIN = timedelta(minutes=1)
TRAIN = "default"  # the train id these rows are written with


def _deploy(pr: int, state: str, *, requested: datetime, wait: timedelta = 0 * MIN,
            took: timedelta | None = None, opened_before: timedelta = 60 * MIN,
            rollout: timedelta | None = None, roll_back_after: timedelta | None = None,
            requester: str = "U0ALICE") -> Deploy:
    """A deploy requested at `requested`, started `wait` later, finished `took` after starting."""
    started = requested + wait if state != "cancelled" else None
    finished = (started or requested) + took if took is not None else None
    in_production = started + rollout if rollout is not None and started else None
    rolling_back = started + roll_back_after if roll_back_after is not None and started else None
    times: dict[str, Any] = {"queued": requested.isoformat()}
    if started:
        times["merging"] = started.isoformat()
    if in_production:
        times["awaiting_confirmation"] = in_production.isoformat()
    if rolling_back:
        times["rolling_back"] = rolling_back.isoformat()
    if finished:
        times[state] = finished.isoformat()
    # As `_apply` writes them: the two columns repeat their entries of state_times.
    return Deploy(train_id=TRAIN, state=state, requester=requester, pr_number=pr, pr_title=f"PR {pr}",
                  pr_created_at=requested - opened_before, processes=["web"], queue_seq=float(pr),
                  created_at=requested, started_at=started, finished_at=finished, state_entered_at=requested,
                  state_times=times, in_production_at=in_production, rolling_back_at=rolling_back)


async def _seed(database: Database, deploys: list[Deploy]) -> None:
    async with database.sessions() as session, session.begin():
        for train_id in sorted({deploy.train_id for deploy in deploys} | {TRAIN}):
            await ensure_train(session, train_id)
        session.add_all(deploys)


def _finishing(pr: int, state: str, finished: datetime, *, took: timedelta = 10 * MIN, **options: Any) -> Deploy:
    """A deploy that left the queue at once and finished at `finished`."""
    return _deploy(pr, state, requested=finished - took, took=took, **options)


@pytest.fixture
async def history(database: Database) -> Database:
    day = timedelta(days=1)
    await _seed(database, [
        _deploy(1, "completed", requested=NOW - 2 * MIN * 60, wait=2 * MIN, took=10 * MIN, rollout=8 * MIN),
        _deploy(2, "completed", requested=NOW - 3 * day, wait=4 * MIN, took=20 * MIN, rollout=16 * MIN,
                opened_before=120 * MIN),
        _deploy(3, "completed", requested=NOW - 10 * day, wait=6 * MIN, took=30 * MIN, rollout=24 * MIN,
                opened_before=180 * MIN, requester="U0BOB"),
        _deploy(4, "rolled_back", requested=NOW - 5 * day, wait=8 * MIN, took=15 * MIN, roll_back_after=12 * MIN),
        _deploy(5, "failed", requested=NOW - 1 * day, wait=10 * MIN, took=1 * MIN),
        _deploy(6, "cancelled", requested=NOW - 4 * day, took=3 * MIN),
        # outside the 28-day window
        _deploy(7, "rolled_back", requested=NOW - 40 * day, wait=1 * MIN, took=5 * MIN, roll_back_after=1 * MIN),
        # not finished: neither counted nor listed
        _deploy(8, "canary_check", requested=NOW - 5 * MIN, wait=1 * MIN),
        _deploy(9, "queued", requested=NOW - 1 * MIN),
    ])
    return database


async def test_stats_count_outcomes_and_deploy_frequency_over_the_window(history: Database) -> None:
    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW)

    assert (stats.completed, stats.rolled_back, stats.failed, stats.cancelled) == (3, 1, 1, 1)
    assert stats.last_day == 1  # PR 1; PR 2 finished three days ago
    assert stats.last_week == 2
    assert stats.per_day == pytest.approx(3 / 28)
    assert stats.per_week == pytest.approx(3 / 4)


async def test_change_failure_rate_is_rolled_back_over_completed_plus_rolled_back(history: Database) -> None:
    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW)

    assert stats.change_failure_rate == pytest.approx(1 / 4)


async def test_medians_of_lead_time_queue_wait_duration_and_time_to_roll_back(history: Database) -> None:
    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW)

    # lead time: PR opened → rolled out: 60+2+8, 120+4+16, 180+6+24 minutes
    assert stats.lead_time == 140 * MIN
    # queue wait over every deploy that left the queue: 2, 4, 6, 8, 10 minutes
    assert stats.queue_wait == 6 * MIN
    # duration of completed deploys: 10, 20, 30 minutes
    assert stats.deploy_duration == 20 * MIN
    # rolling_back entered 12 minutes in, finished 15 minutes in
    assert stats.time_to_roll_back == 3 * MIN


async def test_a_narrower_window_leaves_older_deploys_out(history: Database) -> None:
    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW, window=timedelta(days=2))

    assert (stats.completed, stats.rolled_back, stats.failed) == (1, 0, 1)
    assert stats.change_failure_rate == 0.0
    assert stats.time_to_roll_back is None


async def test_stats_of_an_empty_train_have_nothing_to_measure(database: Database) -> None:
    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert stats.completed == stats.rolled_back == 0
    assert stats.lead_time is None and stats.deploy_duration is None
    assert stats.change_failure_rate is None


async def test_history_lists_finished_deploys_newest_first(history: Database) -> None:
    recent = await recent_deploys(history.sessions, limit=4, train_id=TRAIN)

    assert [d.pr_number for d in recent] == [1, 5, 2, 6]
    mine = await recent_deploys(history.sessions, requester="U0BOB", train_id=TRAIN)
    assert [d.pr_number for d in mine] == [3]


async def test_count_by_state_names_every_state(history: Database) -> None:
    counts = await count_by_state(history.sessions, TRAIN)

    assert counts["completed"] == 3 and counts["rolled_back"] == 2 and counts["queued"] == 1
    assert counts["rolling_out"] == 0


async def test_an_even_number_of_values_has_the_mean_of_the_middle_two_as_median(database: Database) -> None:
    await _seed(database, [
        _deploy(pr, "completed", requested=NOW - pr * 60 * MIN, wait=wait, took=took, rollout=took)
        for pr, wait, took in ((1, 8 * MIN, 50 * MIN), (2, 2 * MIN, 10 * MIN), (3, 6 * MIN, 30 * MIN),
                               (4, 4 * MIN, 20 * MIN))
    ])

    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert stats.deploy_duration == 25 * MIN  # 10, 20, 30, 50
    assert stats.queue_wait == 5 * MIN  # 2, 4, 6, 8


async def test_an_odd_number_of_values_has_the_middle_one_whatever_the_order_they_were_written_in(
    database: Database,
) -> None:
    await _seed(database, [
        _deploy(pr, "completed", requested=NOW - pr * 60 * MIN, took=took, rollout=took)
        for pr, took in ((1, 50 * MIN), (2, 10 * MIN), (3, 30 * MIN), (4, 20 * MIN), (5, 40 * MIN))
    ])

    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert stats.deploy_duration == 30 * MIN


async def test_a_window_with_nothing_in_it_has_nothing_to_measure_though_older_deploys_exist(
    history: Database,
) -> None:
    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW - timedelta(days=20), window=timedelta(days=1))

    assert (stats.completed, stats.rolled_back, stats.failed, stats.cancelled) == (0, 0, 0, 0)
    assert (stats.last_day, stats.last_week, stats.per_day, stats.per_week) == (0, 0, 0.0, 0.0)
    assert stats.lead_time is stats.queue_wait is stats.deploy_duration is stats.time_to_roll_back is None
    assert stats.change_failure_rate is None


async def test_the_window_holds_its_start_but_not_its_end(database: Database) -> None:
    since, day = NOW - timedelta(days=28), timedelta(days=1)
    await _seed(database, [
        _finishing(1, "completed", since, took=10 * MIN),
        _finishing(2, "completed", since - timedelta(microseconds=1), took=90 * MIN),
        _finishing(3, "completed", NOW, took=90 * MIN),
        _finishing(4, "completed", NOW - day, took=20 * MIN),  # the last day's first instant
        _finishing(5, "completed", NOW - day - timedelta(microseconds=1), took=30 * MIN),
        _finishing(6, "rolled_back", NOW - timedelta(microseconds=1), roll_back_after=8 * MIN),
    ])

    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert (stats.completed, stats.rolled_back) == (3, 1)  # PRs 1, 4, 5 and 6
    assert (stats.last_day, stats.last_week) == (1, 2)
    assert stats.deploy_duration == 20 * MIN
    assert stats.time_to_roll_back == 2 * MIN


async def test_durations_are_exact_to_the_microsecond(database: Database) -> None:
    """SQLite rounds times to the millisecond (11:00:00.999600 to 11:00:01): the figures must not."""
    wait, took = timedelta(seconds=1, microseconds=999_200), timedelta(minutes=10, microseconds=500)
    rollout, opened_before = timedelta(minutes=8, microseconds=400), timedelta(hours=2, microseconds=1)
    roll_back_after = timedelta(minutes=7, seconds=0.999_998)
    await _seed(database, [
        _deploy(1, "completed", requested=datetime(2024, 6, 28, 10, 59, 59, 400), wait=wait, took=took,
                rollout=rollout, opened_before=opened_before),
        _deploy(2, "rolled_back", requested=datetime(2024, 6, 28, 9, 0, 0, 999_999), took=took,
                roll_back_after=roll_back_after),
    ])

    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert stats.deploy_duration == took  # from 11:00:00.999600 to 11:10:01.000100
    assert stats.queue_wait == wait / 2  # the mean of 0 and 1.9992 s
    assert stats.lead_time == opened_before + wait + rollout
    assert stats.time_to_roll_back == took - roll_back_after  # 2:59.000502


async def test_negative_durations_are_left_out_of_the_medians(database: Database) -> None:
    """A pull request dated after its deploy reached production (clocks that disagree) measures nothing."""
    await _seed(database, [
        _finishing(1, "completed", NOW - 60 * MIN, rollout=8 * MIN, opened_before=-30 * MIN),
        _finishing(2, "completed", NOW - 120 * MIN, rollout=8 * MIN, opened_before=52 * MIN),
    ])

    stats = await train_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert stats.lead_time == 60 * MIN
    assert stats.completed == 2


async def test_other_trains_deploys_do_not_count(history: Database) -> None:
    other = _finishing(20, "rolled_back", NOW - 60 * MIN, roll_back_after=1 * MIN)
    other.train_id = "mobile"
    await _seed(history, [other])

    stats = await train_stats(history.sessions, train_id=TRAIN, now=NOW)
    mobile = await train_stats(history.sessions, now=NOW, train_id="mobile")

    assert (stats.completed, stats.rolled_back, stats.time_to_roll_back) == (3, 1, 3 * MIN)
    assert (mobile.completed, mobile.rolled_back, mobile.time_to_roll_back) == (0, 1, 9 * MIN)


async def test_walking_the_flowchart_records_when_a_deploy_reached_production_and_began_rolling_back(
    database: Database,
) -> None:
    now = utcnow()
    await _seed(database, [_deploy(1, "queued", requested=now), _deploy(2, "queued", requested=now)])
    outbox = Outbox(database.sessions, (), owner="test", lease_ttl=timedelta(seconds=30))
    up = (Event.START, Event.MERGED, Event.BUILD_GREEN, Event.CANARIES_UP)
    for deploy_id, events in ((1, (*up, Event.PROCEED, Event.ROLLOUT_DONE, Event.DONE)),
                              (2, (*up, Event.ROLL_BACK, Event.UNDONE))):
        for event in events:
            await apply_event(database.sessions, outbox, deploy_id, event)

    async with database.sessions() as session:
        completed, rolled_back = (await session.scalars(sa.select(Deploy).order_by(Deploy.id))).all()
    assert (completed.state, rolled_back.state) == ("completed", "rolled_back")
    assert completed.in_production_at.isoformat() == completed.state_times["awaiting_confirmation"]
    assert rolled_back.rolling_back_at.isoformat() == rolled_back.state_times["rolling_back"]
    assert completed.rolling_back_at is None and rolled_back.in_production_at is None
    stats = await train_stats(database.sessions, train_id=TRAIN, now=utcnow() + MIN)
    assert stats.time_to_roll_back == rolled_back.finished_at - rolled_back.rolling_back_at
    assert stats.lead_time == completed.in_production_at - completed.pr_created_at


async def test_deploys_recorded_before_the_upgrade_that_added_their_columns_keep_their_figures(
    empty_database: Database,
) -> None:
    """Migration 0003 fills `in_production_at` and `rolling_back_at` from `state_times`, and 0006 the durations
    from those."""
    await upgrade(empty_database.engine, revision="0002")
    # The table as that revision has it, typed so that both drivers take the values.
    deploys = sa.table("deploys", *(sa.column(name, sa.Integer()) for name in ("id", "pr_number", "build_attempts",
                                                                                "version")),
                       *(sa.column(name, sa.String()) for name in ("train_id", "state", "requester")),
                       *(sa.column(name, sa.Boolean()) for name in ("needs_attention", "jump_queue", "skip_build")),
                       *(sa.column(name, sa.JSON()) for name in ("processes", "state_times", "targets")),
                       sa.column("queue_seq", sa.Double()),
                       *(sa.column(name, sa.DateTime()) for name in ("created_at", "updated_at", "state_entered_at",
                                                                     "started_at", "finished_at", "pr_created_at")))
    at = datetime(2024, 6, 28, 10)
    rows = [
        (1, "completed", 2 * MIN, 12 * MIN, {"awaiting_confirmation": "2024-06-28T10:10:00.500000"}),
        (2, "rolled_back", 20 * MIN, 28 * MIN, {"rolling_back": "2024-06-28T10:25:00"}),
        (3, "awaiting_confirmation", 30 * MIN, None, {"awaiting_confirmation": "2024-06-28T10:40:00"}),
    ]
    async with empty_database.engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO trains (id, frozen, next_seq) VALUES ('default', false, 4)"))
        await connection.execute(sa.insert(deploys), [
            {"id": deploy_id, "train_id": "default", "state": state, "needs_attention": False, "requester": "U1",
             "pr_number": deploy_id, "processes": [], "jump_queue": False, "skip_build": False,
             "queue_seq": float(deploy_id), "build_attempts": 0, "created_at": at, "updated_at": at,
             "state_entered_at": at, "started_at": at + started, "finished_at": at + finished if finished else None,
             "pr_created_at": at - 60 * MIN, "state_times": times, "targets": {}, "version": 1}
            for deploy_id, state, started, finished, times in rows
        ])

    await upgrade(empty_database.engine)

    async with empty_database.sessions() as session:
        moments = (await session.execute(
            sa.select(Deploy.in_production_at, Deploy.rolling_back_at).order_by(Deploy.id))).all()
    stats = await train_stats(empty_database.sessions, train_id=TRAIN, now=NOW)
    assert [tuple(row) for row in moments] == [(datetime(2024, 6, 28, 10, 10, 0, 500_000), None),
                                               (None, datetime(2024, 6, 28, 10, 25)),
                                               (datetime(2024, 6, 28, 10, 40), None)]
    assert stats.lead_time == 70 * MIN + timedelta(milliseconds=500)
    assert stats.time_to_roll_back == 3 * MIN


async def test_weekly_figures_count_each_week_and_take_its_medians(database: Database) -> None:
    # NOW is a Friday: its week began on Monday 2024-06-24.
    monday = datetime(2024, 6, 24)
    await _seed(database, [
        _finishing(1, "completed", monday + timedelta(days=1), rollout=5 * MIN, opened_before=30 * MIN),
        _finishing(2, "completed", monday + timedelta(days=2), rollout=5 * MIN, opened_before=90 * MIN),
        _finishing(3, "rolled_back", monday + timedelta(days=2), roll_back_after=4 * MIN),
        _finishing(4, "completed", monday - timedelta(days=3)),  # the week before
        _finishing(5, "failed", monday + timedelta(days=3)),  # changed nothing in production: not counted
        _finishing(6, "completed", monday - timedelta(weeks=20)),  # before the twelve weeks
    ])

    weeks = await weekly_stats(database.sessions, train_id=TRAIN, now=NOW)

    assert len(weeks) == 12 and weeks[-1].start == monday and weeks[0].start == monday - timedelta(weeks=11)
    assert [(w.completed, w.rolled_back) for w in weeks[-2:]] == [(1, 0), (2, 1)]
    assert sum(w.completed + w.rolled_back for w in weeks[:-2]) == 0
    this = weeks[-1]
    assert this.lead_time == (35 * MIN + 95 * MIN) / 2  # opened before it was requested, then 5 minutes to run
    assert this.time_to_restore == 6 * MIN and this.change_failure_rate == 1 / 3
    assert weeks[0].lead_time is None and weeks[0].change_failure_rate is None


async def test_the_history_page_filters_by_state_and_person_newest_first(history: Database) -> None:
    rows, total = await history_page(history.sessions, [TRAIN], limit=3)
    assert total == 9 and [d.pr_number for d in rows] == [9, 8, 7]
    rows, total = await history_page(history.sessions, [TRAIN], limit=3, offset=7)
    assert total == 9 and [d.pr_number for d in rows] == [2, 1]
    rows, total = await history_page(history.sessions, [TRAIN], state=State.ROLLED_BACK)
    assert total == 2 and [d.pr_number for d in rows] == [7, 4]
    rows, total = await history_page(history.sessions, [TRAIN], person="U0BOB")
    assert total == 1 and [d.pr_number for d in rows] == [3]
    assert (await history_page(history.sessions, ["another"]))[1] == 0
