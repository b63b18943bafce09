"""The ECS facade: boto3 over HTTP against the AWS emulator, whose deployments move like ECS's."""

from __future__ import annotations

import copy
import logging
from typing import Any

import boto3
import pytest

from integrations.ecs import CANARY_TAG, NO_ALARMS, Ecs, Progress, ecr_region, family_of, max_percent, revision_of
from integrations.outside import NotFound, PermanentError, TransientError
from sandbox.aws import AwsEmulator
from tests.fixtures.aws import (
    CLUSTER,
    NETWORK,
    NEW_SHA,
    OLD_SHA,
    SIDECAR_IMAGE,
    WEB,
    WEB_TARGET_GROUP,
    WORKER,
    image,
)
from tests.fixtures.jenkins import eventually

BAD_SHA = "badbadbadbadbadbadbadbadbadbadbadbadbad0"
UNPUSHED_SHA = "0123456789abcdef0123456789abcdef01234567"


def task_definition_of(emulator: AwsEmulator, service: str) -> str:
    return emulator.service(CLUSTER, service)["taskDefinition"]


def described(emulator: AwsEmulator, arn: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The task definition as a plain boto3 client sees it, with its tags."""
    client = boto3.client("ecs", endpoint_url=emulator.url, region_name="eu-west-1")
    answer = client.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return answer["taskDefinition"], answer["tags"]


async def finished(ecs: Ecs, service: str, task_definition: str, *, within: float = 10.0,
                   seen: list[dict] | None = None, emulator: AwsEmulator | None = None) -> Progress:
    """Poll the rollout until it is done or failed, recording the emulator's view at each poll."""

    async def probe() -> Progress | None:
        if seen is not None and emulator is not None:
            seen.append(emulator.service(CLUSTER, service))
        progress = await ecs.rollout_progress(CLUSTER, service, task_definition)
        return progress if progress.done or progress.failed else None

    return await eventually(probe, within=within, what=f"rollout of {service}")


async def canary_settled(ecs: Ecs, canary: str, task_definition: str, count: int = 1) -> Progress:
    async def probe() -> Progress | None:
        progress = await ecs.canary_ready(CLUSTER, canary, task_definition, count)
        return progress if progress.done or progress.failed else None

    return await eventually(probe, within=10.0, what=f"canary {canary}")


# -- task definitions ------------------------------------------------------------------------------
async def test_register_with_image_copies_everything_but_the_image(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    old_arn = task_definition_of(aws_emulator, WEB)

    new_arn = await ecs.register_with_image(old_arn, "app", image(NEW_SHA))

    assert new_arn == old_arn.rsplit(":", 1)[0] + ":2"
    old, old_tags = described(aws_emulator, old_arn)
    new, new_tags = described(aws_emulator, new_arn)
    expected = copy.deepcopy(old)
    expected["containerDefinitions"][0]["image"] = image(NEW_SHA)
    for key in ("taskDefinitionArn", "revision", "registeredAt"):
        del expected[key], new[key]
    assert new == expected
    assert new_tags == old_tags == [{"key": "team", "value": "checkout"}]
    # spelled out, the parts a canary must not lose
    sidecar = new["containerDefinitions"][1]
    assert sidecar["image"] == SIDECAR_IMAGE and sidecar["secrets"][0]["name"] == "DD_API_KEY"
    assert new["containerDefinitions"][0]["secrets"] == old["containerDefinitions"][0]["secrets"]
    assert (new["executionRoleArn"], new["taskRoleArn"]) == (old["executionRoleArn"], old["taskRoleArn"])
    assert (new["cpu"], new["memory"], new["networkMode"]) == ("512", "1024", "awsvpc")
    assert new["ephemeralStorage"] == {"sizeInGiB": 30} and new["volumes"] == [{"name": "tmp"}]


async def test_image_of_names_a_containers_image(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    arn = task_definition_of(aws_emulator, WEB)

    assert await ecs.image_of(arn, "app") == image(OLD_SHA)
    assert await ecs.image_of(arn, "datadog-agent") == SIDECAR_IMAGE


async def test_a_container_missing_from_the_task_definition_is_not_found(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    arn = task_definition_of(aws_emulator, WEB)

    with pytest.raises(NotFound, match="container web is not in task definition"):
        await ecs.register_with_image(arn, "web", image(NEW_SHA))
    with pytest.raises(PermanentError, match="ClientException"):
        await ecs.image_of("no-such-family:7", "app")


# -- canaries --------------------------------------------------------------------------------------
async def test_canary_copies_placement_and_load_balancer_and_becomes_ready(aws_emulator: AwsEmulator,
                                                                         ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA))

    await ecs.create_canary(CLUSTER, WEB, "app-web-canary", new, 1)

    main, canary = aws_emulator.service(CLUSTER, WEB), aws_emulator.service(CLUSTER, "app-web-canary")
    for key in ("launchType", "platformVersion", "networkConfiguration", "loadBalancers",
                "healthCheckGracePeriodSeconds"):
        assert canary[key] == main[key], key
    assert (canary["taskDefinition"], canary["desiredCount"]) == (new, 1)
    assert {"key": "team", "value": "checkout"} in canary["tags"]
    assert {"key": CANARY_TAG, "value": WEB} in canary["tags"]
    assert canary["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}

    progress = await canary_settled(ecs, "app-web-canary", new)

    assert progress == Progress(done=True, failed=False, reason=None, running=1, desired=1, healthy=1,
                                load_balanced=True)
    elb = boto3.client("elbv2", endpoint_url=aws_emulator.url, region_name="eu-west-1")
    states = [d["TargetHealth"]["State"]
              for d in elb.describe_target_health(TargetGroupArn=WEB_TARGET_GROUP)["TargetHealthDescriptions"]]
    assert states == ["healthy"] * 5  # the canary's task takes traffic beside the four of the service
    assert aws_emulator.running_images(CLUSTER, "app-web-canary") == [image(NEW_SHA)]


async def test_canary_is_ready_only_once_its_target_is_healthy(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    aws_emulator.step_interval = None  # the test moves the clock
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA))
    await ecs.create_canary(CLUSTER, WEB, "app-web-canary", new, 1)

    seen = []
    for _ in range(3):
        aws_emulator.advance()  # started; running with its target in initial checks; healthy
        seen.append(await ecs.canary_ready(CLUSTER, "app-web-canary", new, 1))

    assert [(p.running, p.done) for p in seen] == [(0, False), (1, False), (1, True)]


async def test_canary_without_load_balancer_is_ready_when_running(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))

    await ecs.create_canary(CLUSTER, WORKER, "app-worker-canary", new, 2)

    assert (await canary_settled(ecs, "app-worker-canary", new, 2)).done
    assert aws_emulator.service(CLUSTER, "app-worker-canary")["loadBalancers"] == []


async def test_creating_a_canary_again_updates_it_instead(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))
    await ecs.create_canary(CLUSTER, WORKER, "app-worker-canary", new, 1)

    await ecs.create_canary(CLUSTER, WORKER, "app-worker-canary", new, 1)
    assert aws_emulator.calls.count("ecs:CreateService") == 1
    assert aws_emulator.calls.count("ecs:UpdateService") == 0

    await ecs.create_canary(CLUSTER, WORKER, "app-worker-canary", new, 2)
    assert aws_emulator.service(CLUSTER, "app-worker-canary")["desiredCount"] == 2
    assert aws_emulator.calls.count("ecs:CreateService") == 1


async def test_canary_that_cannot_pull_its_image_fails_with_the_reason(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    unpushed = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(UNPUSHED_SHA))

    await ecs.create_canary(CLUSTER, WORKER, "app-worker-canary", unpushed, 1)
    progress = await canary_settled(ecs, "app-worker-canary", unpushed)

    assert progress.failed and not progress.done
    assert "ECS deployment circuit breaker: tasks failed to start." in progress.reason
    assert "CannotPullContainerError" in progress.reason and UNPUSHED_SHA in progress.reason


async def test_deleting_a_canary_is_idempotent_and_frees_its_name(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA))
    await ecs.create_canary(CLUSTER, WEB, "app-web-canary", new, 1)
    await canary_settled(ecs, "app-web-canary", new)

    await ecs.delete_service(CLUSTER, "app-web-canary")
    await ecs.delete_service(CLUSTER, "app-web-canary")  # draining: nothing more to do

    assert aws_emulator.calls.count("ecs:DeleteService") == 1

    async def gone() -> bool:
        return await ecs.describe_service(CLUSTER, "app-web-canary") is None

    await eventually(gone, what="canary gone")
    await ecs.delete_service(CLUSTER, "app-web-canary")
    await ecs.delete_service(CLUSTER, "never-was-a-canary")
    assert aws_emulator.calls.count("ecs:DeleteService") == 1
    assert aws_emulator.running_images(CLUSTER, WEB) == [image(OLD_SHA)] * 4  # the service itself untouched

    await ecs.create_canary(CLUSTER, WEB, "app-web-canary", new, 1)  # the next deploy's canary
    assert (await canary_settled(ecs, "app-web-canary", new)).done


# -- rolling updates -------------------------------------------------------------------------------
async def test_rolling_update_moves_batch_by_batch_within_its_limits(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA))

    await ecs.rolling_update(CLUSTER, WEB, new, batch_percent=25)
    seen: list[dict] = []
    progress = await finished(ecs, WEB, new, seen=seen, emulator=aws_emulator)

    assert progress == Progress(done=True, failed=False, reason=None, running=4, desired=4)
    assert aws_emulator.service(CLUSTER, WEB)["deploymentConfiguration"] == {
        "maximumPercent": 125, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}}
    steps = aws_emulator.history(CLUSTER, WEB)  # every step's counts, not only the polled ones
    assert max(s["running"] + s["pending"] for s in steps) == 5  # 4 * 125%
    assert min(s["healthy"] for s in steps) == 4  # never below 100% of desired
    new_running = [d["running"] for s in steps for d in s["deployments"] if d["taskDefinition"] == new]
    assert sorted(set(new_running)) == [0, 1, 2, 3, 4]  # one task per batch
    assert any(len(s["deployments"]) == 2 for s in seen)  # the API showed the rollout in flight
    assert aws_emulator.running_images(CLUSTER, WEB) == [image(NEW_SHA)] * 4
    assert aws_emulator.running_images(CLUSTER, WEB, "datadog-agent") == [SIDECAR_IMAGE] * 4


async def test_rolling_update_of_a_small_service_still_starts_a_task_per_batch(aws_emulator: AwsEmulator,
                                                                             ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))

    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=25)  # 2 tasks at 125% would allow only 2

    assert (await finished(ecs, WORKER, new)).done
    steps = aws_emulator.history(CLUSTER, WORKER)
    assert max(s["running"] + s["pending"] for s in steps) == 3
    assert min(s["healthy"] for s in steps) == 2


async def test_the_rollouts_of_several_services_are_read_with_one_call(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    moves = {name: await ecs.register_with_image(task_definition_of(aws_emulator, name), "app", image(NEW_SHA))
             for name in (WEB, WORKER)}
    for name, task_definition in moves.items():
        await ecs.rolling_update(CLUSTER, name, task_definition, batch_percent=50)
    before = len(aws_emulator.calls)

    progress = await ecs.rollouts_progress(CLUSTER, moves)

    assert aws_emulator.calls[before:] == ["ecs:DescribeServices"]
    assert set(progress) == {WEB, WORKER} and not any(p.failed for p in progress.values())

    async def both_done() -> dict[str, Progress] | None:
        polled = await ecs.rollouts_progress(CLUSTER, moves)
        return polled if all(p.done for p in polled.values()) else None

    done = await eventually(both_done, within=10.0, what="both rollouts")
    assert {name: (p.running, p.desired) for name, p in done.items()} == {WEB: (4, 4), WORKER: (2, 2)}
    with pytest.raises(NotFound):
        await ecs.rollouts_progress(CLUSTER, {**moves, "app-missing": moves[WEB]})


def test_maximum_percent_leaves_room_for_one_more_task() -> None:
    assert [max_percent(desired, 25) for desired in (0, 1, 2, 3, 4, 10)] == [125, 200, 150, 134, 125, 125]
    assert max_percent(4, 50) == 150


async def test_rolling_update_again_on_the_same_task_definition_does_nothing(aws_emulator: AwsEmulator,
                                                                           ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))
    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=25)

    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=25)  # resumed after a crash
    assert aws_emulator.calls.count("ecs:UpdateService") == 1
    assert len(aws_emulator.service(CLUSTER, WORKER)["deployments"]) == 2


async def test_circuit_breaker_fails_the_rollout_and_restore_brings_back_the_exact_arn(aws_emulator: AwsEmulator,
                                                                                     ecs: Ecs) -> None:
    aws_emulator.unhealthy_images.add(aws_emulator.push_image("app", BAD_SHA))
    old = task_definition_of(aws_emulator, WEB)
    bad = await ecs.register_with_image(old, "app", image(BAD_SHA))

    await ecs.rolling_update(CLUSTER, WEB, bad, batch_percent=25)
    progress = await finished(ecs, WEB, bad)

    assert progress.failed and not progress.done
    assert "ECS deployment circuit breaker: tasks failed to start." in progress.reason
    assert "Essential container in task exited" in progress.reason
    assert aws_emulator.running_images(CLUSTER, WEB) == [image(OLD_SHA)] * 4  # nothing healthy was stopped

    await ecs.restore(CLUSTER, WEB, old)

    assert (await finished(ecs, WEB, old)).done
    assert aws_emulator.service(CLUSTER, WEB)["taskDefinition"] == old
    updates = aws_emulator.calls.count("ecs:UpdateService")
    await ecs.restore(CLUSTER, WEB, old)
    assert aws_emulator.calls.count("ecs:UpdateService") == updates


async def test_progress_fails_when_the_service_moved_to_another_task_definition(aws_emulator: AwsEmulator,
                                                                              ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WORKER)
    new = await ecs.register_with_image(old, "app", image(NEW_SHA))
    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=25)

    await ecs.restore(CLUSTER, WORKER, old)  # someone else's hand on the service
    progress = await ecs.rollout_progress(CLUSTER, WORKER, new)

    assert progress.failed and f"no longer on {new}" in progress.reason


async def test_scale_and_point_service_move_a_preview_environment(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))

    await ecs.scale(CLUSTER, WORKER, 0)
    await eventually(lambda: _running(ecs, WORKER, 0), what="scaled to zero")
    await ecs.point_service(CLUSTER, WORKER, new, 1)

    assert await finished(ecs, WORKER, new) == Progress(done=True, failed=False, reason=None, running=1, desired=1)
    assert aws_emulator.running_images(CLUSTER, WORKER) == [image(NEW_SHA)]


async def _running(ecs: Ecs, service: str, count: int) -> bool:
    state = await ecs.describe_service(CLUSTER, service)
    return state is not None and state.running == count and state.pending == 0


# -- reading services ------------------------------------------------------------------------------
async def test_describe_service_reports_deployments_and_events(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    state = await ecs.describe_service(CLUSTER, WEB)

    assert state is not None
    assert (state.status, state.desired, state.running, state.launch_type) == ("ACTIVE", 4, 4, "FARGATE")
    assert state.primary is not None and state.primary.rollout_state == "COMPLETED"
    assert state.primary.task_definition == state.task_definition
    assert state.load_balancers[0]["targetGroupArn"] == WEB_TARGET_GROUP
    assert state.events[0] == "(service app-web) has reached a steady state."


async def test_describe_services_asks_ten_at_a_time(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    worker = task_definition_of(aws_emulator, WORKER)
    names = [f"pea-{n}-worker" for n in range(11)]
    for name in names:
        aws_emulator.create_service(CLUSTER, name, worker, desired=1)

    states = await ecs.describe_services(CLUSTER, [*names, "missing"])

    assert [states[name].name for name in names] == names
    assert states["missing"] is None
    assert aws_emulator.calls.count("ecs:DescribeServices") == 2


async def test_missing_services_are_not_found(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    assert await ecs.describe_service(CLUSTER, "app-nope") is None
    with pytest.raises(NotFound, match="ServiceNotFoundException"):
        await ecs.scale(CLUSTER, "app-nope", 2)
    with pytest.raises(NotFound, match="app-nope not found"):
        await ecs.rolling_update(CLUSTER, "app-nope", task_definition_of(aws_emulator, WEB), 25)
    with pytest.raises(NotFound, match="ClusterNotFoundException"):
        await ecs.describe_service("staging", WEB)


# -- images ----------------------------------------------------------------------------------------
async def test_image_exists_only_once_pushed(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    assert await ecs.image_exists(image(NEW_SHA))
    assert not await ecs.image_exists(image(UNPUSHED_SHA))
    assert not await ecs.image_exists("123456789012.dkr.ecr.eu-west-1.amazonaws.com/other:latest")

    aws_emulator.push_image("app", UNPUSHED_SHA)  # CI built it meanwhile
    assert await ecs.image_exists(image(UNPUSHED_SHA))

    with pytest.raises(PermanentError, match="not an ECR image"):
        await ecs.image_exists("nginx:latest")


# -- failures --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["throttled", "500 not even AWS-shaped", "dropped"])
async def test_throttling_server_errors_and_dropped_connections_are_transient_after_one_attempt(
        aws_emulator: AwsEmulator, ecs: Ecs, fault: str) -> None:
    if fault == "throttled":
        aws_emulator.throttle(1, match="ecs:DescribeServices")
    else:
        aws_emulator.faults.fail_next(1, match="ecs:DescribeServices", status=500, drop=fault == "dropped")

    with pytest.raises(TransientError):
        await ecs.describe_service(CLUSTER, WEB)
    assert aws_emulator.calls.count("ecs:DescribeServices") == 1  # boto3 does not retry on its own

    state = await ecs.describe_service(CLUSTER, WEB)  # trying again later is the caller's to decide
    assert state is not None and state.running == 4


async def test_missing_credentials_are_a_permanent_error(aws_emulator: AwsEmulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ecs = Ecs(region="eu-west-1", endpoint_url=aws_emulator.url)

    with pytest.raises(PermanentError, match="no AWS credentials"):
        await ecs.describe_service(CLUSTER, WEB)


async def test_endpoint_from_the_environment_is_honoured(aws_emulator: AwsEmulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_emulator.url)

    state = await Ecs().describe_service(CLUSTER, WORKER)

    assert state is not None and state.desired == 2


# -- task definitions registered once, tagged, deregistered ----------------------------------------
DEPLOY_TAG = "fatcontroller:deploy"


async def test_register_with_image_adds_our_tags_to_the_old_ones(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WEB)

    new = await ecs.register_with_image(old, "app", image(NEW_SHA), tags={DEPLOY_TAG: "12", "team": "web"})

    assert described(aws_emulator, new)[1] == [{"key": "team", "value": "web"}, {"key": DEPLOY_TAG, "value": "12"}]
    assert await ecs.task_definition_tags(old) == {"team": "checkout"}  # the old revision is left as it was
    assert family_of(new) == WEB and family_of(f"{WEB}:3") == WEB


async def test_register_once_finds_what_an_earlier_attempt_registered(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WEB)

    first = await ecs.register_once(old, "app", image(NEW_SHA), key=DEPLOY_TAG, value="7")
    again = await ecs.register_once(old, "app", image(NEW_SHA), key=DEPLOY_TAG, value="7")  # resumed
    other = await ecs.register_once(old, "app", image(NEW_SHA), key=DEPLOY_TAG, value="8")

    assert again == first and other != first
    assert aws_emulator.calls.count("ecs:RegisterTaskDefinition") == 2
    # revisions no newer than the one copied from are not looked at: a first attempt costs one list
    assert aws_emulator.calls.count("ecs:ListTaskDefinitions") == 3
    assert aws_emulator.calls.count("ecs:DescribeTaskDefinition") == 4  # 2 sources copied, revision 2 read twice
    assert await ecs.task_definition_tags(first) == {"team": "checkout", DEPLOY_TAG: "7"}
    assert await ecs.find_revision(WEB, DEPLOY_TAG, "8") == other
    assert await ecs.find_revision(WEB, DEPLOY_TAG, "9") is None
    assert await ecs.find_revision("app-nope", DEPLOY_TAG, "7") is None


async def test_find_revision_looks_only_among_the_newest_active_revisions(aws_emulator: AwsEmulator,
                                                                          ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WORKER)
    tagged = await ecs.register_with_image(old, "app", image(NEW_SHA), tags={DEPLOY_TAG: "3"})
    for _ in range(3):
        await ecs.register_with_image(old, "app", image(NEW_SHA))

    assert await ecs.find_revision(WORKER, DEPLOY_TAG, "3", newest=4) == tagged
    assert await ecs.find_revision(WORKER, DEPLOY_TAG, "3", newest=3) is None
    assert await ecs.find_revision(WORKER, DEPLOY_TAG, "3", after=revision_of(tagged)) is None
    assert await ecs.find_revision(WORKER, DEPLOY_TAG, "3", after=revision_of(old)) == tagged
    await ecs.deregister_task_definition(tagged)
    assert await ecs.find_revision(WORKER, DEPLOY_TAG, "3") is None  # a rolled-back deploy's revision is not reused


async def test_a_deregistered_revision_is_inactive_and_keeps_its_service_running(aws_emulator: AwsEmulator,
                                                                                 ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WORKER)
    new = await ecs.register_with_image(old, "app", image(NEW_SHA))
    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=50)
    assert (await finished(ecs, WORKER, new)).done

    await ecs.deregister_task_definition(new)
    await ecs.deregister_task_definition(new)  # resumed after a crash: nothing more

    assert described(aws_emulator, new)[0]["status"] == "INACTIVE"
    assert aws_emulator.calls.count("ecs:DeregisterTaskDefinition") == 1
    assert (await ecs.rollout_progress(CLUSTER, WORKER, new)).done
    assert aws_emulator.running_images(CLUSTER, WORKER) == [image(NEW_SHA)] * 2
    with pytest.raises(PermanentError, match="inactive"):
        await ecs.point_service(CLUSTER, WORKER, new, 3)


# -- the service's own deployment configuration ----------------------------------------------------
async def test_the_deployment_configuration_is_read_and_restored_after_a_rollout(aws_emulator: AwsEmulator,
                                                                                 ecs: Ecs) -> None:
    aws_emulator.create_alarm("worker-errors")
    own = await ecs.deployment_configuration(CLUSTER, WORKER)
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))

    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=50, alarms=["worker-errors"])
    assert (await finished(ecs, WORKER, new)).done
    assert aws_emulator.service(CLUSTER, WORKER)["deploymentConfiguration"]["alarms"] == {
        "alarmNames": ["worker-errors"], "enable": True, "rollback": True}
    deployments = len(aws_emulator.service(CLUSTER, WORKER)["deployments"])
    await ecs.restore_deployment_configuration(CLUSTER, WORKER, own)

    assert own == {"deploymentCircuitBreaker": {"enable": False, "rollback": False}, "maximumPercent": 200,
                   "minimumHealthyPercent": 100}
    assert aws_emulator.service(CLUSTER, WORKER)["deploymentConfiguration"] == {**own, "alarms": NO_ALARMS}
    assert len(aws_emulator.service(CLUSTER, WORKER)["deployments"]) == deployments  # nothing was redeployed
    updates = aws_emulator.calls.count("ecs:UpdateService")
    await ecs.restore_deployment_configuration(CLUSTER, WORKER, own)  # resumed after a crash
    assert aws_emulator.calls.count("ecs:UpdateService") == updates


async def test_a_service_with_its_own_alarms_gets_them_back(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    own = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 150,
           "minimumHealthyPercent": 50, "alarms": {"alarmNames": ["team-alarm"], "enable": True, "rollback": True}}
    boto3.client("ecs", endpoint_url=aws_emulator.url, region_name="eu-west-1").update_service(
        cluster=CLUSTER, service=WEB, deploymentConfiguration=own)
    saved = await ecs.deployment_configuration(CLUSTER, WEB)

    await ecs.rolling_update(CLUSTER, WEB, await ecs.register_with_image(
        task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA)), batch_percent=25, alarms=["web-5xx"])
    await ecs.restore_deployment_configuration(CLUSTER, WEB, saved)

    assert saved == own
    assert aws_emulator.service(CLUSTER, WEB)["deploymentConfiguration"] == own


# -- deployment alarms -----------------------------------------------------------------------------
async def test_an_alarm_stops_the_rollout_and_progress_names_it(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    aws_emulator.create_alarm("worker-errors")
    aws_emulator.create_alarm("worker-latency")
    old = task_definition_of(aws_emulator, WORKER)
    new = await ecs.register_with_image(old, "app", image(NEW_SHA))

    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=50, alarms=["worker-latency", "worker-errors"])
    aws_emulator.set_alarm("worker-errors", "ALARM", "Threshold Crossed: 14 errors")
    progress = await finished(ecs, WORKER, new)

    assert progress.failed and progress.by_alarm and progress.alarms == ("worker-errors",)
    assert progress.reason is not None and progress.reason.startswith("alarm worker-errors in ALARM; ECS: ")
    # ECS rolls back by itself; once the failed deployment is gone, its events still say an alarm did it
    await eventually(lambda: _back_on(ecs, WORKER, old), within=10.0, what="ECS's rollback")
    later = await ecs.rollout_progress(CLUSTER, WORKER, new)
    assert later.failed and later.by_alarm and later.alarms == ()
    assert later.reason is not None and later.reason.startswith(
        "one of the deployment alarms worker-latency, worker-errors went into ALARM; ECS: ")
    assert aws_emulator.running_images(CLUSTER, WORKER) == [image(OLD_SHA)] * 2


async def test_an_alarm_without_ecs_rollback_leaves_the_failed_deployment(aws_emulator: AwsEmulator,
                                                                         ecs: Ecs) -> None:
    aws_emulator.create_alarm("web-5xx")
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WEB), "app", image(NEW_SHA))

    await ecs.rolling_update(CLUSTER, WEB, new, batch_percent=25, alarms=["web-5xx"], alarm_rollback=False)
    aws_emulator.set_alarm("web-5xx", "ALARM")
    progress = await finished(ecs, WEB, new)

    assert progress.by_alarm and progress.alarms == ("web-5xx",) and "web-5xx in ALARM state" in progress.reason
    assert aws_emulator.service(CLUSTER, WEB)["deployments"][0]["taskDefinition"] == new


async def test_a_rollout_stopped_by_the_circuit_breaker_is_not_put_on_an_alarm(aws_emulator: AwsEmulator,
                                                                              ecs: Ecs) -> None:
    aws_emulator.unhealthy_images.add(aws_emulator.push_image("app", BAD_SHA))
    aws_emulator.create_alarm("worker-errors")
    bad = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(BAD_SHA))

    await ecs.rolling_update(CLUSTER, WORKER, bad, batch_percent=50, alarms=["worker-errors"])
    progress = await finished(ecs, WORKER, bad)

    assert progress.failed and not progress.by_alarm and progress.alarms == ()
    assert "circuit breaker" in progress.reason


async def _back_on(ecs: Ecs, service: str, task_definition: str) -> bool:
    state = await ecs.describe_service(CLUSTER, service)
    return (state is not None and state.on(task_definition) and len(state.deployments) == 1
            and state.deployments[0].rollout_state == "COMPLETED")


# -- restores that ECS's own rollbacks do not fight -------------------------------------------------
TEAM_CONFIGURATION = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 200,
                      "minimumHealthyPercent": 50,
                      "alarms": {"alarmNames": ["team-5xx"], "enable": True, "rollback": True}}


def _configure(emulator: AwsEmulator, service: str, configuration: dict[str, Any]) -> None:
    boto3.client("ecs", endpoint_url=emulator.url, region_name="eu-west-1").update_service(
        cluster=CLUSTER, service=service, deploymentConfiguration=configuration)


async def test_a_restore_runs_without_the_services_own_rollbacks_which_come_back_after(aws_emulator: AwsEmulator,
                                                                                     ecs: Ecs) -> None:
    aws_emulator.create_alarm("team-5xx")
    _configure(aws_emulator, WEB, TEAM_CONFIGURATION)
    old = task_definition_of(aws_emulator, WEB)
    new = await ecs.register_with_image(old, "app", image(NEW_SHA))
    await ecs.rolling_update(CLUSTER, WEB, new, batch_percent=25)
    assert (await finished(ecs, WEB, new)).done
    assert await ecs.restore_deployment_configuration(CLUSTER, WEB, TEAM_CONFIGURATION)  # the deploy is done
    aws_emulator.step_interval = None  # the test moves the clock

    await ecs.restore(CLUSTER, WEB, old)  # rolled back: the team's alarm goes off while the old revision comes back
    aws_emulator.set_alarm("team-5xx", "ALARM", "Threshold Crossed: the bad revision's errors")
    aws_emulator.advance(20)

    # Watched by the alarm with rollback, ECS would have gone back to its last completed deployment: the new one.
    assert (await ecs.rollout_progress(CLUSTER, WEB, old)).done
    during = aws_emulator.service(CLUSTER, WEB)["deploymentConfiguration"]
    assert during == {**TEAM_CONFIGURATION, "deploymentCircuitBreaker": {"enable": True, "rollback": False},
                      "alarms": NO_ALARMS}
    assert await ecs.restore_deployment_configuration(CLUSTER, WEB, TEAM_CONFIGURATION)
    assert aws_emulator.service(CLUSTER, WEB)["deploymentConfiguration"] == TEAM_CONFIGURATION
    assert len(aws_emulator.service(CLUSTER, WEB)["deployments"]) == 1  # putting it back started no deployment
    assert not await ecs.restore_deployment_configuration(CLUSTER, WEB, TEAM_CONFIGURATION)


async def test_a_circuit_breaker_the_saved_configuration_lacks_is_switched_off(aws_emulator: AwsEmulator,
                                                                              ecs: Ecs) -> None:
    saved = {"maximumPercent": 200, "minimumHealthyPercent": 100}  # as a service made without one is described
    new = await ecs.register_with_image(task_definition_of(aws_emulator, WORKER), "app", image(NEW_SHA))
    await ecs.rolling_update(CLUSTER, WORKER, new, batch_percent=50)

    assert await ecs.restore_deployment_configuration(CLUSTER, WORKER, saved)

    assert aws_emulator.service(CLUSTER, WORKER)["deploymentConfiguration"] == {
        **saved, "deploymentCircuitBreaker": {"enable": False, "rollback": False}}


# -- deregistering what a deploy registered --------------------------------------------------------
async def test_deregister_copies_deregisters_the_revisions_tagged_so_and_nothing_else(aws_emulator: AwsEmulator,
                                                                                     ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WORKER)
    ours = await ecs.register_once(old, "app", image(NEW_SHA), key=DEPLOY_TAG, value="7@new")
    others = await ecs.register_once(old, "app", image(NEW_SHA), key=DEPLOY_TAG, value="8@new")

    assert await ecs.deregister_copies(old, DEPLOY_TAG, "7@new") == [ours]
    assert await ecs.deregister_copies(old, DEPLOY_TAG, "7@new") == []  # resumed: nothing more

    assert [described(aws_emulator, arn)[0]["status"] for arn in (old, ours, others)] == [
        "ACTIVE", "INACTIVE", "ACTIVE"]
    assert aws_emulator.calls.count("ecs:DeregisterTaskDefinition") == 1


async def test_deregistering_only_a_revision_that_carries_a_tag(aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    old = task_definition_of(aws_emulator, WORKER)
    pea = await ecs.register_with_image(old, "app", image(NEW_SHA), tags={"fatcontroller:pea": "sweet-pea@abc"})

    assert not await ecs.deregister_task_definition(old, tagged="fatcontroller:pea")
    assert await ecs.deregister_task_definition(pea, tagged="fatcontroller:pea")
    assert not await ecs.deregister_task_definition(pea, tagged="fatcontroller:pea")

    assert [described(aws_emulator, arn)[0]["status"] for arn in (old, pea)] == ["ACTIVE", "INACTIVE"]


# -- canaries reached the ways their service is ----------------------------------------------------
REGISTRY = "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-0a1b2c3d4e5f6a7b"
NAMESPACE = "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-0a1b2c3d4e5f6a7b"
LOGS = {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/service-connect", "awslogs-region": "eu-west-1",
                                            "awslogs-stream-prefix": "api"}}


def _api_service(emulator: AwsEmulator, connect: dict[str, Any]) -> None:
    """`app-api`: discoverable through Cloud Map and in a Service Connect namespace as `connect` says."""
    emulator.create_service(CLUSTER, "app-api", task_definition_of(emulator, WEB), desired=2,
                            network_configuration=NETWORK, serviceRegistries=[{"registryArn": REGISTRY}],
                            serviceConnectConfiguration=connect)


async def test_a_canary_is_discoverable_like_its_service_and_a_service_connect_client_only(
        aws_emulator: AwsEmulator, ecs: Ecs) -> None:
    server = {"enabled": True, "namespace": NAMESPACE, "logConfiguration": LOGS,
              "services": [{"portName": "http", "discoveryName": "api",
                            "clientAliases": [{"port": 80, "dnsName": "api"}]}]}
    _api_service(aws_emulator, server)
    new = await ecs.register_with_image(task_definition_of(aws_emulator, "app-api"), "app", image(NEW_SHA))

    assert await ecs.create_canary(CLUSTER, "app-api", "app-api-canary", new, 1)
    assert await ecs.create_canary(CLUSTER, "app-api", "app-api-canary", new, 1)  # resumed: says so again

    canary = aws_emulator.service(CLUSTER, "app-api-canary")
    assert canary["serviceRegistries"] == [{"registryArn": REGISTRY}]
    # One service publishes a Service Connect name: the canary reaches the others, and takes none of that traffic.
    assert canary["deployments"][0]["serviceConnectConfiguration"] == {"enabled": True, "namespace": NAMESPACE,
                                                                       "logConfiguration": LOGS}
    assert aws_emulator.calls.count("ecs:CreateService") == 1
    assert (await canary_settled(ecs, "app-api-canary", new)).done


async def test_the_canary_of_a_service_connect_client_is_a_client_like_it(aws_emulator: AwsEmulator,
                                                                         ecs: Ecs) -> None:
    _api_service(aws_emulator, {"enabled": True, "namespace": NAMESPACE})
    new = await ecs.register_with_image(task_definition_of(aws_emulator, "app-api"), "app", image(NEW_SHA))

    assert not await ecs.create_canary(CLUSTER, "app-api", "app-api-canary", new, 1)
    assert not await ecs.create_canary(CLUSTER, WEB, "app-web-canary", new, 1)  # in no namespace at all

    connect = aws_emulator.service(CLUSTER, "app-api-canary")["deployments"][0]["serviceConnectConfiguration"]
    assert connect == {"enabled": True, "namespace": NAMESPACE}
    assert "serviceConnectConfiguration" not in aws_emulator.service(CLUSTER, "app-web-canary")["deployments"][0]


# -- the region ------------------------------------------------------------------------------------
def test_ecr_region_is_the_region_of_the_images_registry() -> None:
    assert ecr_region("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:{sha}") == "us-east-1"
    assert ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:abc") == "cn-north-1"
    assert ecr_region("ghcr.io/acme/app:abc") is None


def test_the_region_is_the_one_given_else_aws_own_else_guessed_with_a_warning(
        aws_credentials: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with caplog.at_level(logging.WARNING, logger="integrations.ecs"):
        assert Ecs(region="us-east-1").region == "us-east-1"
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        assert Ecs().region == "eu-central-1"
        monkeypatch.setenv("AWS_REGION", "ap-southeast-2")  # as ECS and Lambda set it; botocore alone ignores it
        assert Ecs().region == "ap-southeast-2"
        assert caplog.records == []

        monkeypatch.delenv("AWS_REGION")
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        assert Ecs().region == "eu-west-1"

    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "assuming eu-west-1" in caplog.text and "Set ecs.region in app.yaml" in caplog.text
