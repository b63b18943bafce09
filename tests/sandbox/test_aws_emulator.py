"""The AWS emulator as a plain boto3 client sees it; the clock is stopped and moved one step at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.aws import AwsEmulator

TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}}
MANIFEST = '{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}'
FARGATE = {"networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"}


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[AwsEmulator]:
    emulator = AwsEmulator(step_interval=None).start()
    emulator.create_cluster("production")
    for tag in ("v1", "v2", "bad"):
        emulator.push_image("app", tag)
    emulator.unhealthy_images.add(f"{REPO}:bad")
    yield emulator
    emulator.stop()


def client(emulator: AwsEmulator, service: str, region: str = "eu-west-1") -> Any:
    """A boto3 client that shows every answer as it came (no retries of its own)."""
    return boto3.client(service, endpoint_url=emulator.url, region_name=region,
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def register(ecs: Any, tag: str, family: str = "web") -> str:
    return ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "app", "image": f"{REPO}:{tag}",
                                              "portMappings": [{"containerPort": 8080}]}], **FARGATE,
    )["taskDefinition"]["taskDefinitionArn"]


def web_service(emulator: AwsEmulator, desired: int = 4, load_balanced: bool = True) -> tuple[Any, str]:
    """A steady service `web` on v1; the ECS client and the v1 task definition ARN."""
    ecs = client(emulator, "ecs")
    v1 = register(ecs, "v1")
    balancers = [{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080}] if load_balanced else None
    emulator.create_service("production", "web", v1, desired=desired, load_balancers=balancers)
    return ecs, v1


def describe(ecs: Any, name: str = "web") -> dict[str, Any]:
    return ecs.describe_services(cluster="production", services=[name])["services"][0]


def counts(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(status, running, pending) per deployment, PRIMARY first."""
    return [(d["status"], d["runningCount"], d["pendingCount"]) for d in service["deployments"]]


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


# -- rollouts --------------------------------------------------------------------------------------
def test_rolling_update_adds_one_task_and_stops_an_old_one_once_the_new_is_healthy(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator)
    v2 = register(ecs, "v2")

    ecs.update_service(cluster="production", service="web", taskDefinition=v2,
                       deploymentConfiguration={"maximumPercent": 125, "minimumHealthyPercent": 100})
    seen = []
    for _ in range(9):
        emulator.advance()
        seen.append(counts(describe(ecs)))

    assert seen == [
        [("PRIMARY", 0, 1), ("ACTIVE", 4, 0)],  # started 1 new task: 5 = 125% of 4
        [("PRIMARY", 1, 0), ("ACTIVE", 4, 0)],  # it runs; its target is in initial health checks
        [("PRIMARY", 1, 1), ("ACTIVE", 3, 0)],  # healthy: one old task stopped, the next new started
        [("PRIMARY", 2, 0), ("ACTIVE", 3, 0)],
        [("PRIMARY", 2, 1), ("ACTIVE", 2, 0)],
        [("PRIMARY", 3, 0), ("ACTIVE", 2, 0)],
        [("PRIMARY", 3, 1), ("ACTIVE", 1, 0)],
        [("PRIMARY", 4, 0), ("ACTIVE", 1, 0)],
        [("PRIMARY", 4, 0)],  # the old deployment drained and is gone
    ]
    service = describe(ecs)
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert service["taskDefinition"] == v2 and service["runningCount"] == 4
    assert service["events"][0]["message"] == "(service web) has reached a steady state."
    assert "deployment completed" in service["events"][1]["message"]


def test_without_load_balancer_a_running_task_counts_as_healthy_at_once(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=2, load_balanced=False)
    v2 = register(ecs, "v2")

    ecs.update_service(cluster="production", service="web", taskDefinition=v2,
                       deploymentConfiguration={"maximumPercent": 150, "minimumHealthyPercent": 100})
    seen = []
    for _ in range(3):
        emulator.advance()
        seen.append(counts(describe(ecs)))

    assert seen == [[("PRIMARY", 0, 1), ("ACTIVE", 2, 0)],
                    [("PRIMARY", 1, 1), ("ACTIVE", 1, 0)],
                    [("PRIMARY", 2, 0)]]


def test_a_new_service_launches_its_tasks_and_reaches_a_steady_state(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    v1 = register(ecs, "v1")

    created = ecs.create_service(cluster="production", serviceName="api", taskDefinition=v1, desiredCount=2,
                                 launchType="FARGATE", networkConfiguration=NETWORK)["service"]
    assert created["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert created["deploymentConfiguration"]["maximumPercent"] == 200
    emulator.advance()
    assert counts(describe(ecs, "api")) == [("PRIMARY", 0, 2)]
    emulator.advance()

    service = describe(ecs, "api")
    assert counts(service) == [("PRIMARY", 2, 0)]
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    messages = [e["message"] for e in service["events"]]
    assert messages[0] == "(service api) has reached a steady state."
    assert messages[-1].startswith("(service api) has started 2 tasks: (task ")


def test_scaling_changes_the_primary_without_a_new_deployment(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, load_balanced=False)

    ecs.update_service(cluster="production", service="web", desiredCount=2)
    emulator.advance()

    service = describe(ecs)
    assert counts(service) == [("PRIMARY", 2, 0)] and service["deployments"][0]["desiredCount"] == 2
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert service["events"][1]["message"].startswith("(service web) has stopped 2 running tasks")


def test_force_new_deployment_replaces_every_task_on_the_same_definition(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)
    before = {t for t in ecs.list_tasks(cluster="production", serviceName="web")["taskArns"]}

    ecs.update_service(cluster="production", service="web", forceNewDeployment=True)
    emulator.advance(3)

    service = describe(ecs)
    assert service["deployments"][0]["taskDefinition"] == v1
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    after = set(ecs.list_tasks(cluster="production", serviceName="web")["taskArns"])
    assert len(after) == 2 and not after & before


def test_circuit_breaker_with_rollback_returns_to_the_last_completed_definition(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)
    completed = describe(ecs)["deployments"][0]["id"]
    bad = register(ecs, "bad")

    ecs.update_service(cluster="production", service="web", taskDefinition=bad, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    emulator.advance(3)  # two tasks start (200%) and exit, twice: 4 failures, past the threshold of 3

    service = describe(ecs)
    rollback = service["deployments"][0]
    assert (rollback["taskDefinition"], rollback["rolloutState"]) == (v1, "IN_PROGRESS")
    assert rollback["rolloutStateReason"] == (
        f"ECS deployment circuit breaker: rolling back to deploymentId {completed}.")
    messages = [e["message"] for e in service["events"]]
    assert any(m.endswith("deployment failed: tasks failed to start.") for m in messages)
    assert f"(service web) rolling back to deployment {completed}." in messages
    emulator.advance(3)
    service = describe(ecs)
    assert service["taskDefinition"] == v1 and service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert counts(service) == [("PRIMARY", 2, 0)]


def test_circuit_breaker_without_rollback_leaves_the_failed_deployment_and_the_old_tasks(
        emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)
    bad = register(ecs, "bad")

    ecs.update_service(cluster="production", service="web", taskDefinition=bad, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}})
    emulator.advance(10)

    service = describe(ecs)
    assert [(d["taskDefinition"], d["rolloutState"]) for d in service["deployments"]] == [
        (bad, "FAILED"), (v1, "COMPLETED")]
    assert counts(service) == [("PRIMARY", 0, 0), ("ACTIVE", 2, 0)]  # no more launches, nothing stopped
    assert service["deployments"][0]["failedTasks"] == 4  # two at a time (200%), twice


def test_without_circuit_breaker_failing_tasks_are_retried_forever(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=2, load_balanced=False)

    ecs.update_service(cluster="production", service="web", taskDefinition=register(ecs, "bad"))
    emulator.advance(10)

    primary = describe(ecs)["deployments"][0]
    assert primary["rolloutState"] == "IN_PROGRESS" and primary["failedTasks"] >= 9


def test_the_failure_threshold_can_be_overridden(emulator: AwsEmulator) -> None:
    emulator.failure_threshold = 1
    ecs, _ = web_service(emulator, desired=2, load_balanced=False)

    ecs.update_service(cluster="production", service="web", taskDefinition=register(ecs, "bad"),
                       deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": False}})
    emulator.advance(2)

    assert describe(ecs)["deployments"][0]["rolloutState"] == "FAILED"


def test_an_image_not_in_the_registry_cannot_be_pulled(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=1, load_balanced=False)
    ecs.update_service(cluster="production", service="web", taskDefinition=register(ecs, "never-pushed"))
    emulator.advance(2)

    stopped = ecs.list_tasks(cluster="production", serviceName="web", desiredStatus="STOPPED")["taskArns"]
    task = ecs.describe_tasks(cluster="production", tasks=stopped)["tasks"][0]
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith("CannotPullContainerError:")
    assert f"{REPO}:never-pushed" in task["containers"][0]["reason"]

    emulator.require_pushed_images = False
    emulator.advance(3)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"


def test_an_image_that_turns_bad_fails_its_load_balancer_health_checks(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=1)
    elb = client(emulator, "elbv2")

    emulator.unhealthy_images.add(f"{REPO}:v1")
    emulator.advance()
    health = elb.describe_target_health(TargetGroupArn=TG)["TargetHealthDescriptions"]
    assert [d["TargetHealth"]["State"] for d in health] == ["unhealthy"]
    assert health[0]["TargetHealth"]["Reason"] == "Target.FailedHealthChecks"
    emulator.advance()

    stopped = ecs.list_tasks(cluster="production", serviceName="web", desiredStatus="STOPPED")["taskArns"]
    task = ecs.describe_tasks(cluster="production", tasks=stopped)["tasks"][0]
    assert task["stoppedReason"] == f"Task failed ELB health checks in (target-group {TG})"
    assert describe(ecs)["deployments"][0]["failedTasks"] == 1


# -- load balancer targets -------------------------------------------------------------------------
def test_targets_are_running_tasks_initial_then_healthy(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=1)
    elb = client(emulator, "elbv2")
    ecs.update_service(cluster="production", service="web", desiredCount=2)

    emulator.advance(2)  # the second task starts, then runs
    health = elb.describe_target_health(TargetGroupArn=TG)["TargetHealthDescriptions"]
    assert sorted(d["TargetHealth"]["State"] for d in health) == ["healthy", "initial"]
    emulator.advance()
    health = elb.describe_target_health(TargetGroupArn=TG)["TargetHealthDescriptions"]
    assert [d["TargetHealth"]["State"] for d in health] == ["healthy", "healthy"]
    assert all(d["Target"]["Port"] == 8080 for d in health)

    tasks = ecs.describe_tasks(cluster="production", tasks=ecs.list_tasks(
        cluster="production", serviceName="web")["taskArns"])["tasks"]
    addresses = {detail["value"] for t in tasks for detail in t["attachments"][0]["details"]
                 if detail["name"] == "privateIPv4Address"}
    assert addresses == {d["Target"]["Id"] for d in health}

    asked = elb.describe_target_health(TargetGroupArn=TG, Targets=[{"Id": "10.9.9.9"}])["TargetHealthDescriptions"]
    assert asked[0]["TargetHealth"] == {"State": "unused", "Reason": "Target.NotRegistered",
                                        "Description": "Target is not registered to the target group"}
    with pytest.raises(ClientError) as raised:
        elb.describe_target_health(TargetGroupArn=TG.replace("web", "api"))
    assert error_code(raised) == ("TargetGroupNotFound", 400)


# -- service life cycle ----------------------------------------------------------------------------
def test_a_deleted_service_drains_goes_inactive_and_frees_its_name(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)

    with pytest.raises(ClientError, match="scaled above 0") as raised:
        ecs.delete_service(cluster="production", service="web")
    assert error_code(raised) == ("InvalidParameterException", 400)
    assert ecs.delete_service(cluster="production", service="web", force=True)["service"]["status"] == "DRAINING"
    with pytest.raises(ClientError, match="still Draining"):
        ecs.create_service(cluster="production", serviceName="web", taskDefinition=v1, desiredCount=1,
                           launchType="FARGATE", networkConfiguration=NETWORK)
    emulator.advance()
    assert (describe(ecs)["status"], describe(ecs)["runningCount"]) == ("DRAINING", 0)
    emulator.advance()
    assert describe(ecs)["status"] == "INACTIVE"
    assert ecs.list_services(cluster="production")["serviceArns"] == []
    with pytest.raises(ClientError) as raised:
        ecs.update_service(cluster="production", service="web", desiredCount=1)
    assert error_code(raised) == ("ServiceNotActiveException", 400)

    ecs.create_service(cluster="production", serviceName="web", taskDefinition=v1, desiredCount=1,
                       launchType="FARGATE", networkConfiguration=NETWORK)
    assert describe(ecs)["status"] == "ACTIVE"
    assert ecs.list_services(cluster="production")["serviceArns"] == [
        "arn:aws:ecs:eu-west-1:123456789012:service/production/web"]


def test_describe_services_reports_missing_ones_and_takes_at_most_ten(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator)

    answer = ecs.describe_services(cluster="production", services=["web", "nope"])

    assert [s["serviceName"] for s in answer["services"]] == ["web"]
    assert answer["failures"] == [{"arn": "arn:aws:ecs:eu-west-1:123456789012:service/production/nope",
                                   "reason": "MISSING"}]
    assert "tags" not in answer["services"][0]
    with pytest.raises(ClientError) as raised:
        ecs.describe_services(cluster="production", services=[f"s{n}" for n in range(11)])
    assert error_code(raised) == ("InvalidParameterException", 400)


def test_errors_have_the_aws_shape(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator)

    for call, expected in [
        (lambda: ecs.describe_services(cluster="staging", services=["web"]), "ClusterNotFoundException"),
        (lambda: ecs.update_service(cluster="production", service="nope"), "ServiceNotFoundException"),
        (lambda: ecs.update_service(cluster="production", service="web", taskDefinition="nope:3"),
         "ClientException"),
        (lambda: ecs.create_service(cluster="production", serviceName="api", taskDefinition=v1,
                                    desiredCount=1, launchType="FARGATE"), "InvalidParameterException"),
    ]:
        with pytest.raises(ClientError) as raised:
            call()
        assert error_code(raised) == (expected, 400)


def test_list_and_describe_tasks_name_their_task_definition(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator)

    arns = ecs.list_tasks(cluster="production", serviceName="web")["taskArns"]
    tasks = ecs.describe_tasks(cluster="production", tasks=[*arns, "0" * 32])

    assert len(arns) == 4
    assert {(t["taskDefinitionArn"], t["lastStatus"], t["group"]) for t in tasks["tasks"]} == {
        (v1, "RUNNING", "service:web")}
    assert tasks["failures"] == [{"arn": "0" * 32, "reason": "MISSING"}]


# -- task definitions ------------------------------------------------------------------------------
def test_task_definitions_by_family_revision_or_arn(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    first, second = register(ecs, "v1"), register(ecs, "v2")

    assert first.endswith(":task-definition/web:1") and second.endswith(":task-definition/web:2")
    for name, expected in [("web", second), ("web:1", first), (first, first)]:
        assert ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]["taskDefinitionArn"] == expected
    ecs.deregister_task_definition(taskDefinition="web:2")
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition="web:2")["taskDefinition"]["status"] == "INACTIVE"
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == [first]
    with pytest.raises(ClientError, match="identifier is invalid"):
        ecs.deregister_task_definition(taskDefinition="web")


def test_a_registered_definition_keeps_every_field_and_gains_the_defaults(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    container = {"name": "app", "image": f"{REPO}:v1", "secrets": [{"name": "A", "valueFrom": "arn:secret"}],
                 "portMappings": [{"containerPort": 80}], "dockerLabels": {"team": "checkout"}}

    registered = ecs.register_task_definition(family="web", containerDefinitions=[container], **FARGATE,
                                              taskRoleArn="arn:aws:iam::123456789012:role/web",
                                              tags=[{"key": "k", "value": "v"}])

    definition = registered["taskDefinition"]
    assert definition["taskRoleArn"] == "arn:aws:iam::123456789012:role/web"
    stored = definition["containerDefinitions"][0]
    assert stored["secrets"] == container["secrets"] and stored["dockerLabels"] == {"team": "checkout"}
    assert stored["portMappings"] == [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
    assert (stored["essential"], stored["cpu"], stored["environment"]) == (True, 0, [])
    assert definition["compatibilities"] == ["EC2", "FARGATE"]
    assert ecs.describe_task_definition(taskDefinition="web", include=["TAGS"])["tags"] == [{"key": "k",
                                                                                             "value": "v"}]
    with pytest.raises(ClientError, match="awsvpc"):
        ecs.register_task_definition(family="web", containerDefinitions=[container],
                                     **{**FARGATE, "networkMode": "bridge"})


def test_arns_carry_the_region_of_the_request(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs", region="us-east-1")

    cluster = ecs.create_cluster(clusterName="virginia")["cluster"]

    assert cluster["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/virginia"


# -- ECR -------------------------------------------------------------------------------------------
def test_ecr_images_pushed_through_the_api_or_by_ci_can_be_described(emulator: AwsEmulator) -> None:
    ecr = client(emulator, "ecr")
    ecr.create_repository(repositoryName="api")

    with pytest.raises(ClientError, match="mediatype not provided"):
        ecr.put_image(repositoryName="api", imageManifest='{"schemaVersion": 2}', imageTag="v1")
    ecr.put_image(repositoryName="api", imageManifest=MANIFEST, imageTag="v1")
    pushed = emulator.push_image("api", "v2")

    assert pushed == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:v2"
    details = ecr.describe_images(repositoryName="api", imageIds=[{"imageTag": "v2"}])["imageDetails"]
    assert details[0]["imageTags"] == ["v2"] and details[0]["imageDigest"].startswith("sha256:")
    assert len(ecr.describe_images(repositoryName="api")["imageDetails"]) == 2
    with pytest.raises(ClientError) as raised:
        ecr.describe_images(registryId="123456789012", repositoryName="api", imageIds=[{"imageTag": "v3"}])
    assert error_code(raised) == ("ImageNotFoundException", 400)
    with pytest.raises(ClientError) as raised:
        ecr.describe_images(repositoryName="nope", imageIds=[{"imageTag": "v1"}])
    assert error_code(raised) == ("RepositoryNotFoundException", 400)
    got = ecr.batch_get_image(repositoryName="api", imageIds=[{"imageTag": "v1"}, {"imageTag": "v3"}])
    assert got["images"][0]["imageManifest"] == MANIFEST
    assert got["failures"][0]["failureCode"] == "ImageNotFound"
    repositories = ecr.describe_repositories()["repositories"]
    assert {r["repositoryUri"] for r in repositories} == {REPO, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api"}


# -- faults and the clock --------------------------------------------------------------------------
def test_faults_can_target_one_operation(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator)
    emulator.server_error(1, match="ecs:UpdateService")
    emulator.throttle(1, match="ecr:")

    assert describe(ecs)["status"] == "ACTIVE"
    with pytest.raises(ClientError) as raised:
        ecs.update_service(cluster="production", service="web", desiredCount=3)
    assert error_code(raised) == ("ServerException", 500)
    with pytest.raises(ClientError) as raised:
        client(emulator, "ecr").describe_repositories()
    assert error_code(raised) == ("ThrottlingException", 400)

    assert emulator.calls == ["ecs:RegisterTaskDefinition", "ecs:DescribeServices", "ecs:UpdateService",
                              "ecr:DescribeRepositories"]


def test_the_ticker_moves_rollouts_on_its_own(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    ecs.create_service(cluster="production", serviceName="api", taskDefinition=register(ecs, "v1"),
                       desiredCount=3, launchType="FARGATE", networkConfiguration=NETWORK)

    emulator.step_interval = 0.01
    deadline = time.monotonic() + 5
    while describe(ecs, "api")["deployments"][0]["rolloutState"] != "COMPLETED":
        assert time.monotonic() < deadline, "the rollout did not move"
        time.sleep(0.01)

    assert emulator.running_images("production", "api") == [f"{REPO}:v1"] * 3


# -- deployment alarms -----------------------------------------------------------------------------
def alarms(*names: str, rollback: bool = True) -> dict[str, Any]:
    return {"alarms": {"alarmNames": list(names), "enable": True, "rollback": rollback}}


def test_an_alarm_going_off_fails_the_rollout_and_ecs_rolls_back(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=4, load_balanced=False)
    completed = describe(ecs)["deployments"][0]["id"]
    emulator.create_alarm("web-5xx")
    emulator.create_alarm("web-latency")
    v2 = register(ecs, "v2")

    ecs.update_service(cluster="production", service="web", taskDefinition=v2, deploymentConfiguration={
        "maximumPercent": 125, "minimumHealthyPercent": 100, **alarms("web-latency", "web-5xx")})
    emulator.advance()
    failed = describe(ecs)["deployments"][0]["id"]
    emulator.set_alarm("web-5xx", "ALARM", "Threshold Crossed: 12 > 5")
    emulator.advance()

    service = describe(ecs)
    rollback, broken = service["deployments"][:2]
    assert (broken["id"], broken["taskDefinition"], broken["rolloutState"]) == (failed, v2, "FAILED")
    assert broken["rolloutStateReason"] == f"ECS deployment {failed} rolled back: alarm web-5xx in ALARM state."
    assert (rollback["taskDefinition"], rollback["rolloutState"]) == (v1, "IN_PROGRESS")
    assert "web-5xx" in rollback["rolloutStateReason"] and completed in rollback["rolloutStateReason"]
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {failed}) deployment failed: alarm detected." in messages
    assert f"(service web) rolling back to deployment {completed}." in messages
    emulator.advance(6)
    service = describe(ecs)
    assert service["taskDefinition"] == v1 and counts(service) == [("PRIMARY", 4, 0)]
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert service["deploymentConfiguration"]["alarms"] == alarms("web-latency", "web-5xx")["alarms"]


def test_an_alarm_without_rollback_fails_the_rollout_and_stops_its_launches(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=4, load_balanced=False)
    emulator.create_alarm("web-5xx")
    v2 = register(ecs, "v2")
    ecs.update_service(cluster="production", service="web", taskDefinition=v2, deploymentConfiguration={
        "maximumPercent": 125, "minimumHealthyPercent": 100, **alarms("web-5xx", rollback=False)})
    emulator.advance()

    emulator.set_alarm("web-5xx", "ALARM")
    emulator.advance(5)

    service = describe(ecs)
    primary = service["deployments"][0]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (v2, "FAILED")
    assert primary["rolloutStateReason"] == f"ECS deployment {primary['id']} failed: alarm web-5xx in ALARM state."
    assert [(d["taskDefinition"], d["status"]) for d in service["deployments"]] == [(v2, "PRIMARY"), (v1, "ACTIVE")]
    assert primary["runningCount"] == 1  # what it started before the alarm; nothing since


def test_an_alarm_already_in_alarm_when_the_deployment_starts_is_not_watched(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=2, load_balanced=False)
    emulator.create_alarm("web-5xx", state="ALARM")
    v2 = register(ecs, "v2")

    ecs.update_service(cluster="production", service="web", taskDefinition=v2,
                       deploymentConfiguration=alarms("web-5xx"))
    emulator.advance(4)

    primary = describe(ecs)["deployments"][0]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (v2, "COMPLETED")


def test_alarms_that_are_off_or_missing_do_not_stop_a_rollout(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator, desired=2, load_balanced=False)
    emulator.create_alarm("web-5xx")
    v2 = register(ecs, "v2")

    ecs.update_service(cluster="production", service="web", taskDefinition=v2, deploymentConfiguration={
        "alarms": {"alarmNames": ["web-5xx", "never-created"], "enable": False, "rollback": True}})
    emulator.set_alarm("web-5xx", "ALARM")
    emulator.advance(4)

    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"


def test_a_watched_deployment_bakes_once_steady_and_an_alarm_then_still_rolls_it_back(emulator: AwsEmulator) -> None:
    emulator.alarm_bake_steps = 3
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)
    emulator.create_alarm("web-5xx")
    v2 = register(ecs, "v2")
    ecs.update_service(cluster="production", service="web", taskDefinition=v2,
                       deploymentConfiguration=alarms("web-5xx"))

    emulator.advance(4)  # 200%: every new task started, ran, and the old ones are gone
    service = describe(ecs)
    assert counts(service) == [("PRIMARY", 2, 0)] and service["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    emulator.set_alarm("web-5xx", "ALARM")
    emulator.advance()

    primary = describe(ecs)["deployments"][0]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (v1, "IN_PROGRESS")
    emulator.set_alarm("web-5xx", "OK")
    emulator.advance(5)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"  # a rollback is not baked


# -- what a service keeps --------------------------------------------------------------------------
def test_a_service_keeps_its_configuration_exactly_as_given(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    v1 = register(ecs, "v1")
    connect = {"enabled": True, "namespace": "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-1",
               "services": [{"portName": "http", "clientAliases": [{"port": 80, "dnsName": "web"}]}]}
    registries = [{"registryArn": "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-1"}]
    config = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 150,
              "minimumHealthyPercent": 50, **alarms("web-5xx")}

    ecs.create_service(cluster="production", serviceName="web", taskDefinition=v1, desiredCount=2,
                       launchType="FARGATE", networkConfiguration=NETWORK, serviceConnectConfiguration=connect,
                       serviceRegistries=registries, deploymentConfiguration=config)

    service = describe(ecs)
    assert service["deploymentConfiguration"] == config
    assert service["serviceRegistries"] == registries
    assert service["deployments"][0]["serviceConnectConfiguration"] == connect
    # a new service connect configuration is rolled out as a deployment of its own
    emulator.advance(2)
    changed = {**connect, "services": [{"portName": "http", "clientAliases": [{"port": 8080, "dnsName": "web"}]}]}
    ecs.update_service(cluster="production", service="web", serviceConnectConfiguration=changed)
    deployments = describe(ecs)["deployments"]
    assert [d["serviceConnectConfiguration"] for d in deployments] == [changed, connect]
    ecs.update_service(cluster="production", service="web", deploymentConfiguration={
        "alarms": {"alarmNames": [], "enable": False, "rollback": False}})
    assert describe(ecs)["deploymentConfiguration"] == {**config, "alarms": {"alarmNames": [], "enable": False,
                                                                             "rollback": False}}
    assert len(describe(ecs)["deployments"]) == 2  # changing the configuration alone deploys nothing


# -- task definitions: tags, lists, deregistered revisions -----------------------------------------
def test_task_definitions_keep_their_tags_which_can_be_changed(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    arn = ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": f"{REPO}:v1"}], **FARGATE,
        tags=[{"key": "team", "value": "checkout"}])["taskDefinition"]["taskDefinitionArn"]

    ecs.tag_resource(resourceArn=arn, tags=[{"key": "fatcontroller:deploy", "value": "42"},
                                            {"key": "team", "value": "payments"}])

    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "team", "value": "payments"}, {"key": "fatcontroller:deploy", "value": "42"}]
    ecs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])["tags"] == [
        {"key": "fatcontroller:deploy", "value": "42"}]
    assert "tags" not in ecs.describe_task_definition(taskDefinition=arn)
    for bad, code in [(arn.replace(":1", ":9"), "ResourceNotFoundException"),
                      ("not-an-arn", "InvalidParameterException")]:
        with pytest.raises(ClientError) as raised:
            ecs.list_tags_for_resource(resourceArn=bad)
        assert error_code(raised) == (code, 400)
    with pytest.raises(ClientError, match="reserved"):
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "aws:owner", "value": "x"}])


def test_services_and_clusters_can_be_tagged_too(emulator: AwsEmulator) -> None:
    ecs, _ = web_service(emulator)
    service = describe(ecs)["serviceArn"]
    cluster = describe(ecs)["clusterArn"]

    ecs.tag_resource(resourceArn=service, tags=[{"key": "team", "value": "checkout"}])
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "env", "value": "production"}])

    assert ecs.list_tags_for_resource(resourceArn=service)["tags"] == [{"key": "team", "value": "checkout"}]
    assert ecs.describe_services(cluster="production", services=["web"], include=["TAGS"])["services"][0][
        "tags"] == [{"key": "team", "value": "checkout"}]
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [{"key": "env", "value": "production"}]


def test_task_definitions_are_listed_by_family_status_and_order_in_pages(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    web = [register(ecs, "v1") for _ in range(3)]
    worker = register(ecs, "v1", family="web-worker")
    ecs.deregister_task_definition(taskDefinition=web[1])

    assert ecs.list_task_definitions()["taskDefinitionArns"] == [web[0], web[2], worker]
    # familyPrefix is a whole family name, whatever its name says
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == [web[0], web[2]]
    assert ecs.list_task_definitions(familyPrefix="web", sort="DESC")["taskDefinitionArns"] == [web[2], web[0]]
    assert ecs.list_task_definitions(familyPrefix="web", status="INACTIVE")["taskDefinitionArns"] == [web[1]]
    page = ecs.list_task_definitions(familyPrefix="web", sort="DESC", maxResults=1)
    assert page["taskDefinitionArns"] == [web[2]]
    rest = ecs.list_task_definitions(familyPrefix="web", sort="DESC", maxResults=1, nextToken=page["nextToken"])
    assert rest["taskDefinitionArns"] == [web[0]] and "nextToken" not in rest


def test_a_deregistered_revision_keeps_running_but_no_service_can_move_onto_it(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, desired=2, load_balanced=False)

    deregistered = ecs.deregister_task_definition(taskDefinition=v1)["taskDefinition"]
    ecs.update_service(cluster="production", service="web", desiredCount=3)
    emulator.advance(2)

    assert deregistered["status"] == "INACTIVE" and "deregisteredAt" in deregistered
    assert ecs.describe_task_definition(taskDefinition=v1)["taskDefinition"]["status"] == "INACTIVE"
    assert describe(ecs)["taskDefinition"] == v1 and describe(ecs)["runningCount"] == 3
    with pytest.raises(ClientError, match="inactive"):
        ecs.update_service(cluster="production", service="web", taskDefinition=v1, forceNewDeployment=True)
    with pytest.raises(ClientError, match="inactive"):
        ecs.create_service(cluster="production", serviceName="api", taskDefinition=v1, desiredCount=1,
                           launchType="FARGATE", networkConfiguration=NETWORK)


# -- the call log ----------------------------------------------------------------------------------
def test_the_call_log_names_resources_request_tags_and_the_cluster(emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, load_balanced=True)
    before = len(emulator.call_log)

    v2 = ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": f"{REPO}:v2",
                                             "portMappings": [{"containerPort": 8080}]}], **FARGATE,
        tags=[{"key": "fatcontroller:deploy", "value": "7"}])["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="production", service="web", taskDefinition=v2)
    ecs.describe_services(cluster="production", services=["web", "api"])
    tasks = ecs.list_tasks(cluster="production", serviceName="web")["taskArns"]
    ecs.describe_tasks(cluster="production", tasks=tasks[:1])
    client(emulator, "elbv2").describe_target_health(TargetGroupArn=TG)
    client(emulator, "ecr").describe_images(repositoryName="app", imageIds=[{"imageTag": "v2"}])
    with pytest.raises(ClientError):
        ecs.update_service(cluster="production", service="nope", desiredCount=1)

    prefix = "arn:aws:ecs:eu-west-1:123456789012"
    calls = emulator.call_log[before:]
    assert [c.action for c in calls] == [
        "ecs:RegisterTaskDefinition", "ecs:UpdateService", "ecs:DescribeServices", "ecs:ListTasks",
        "ecs:DescribeTasks", "elasticloadbalancing:DescribeTargetHealth", "ecr:DescribeImages", "ecs:UpdateService"]
    register_call, update, described, listed, tasks_call, health, images, refused = calls
    assert (register_call.resources, register_call.request_tags) == ((v2,), {"fatcontroller:deploy": "7"})
    assert update.resources == (f"{prefix}:service/production/web", v2)
    assert update.conditions == {"ecs:cluster": f"{prefix}:cluster/production", "ecs:task-definition": v2}
    assert described.resources == (f"{prefix}:service/production/web", f"{prefix}:service/production/api")
    assert listed.resources == (f"{prefix}:service/production/web",)
    assert listed.conditions["ecs:cluster"] == f"{prefix}:cluster/production"
    assert tasks_call.resources == (tasks[0],)
    assert health.resources == (TG,)
    assert images.resources == ("arn:aws:ecr:eu-west-1:123456789012:repository/app",)
    assert (refused.status, refused.error) == (400, "ServiceNotFoundException")
    assert all(c.status == 200 and c.error is None for c in calls[:-1])
    assert v1 not in update.resources


def test_the_call_log_names_what_aws_authorises_besides_the_call_tags_on_creation_and_passed_roles(
        emulator: AwsEmulator) -> None:
    ecs, v1 = web_service(emulator, load_balanced=False)
    roles = {"executionRoleArn": "arn:aws:iam::123456789012:role/ecs-task-execution", "taskRoleArn": "app-task"}
    before = len(emulator.call_log)

    tagged = ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": f"{REPO}:v2"}], **FARGATE, **roles,
        tags=[{"key": "team", "value": "checkout"}])["taskDefinition"]["taskDefinitionArn"]
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "app", "image": f"{REPO}:v2"}],
                                 **FARGATE)
    ecs.create_service(cluster="production", serviceName="web-canary", taskDefinition=tagged, desiredCount=1,
                       launchType="FARGATE", networkConfiguration=NETWORK, tags=[{"key": "team", "value": "checkout"}])
    ecs.create_service(cluster="production", serviceName="plain", taskDefinition=v1, desiredCount=1,
                       launchType="FARGATE", networkConfiguration=NETWORK)
    ecs.update_service(cluster="production", service="web", taskDefinition=tagged)
    with pytest.raises(ClientError):  # refused, and authorised all the same, on the revision it would have made
        ecs.register_task_definition(family="web", containerDefinitions=[], tags=[{"key": "team", "value": "x"}])

    prefix = "arn:aws:ecs:eu-west-1:123456789012"
    register_call, untagged, canary, plain, update, refused = emulator.call_log[before:]
    tag, execution, task = register_call.implies
    assert (tag.action, tag.resources, tag.request_tags, tag.conditions) == (
        "ecs:TagResource", (tagged,), {"team": "checkout"}, {"ecs:CreateAction": "RegisterTaskDefinition"})
    assert [(r.action, r.resources, r.conditions, r.request_tags) for r in (execution, task)] == [
        ("iam:PassRole", (roles["executionRoleArn"],), {"iam:PassedToService": "ecs-tasks.amazonaws.com"}, {}),
        ("iam:PassRole", ("arn:aws:iam::123456789012:role/app-task",),
         {"iam:PassedToService": "ecs-tasks.amazonaws.com"}, {})]
    assert register_call.authorised == (register_call, tag, execution, task)
    assert untagged.implies == () and plain.implies == () and update.implies == ()
    (canary_tag,) = canary.implies
    assert (canary_tag.action, canary_tag.resources, canary_tag.conditions) == (
        "ecs:TagResource", (f"{prefix}:service/production/web-canary",), {"ecs:CreateAction": "CreateService"})
    assert refused.status == 400 and refused.resources == (f"{prefix}:task-definition/web:4",)
    assert [(r.action, r.resources, r.status) for r in refused.implies] == [
        ("ecs:TagResource", (f"{prefix}:task-definition/web:4",), 400)]


def test_the_call_log_names_the_clusters_described(emulator: AwsEmulator) -> None:
    ecs = client(emulator, "ecs")
    prefix = "arn:aws:ecs:eu-west-1:123456789012"

    ecs.describe_clusters(clusters=["production", f"{prefix}:cluster/peas"])
    ecs.describe_clusters()

    named, default = emulator.call_log[-2:]
    assert named.resources == (f"{prefix}:cluster/production", f"{prefix}:cluster/peas")
    assert default.resources == (f"{prefix}:cluster/default",)
