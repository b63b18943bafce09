"""The ECS facade against moto's server: its requests are well formed for an emulator we did not write.

moto keeps `deploymentConfiguration` as None and never moves a rollout, so here only the calls and
what they leave behind are checked; rollout behaviour is checked against our emulator in test_ecs.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from integrations.ecs import CANARY_TAG, Ecs
from integrations.outside import CallPolicy
from tests.fixtures.aws import FARGATE, ROLES, SIDECAR_IMAGE, web_containers

REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"
MANIFEST = '{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": []}'
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app-web/0123456789abcdef"


@dataclass
class MotoAccount:
    url: str
    ecs: Any  # a plain boto3 client, to look at what the facade did
    facade: Ecs
    task_definition: str
    network: dict[str, Any]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_url: str, aws_credentials: None) -> MotoAccount:
    """A fresh moto account with cluster `production` and a load-balanced Fargate service `app-web`."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="eu-west-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}
    ecs = boto3.client("ecs", endpoint_url=moto_url, region_name="eu-west-1")
    ecs.create_cluster(clusterName="production")
    task_definition = ecs.register_task_definition(
        family="app-web", containerDefinitions=web_containers(f"{REPOSITORY}:old"), **ROLES, **FARGATE,
        tags=[{"key": "team", "value": "checkout"}])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="production", serviceName="app-web", taskDefinition=task_definition, desiredCount=4,
                       launchType="FARGATE", networkConfiguration=network,
                       loadBalancers=[{"targetGroupArn": TARGET_GROUP, "containerName": "app", "containerPort": 8080}],
                       tags=[{"key": "team", "value": "checkout"}])
    policy = CallPolicy(timeout=10.0)
    facade = Ecs(region="eu-west-1", endpoint_url=moto_url, policy=policy, timeout=10.0)
    return MotoAccount(moto_url, ecs, facade, task_definition, network)


def service(moto: MotoAccount, name: str) -> dict[str, Any]:
    return moto.ecs.describe_services(cluster="production", services=[name], include=["TAGS"])["services"][0]


async def test_register_with_image_is_accepted_by_moto(moto: MotoAccount) -> None:
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    assert new.endswith("task-definition/app-web:2")
    answer = moto.ecs.describe_task_definition(taskDefinition=new, include=["TAGS"])
    definition = answer["taskDefinition"]
    app, sidecar = definition["containerDefinitions"]
    assert app["image"] == f"{REPOSITORY}:new" and sidecar["image"] == SIDECAR_IMAGE
    assert app["secrets"] == web_containers("")[0]["secrets"]
    assert definition["executionRoleArn"] == ROLES["executionRoleArn"]
    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == ("512", "1024", "awsvpc")
    assert answer["tags"] == [{"key": "team", "value": "checkout"}]
    assert await moto.facade.image_of(new, "app") == f"{REPOSITORY}:new"


async def test_create_canary_and_delete_it_on_moto(moto: MotoAccount) -> None:
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    await moto.facade.create_canary("production", "app-web", "app-web-canary", new, 1)
    await moto.facade.create_canary("production", "app-web", "app-web-canary", new, 1)  # exists: kept

    canary = service(moto, "app-web-canary")
    assert (canary["taskDefinition"], canary["desiredCount"], canary["launchType"]) == (new, 1, "FARGATE")
    assert canary["networkConfiguration"] == moto.network
    assert canary["loadBalancers"] == service(moto, "app-web")["loadBalancers"]
    assert {"key": CANARY_TAG, "value": "app-web"} in canary["tags"]

    await moto.facade.delete_service("production", "app-web-canary")
    assert await moto.facade.describe_service("production", "app-web-canary") is None
    await moto.facade.delete_service("production", "app-web-canary")


async def test_rolling_update_and_restore_on_moto(moto: MotoAccount) -> None:
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    await moto.facade.rolling_update("production", "app-web", new, batch_percent=25)
    assert service(moto, "app-web")["taskDefinition"] == new

    await moto.facade.restore("production", "app-web", moto.task_definition)
    assert service(moto, "app-web")["taskDefinition"] == moto.task_definition

    await moto.facade.scale("production", "app-web", 2)
    assert service(moto, "app-web")["desiredCount"] == 2


async def test_image_exists_on_moto_ecr(moto: MotoAccount) -> None:
    ecr = boto3.client("ecr", endpoint_url=moto.url, region_name="eu-west-1")
    ecr.create_repository(repositoryName="app")
    ecr.put_image(repositoryName="app", imageTag="new", imageManifest=MANIFEST)

    assert await moto.facade.image_exists(f"{REPOSITORY}:new")
    assert not await moto.facade.image_exists(f"{REPOSITORY}:never-built")
    assert not await moto.facade.image_exists("123456789012.dkr.ecr.eu-west-1.amazonaws.com/other:new")


async def test_register_once_and_deregister_on_moto(moto: MotoAccount) -> None:
    first = await moto.facade.register_once(moto.task_definition, "app", f"{REPOSITORY}:new",
                                            key="fatcontroller:deploy", value="7")
    again = await moto.facade.register_once(moto.task_definition, "app", f"{REPOSITORY}:new",
                                            key="fatcontroller:deploy", value="7")

    assert again == first and first.endswith("task-definition/app-web:2")
    assert moto.ecs.list_task_definitions(familyPrefix="app-web")["taskDefinitionArns"] == [moto.task_definition,
                                                                                          first]
    tags = moto.ecs.describe_task_definition(taskDefinition=first, include=["TAGS"])["tags"]
    assert sorted((t["key"], t["value"]) for t in tags) == [("fatcontroller:deploy", "7"), ("team", "checkout")]

    await moto.facade.deregister_task_definition(first)
    await moto.facade.deregister_task_definition(first)
    assert moto.ecs.describe_task_definition(taskDefinition=first)["taskDefinition"]["status"] == "INACTIVE"
    assert await moto.facade.find_revision("app-web", "fatcontroller:deploy", "7") is None


async def test_rolling_update_with_alarms_and_restoring_the_configuration_on_moto(moto: MotoAccount) -> None:
    own = await moto.facade.deployment_configuration("production", "app-web")
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    await moto.facade.rolling_update("production", "app-web", new, batch_percent=25, alarms=["app-5xx"])
    await moto.facade.restore_deployment_configuration("production", "app-web", own)

    assert service(moto, "app-web")["taskDefinition"] == new
    progress = await moto.facade.rollout_progress("production", "app-web", new)
    assert not progress.by_alarm


async def test_a_services_own_configuration_is_put_back_after_a_rollout_and_a_restore_on_moto(
        moto: MotoAccount) -> None:
    own = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}, "maximumPercent": 200,
           "minimumHealthyPercent": 50}
    moto.ecs.update_service(cluster="production", service="app-web", deploymentConfiguration=own)
    saved = await moto.facade.deployment_configuration("production", "app-web")
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    await moto.facade.rolling_update("production", "app-web", new, batch_percent=25)
    assert service(moto, "app-web")["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    await moto.facade.restore("production", "app-web", moto.task_definition)
    # moto replaces the whole configuration with what UpdateService is given: the restore gives all of it
    assert service(moto, "app-web")["deploymentConfiguration"] == {
        **own, "minimumHealthyPercent": 100, "maximumPercent": 125,
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}}
    assert await moto.facade.restore_deployment_configuration("production", "app-web", saved)

    assert saved == own
    assert service(moto, "app-web")["deploymentConfiguration"] == own
    assert not await moto.facade.restore_deployment_configuration("production", "app-web", saved)


async def test_deregister_copies_on_moto(moto: MotoAccount) -> None:
    ours = await moto.facade.register_once(moto.task_definition, "app", f"{REPOSITORY}:new",
                                           key="fatcontroller:deploy", value="7@new")
    others = await moto.facade.register_once(moto.task_definition, "app", f"{REPOSITORY}:new",
                                             key="fatcontroller:deploy", value="8@new")

    assert await moto.facade.deregister_copies(moto.task_definition, "fatcontroller:deploy", "7@new") == [ours]

    assert moto.ecs.list_task_definitions(familyPrefix="app-web")["taskDefinitionArns"] == [moto.task_definition,
                                                                                          others]


async def test_a_canary_copies_the_service_registries_on_moto(moto: MotoAccount) -> None:
    registries = [{"registryArn": "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-0a1b2c3d4e5f6a7b"}]
    moto.ecs.create_service(cluster="production", serviceName="app-api", taskDefinition=moto.task_definition,
                            desiredCount=2, launchType="FARGATE", networkConfiguration=moto.network,
                            serviceRegistries=registries)
    new = await moto.facade.register_with_image(moto.task_definition, "app", f"{REPOSITORY}:new")

    assert not await moto.facade.create_canary("production", "app-api", "app-api-canary", new, 1)

    assert service(moto, "app-api-canary")["serviceRegistries"] == registries
