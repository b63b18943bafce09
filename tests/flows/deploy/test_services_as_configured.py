"""Services as teams configure them: a deploy leaves each service's own deploymentConfiguration as it
found it, leaves no revision of a rolled-back deploy ACTIVE, and says which canaries take no Service
Connect traffic. On the emulators, whose deployments move and whose alarms go off."""

from __future__ import annotations

from typing import Any

import boto3
import sqlalchemy as sa

from storage.models import AuditEvent, Deploy
from tests.fixtures.world import Train, eventually

# A team's own settings: half the tasks may go, twice as many may run, and ECS rolls back by itself.
TEAM = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 200,
        "minimumHealthyPercent": 50, "alarms": {"alarmNames": ["team-5xx"], "enable": True, "rollback": True}}
NAMESPACE = "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-0a1b2c3d4e5f6a7b"
REGISTRY = "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-0a1b2c3d4e5f6a7b"


def _update(train: Train, service: str, **params: Any) -> None:
    """Change a service as its team would (Terraform, the console), not through the product."""
    client = boto3.client("ecs", endpoint_url=train.sandbox.aws.url, region_name="eu-west-1")
    client.update_service(cluster=train.config.ecs.cluster, service=service, **params)


async def _steady(train: Train, service: str) -> None:
    async def probe() -> bool:
        deployments = train.sandbox.aws.service(train.config.ecs.cluster, service)["deployments"]
        return [d["rolloutState"] for d in deployments] == ["COMPLETED"]

    await eventually(probe, what=f"{service} steady")


def _primaries(train: Train, service: str) -> list[str]:
    """The task definition of each deployment that was the service's PRIMARY, in turn (as ECS's clock saw them)."""
    seen: dict[str, str] = {}
    for step in train.sandbox.aws.history(train.config.ecs.cluster, service):
        primary = step["deployments"][0]
        seen.setdefault(primary["id"], primary["taskDefinition"])
    return list(seen.values())


async def _audited(train: Train, deploy_id: int, action: str) -> list[str]:
    async with train.database.sessions() as session:
        return list((await session.scalars(sa.select(AuditEvent.detail).where(
            AuditEvent.deploy_id == deploy_id, AuditEvent.action == action))).all())


async def test_the_rollout_runs_in_our_batches_and_leaves_the_services_own_configuration(train: Train) -> None:
    train.sandbox.aws.create_alarm("team-5xx")
    _update(train, "app-web", deploymentConfiguration=TEAM)
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Keeps the settings"))
    await train.reaches(deploy.id, "canary_check")

    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)

    train.assert_configured_as(before)
    steps = train.sandbox.aws.history("production", "app-web")
    rollout = [s for s in steps if len(s["deployments"]) > 1]
    assert rollout, "the rollout was seen"
    # the team's settings would have let 8 run and 2 be healthy; ours: 150% and never below 100%
    assert max(s["running"] + s["pending"] for s in rollout) == 6
    assert min(s["healthy"] for s in rollout) == 4
    assert sorted(await _audited(train, deploy.id, "deployment_configuration_restored")) == ["app-web", "app-worker"]


async def test_rolling_back_gives_the_configuration_back_and_deregisters_the_deploys_revisions(
        train: Train) -> None:
    aws = train.sandbox.aws
    aws.create_alarm("team-5xx")
    _update(train, "app-web", deploymentConfiguration=TEAM)
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Regretted"))
    await train.reaches(deploy.id, "canary_check")
    await train.press(deploy.id, "Proceed")
    registered = {p: t["new_td"] for p, t in (await train.reaches(deploy.id, "awaiting_confirmation",
                                                                  within=30)).targets.items()}
    aws.step_interval = None  # the test moves ECS's clock from here

    await train.press(deploy.id, "Roll back")

    async def restoring() -> bool:
        return all(aws.service("production", s)["taskDefinition"] == td for s, td in before["services"].items())

    await eventually(restoring, what="both services restoring their old revision")
    # The bad revision's errors set the team's alarm off: watched with rollback, ECS would go back to its last
    # completed deployment, the bad one.
    aws.set_alarm("team-5xx", "ALARM", "Threshold Crossed: 40 errors")
    aws.step_interval = 0.02

    async def ended() -> Deploy | None:
        found = await train.deploy(deploy.id)
        return found if found.state == "rolled_back" or found.needs_attention else None

    rolled_back = await eventually(ended, within=30, what="the rollback's end")
    assert rolled_back.state == "rolled_back", rolled_back.attention
    old_web, new_web = before["services"]["app-web"], registered["web"]
    assert _primaries(train, "app-web") == [old_web, new_web, old_web]  # never back on the bad one meanwhile
    await train.assert_restored(before)  # configurations as the teams left them, no revision of ours ACTIVE
    for process, arn in registered.items():
        assert aws.task_definition(arn)["status"] == "INACTIVE", process
        old = before["services"][train.config.processes[process].service]
        assert aws.task_definition(old)["status"] == "ACTIVE"
    undone = await _audited(train, deploy.id, "undone:task_definition")
    assert sorted(undone) == sorted(f"deregistered {arn}" for arn in registered.values())


async def test_a_canary_of_a_service_connect_server_is_a_client_and_the_deploy_knows(train: Train) -> None:
    connect = {"enabled": True, "namespace": NAMESPACE,
               "services": [{"portName": "http", "discoveryName": "web", "clientAliases": [{"port": 80}]}]}
    _update(train, "app-web", serviceConnectConfiguration=connect, serviceRegistries=[{"registryArn": REGISTRY}])
    await _steady(train, "app-web")
    deploy = await train.request(train.new_pr("Behind Service Connect"))

    await train.reaches(deploy.id, "canary_check")

    canary = train.sandbox.aws.service("production", "app-web-canary")
    assert canary["serviceRegistries"] == [{"registryArn": REGISTRY}]
    assert canary["deployments"][0]["serviceConnectConfiguration"] == {"enabled": True, "namespace": NAMESPACE}
    view = await train.flows.deploy(deploy.id)
    assert view is not None
    assert {t.process: t.canary_client_only for t in view.targets} == {"web": True, "worker": False}
