"""A pea is claimed at once and waits for its build (DESIGN §2): queued but not started, not started at all
(then the bot starts it after `jenkins.build_start_wait`), or red (then the claim ends in `failed`, with the
build's link)."""

from __future__ import annotations

from collections.abc import Callable

from flows.notices import PeaBuildRequested, PeaDeploying, PeaFailed, PeaUp
from tests.fixtures.peas import MANUAL_JOB, Pool
from tests.fixtures.world import REQUESTER


async def test_a_build_queued_but_not_started_is_waited_for_and_the_pea_comes_up(pool: Pool) -> None:
    pool.sandbox.jenkins.delay_queue("app-pr", None)  # the PR's build waits for an executor
    pr = pool.new_pr("Waits for an executor")
    sha = pool.sandbox.github.pr_head(pr)

    claimed = await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    assert (claimed.state.value, claimed.holder) == ("deploying", REQUESTER)
    deploying = await pool.told(PeaDeploying, "sweet-pea")
    assert deploying.build_number is None and deploying.sha == sha
    pool.sandbox.jenkins.release_queue("app-pr")
    await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", pool.sandbox.image(sha))
    assert pool.sandbox.jenkins.build_count("app-pr", sha) == 1


async def test_with_no_build_at_all_the_bot_starts_one_after_the_wait_and_the_pea_comes_up(
        make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins={"pr_job": MANUAL_JOB, "trigger": "webhook", "build_start_wait": "1s"})
    pool.run()
    pr = pool.new_pr("Nobody builds me")
    sha = pool.sandbox.github.pr_head(pr)

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    requested = await pool.told(PeaBuildRequested, "sweet-pea")
    assert (requested.job, requested.sha) == (MANUAL_JOB, sha)
    await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", pool.sandbox.image(sha))
    assert pool.sandbox.jenkins.build_count(MANUAL_JOB, sha) == 1


async def test_a_build_that_turns_red_while_waited_for_fails_the_pea_with_its_link(pool: Pool) -> None:
    pr = pool.new_pr("Red while waiting")
    sha = pool.sandbox.github.pr_head(pr)
    pool.sandbox.jenkins.script(sha, ["FAILURE"], duration=1.0)

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.told(PeaFailed, "sweet-pea")
    assert "failure" in failed.reason and sha[:12] in failed.reason
    pea = await pool.pea("sweet-pea")
    assert pea.state == "failed" and pea.build_url and "/job/app-pr/" in pea.build_url
