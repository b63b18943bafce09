"""The job loop: events wake it, waiting steps are looked at when due, reminders come on time,
and every outside action is audited with its ids."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from flows.notices import CanaryReminder
from sandbox.server import Fault
from storage.models import AuditEvent
from tests.fixtures.world import Train, eventually


async def test_a_long_tick_does_not_slow_a_deploy_down(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"tick": "60s"})
    deploy = await train.request(train.new_pr("Quick"))  # the request wakes the loop
    started = time.monotonic()
    await train.reaches(deploy.id, "canary_check", within=25)
    await train.press(deploy.id, "Proceed")  # so does a click
    await train.reaches(deploy.id, "awaiting_confirmation", within=25)
    # Unloaded this takes ~5 s; the bound only has to show that no step waited for a 60 s tick.
    assert time.monotonic() - started < 50, "waited for the 60 s tick"


async def test_the_requester_is_reminded_while_the_canaries_wait(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"canary_reminder": "500ms"})
    deploy = await train.request(train.new_pr("Waits at the gate"))
    await train.reaches(deploy.id, "canary_check")

    async def reminded_twice() -> bool:
        return train.notifier.kinds(deploy.id).count(CanaryReminder) >= 2

    await eventually(reminded_twice, within=10, what="two reminders")
    assert (await train.deploy(deploy.id)).canary_reminded_at is not None


async def test_every_outside_action_is_audited_with_its_ids(train: Train) -> None:
    deploy = await train.request(train.new_pr("Audited"))
    await train.reaches(deploy.id, "canary_check")
    await train.press(deploy.id, "Roll back")
    done = await train.reaches(deploy.id, "rolled_back")
    async with train.database.sessions() as session:
        events = (await session.scalars(sa.select(AuditEvent).where(AuditEvent.deploy_id == deploy.id)
                                        .order_by(AuditEvent.id))).all()
    actions = [e.action for e in events]
    for expected in ("requested", "transition:start", "merged", "build_found", "task_definition_registered",
                     "canary_created", "transition:roll_back", "undone:canary", "revert_reverted",
                     "undone:merge", "transition:undone"):
        assert expected in actions, f"{expected} missing from {actions}"
    by_action = {e.action: e for e in events}
    assert by_action["merged"].outside_ids["merge_sha"] == done.merge_sha
    assert by_action["build_found"].outside_ids["build_url"] == done.build_url
    assert by_action["revert_reverted"].outside_ids["revert_sha"] == done.revert_sha
    assert by_action["transition:roll_back"].actor == "U0ALICE"
    assert {e.train_id for e in events} == {train.config.name}  # every event names the deploy's train
    assert by_action["requested"].actor == "U0ALICE"


async def test_stopping_lets_the_step_under_way_finish_before_the_loop_ends(make_train: Callable[..., Train]) -> None:
    train = make_train()
    github = train.sandbox.github
    github.faults.add(Fault(match=r"^PUT /repos/.*/pulls/\d+/merge$", fail=False, hold=1.0))
    deploy = await train.request(train.new_pr("Stopped mid-merge"))

    async def merging() -> bool:
        return github.writes["merges"] == 1

    await eventually(merging, what="the merge made, its answer held")
    await train.engine.stop(grace=10)

    stopped = await train.deploy(deploy.id)
    assert stopped.merge_sha == github.branch_head(), "the merge step was cancelled instead of finishing"
    assert not train.engine.alive()[0]
