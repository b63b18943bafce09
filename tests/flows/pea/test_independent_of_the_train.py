"""Peas never hold the deploy train: a pea deploy under way does not hold up the queue, and a deploy
in flight does not hold up a pea."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.fixtures.peas import MANUAL_JOB, Pool
from tests.fixtures.world import OTHER, REQUESTER, Train


@pytest.fixture
async def both(make_pool: Callable[..., Pool]) -> AsyncIterator[tuple[Pool, Train]]:
    """A pool with its worker and a train with its engine, side by side on one database and sandbox."""
    pool = make_pool(jenkins={"pr_job": MANUAL_JOB})
    pool.run()
    train = Train(pool.config, pool.database, pool.sandbox, pool.notifier, pool.outside)
    train.start()
    yield pool, train
    await train.engine.stop()


async def test_a_pea_deploy_waiting_for_its_build_does_not_hold_up_the_train(both: tuple[Pool, Train]) -> None:
    pool, train = both
    pea_pr = pool.new_pr("Endless preview build")
    head = pool.sandbox.github.pr_head(pea_pr)
    pool.sandbox.jenkins.script(head, ["HANG"])
    pool.sandbox.jenkins.start_build(MANUAL_JOB, head)
    await pool.flows.deploy(OTHER, "sweet-pea", pea_pr)

    deploy = await train.request(train.new_pr("Ship it"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)
    await train.press(deploy.id, "Done")
    await train.reaches(deploy.id, "completed")

    assert (await pool.pea("sweet-pea")).state == "deploying"  # still waiting for its build


async def test_a_deploy_in_flight_does_not_hold_up_a_pea(both: tuple[Pool, Train]) -> None:
    pool, train = both
    deploy = await train.request(train.new_pr("Waits at the gate"))
    await train.reaches(deploy.id, "canary_check", within=30)

    pea_pr = pool.new_pr("Preview meanwhile")
    pool.sandbox.jenkins.start_build(MANUAL_JOB, pool.sandbox.github.pr_head(pea_pr))
    sha = await pool.built(pea_pr, MANUAL_JOB)
    await pool.flows.deploy(REQUESTER, "sweet-pea", pea_pr)
    await pool.reaches("sweet-pea", "up")
    await pool.runs("sweet-pea", pool.sandbox.image(sha))
    await pool.flows.release(REQUESTER, "sweet-pea")
    await pool.reaches("sweet-pea", "free")

    assert (await train.deploy(deploy.id)).state == "canary_check"  # the train waited for its person only
