"""Claiming a pea deploys the PR head's build to its services; /pea lists the pool; extend and release."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import boto3

from flows.notices import PeaExtended, PeaReleased, PeaUp
from storage.clock import utcnow
from tests.fixtures.peas import MANUAL_JOB, PEAS, PROCESSES, Pool
from tests.fixtures.world import OTHER, REQUESTER


def revisions(pool: Pool, family: str) -> list[str]:
    ecs = boto3.client("ecs", endpoint_url=pool.sandbox.aws.url, region_name="eu-west-1")
    return ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


async def test_a_claimed_pea_runs_the_pr_head_image_and_its_holder_gets_the_url(pool: Pool) -> None:
    pr, sha = await pool.ready_pr("Purple buttons")

    claimed = await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    assert (claimed.state, claimed.holder, claimed.pr_number, claimed.head_sha) == ("deploying", REQUESTER, pr, sha)

    up = await pool.reaches("sweet-pea", "up")
    image = pool.sandbox.image(sha)
    assert up.image == image and up.url == "https://sweet-pea.dev.acme.com"
    for process in PROCESSES:
        service = pool.service("sweet-pea", process)
        assert service["taskDefinition"] == up.task_definitions[process]
        assert service["desiredCount"] == 1
        assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
        assert pool.running_images("sweet-pea", process) == [image]
        assert len(revisions(pool, f"pea-sweet-pea-{process}")) == 2  # the seed and ours
    notice = await pool.told(PeaUp, "sweet-pea")
    assert notice.holder == REQUESTER and notice.url == "https://sweet-pea.dev.acme.com"
    assert await pool.buttons("sweet-pea") == ["Extend", "Release"]
    # the other peas were not touched
    assert pool.service("chick-pea", "web")["desiredCount"] == 0


async def test_the_list_shows_every_pea_free_or_held_with_pr_commit_state_and_times(pool: Pool) -> None:
    pr, sha = await pool.ready_pr("Show the list")
    before = utcnow()
    await pool.flows.deploy(OTHER, "chick-pea", pr)
    await pool.reaches("chick-pea", "up")

    listed = await pool.flows.all()

    assert [p.name for p in listed] == list(PEAS)
    held = listed[1]
    assert (held.state, held.holder, held.pr_number, held.pr_title, held.head_sha) == (
        "up", OTHER, pr, "Show the list", sha)
    assert held.pr_url and held.pr_url.endswith(f"/pull/{pr}")
    assert held.url == "https://chick-pea.dev.acme.com"
    assert held.claimed_at is not None and held.claimed_at >= before
    assert held.claim_expires_at is not None
    assert abs(held.claim_expires_at - held.claimed_at - timedelta(hours=1)) < timedelta(seconds=5)
    for free in (listed[0], listed[2]):
        assert (free.state, free.holder, free.pr_number, free.offered()) == ("free", None, None, [])
    assert [p.name for p in await pool.flows.peas_of(OTHER)] == ["chick-pea"]
    assert await pool.flows.peas_of(REQUESTER) == []


async def test_extend_renews_the_lease_from_now(pool: Pool) -> None:
    pr, _ = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "snow-pea", pr)
    first = await pool.reaches("snow-pea", "up")

    extended = await pool.flows.extend(REQUESTER, "snow-pea")

    assert extended.claim_expires_at > first.claim_expires_at
    assert abs(extended.claim_expires_at - utcnow() - timedelta(hours=1)) < timedelta(seconds=5)
    assert (await pool.pea("snow-pea")).state == "up"
    told = await pool.told(PeaExtended, "snow-pea")
    assert told.until == extended.claim_expires_at


async def test_release_scales_the_pea_to_zero_and_frees_it(pool: Pool) -> None:
    pr, sha = await pool.ready_pr()
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")
    await pool.runs("sweet-pea", pool.sandbox.image(sha))

    released = await pool.flows.release(REQUESTER, "sweet-pea")

    assert (released.state, released.holder) == ("releasing", None)
    for process in PROCESSES:
        assert pool.service("sweet-pea", process)["desiredCount"] in (0, 1)  # the worker is on it
    free = await pool.reaches("sweet-pea", "free")
    assert (free.holder, free.pr_number, free.claim_expires_at, free.task_definitions) == (None, None, None, {})
    await pool.scaled_to_zero("sweet-pea")
    notice = await pool.told(PeaReleased, "sweet-pea")
    assert notice.holder == REQUESTER and notice.by == REQUESTER


async def test_a_holder_may_deploy_another_pr_to_their_own_pea(pool: Pool) -> None:
    first, _ = await pool.ready_pr("First idea")
    second, second_sha = await pool.ready_pr("Second idea")
    await pool.flows.deploy(REQUESTER, "sweet-pea", first)
    claimed_at = (await pool.reaches("sweet-pea", "up")).claimed_at

    await pool.flows.deploy(REQUESTER, "sweet-pea", second)

    up = await pool.reaches("sweet-pea", "up")
    assert (up.pr_number, up.head_sha, up.claimed_at) == (second, second_sha, claimed_at)
    await pool.runs("sweet-pea", pool.sandbox.image(second_sha))


async def test_with_trigger_api_the_pr_build_is_started_through_the_api(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins={"pr_job": MANUAL_JOB, "trigger": "api"})
    pool.run()
    pr = pool.new_pr("Nobody builds this by itself")
    sha = pool.sandbox.github.pr_head(pr)

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    up = await pool.reaches("sweet-pea", "up")
    assert pool.sandbox.jenkins.build_count(MANUAL_JOB, sha) == 1
    assert up.build_url and f"/job/{MANUAL_JOB}/" in up.build_url
    await pool.runs("sweet-pea", pool.sandbox.image(sha))
