"""`/deploy stats` and `/deploy history`: figures computed from deploy rows seeded in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from flows.deploy.stats import count_by_state, recent_deploys, train_stats
from storage.models import Deploy
from storage.trains import ensure_train
from tests.fixtures.storage import Database

NOW = datetime(2024, 6, 28, 12, 0, 0)
MIN = timedelta(minutes=1)


def _deploy(pr: int, state: str, *, requested: datetime, wait: timedelta = 0 * MIN,
            took: timedelta | None = None, opened_before: timedelta = 60 * MIN,
            rollout: timedelta | None = None, roll_back_after: timedelta | None = None,
            requester: str = "U0ALICE") -> Deploy:
    """A deploy requested at `requested`, started `wait` later, finished `took` after starting."""
    started = requested + wait if state != "cancelled" else None
    finished = (started or requested) + took if took is not None else None
    times: dict[str, Any] = {"queued": requested.isoformat()}
    if started:
        times["merging"] = started.isoformat()
    if rollout is not None and started:
        times["awaiting_confirmation"] = (started + rollout).isoformat()
    if roll_back_after is not None and started:
        times["rolling_back"] = (started + roll_back_after).isoformat()
    if finished:
        times[state] = finished.isoformat()
    return Deploy(train_id="default", state=state, requester=requester, pr_number=pr, pr_title=f"PR {pr}",
                  pr_created_at=requested - opened_before, processes=["web"], queue_seq=float(pr),
                  created_at=requested, started_at=started, finished_at=finished, state_entered_at=requested,
                  state_times=times)


async def _seed(database: Database, deploys: list[Deploy]) -> None:
    async with database.sessions() as session, session.begin():
        await ensure_train(session)
        session.add_all(deploys)


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
    stats = await train_stats(history.sessions, now=NOW)

    assert (stats.completed, stats.rolled_back, stats.failed, stats.cancelled) == (3, 1, 1, 1)
    assert stats.last_day == 1  # PR 1; PR 2 finished three days ago
    assert stats.last_week == 2
    assert stats.per_day == pytest.approx(3 / 28)
    assert stats.per_week == pytest.approx(3 / 4)


async def test_change_failure_rate_is_rolled_back_over_completed_plus_rolled_back(history: Database) -> None:
    stats = await train_stats(history.sessions, now=NOW)

    assert stats.change_failure_rate == pytest.approx(1 / 4)


async def test_medians_of_lead_time_queue_wait_duration_and_time_to_roll_back(history: Database) -> None:
    stats = await train_stats(history.sessions, now=NOW)

    # lead time: PR opened → rolled out: 60+2+8, 120+4+16, 180+6+24 minutes
    assert stats.lead_time == 140 * MIN
    # queue wait over every deploy that left the queue: 2, 4, 6, 8, 10 minutes
    assert stats.queue_wait == 6 * MIN
    # duration of completed deploys: 10, 20, 30 minutes
    assert stats.deploy_duration == 20 * MIN
    # rolling_back entered 12 minutes in, finished 15 minutes in
    assert stats.time_to_roll_back == 3 * MIN


async def test_a_narrower_window_leaves_older_deploys_out(history: Database) -> None:
    stats = await train_stats(history.sessions, now=NOW, window=timedelta(days=2))

    assert (stats.completed, stats.rolled_back, stats.failed) == (1, 0, 1)
    assert stats.change_failure_rate == 0.0
    assert stats.time_to_roll_back is None


async def test_stats_of_an_empty_train_have_nothing_to_measure(database: Database) -> None:
    stats = await train_stats(database.sessions, now=NOW)

    assert stats.completed == stats.rolled_back == 0
    assert stats.lead_time is None and stats.deploy_duration is None
    assert stats.change_failure_rate is None


async def test_history_lists_finished_deploys_newest_first(history: Database) -> None:
    recent = await recent_deploys(history.sessions, limit=4)

    assert [d.pr_number for d in recent] == [1, 5, 2, 6]
    mine = await recent_deploys(history.sessions, requester="U0BOB")
    assert [d.pr_number for d in mine] == [3]


async def test_count_by_state_names_every_state(history: Database) -> None:
    counts = await count_by_state(history.sessions)

    assert counts["completed"] == 3 and counts["rolled_back"] == 2 and counts["queued"] == 1
    assert counts["rolling_out"] == 0
