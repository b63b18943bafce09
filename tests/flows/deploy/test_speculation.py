"""Speculative builds (DESIGN §8), through the emulators: a queued deploy is built ahead on top of the one in
flight and lands as a fast-forward to exactly the commit that was built; a candidate whose base moved is
dropped and the deploy merges the normal way."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flows.notices import BuildRetried, CandidateBuildFailed, CandidateDropped
from flows.views import DeployView
from integrations.outside import PermanentError
from tests.fixtures.world import ADMIN, EMERGENCY, REQUESTER, Train, eventually

SPECULATE = {"speculate": 1}


def _merges_of(train: Train) -> int:
    return train.sandbox.github.writes["merges"]


async def _candidate(train: Train, deploy_id: int, *, base: str | None = None, head: str | None = None) -> str:
    """The deploy's candidate once its build is asked for (on `base`, of `head`, when given)."""
    async def probe() -> str | None:
        deploy = await train.deploy(deploy_id)
        wanted = (base or deploy.candidate_base, head or deploy.candidate_head)
        if deploy.candidate_queue_id is None or (deploy.candidate_base, deploy.candidate_head) != wanted:
            return None
        return deploy.candidate_sha

    return await eventually(probe, what=f"deploy {deploy_id}'s candidate and its build")


async def _one_at_the_gate_one_built_ahead(train: Train) -> tuple[DeployView, DeployView, str]:
    """Two deploys queued: the first at its canary gate, the second built ahead on it (its candidate)."""
    first, second = [await train.request(train.new_pr(f"Change {n}")) for n in range(2)]
    await train.reaches(first.id, "canary_check", within=30)
    return first, second, await _candidate(train, second.id)


async def _through(train: Train, deploy_id: int, user: str = REQUESTER) -> None:
    await train.reaches(deploy_id, "canary_check", within=30)
    await train.press(deploy_id, "Proceed", user)
    await train.reaches(deploy_id, "awaiting_confirmation", within=30)
    await train.press(deploy_id, "Done", user)
    await train.reaches(deploy_id, "completed")


async def test_queued_deploys_land_as_fast_forwards_to_the_commits_that_were_built(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first, second, third = [await train.request(train.new_pr(f"Change {n}")) for n in range(3)]
    await train.reaches(first.id, "canary_check", within=30)
    merged = (await train.deploy(first.id)).merge_sha
    built_ahead = await _candidate(train, second.id)
    assert github.git.commit(built_ahead).parents == (merged, github.pr_head(second.pr_number))
    assert f"fatcontroller/app/{second.id}" in github.branches()

    await _through(train, first.id)
    await _through(train, second.id)
    landed = await train.deploy(second.id)
    assert landed.merge_sha == built_ahead  # exactly the commit that was built
    assert github.pull_request(second.pr_number).merged
    assert set(train.sandbox.aws.running_images("production", "app-web")) == {train.sandbox.image(built_ahead)}
    assert f"fatcontroller/app/{second.id}" not in github.branches()  # no candidate outlives its landing

    await _through(train, third.id)
    third_sha = (await train.deploy(third.id)).merge_sha
    assert github.git.commit(third_sha).parents[0] == built_ahead  # built on the second's candidate, landed on it
    assert _merges_of(train) == 1  # the first merged; the two others landed as fast-forwards
    assert not [b for b in github.branches() if b.startswith("fatcontroller/")]


async def test_a_candidate_whose_base_moved_is_dropped_and_the_deploy_merges_the_normal_way(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first, second, stale = await _one_at_the_gate_one_built_ahead(train)
    await _through(train, first.id)
    github.push({"NOTES.md": "someone else's commit\n"}, message="A push to master")

    await _through(train, second.id)
    merged = (await train.deploy(second.id)).merge_sha
    assert merged != stale and "A push to master" in github.git.commit(github.git.commit(merged).parents[0]).message
    assert _merges_of(train) == 2 and github.pull_request(second.pr_number).merged
    assert not [b for b in github.branches() if b.startswith("fatcontroller/")]


async def test_a_deploy_cancelled_with_a_candidate_has_its_build_stopped_and_its_branch_deleted(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    jenkins, github = train.sandbox.jenkins, train.sandbox.github
    first = await train.request(train.new_pr("In flight"))
    await train.reaches(first.id, "canary_check", within=30)
    jenkins.script_next("app-master", ["SUCCESS"], duration=60)  # the candidate's build is still running
    second = await train.request(train.new_pr("Leaves"))
    built_ahead = await _candidate(train, second.id)
    await eventually(lambda: _started(train, built_ahead), what="the candidate's build to start")

    await train.flows.cancel("U0ALICE", second.id)

    async def dropped() -> bool:
        return (await train.deploy(second.id)).candidate_sha is None
    await eventually(dropped, what="the candidate dropped")
    assert f"fatcontroller/app/{second.id}" not in github.branches()
    [build] = [b for b in jenkins.builds("app-master") if built_ahead in str(b)]
    assert build["result"] == "ABORTED"
    assert github.branch_head() == (await train.deploy(first.id)).merge_sha  # the base never moved for it


async def test_a_deploy_cancelled_while_its_candidate_waits_in_jenkins_queue_takes_it_out(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    jenkins = train.sandbox.jenkins
    first = await train.request(train.new_pr("In flight"))
    await train.reaches(first.id, "canary_check", within=30)
    jenkins.delay_queue("app-master", None)  # no executor: the candidate's build waits in the queue
    second = await train.request(train.new_pr("Leaves before it is built"))
    waiting = await _candidate(train, second.id)
    queue_id = (await train.deploy(second.id)).candidate_queue_id

    await train.flows.cancel("U0ALICE", second.id)
    await _dropped(train, second.id, waiting)
    with pytest.raises(PermanentError, match="cancelled"):  # taken out of Jenkins' queue: it never starts
        await train.outside.jenkins.build_from_queue(queue_id or 0)
    assert jenkins.build_count("app-master", waiting) == 0


async def _started(train: Train, sha: str) -> bool:
    return any(sha in str(b) for b in train.sandbox.jenkins.builds("app-master"))


def _build_of(train: Train, sha: str) -> dict:
    [build] = [b for b in train.sandbox.jenkins.builds("app-master") if sha in str(b)]
    return build


async def _dropped(train: Train, deploy_id: int, sha: str) -> None:
    async def gone() -> bool:
        deploy = await train.deploy(deploy_id)
        return deploy.candidate_sha != sha and f"fatcontroller/app/{deploy_id}" not in train.sandbox.github.branches()
    await eventually(gone, what=f"deploy {deploy_id}'s candidate {sha[:12]} dropped")


async def test_a_rollback_drops_the_candidates_behind_at_once_with_their_builds_stopped(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    jenkins = train.sandbox.jenkins
    first = await train.request(train.new_pr("Rolled back"))
    await train.reaches(first.id, "canary_check", within=30)
    jenkins.script_next("app-master", ["SUCCESS"], duration=60)  # the candidate's build is still running
    second = await train.request(train.new_pr("Waits"))
    on_the_rolled_back = await _candidate(train, second.id)
    await eventually(lambda: _started(train, on_the_rolled_back), what="the candidate's build to start")
    await train.flows.freeze(ADMIN, "hold the queue: the next deploy stays queued")

    await train.press(first.id, "Roll back")
    await train.reaches(first.id, "rolled_back", within=30)

    await _dropped(train, second.id, on_the_rolled_back)  # while it is still queued, not at its turn
    assert (await train.deploy(second.id)).state == "queued"
    assert _build_of(train, on_the_rolled_back)["result"] == "ABORTED"
    await train.notifier.told(CandidateDropped, deploy_id=second.id)
    await train.flows.unfreeze(ADMIN)
    await _through(train, second.id)


async def test_a_push_to_the_base_branch_builds_the_candidate_again_on_top_of_it(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first, second, stale = await _one_at_the_gate_one_built_ahead(train)

    github.push({"NOTES.md": "someone else's commit\n"}, message="A push to master")
    pushed = github.branch_head()

    again = await _candidate(train, second.id, base=pushed)
    assert again != stale and github.git.commit(again).parents[0] == pushed
    await _through(train, first.id)
    await _through(train, second.id)
    assert (await train.deploy(second.id)).merge_sha == again
    assert _merges_of(train) == 1  # the second landed: no merge needed


async def test_a_jump_ahead_drops_the_candidate_it_passes_and_each_lands_on_the_one_before(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"speculate": 2})
    github = train.sandbox.github
    first, second, passed = await _one_at_the_gate_one_built_ahead(train)

    hotfix = await train.request(train.new_pr("Hotfix"), EMERGENCY, jump_queue=True, reason="outage")
    on_hotfix = await _candidate(train, hotfix.id)
    await _dropped(train, second.id, passed)

    rebuilt = await _candidate(train, second.id, base=on_hotfix)
    await _through(train, first.id)
    await _through(train, hotfix.id, EMERGENCY)
    await _through(train, second.id)
    assert [(await train.deploy(d.id)).merge_sha for d in (hotfix, second)] == [on_hotfix, rebuilt]
    assert github.git.commit(rebuilt).parents[0] == on_hotfix and _merges_of(train) == 1


async def test_a_red_build_ahead_is_told_at_once_and_never_lands(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github, jenkins = train.sandbox.github, train.sandbox.jenkins
    first = await train.request(train.new_pr("In flight"))
    await train.reaches(first.id, "canary_check", within=30)
    jenkins.script_next("app-master", ["FAILURE"])
    second = await train.request(train.new_pr("Breaks the build"))
    red = await _candidate(train, second.id)

    failed = await train.notifier.told(CandidateBuildFailed, deploy_id=second.id)  # before its turn
    assert failed.result == "FAILURE" and (await train.deploy(first.id)).state == "canary_check"
    await _through(train, first.id)
    ended = await train.reaches(second.id, "failed", within=30)
    assert "its build ahead" in (ended.outcome_reason or "") and "ended FAILURE" in (ended.outcome_reason or "")
    assert github.branch_head() == (await train.deploy(first.id)).merge_sha != red  # the base never got it
    assert not github.pull_request(second.pr_number).merged
    assert not [b for b in github.branches() if b.startswith("fatcontroller/")]


async def test_a_flaky_build_ahead_is_started_again_by_itself_and_lands(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE, jenkins={"build_retries": 1})
    jenkins = train.sandbox.jenkins
    first = await train.request(train.new_pr("In flight"))
    await train.reaches(first.id, "canary_check", within=30)
    jenkins.script_next("app-master", ["FAILURE", "SUCCESS"])  # red once, then green
    second = await train.request(train.new_pr("Flaky"))
    built_ahead = await _candidate(train, second.id)

    retried = await train.notifier.told(BuildRetried, deploy_id=second.id)
    assert retried.ahead
    await _through(train, first.id)
    await _through(train, second.id)  # no button but Proceed and Done
    landed = await train.deploy(second.id)
    assert landed.merge_sha == built_ahead and jenkins.build_count("app-master", built_ahead) == 2
    assert landed.build_number != retried.number


async def test_the_deploy_in_flight_rolled_back_at_its_gate_leaves_the_next_one_landing_on_the_revert(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first = await train.request(train.new_pr("Rolled back", {"app/rolled_back.py": "BAD = True\n"}))
    second = await train.request(train.new_pr("Goes on", {"app/goes_on.py": "GOOD = True\n"}))
    await train.reaches(first.id, "canary_check", within=30)
    on_the_rolled_back = await _candidate(train, second.id)

    await train.press(first.id, "Roll back")
    await train.reaches(first.id, "rolled_back", within=30)
    await _through(train, second.id)

    landed = (await train.deploy(second.id)).merge_sha
    assert landed != on_the_rolled_back
    files = github.files_at(train.config.github.base_branch)
    assert "app/goes_on.py" in files and "app/rolled_back.py" not in files
    assert set(train.sandbox.aws.running_images("production", "app-web")) == {train.sandbox.image(landed)}
    assert not [b for b in github.branches() if b.startswith("fatcontroller/")]


async def test_a_push_to_the_pull_request_builds_its_candidate_again_on_the_new_head(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first = await train.request(train.new_pr("In flight"))
    second = await train.request(train.new_pr("Pushed to"))
    await train.reaches(first.id, "canary_check", within=30)
    before = await _candidate(train, second.id)

    github.push_pr(second.pr_number, {"app/pushed_to.py": "AGAIN = True\n"})
    head = github.pr_head(second.pr_number)

    again = await _candidate(train, second.id, head=head)
    assert again != before and github.git.commit(again).parents[1] == head
    await _through(train, first.id)
    await _through(train, second.id)
    assert (await train.deploy(second.id)).merge_sha == again


async def test_a_conflicting_candidate_is_not_made_and_the_deploy_merges_the_normal_way_at_its_turn(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=SPECULATE)
    github = train.sandbox.github
    first = await train.request(train.new_pr("Takes the file", {"app/shared.py": "FIRST = 1\n"}))
    second = await train.request(train.new_pr("Takes it too", {"app/shared.py": "SECOND = 2\n"}))
    await train.reaches(first.id, "canary_check", within=30)

    async def conflicts() -> bool:
        deploy = await train.deploy(second.id)
        return deploy.candidate_base is not None and deploy.candidate_sha is None
    await eventually(conflicts, what="the candidate found to conflict")
    assert f"fatcontroller/app/{second.id}" not in github.branches()
    await _through(train, first.id)

    ended = await train.reaches(second.id, "failed", within=30)  # it really conflicts: refused at its turn
    assert "conflict" in (ended.outcome_reason or "")
