"""The deploy flowchart, edge by edge, on the emulators: every transition of the table is taken here.

Each scenario drives real deploys through the engine (merges in a real git repository, Jenkins
builds, ECS deployments that move) and checks where they end, why, and what the outside world
looks like afterwards. The last test checks that together they took every edge of the table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from flows.deploy.machine import TRANSITIONS
from flows.notify import Kind
from integrations.outside import RetryPolicy
from sandbox.server import Fault
from tests.fixtures.storage import Database
from tests.fixtures.world import ADMIN, EMERGENCY, OTHER, REQUESTER, Train

EDGES_SEEN: set[tuple[str, str, str]] = set()
QUICK_GIVE_UP = RetryPolicy(deadline=1.0, base_delay=0.01, max_delay=0.05, call_timeout=5.0)


@pytest.fixture(autouse=True)
async def _collect_edges(sqlite_database: Database) -> AsyncIterator[None]:
    """After each scenario, remember which edges its deploys took (read from the audit log)."""
    yield
    EDGES_SEEN.update(await Train.audit_edges_of(sqlite_database))


async def test_a_deploy_goes_from_the_queue_to_completed(train: Train) -> None:
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

    await train.press(deploy.id, "Done")
    done = await train.reaches(deploy.id, "completed")
    assert done.finished_at is not None
    assert [n.kind for n in train.notifier.notices if n.deploy_id == deploy.id][:2] == [Kind.QUEUED,
                                                                                      Kind.YOUR_TURN]


async def test_the_queue_is_fifo_jumps_go_behind_the_deploy_in_flight_and_cancel_leaves(
        make_train: Callable[..., Train]) -> None:
    train = make_train()
    first = await train.request(train.new_pr("First"))
    await train.reaches(first.id, "canary_check")
    second = await train.request(train.new_pr("Second"), OTHER)
    third = await train.request(train.new_pr("Third"))
    jump_a = await train.request(train.new_pr("Hotfix A"), EMERGENCY, jump_queue=True, reason="outage")
    jump_b = await train.request(train.new_pr("Hotfix B"), EMERGENCY, jump_queue=True, reason="outage")

    order = [(entry.deploy.id, entry.position) for entry in await train.flows.queue()]
    assert order == [(first.id, 0), (jump_a.id, 1), (jump_b.id, 2), (second.id, 3), (third.id, 4)]
    entry = await train.flows.position(third.id)
    assert entry is not None and entry.eta.total_seconds() > 0

    await train.flows.cancel(REQUESTER, third.id)
    assert (await train.deploy(third.id)).state == "cancelled"
    assert [e.deploy.id for e in await train.flows.queue()] == [first.id, jump_a.id, jump_b.id, second.id]

    await train.press(first.id, "Roll back")
    await train.reaches(first.id, "rolled_back", within=30)
    # The next deploy starts as soon as the one in flight ends: the first jump.
    await train.reaches(jump_a.id, "merging", "building", "canarying", "canary_check")
    assert (await train.deploy(jump_b.id)).state == "queued"


async def test_a_frozen_train_queues_but_does_not_start(train: Train) -> None:
    await train.flows.freeze(ADMIN, "release testing")
    deploy = await train.request(train.new_pr("Waits"))
    await train.engine.tick()
    assert (await train.deploy(deploy.id)).state == "queued"
    await train.flows.unfreeze(ADMIN)
    await train.reaches(deploy.id, "merging", "building", "canarying", "canary_check")
    assert [n.kind for n in train.notifier.notices if n.kind in (Kind.FROZEN, Kind.UNFROZEN)] == [
        Kind.FROZEN, Kind.UNFROZEN]


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


async def test_a_red_build_is_retried_through_the_api_and_completes_on_the_confirm_timeout(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"confirm_timeout": "1s"})
    train.sandbox.jenkins.script_next("app-master", ["FAILURE", "SUCCESS"])
    deploy = await train.request(train.new_pr("Flaky test"))

    failed = await train.reaches(deploy.id, "build_failed")
    assert "failure" in (failed.outcome_reason or "")
    assert Kind.BUILD_FAILED in train.notifier.kinds(deploy.id)

    await train.press(deploy.id, "Retry build")
    retried = await train.reaches(deploy.id, "canary_check")
    assert train.sandbox.jenkins.build_count("app-master", retried.merge_sha) == 2
    assert retried.build_number != failed.build_number

    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "completed", within=30)


async def test_rolling_back_a_red_build_reverts_the_merge(train: Train) -> None:
    before = train.snapshot()
    train.sandbox.jenkins.script_next("app-master", ["FAILURE"])
    deploy = await train.request(train.new_pr("Broken"))
    await train.reaches(deploy.id, "build_failed")

    await train.press(deploy.id, "Roll back")
    rolled_back = await train.reaches(deploy.id, "rolled_back")
    assert rolled_back.revert_status == "reverted" and rolled_back.revert_sha
    await train.assert_restored(before)


async def test_a_build_that_never_finishes_times_out(make_train: Callable[..., Train]) -> None:
    train = make_train(jenkins={"build_timeout": "1s"})
    train.sandbox.jenkins.script_next("app-master", ["HANG"])
    deploy = await train.request(train.new_pr("Slow"))
    failed = await train.reaches(deploy.id, "build_failed")
    assert "did not finish within" in (failed.outcome_reason or "")


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


async def test_a_canary_that_cannot_start_rolls_back_on_its_own(train: Train) -> None:
    before = train.snapshot()
    train.sandbox.jenkins.script_next("app-master", ["SUCCESS"], push=False)  # green, but no image
    deploy = await train.request(train.new_pr("No image"))
    rolled_back = await train.reaches(deploy.id, "rolled_back", within=30)
    assert "canary failed to start" in (rolled_back.outcome_reason or "")
    assert rolled_back.rollback_from == "canarying"
    await train.assert_restored(before)


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


@pytest.mark.parametrize(("state", "system", "break_it", "before_gate"), [
    ("merging", "github", _github_merge_fails, True),
    ("building", "jenkins", _jenkins_fails, True),
    ("canarying", "aws", _task_definitions_fail, True),
    ("rolling_out", "aws", _service_updates_fail, False),
])
async def test_a_step_whose_system_keeps_failing_needs_attention_then_can_be_retried_or_rolled_back(
        make_train: Callable[..., Train], state: str, system: str, break_it: Callable[[Train], Fault],
        before_gate: bool) -> None:
    train = make_train(policy=QUICK_GIVE_UP)
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
    assert Kind.NEEDS_ATTENTION in train.notifier.kinds(deploy.id)

    await train.press(deploy.id, "Retry")  # still broken: back to needing attention
    await train.needing_attention(deploy.id)
    train.sandbox.github.faults.clear()
    train.sandbox.jenkins.faults.clear()
    train.sandbox.aws.faults.clear()

    await train.press(deploy.id, "Roll back")
    await train.reaches(deploy.id, "rolled_back", within=40)
    await train.assert_restored(before)


async def test_a_rollback_that_cannot_reach_github_needs_attention_and_finishes_on_retry(
        make_train: Callable[..., Train]) -> None:
    train = make_train(policy=QUICK_GIVE_UP)
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


def test_every_edge_of_the_table_is_taken_by_a_scenario() -> None:
    table = {(t.source.value, t.event.value, t.target.value) for t in TRANSITIONS}
    missing = sorted(table - EDGES_SEEN)
    assert not missing, f"edges no scenario took: {missing}"
    assert EDGES_SEEN <= table, f"transitions outside the table: {sorted(EDGES_SEEN - table)}"
