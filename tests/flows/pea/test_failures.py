"""A pea deploy that cannot finish ends `failed` with the reason, and offers Redeploy and Release."""

from __future__ import annotations

from collections.abc import Callable

from flows.leased import Backoff
from flows.notices import PeaFailed, PeaReleaseRetrying
from tests.fixtures.peas import MANUAL_JOB, PROCESSES, Pool
from tests.fixtures.world import REQUESTER, eventually

API = {"pr_job": MANUAL_JOB, "trigger": "api"}


async def test_a_red_build_fails_the_pea_and_redeploy_after_a_fix_brings_it_up(
        make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins=API)
    pool.run()
    pr = pool.new_pr("Typo in the config")
    red = pool.sandbox.github.pr_head(pr)
    pool.sandbox.jenkins.script(red, ["FAILURE"])

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.reaches("sweet-pea", "failed")
    assert failed.failure_reason.startswith(f"build {failed.build_number} of {red[:12]} ended failure")
    notice = await pool.told(PeaFailed, "sweet-pea")
    assert notice.holder == REQUESTER and notice.reason == failed.failure_reason
    assert await pool.buttons("sweet-pea") == ["Redeploy", "Extend", "Release"]
    assert all(pool.service("sweet-pea", p)["desiredCount"] == 0 for p in PROCESSES)  # nothing was started

    fixed = pool.sandbox.github.push_pr(pr, {"app/config.py": "ok = True\n"})
    await pool.flows.press(REQUESTER, "Redeploy", await pool.button_value("sweet-pea"))

    up = await pool.reaches("sweet-pea", "up")
    assert up.head_sha == fixed and up.failure_reason is None
    await pool.runs("sweet-pea", pool.sandbox.image(fixed))


async def test_a_build_that_does_not_finish_in_time_fails_the_pea(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins={**API, "build_timeout": "1s"})
    pool.run()
    pr = pool.new_pr("Endless tests")
    pool.sandbox.jenkins.script(pool.sandbox.github.pr_head(pr), ["HANG"])

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.reaches("sweet-pea", "failed")
    assert "did not finish within 1s" in failed.failure_reason
    assert failed.build_url is not None


async def test_services_whose_tasks_keep_failing_fail_the_pea_and_release_still_frees_it(pool: Pool) -> None:
    pr, sha = await pool.ready_pr("Crashes on boot")
    pool.sandbox.aws.unhealthy_images.add(pool.sandbox.image(sha))

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.reaches("sweet-pea", "failed")
    assert "tasks of pea-sweet-pea-" in failed.failure_reason and "failed to start" in failed.failure_reason
    await pool.told(PeaFailed, "sweet-pea")

    await pool.flows.release(REQUESTER, "sweet-pea")
    await pool.reaches("sweet-pea", "free")
    await pool.scaled_to_zero("sweet-pea")


async def test_services_that_never_become_stable_fail_the_pea_after_the_rollout_timeout(
        make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(deploy={"rollout_timeout": "1s"})
    pool.run()
    pr, _ = await pool.ready_pr("Slow to start")
    pool.sandbox.aws.step_interval = None  # ECS starts nothing: the tasks stay pending

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.reaches("sweet-pea", "failed")
    assert "did not become stable within 1s" in failed.failure_reason
    assert "web 0/1" in failed.failure_reason


async def test_aws_failing_past_its_retries_fails_the_pea_naming_aws(make_pool: Callable[..., Pool],
                                                                      quick_give_up: Backoff) -> None:
    pool = make_pool(backoff=quick_give_up)
    pool.run()
    pr, sha = await pool.ready_pr()
    outage = pool.sandbox.aws.server_error(10_000, match="RegisterTaskDefinition")

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    failed = await pool.reaches("sweet-pea", "failed")
    assert failed.failure_reason.startswith("AWS: ") and "still failing after" in failed.failure_reason
    notice = await pool.told(PeaFailed, "sweet-pea")
    assert notice.system == "AWS"

    pool.sandbox.aws.faults.clear()
    assert outage.remaining and outage.remaining > 0
    await pool.flows.redeploy(REQUESTER, "sweet-pea")
    await pool.reaches("sweet-pea", "up")
    await pool.runs("sweet-pea", pool.sandbox.image(sha))


async def test_a_release_that_aws_refuses_keeps_trying_and_says_so(make_pool: Callable[..., Pool],
                                                                   quick_give_up: Backoff) -> None:
    pool = make_pool(backoff=quick_give_up)
    pool.run()
    pr, _ = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")
    pool.sandbox.aws.server_error(10_000, match="UpdateService")

    await pool.flows.release(REQUESTER, "sweet-pea")

    async def said_so() -> bool:
        return bool(pool.notices(PeaReleaseRetrying, "sweet-pea"))

    await eventually(said_so, what="the failing release reported")
    stuck = await pool.pea("sweet-pea")
    assert stuck.state == "releasing" and stuck.failure_reason.startswith("AWS: ")
    pool.sandbox.aws.faults.clear()
    await pool.reaches("sweet-pea", "free")
    await pool.scaled_to_zero("sweet-pea")
