"""A claim is a lease: the holder is reminded shortly before it ends, and an ended lease frees the pea."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flows.notices import PeaLeaseEnding, PeaReleased
from flows.pea.service import remind_before
from tests.fixtures.peas import Pool
from tests.fixtures.world import REQUESTER, eventually


def test_the_reminder_comes_a_tenth_of_the_lease_before_its_end_and_at_most_half_an_hour() -> None:
    assert remind_before(timedelta(seconds=3)) == timedelta(seconds=0.3)
    assert remind_before(timedelta(hours=2)) == timedelta(minutes=12)
    assert remind_before(timedelta(hours=8)) == timedelta(minutes=30)


async def test_an_ending_lease_is_reminded_then_released_and_scaled_to_zero(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(peas={"lease": "3s"})
    worker = pool.worker(check_every=timedelta(minutes=5))
    pool.run(worker)
    pr, _ = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    up = await pool.reaches("sweet-pea", "up")
    remind_at = up.claim_expires_at - timedelta(seconds=0.3)

    async def reminder_next() -> bool:
        # Right after it came up the pea is due at once (its hold step has not run yet), then at the reminder.
        due = await worker.next_due()
        return due is not None and abs(due - remind_at) < timedelta(seconds=0.1)

    await eventually(reminder_next, within=5, what="the reminder as the next look at sweet-pea")

    reminder = await pool.told(PeaLeaseEnding, "sweet-pea", within=5)
    assert reminder.holder == REQUESTER
    assert await pool.buttons("sweet-pea") == ["Extend", "Release"]
    reminded_at = (await pool.pea("sweet-pea")).reminded_at
    assert reminded_at is not None and reminded_at >= up.claim_expires_at - timedelta(seconds=0.35)

    released = await pool.told(PeaReleased, "sweet-pea", within=5)
    assert released.holder == REQUESTER and released.by is None
    assert pool.notifier.notices.index(reminder) < pool.notifier.notices.index(released)
    await pool.drained()
    assert len(pool.notices(PeaLeaseEnding, "sweet-pea")) == 1
    await pool.reaches("sweet-pea", "free")
    await pool.scaled_to_zero("sweet-pea")


async def test_extending_after_the_reminder_keeps_the_pea_and_reminds_again_before_the_new_end(
        make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(peas={"lease": "2s"})
    pool.run()
    pr, _ = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.told(PeaLeaseEnding, "sweet-pea", within=5)

    extended = await pool.flows.extend(REQUESTER, "sweet-pea")
    assert (await pool.pea("sweet-pea")).reminded_at is None

    async def second_reminder() -> object:
        reminders = pool.notices(PeaLeaseEnding, "sweet-pea")
        return reminders[1] if len(reminders) > 1 else None

    again = await eventually(second_reminder, within=5, what="a second reminder")
    view = await pool.view("sweet-pea")
    assert (view.state, view.holder, again.until) == ("up", REQUESTER, extended.claim_expires_at)
    released = pool.notices(PeaReleased, "sweet-pea")
    assert not released or pool.notifier.notices.index(released[0]) > pool.notifier.notices.index(again)
