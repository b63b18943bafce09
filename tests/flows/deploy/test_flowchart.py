"""The deploy flowchart, edge by edge, on the emulators: every transition of the table is taken here.

Each scenario drives real deploys through the engine (merges in a real git repository, Jenkins
builds, ECS deployments that move) and checks where they end, why, and what the outside world
looks like afterwards. Each one declares the edges it takes (`@takes`), and checks, from the
audit log, that it took them; the last test checks that the declared edges (these and those of the
other scenario modules, `tests.fixtures.flowchart.SCENARIOS`) cover the table. So
every test passes alone, and in any order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import timedelta

import pytest

from flows.deploy.machine import TRANSITIONS, Event, State
from flows.errors import Refused, Why
from flows.leased import Backoff
from flows.notices import BuildRetried, Frozen, Moved, Queued, RevertPullRequest, Unfrozen
from sandbox.github import PullView
from sandbox.server import Fault
from tests.fixtures.flowchart import DECLARED, SCENARIOS, takes, took_what_it_declares  # noqa: F401
from tests.fixtures.world import ADMIN, EMERGENCY, OTHER, REQUESTER, Train

QUICK_GIVE_UP = Backoff(deadline=timedelta(seconds=1), base=timedelta(milliseconds=10), cap=timedelta(milliseconds=50))
S, E = State, Event


@takes((S.QUEUED, E.START), (S.MERGING, E.MERGED), (S.BUILDING, E.BUILD_GREEN), (S.CANARYING, E.CANARIES_UP),
       (S.CANARY_CHECK, E.PROCEED), (S.ROLLING_OUT, E.ROLLOUT_DONE), (S.AWAITING_CONFIRMATION, E.DONE))
async def test_a_deploy_goes_from_the_queue_to_completed(train: Train) -> None:
    before = train.snapshot()
    pr = train.new_pr("Add a banner")
    deploy = await train.request(pr)
    assert deploy.state == "queued"

    at_gate = await train.reaches(deploy.id, "canary_check")
    assert at_gate.merge_sha and at_gate.build_url
    image = train.sandbox.image(at_gate.merge_sha)
    assert train.sandbox.aws.running_images("production", "app-web-canary") == [image]
    assert train.sandbox.aws.running_images("production", "app-worker-canary") == [image]

    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)
    assert set(train.sandbox.aws.running_images("production", "app-web")) == {image}
    assert set(train.sandbox.aws.running_images("production", "app-worker")) == {image}
    assert await train.canary_gone("app-web-canary")
    train.assert_configured_as(before)  # put back once the rollout was done

    await train.press(deploy.id, "Done")
    done = await train.reaches(deploy.id, "completed")
    assert done.finished_at is not None
    first, second = train.notifier.of(deploy.id)[:2]
    assert isinstance(first, Queued)
    assert isinstance(second, Moved) and second.event is Event.START


@takes((S.QUEUED, E.CANCEL), (S.CANARY_CHECK, E.ROLL_BACK), (S.ROLLING_BACK, E.UNDONE))
async def test_the_queue_is_fifo_jumps_go_behind_the_deploy_in_flight_and_cancel_leaves(
        make_train: Callable[..., Train]) -> None:
    train = make_train()
    first = await train.request(train.new_pr("First"))
    await train.reaches(first.id, "canary_check")
    second = await train.request(train.new_pr("Second"), OTHER)
    third = await train.request(train.new_pr("Third"))
    jump_a = await train.request(train.new_pr("Hotfix A"), EMERGENCY, jump_queue=True, reason="outage")
    jump_b = await train.request(train.new_pr("Hotfix B"), EMERGENCY, jump_queue=True, reason="outage")

    queue = await train.flows.queue()
    order = [(entry.deploy.id, entry.position) for entry in queue.entries]
    assert order == [(first.id, 0), (jump_a.id, 1), (jump_b.id, 2), (second.id, 3), (third.id, 4)]
    entry = queue.entry(third.id)
    assert entry is not None and entry.eta.total_seconds() > 0

    await train.flows.cancel(REQUESTER, third.id)
    assert (await train.deploy(third.id)).state == "cancelled"
    assert [e.deploy.id for e in (await train.flows.queue()).entries] == [first.id, jump_a.id, jump_b.id, second.id]

    await train.press(first.id, "Roll back")
    await train.reaches(first.id, "rolled_back", within=30)
    # The next deploy starts as soon as the one in flight ends: the first jump.
    await train.reaches(jump_a.id, "merging", "building", "canarying", "canary_check")
    assert (await train.deploy(jump_b.id)).state == "queued"


async def test_a_frozen_train_queues_but_does_not_start(train: Train) -> None:
    await train.flows.freeze(ADMIN, "release testing")
    deploy = await train.request(train.new_pr("Waits"))
    entry = (await train.flows.queue()).entry(deploy.id)
    assert entry is not None and (entry.position, entry.eta) == (1, None)  # next, but no ETA holds until unfrozen
    await train.engine.tick()
    assert (await train.deploy(deploy.id)).state == "queued"
    await train.flows.unfreeze(ADMIN)
    await train.reaches(deploy.id, "merging", "building", "canarying", "canary_check")
    await train.notifier.told(Unfrozen, by=ADMIN)
    assert [type(n) for n in train.notifier.notices if isinstance(n, Frozen | Unfrozen)] == [Frozen, Unfrozen]


@takes((S.MERGING, E.MERGE_REFUSED))
async def test_a_pr_that_no_longer_merges_fails_and_the_train_moves_on(train: Train) -> None:
    conflicting = train.new_pr("Edit main", {"app/main.py": "print('from the PR')\n"})
    next_one = train.new_pr("Unrelated")
    await train.flows.freeze(ADMIN, "hold the queue while master moves")  # a conflict is refused on request
    doomed = await train.request(conflicting)
    waiting = await train.request(next_one)
    train.sandbox.github.push({"app/main.py": "print('someone else')\n"}, message="Hotfix on master")
    await train.flows.unfreeze(ADMIN)

    failed = await train.reaches(doomed.id, "failed")
    assert "conflict" in (failed.outcome_reason or "")
    assert failed.merge_sha is None
    await train.reaches(waiting.id, "building", "canarying", "canary_check")


@takes((S.BUILDING, E.BUILD_RED), (S.BUILD_FAILED, E.RETRY_BUILD), (S.AWAITING_CONFIRMATION, E.CONFIRM_TIMEOUT))
async def test_a_red_build_is_retried_through_the_api_and_completes_on_the_confirm_timeout(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"confirm_timeout": "1s"})
    train.sandbox.jenkins.script_next("app-master", ["FAILURE", "SUCCESS"])
    deploy = await train.request(train.new_pr("Flaky test"))

    failed = await train.reaches(deploy.id, "build_failed")
    assert "ended FAILURE" in (failed.outcome_reason or "")
    await train.notifier.told(Moved, deploy_id=deploy.id, event=Event.BUILD_RED)

    await train.press(deploy.id, "Retry build")
    retried = await train.reaches(deploy.id, "canary_check")
    assert train.sandbox.jenkins.build_count("app-master", retried.merge_sha) == 2
    assert retried.build_number != failed.build_number

    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "completed", within=30)


@takes((S.BUILDING, E.BUILD_FLAKED), (S.BUILDING, E.BUILD_GREEN))
async def test_a_red_build_is_started_again_by_itself_while_build_retries_allow(
        make_train: Callable[..., Train]) -> None:
    train = make_train(jenkins={"build_retries": 1})
    train.sandbox.jenkins.script_next("app-master", ["FAILURE", "SUCCESS"])  # red once, then green
    deploy = await train.request(train.new_pr("Flaky test"))

    retried = await train.notifier.told(BuildRetried, deploy_id=deploy.id)
    green = await train.reaches(deploy.id, "canary_check")  # nobody pressed Retry build
    assert not retried.ahead and green.build_number != retried.number and green.build_attempts == 1
    assert train.sandbox.jenkins.build_count("app-master", green.merge_sha) == 2


@takes((S.BUILD_FAILED, E.ROLL_BACK))
async def test_rolling_back_a_red_build_reverts_the_merge(train: Train) -> None:
    before = train.snapshot()
    train.sandbox.jenkins.script_next("app-master", ["FAILURE"])
    deploy = await train.request(train.new_pr("Broken"))
    await train.reaches(deploy.id, "build_failed")

    await train.press(deploy.id, "Roll back")
    rolled_back = await train.reaches(deploy.id, "rolled_back")
    assert rolled_back.revert_status == "reverted" and rolled_back.revert_sha
    await train.assert_restored(before)


@takes((S.BUILDING, E.BUILD_TIMEOUT))
async def test_a_build_that_never_finishes_times_out(make_train: Callable[..., Train]) -> None:
    train = make_train(jenkins={"build_timeout": "1s"})
    train.sandbox.jenkins.script_next("app-master", ["HANG"])
    deploy = await train.request(train.new_pr("Slow"))
    failed = await train.reaches(deploy.id, "build_failed")
    assert "within 1s" in (failed.outcome_reason or "")


@takes((S.BUILDING, E.IMAGE_PRESENT), (S.CANARY_CHECK, E.ROLL_BACK))
async def test_skip_build_goes_on_once_the_image_exists_and_rolling_back_at_the_gate_restores(
        train: Train) -> None:
    before = train.snapshot()
    train.sandbox.jenkins.script_next("app-master", ["HANG"])  # still pushes its image
    deploy = await train.request(train.new_pr("Emergency"), EMERGENCY, skip_build=True, reason="site down")
    at_gate = await train.reaches(deploy.id, "canary_check")
    assert at_gate.emergency_reason == "site down"

    await train.press(deploy.id, "Roll back", EMERGENCY)
    await train.reaches(deploy.id, "rolled_back")
    await train.assert_restored(before)


@takes((S.CANARYING, E.CANARY_FAILED))
async def test_a_canary_that_cannot_start_rolls_back_on_its_own(train: Train) -> None:
    before = train.snapshot()
    train.sandbox.jenkins.script_next("app-master", ["SUCCESS"], push=False)  # green, but no image
    deploy = await train.request(train.new_pr("No image"))
    rolled_back = await train.reaches(deploy.id, "rolled_back", within=30)
    assert "canary failed to start" in (rolled_back.outcome_reason or "")
    assert rolled_back.rollback_from == "canarying"
    await train.assert_restored(before)


@takes((S.ROLLING_OUT, E.ROLLOUT_FAILED))
async def test_a_rollout_that_trips_the_circuit_breaker_rolls_back_on_its_own(train: Train) -> None:
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Crashes in production"))
    at_gate = await train.reaches(deploy.id, "canary_check")
    train.sandbox.aws.unhealthy_images.add(train.sandbox.image(at_gate.merge_sha))

    await train.press(deploy.id, "Proceed")
    rolled_back = await train.reaches(deploy.id, "rolled_back", within=40)
    assert "rollout failed" in (rolled_back.outcome_reason or "")
    assert "circuit breaker" in (rolled_back.outcome_reason or "")
    await train.assert_restored(before)


@takes((S.AWAITING_CONFIRMATION, E.ROLL_BACK))
async def test_rolling_back_after_the_rollout_restores_every_service(train: Train) -> None:
    before = train.snapshot()
    train.sandbox.github.push({"docs/other.md": "someone else's work\n"}, message="Docs")
    deploy = await train.request(train.new_pr("Regrets"))
    await train.reaches(deploy.id, "canary_check")
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)

    await train.press(deploy.id, "Roll back", ADMIN)
    await train.reaches(deploy.id, "rolled_back", within=30)
    before["tree"] = train.sandbox.github.tree_of("master")  # the docs commit stays
    await train.assert_restored(before)
    assert "docs/other.md" in train.sandbox.github.files_at("master")


# -- outside systems failing past their retries ------------------------------------------------

def _github_merge_fails(train: Train) -> Fault:
    return train.sandbox.github.faults.add(Fault(match=r"^PUT .*/merge$", status=502))


def _jenkins_fails(train: Train) -> Fault:
    return train.sandbox.jenkins.faults.add(Fault(match=".*", status=503))


def _task_definitions_fail(train: Train) -> Fault:
    return train.sandbox.aws.faults.add(Fault(match="ecs:RegisterTaskDefinition", status=500,
                                              body='{"__type": "ServerException", "message": "down"}'))


def _service_updates_fail(train: Train) -> Fault:
    return train.sandbox.aws.faults.add(Fault(match="ecs:UpdateService", status=500,
                                              body='{"__type": "ServerException", "message": "down"}'))


def _github_fails(train: Train) -> Fault:
    return train.sandbox.github.faults.add(Fault(match=".*", status=502))


def _attention_in(state: State) -> pytest.MarkDecorator:
    return takes((state, E.RETRIES_EXHAUSTED), (state, E.RETRY), (state, E.ROLL_BACK))


@pytest.mark.parametrize(("state", "system", "break_it", "before_gate"), [
    pytest.param("merging", "github", _github_merge_fails, True, marks=_attention_in(S.MERGING)),
    pytest.param("building", "jenkins", _jenkins_fails, True, marks=_attention_in(S.BUILDING)),
    pytest.param("canarying", "aws", _task_definitions_fail, True, marks=_attention_in(S.CANARYING)),
    pytest.param("rolling_out", "aws", _service_updates_fail, False, marks=_attention_in(S.ROLLING_OUT)),
])
async def test_a_step_whose_system_keeps_failing_needs_attention_then_can_be_retried_or_rolled_back(
        make_train: Callable[..., Train], state: str, system: str, break_it: Callable[[Train], Fault],
        before_gate: bool) -> None:
    train = make_train(backoff=QUICK_GIVE_UP)
    before = train.snapshot()
    deploy = await train.request(train.new_pr(f"Breaks in {state}"))
    if before_gate:
        break_it(train)
    else:
        await train.reaches(deploy.id, "canary_check")
        break_it(train)
        await train.press(deploy.id, "Proceed")

    stuck = await train.needing_attention(deploy.id)
    assert stuck.state == state
    assert system in (stuck.attention or "").lower()
    await train.notifier.told(Moved, deploy_id=deploy.id, event=Event.RETRIES_EXHAUSTED)

    await train.press(deploy.id, "Retry")  # still broken: back to needing attention
    await train.needing_attention(deploy.id)
    train.sandbox.github.faults.clear()
    train.sandbox.jenkins.faults.clear()
    train.sandbox.aws.faults.clear()

    await train.press(deploy.id, "Roll back")
    await train.reaches(deploy.id, "rolled_back", within=40)
    await train.assert_restored(before)


# Answers of a shape the facades do not know: the step raises an error nothing expected.
ODD_ANSWERS = {
    "merging": ("github", r"^PUT .*/merge$", '{"merged": true}'),
    "building": ("jenkins", r"^GET /job/app-master/api/json", '{"builds": [{"number": 1, "actions": 5}]}'),
    "canarying": ("aws", "ecs:DescribeTaskDefinition", '{"weird": true}'),
    "rolling_out": ("aws", "ecs:DescribeServices", '{"services": [{"serviceName": "app-web", "status": "ACTIVE"}]}'),
    "rolling_back": ("aws", "ecs:DescribeServices",
                     '{"services": [{"serviceName": "app-web-canary", "status": "ACTIVE"}, '
                     '{"serviceName": "app-worker-canary", "status": "ACTIVE"}]}'),
}


def _unexpected_in(state: State) -> pytest.MarkDecorator:
    return takes((state, E.STEP_FAILED), (state, E.RETRY))


@pytest.mark.parametrize("state", [pytest.param(s, marks=_unexpected_in(State(s))) for s in ODD_ANSWERS])
async def test_a_step_that_fails_unexpectedly_needs_attention_once_and_retry_runs_it_again(
        make_train: Callable[..., Train], state: str, caplog: pytest.LogCaptureFixture) -> None:
    train = make_train()
    before = train.snapshot()
    system, match, body = ODD_ANSWERS[state]
    odd = Fault(match=match, status=200, body=body, headers={"Content-Type": "application/json"}, remaining=1)
    deploy = await train.request(train.new_pr(f"Odd answer in {state}"))
    if state in ("rolling_out", "rolling_back"):
        await train.reaches(deploy.id, "canary_check")
        getattr(train.sandbox, system).faults.add(odd)
        await train.press(deploy.id, "Proceed" if state == "rolling_out" else "Roll back")
    else:
        getattr(train.sandbox, system).faults.add(odd)

    stuck = await train.needing_attention(deploy.id)
    assert stuck.state == state and "failed unexpectedly" in (stuck.attention or ""), stuck.attention
    await train.notifier.told(Moved, deploy_id=deploy.id, event=Event.STEP_FAILED)
    await train.engine.tick()  # it waits for a person: no step runs, nothing is logged again
    tracebacks = [r for r in caplog.records if r.exc_info and "failed unexpectedly" in r.getMessage()]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]

    await train.press(deploy.id, "Retry")
    if state == "rolling_back":
        await train.reaches(deploy.id, "rolled_back", within=40)
        await train.assert_restored(before)
        return
    await train.reaches(deploy.id, "canary_check", "awaiting_confirmation", within=40)
    if (await train.deploy(deploy.id)).state == "canary_check":
        await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=40)


@takes((S.ROLLING_BACK, E.RETRIES_EXHAUSTED), (S.ROLLING_BACK, E.RETRY))
async def test_a_rollback_that_cannot_reach_github_needs_attention_and_finishes_on_retry(
        make_train: Callable[..., Train]) -> None:
    train = make_train(backoff=QUICK_GIVE_UP)
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Revert me"))
    await train.reaches(deploy.id, "canary_check")
    _github_fails(train)
    await train.press(deploy.id, "Roll back")

    stuck = await train.needing_attention(deploy.id)
    assert stuck.state == "rolling_back" and "github" in (stuck.attention or "").lower()
    train.sandbox.github.faults.clear()
    await train.press(deploy.id, "Retry")
    await train.reaches(deploy.id, "rolled_back")
    await train.assert_restored(before)


def _revert_pull_request(train: Train) -> PullView:
    [revert] = [p for p in train.sandbox.github.pull_requests() if p.branch.startswith("fatcontroller/revert-")]
    return revert


@takes((S.CANARY_CHECK, E.ROLL_BACK), (S.ROLLING_BACK, E.UNDONE))
async def test_a_base_branch_that_only_takes_pull_requests_gets_the_revert_as_one_merged_by_the_bot(
        train: Train) -> None:
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Protected"))
    await train.reaches(deploy.id, "canary_check")
    train.sandbox.github.protect_branch(required_pull_request_reviews=True)
    await train.press(deploy.id, "Roll back")

    done = await train.reaches(deploy.id, "rolled_back", within=40)
    await train.assert_restored(before)
    revert = _revert_pull_request(train)
    assert revert.state == "closed" and revert.merged
    assert done.revert_status == "reverted" and done.revert_pull_request and done.revert_pull_request.endswith(
        f"/pull/{revert.number}")
    told = await train.notifier.told(RevertPullRequest, deploy_id=deploy.id)
    assert told.merged


@takes((S.CANARY_CHECK, E.ROLL_BACK), (S.ROLLING_BACK, E.UNDO_STUCK), (S.ROLLING_BACK, E.MARK_ROLLED_BACK))
async def test_a_revert_pull_request_the_bot_may_not_merge_needs_people_and_an_admin_can_end_the_rollback(
        train: Train) -> None:
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Needs a review"))
    await train.reaches(deploy.id, "canary_check")
    train.sandbox.github.protect_branch(required_pull_request_reviews=True, required_approving_review_count=1)
    await train.press(deploy.id, "Roll back")

    stuck = await train.needing_attention(deploy.id, within=40)
    revert = _revert_pull_request(train)
    assert stuck.state == "rolling_back" and revert.state == "open"
    assert stuck.revert_status == "pull_request" and stuck.revert_pull_request
    assert "approving review" in (stuck.attention or "") and f"#{revert.number}" in (stuck.attention or "")
    told = await train.notifier.told(RevertPullRequest, deploy_id=deploy.id)
    assert not told.merged and told.url == stuck.revert_pull_request
    # The services are back already: only the revert is left to people.
    assert train.snapshot()["services"] == before["services"]

    with pytest.raises(Refused) as refused:
        await train.press(deploy.id, "Mark rolled back by hand")  # the requester is no admin
    assert refused.value.why is Why.ADMINS_ONLY
    await train.press(deploy.id, "Mark rolled back by hand", user=ADMIN)
    done = await train.reaches(deploy.id, "rolled_back")
    assert not done.needs_attention
    detail = await train.flows.detail(deploy.id)
    assert detail is not None and all(step.done_at is not None for step in detail.undo)
    assert any(e.action == "undone_by_hand:merge" and e.actor == ADMIN for e in detail.audit)


@takes((S.CANARY_CHECK, E.ROLL_BACK), (S.ROLLING_BACK, E.UNDO_STUCK), (S.ROLLING_BACK, E.RETRY),
       (S.ROLLING_BACK, E.UNDONE))
async def test_a_revert_pull_request_merged_by_people_ends_the_rollback_on_retry(train: Train) -> None:
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Reviewed revert"))
    await train.reaches(deploy.id, "canary_check")
    train.sandbox.github.protect_branch(required_pull_request_reviews=True, required_approving_review_count=1)
    await train.press(deploy.id, "Roll back")
    await train.needing_attention(deploy.id, within=40)

    train.sandbox.github.approve_pr(_revert_pull_request(train).number)
    await train.press(deploy.id, "Retry")  # the bot may merge it now
    done = await train.reaches(deploy.id, "rolled_back", within=40)
    await train.assert_restored(before)
    assert done.revert_status == "reverted"


def test_every_edge_of_the_table_is_taken_by_a_scenario() -> None:
    for module in SCENARIOS:
        importlib.import_module(module)
    table = {(t.source.value, t.event.value, t.target.value) for t in TRANSITIONS}
    missing = sorted(table - DECLARED)
    assert not missing, f"edges no scenario takes: {missing}"
