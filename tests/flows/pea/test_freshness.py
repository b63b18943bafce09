"""An up pea keeps an eye on its PR: a newer green build is offered for Redeploy; a closed or merged PR
asks the holder whether to release."""

from __future__ import annotations

from collections.abc import Callable

from flows.notices import PeaStale, PeaUp
from flows.pea.machine import Stale
from storage.clock import utcnow
from tests.fixtures.peas import MANUAL_JOB, Pool
from tests.fixtures.world import REQUESTER, eventually


async def test_a_newer_green_build_is_offered_and_redeploy_runs_it(pool: Pool) -> None:
    pr, old_sha = await pool.ready_pr("Bigger logo")
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")

    new_sha = pool.sandbox.github.push_pr(pr, {"app/logo.py": "size = 2\n"})
    stale = await pool.told(PeaStale, "sweet-pea", why=Stale.NEWER_BUILD, sha=new_sha)
    assert stale.holder == REQUESTER
    assert await pool.buttons("sweet-pea") == ["Redeploy", "Extend", "Release"]
    assert (await pool.pea("sweet-pea")).head_sha == old_sha  # nothing moves until the holder says so

    await pool.flows.press(REQUESTER, "Redeploy", await pool.button_value("sweet-pea"))

    up = await pool.reaches("sweet-pea", "up")
    assert up.head_sha == new_sha and up.stale_reason is None
    await pool.runs("sweet-pea", pool.sandbox.image(new_sha))
    await pool.drained()
    assert len(pool.notices(PeaStale, "sweet-pea")) == 1
    assert len(pool.notices(PeaUp, "sweet-pea")) == 2


async def test_a_newer_head_whose_build_is_red_is_not_offered(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins={"pr_job": MANUAL_JOB})
    pool.run()
    jenkins = pool.sandbox.jenkins
    pr = pool.new_pr("Risky change")
    jenkins.start_build(MANUAL_JOB, pool.sandbox.github.pr_head(pr))
    await pool.built(pr, MANUAL_JOB)
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")

    red_sha = pool.sandbox.github.push_pr(pr, {"app/risk.py": "raise SystemExit\n"})
    jenkins.script(red_sha, ["FAILURE"])
    jenkins.start_build(MANUAL_JOB, red_sha)
    await pool.built(pr, MANUAL_JOB, green=False)
    looked_after = utcnow()

    async def looked_again() -> bool:
        checked = (await pool.pea("sweet-pea")).checked_at
        return checked is not None and checked > looked_after

    await eventually(looked_again, what="a look at the PR after the red build")
    await pool.drained()
    assert not pool.notices(PeaStale, "sweet-pea")


async def test_a_closed_pr_asks_the_holder_whether_to_release(pool: Pool) -> None:
    pr, _ = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")

    pool.sandbox.github.close_pr(pr)

    stale = await pool.told(PeaStale, "sweet-pea", why=Stale.CLOSED)
    assert stale.holder == REQUESTER
    assert await pool.buttons("sweet-pea") == ["Extend", "Release"]
    assert (await pool.pea("sweet-pea")).state == "up"  # the holder decides


async def test_a_merged_pr_asks_the_holder_whether_to_release(pool: Pool) -> None:
    pr, sha = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")

    await pool.outside.github.merge(pr, sha)

    await pool.told(PeaStale, "sweet-pea", why=Stale.MERGED)
    await pool.flows.press(REQUESTER, "Release", await pool.button_value("sweet-pea"))
    await pool.reaches("sweet-pea", "free")
    await pool.scaled_to_zero("sweet-pea")
