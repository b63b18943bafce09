"""Peas on a multibranch project (DESIGN §12): `pr_job: app-pr/PR-{pr}` finds a PR's builds in its own job,
a job not made yet is waited for, and the pea runs what Jenkins built (the head, or GitHub Branch Source's
merge of it with the base) and says which. A `pr_job` without `{pr}` works as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import requests

from flows.engine import Engine, TrainSetup
from flows.notices import PeaBuildRequested, PeaFailed, PeaStarting, PeaUp
from integrations.jenkins import Build
from sandbox.world import Sandbox
from tests.fixtures.peas import PER_PR_JOB, Pool
from tests.fixtures.world import REQUESTER, eventually


def job_of(pr: int) -> str:
    return f"app-pr/PR-{pr}"


def redeliver_opened(sandbox: Sandbox, pr: int) -> None:
    """GitHub's `opened` event of the pull request delivered to Jenkins again, as GitHub's Redeliver does."""
    headers = {"Authorization": f"token {sandbox.spec.github_token}"}
    pull = requests.get(f"{sandbox.github.url}/repos/{sandbox.spec.repo}/pulls/{pr}", headers=headers, timeout=5)
    pull.raise_for_status()
    requests.post(sandbox.jenkins_webhook, json={"action": "opened", "number": pr, "pull_request": pull.json()},
                  headers={"X-GitHub-Event": "pull_request"}, timeout=5).raise_for_status()


async def test_a_pea_of_pr_n_deploys_the_build_of_its_own_job_in_the_project(
        make_multibranch_pool: Callable[..., Pool]) -> None:
    pool = make_multibranch_pool(jenkins={"pr_job": PER_PR_JOB})
    pool.run()
    other = pool.new_pr("Someone else's change")
    pr = pool.new_pr("Purple buttons")
    await pool.built(other, job_of(other))
    head = await pool.built(pr, job_of(pr))

    claimed = await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    assert claimed.build_url == f"{pool.sandbox.jenkins.url}/job/app-pr/job/PR-{pr}/1/"
    up = await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", pool.sandbox.image(head))
    assert (up.pr, up.sha, up.built) == (pr, head, head)
    assert pool.sandbox.jenkins.build_count(job_of(pr), head) == 1


async def test_a_pea_claimed_before_the_project_made_the_pr_job_waits_for_it_without_starting_one(
        make_multibranch_pool: Callable[..., Pool]) -> None:
    start_wait = timedelta(seconds=0.2)
    pool = make_multibranch_pool(jenkins={"pr_job": PER_PR_JOB, "build_start_wait": "200ms"})
    sandbox = pool.sandbox
    sandbox.github.remove_webhook(sandbox.jenkins_webhook)  # Jenkins hears nothing of the new PR
    pool.run()
    pr = pool.new_pr("Not discovered yet")
    head = sandbox.github.pr_head(pr)

    claimed = await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    assert (claimed.state.value, claimed.build_url) == ("deploying", None)
    entered = (await pool.pea("sweet-pea")).state_entered_at
    assert entered is not None

    async def looked_after_the_start_wait() -> bool:
        """A pass after `build_start_wait`, when a build would have been started on a job that exists."""
        pea = await pool.pea("sweet-pea")
        return pea.due_at is not None and pea.due_at > entered + start_wait + timedelta(seconds=0.05)

    await eventually(looked_after_the_start_wait, what="a look at the pea after build_start_wait")
    assert (await pool.pea("sweet-pea")).state == "deploying"
    assert job_of(pr) not in sandbox.jenkins.job_names()

    sandbox.github.add_webhook(sandbox.jenkins_webhook)
    await asyncio.to_thread(redeliver_opened, sandbox, pr)  # the project makes the job and builds the head

    await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", sandbox.image(head))
    assert pool.notices(PeaBuildRequested) == [] and pool.notices(PeaFailed) == []
    assert sandbox.jenkins.build_count(job_of(pr), head) == 1


async def test_a_pr_job_that_got_no_build_of_the_head_is_started_through_the_api_after_the_wait(
        make_multibranch_pool: Callable[..., Pool]) -> None:
    pool = make_multibranch_pool(jenkins={"pr_job": PER_PR_JOB, "build_start_wait": "200ms"})
    sandbox = pool.sandbox
    sandbox.jenkins.coalesce_next("app-pr")  # the PR's job is made, its first build folded away
    pool.run()
    pr = pool.new_pr("Coalesced")
    head = sandbox.github.pr_head(pr)

    async def job_made() -> bool:
        return job_of(pr) in sandbox.jenkins.job_names()

    await eventually(job_made, what="the PR's job")

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    requested = await pool.told(PeaBuildRequested, "sweet-pea")
    assert (requested.job, requested.sha) == (job_of(pr), head)
    await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", sandbox.image(head))
    assert sandbox.jenkins.build_count(job_of(pr), head) == 1


async def test_a_pea_runs_the_merge_jenkins_built_of_the_pr_with_its_base_and_says_so(
        make_multibranch_pool: Callable[..., Pool]) -> None:
    pool = make_multibranch_pool(jenkins={"pr_job": PER_PR_JOB})
    sandbox = pool.sandbox
    sandbox.jenkins.build_merge_ref("app-pr")  # GitHub Branch Source's default: the PR merged with its target
    pool.run()
    pr = pool.new_pr("Purple buttons")
    job = job_of(pr)
    head = await pool.built(pr, job)  # opened up to date with master: that merge is the head itself
    sandbox.github.push({"README.md": "# app, now with a changelog\n"})  # master moves on: Jenkins merges it in
    base = sandbox.github.branch_head()

    async def merge_built() -> Build | None:
        build = await pool.outside.jenkins.find_build(job, head)
        return build if build is not None and build.finished and build.revision != head else None

    merged = await eventually(merge_built, what=f"a build of #{pr} merged with the new master")
    merge = merged.revision
    assert merge is not None and sandbox.github.log(merge, 1)[0][2] == (head, base)

    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    up = await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", sandbox.image(merge))
    starting = await pool.told(PeaStarting, "sweet-pea")
    assert (starting.pr, starting.sha, starting.built, starting.base) == (pr, head, merge, "master")
    assert (up.sha, up.built, up.base) == (head, merge, "master")
    pea = await pool.pea("sweet-pea")
    assert (pea.head_sha, pea.built_sha, pea.image) == (head, merge, sandbox.image(merge))
    assert pea.build_url == merged.url


async def test_a_pr_job_without_pr_finds_the_head_among_every_pr_s_builds_as_before(pool: Pool) -> None:
    first, first_head = await pool.ready_pr("First change")
    pr, head = await pool.ready_pr("Second change")

    claimed = await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

    up = await pool.told(PeaUp, "sweet-pea")
    await pool.runs("sweet-pea", pool.sandbox.image(head))
    numbers = {sha: number for job, number, sha in pool.sandbox.jenkins.started if job == "app-pr"}
    assert claimed.build_url == f"{pool.sandbox.jenkins.url}/job/app-pr/{numbers[head]}/"
    assert numbers[first_head] != numbers[head] and first != pr
    assert (up.sha, up.built) == (head, head)
    assert (await pool.pea("sweet-pea")).built_sha == head


async def test_a_notification_about_a_pr_job_wakes_only_the_pea_of_that_pr(
        make_multibranch_pool: Callable[..., Pool]) -> None:
    pool = make_multibranch_pool(jenkins={"pr_job": PER_PR_JOB, "build_start_wait": "10m"})
    pool.sandbox.github.remove_webhook(pool.sandbox.jenkins_webhook)  # no builds: both peas keep waiting
    first, second = pool.new_pr("One"), pool.new_pr("Two")
    await pool.flows.deploy(REQUESTER, "sweet-pea", first)
    await pool.flows.deploy(REQUESTER, "snow-pea", second)
    engine = Engine([TrainSetup(pool.config, pool.outside)], pool.database.sessions)
    before = {name: (await pool.pea(name)).due_at for name in ("sweet-pea", "snow-pea")}

    woken = [await engine.wake_job(job) for job in (job_of(second), job_of(404), "app-pr", "app-pr/PR-x")]

    assert woken == [1, 0, 0, 0]
    after = {name: (await pool.pea(name)).due_at for name in ("sweet-pea", "snow-pea")}
    assert after["sweet-pea"] == before["sweet-pea"] and after["snow-pea"] > before["snow-pea"]
