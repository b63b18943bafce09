"""The train on GitHub and Jenkins set up as teams really run them (DESIGN §12): merge methods, pull requests
that must be up to date, pushes to a pull request while it waits in the queue, webhook builds Jenkins coalesced."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from flows.notices import BranchUpdating, HeadFollowed
from storage.models import AuditEvent
from tests.fixtures.world import Train


@pytest.mark.parametrize("method", ["squash", "rebase"])
async def test_a_repository_that_allows_one_merge_method_deploys_by_it_and_rolls_back_to_the_tree_before(
        make_train: Callable[..., Train], method: str) -> None:
    train = make_train(github={"merge_method": method})
    github = train.sandbox.github
    github.settings(allow_merge_commit=False, allow_squash_merge=method == "squash",
                    allow_rebase_merge=method == "rebase")
    before = train.snapshot()
    pr = train.new_pr("Two commits")
    github.push_pr(pr, {"app/more.py": "y = 2\n"})

    deploy = await train.request(pr)
    at_gate = await train.reaches(deploy.id, "canary_check", within=30)
    assert len(github.commits(n=1)[0].parents) == 1  # no merge commit
    assert at_gate.merge_sha == github.branch_head()
    await train.press(deploy.id, "Roll back")

    await train.reaches(deploy.id, "rolled_back", within=30)
    await train.assert_restored(before)


async def test_a_push_to_a_queued_pull_request_is_followed_and_the_requester_told_which_commit(
        make_train: Callable[..., Train]) -> None:
    train = make_train(start=False)
    github = train.sandbox.github
    pr = train.new_pr("Pushed to while queued")
    deploy = await train.request(pr)
    queued_head = github.pr_head(pr)
    pushed = github.push_pr(pr, {"app/late_fix.py": "fixed = True\n"})

    train.start()
    merged = await train.reaches(deploy.id, "building", "canarying", "canary_check", within=30)

    assert merged.pr_head_sha == pushed
    assert "app/late_fix.py" in github.files_at(merged.merge_sha or "")
    followed = await train.notifier.told(HeadFollowed, deploy_id=deploy.id)
    assert (followed.old, followed.new, followed.updated) == (queued_head, pushed, False)


async def test_a_pull_request_behind_a_base_that_must_be_up_to_date_is_updated_and_merged_once_checked(
        make_train: Callable[..., Train]) -> None:
    train = make_train()
    github = train.sandbox.github
    github.protect_branch(strict=True, contexts=("ci",))
    pr = train.new_pr("Behind")
    github.set_status(github.pr_head(pr), "ci", "success")
    github.push({"docs/guide.md": "someone else's work\n"}, signed=True)  # now #pr is behind
    github.set_status(github.branch_head(), "ci", "success")
    queued_head = github.pr_head(pr)

    deploy = await train.request(pr)
    updating = await train.notifier.told(BranchUpdating, deploy_id=deploy.id)
    followed = await train.notifier.told(HeadFollowed, deploy_id=deploy.id)
    assert updating.head == queued_head and followed.updated and followed.new == github.pr_head(pr)
    assert (await train.deploy(deploy.id)).state == "merging"  # its new head's checks have not passed yet

    github.set_status(followed.new, "ci", "success")  # as CI would
    merged = await train.reaches(deploy.id, "building", "canarying", "canary_check", within=30)
    assert "docs/guide.md" in github.files_at(merged.merge_sha or "")
    assert github.writes["branch_updates"] == 1


async def test_a_merge_commit_jenkins_never_built_gets_a_build_started_through_the_api(
        make_train: Callable[..., Train]) -> None:
    train = make_train(jenkins={"build_start_wait": "300ms"})
    jenkins = train.sandbox.jenkins
    jenkins.coalesce_next("app-master")  # the merge's push webhook starts no build of its own
    deploy = await train.request(train.new_pr("Coalesced"))

    at_gate = await train.reaches(deploy.id, "canary_check", within=30)

    assert ("app-master", at_gate.merge_sha) in jenkins.coalesced
    assert jenkins.build_count("app-master", at_gate.merge_sha or "") == 1
    async with train.database.sessions() as session:
        requested = await session.scalar(sa.select(AuditEvent).where(AuditEvent.deploy_id == deploy.id,
                                                                     AuditEvent.action == "build_requested"))
    assert requested is not None
