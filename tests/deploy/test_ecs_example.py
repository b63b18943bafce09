"""`deploy/ecs/`, the example for running the bot itself on ECS: the task definition registers through boto3
(which checks every key against ECS's API) on the sandbox's ECS, the service created from `service.json`
starts its task, and both agree with what the bot reads: every variable is one it knows, every secret
comes through `secrets` (never `environment`), the port is the one it serves its probes on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from flows.config import Settings
from sandbox.aws import AwsEmulator

ECS_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ecs"


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ECS_EXAMPLE / name).read_text())
    return loaded


def _variables(*, secret: bool) -> set[str]:
    """The environment variables Settings reads: the secrets, or the rest."""
    found = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names = alias.choices if hasattr(alias, "choices") else [alias]
        if (field.annotation in (SecretStr, SecretStr | None)) == secret:
            found |= {n for n in names if isinstance(n, str)}
    return found


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[AwsEmulator]:
    emulator = AwsEmulator(step_interval=0.05).start()
    yield emulator
    emulator.stop()


def test_the_task_definition_and_the_service_start_the_bot_on_ecs(emulator: AwsEmulator) -> None:
    task_definition, service = _example("task-definition.json"), _example("service.json")
    (container,) = task_definition["containerDefinitions"]
    repository, tag = container["image"].rsplit(":", 1)
    emulator.push_image(repository, tag)  # what the image's build pushes to ECR
    emulator.create_cluster(service["cluster"])  # the cluster the bot runs in, made by whoever owns it
    ecs = boto3.client("ecs", region_name="eu-west-1", endpoint_url=emulator.url)

    registered = ecs.register_task_definition(**task_definition)["taskDefinition"]
    created = ecs.create_service(**service)["service"]

    assert registered["revision"] == 1 and "FARGATE" in registered["compatibilities"]
    assert created["taskDefinition"] == registered["taskDefinitionArn"]
    deadline = time.monotonic() + 20
    while True:
        (described,) = ecs.describe_services(cluster=service["cluster"], services=[service["serviceName"]])["services"]
        (deployment,) = described["deployments"]
        if described["runningCount"] == service["desiredCount"] and deployment["rolloutState"] == "COMPLETED":
            break
        assert time.monotonic() < deadline, described
        time.sleep(0.05)  # the emulator's scheduler steps every 0.05 s
    assert not [e for e in described["events"] if "unable" in e["message"] or "failed" in e["message"]]
    (task,) = ecs.describe_tasks(cluster=service["cluster"], tasks=ecs.list_tasks(
        cluster=service["cluster"], serviceName=service["serviceName"])["taskArns"])["tasks"]
    assert task["lastStatus"] == "RUNNING" and task["launchType"] == "FARGATE"


def test_the_container_gets_every_variable_it_needs_and_secrets_only_from_secrets() -> None:
    (container,) = _example("task-definition.json")["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}

    assert set(environment) <= _variables(secret=False), "an unknown variable: a typo the bot would ignore"
    assert set(secrets) <= _variables(secret=True) | _variables(secret=False)
    assert not set(environment) & _variables(secret=True), "a secret in plain environment"
    for needed in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "GITHUB_TOKEN", "JENKINS_TOKEN", "DATABASE_URL",
                   "FATCONTROLLER_HOOK_TOKEN"):
        assert secrets[needed].startswith(("arn:aws:secretsmanager:", "arn:aws:ssm:")), needed
    # No FATCONTROLLER_INSTANCE: each task's default (host and pid) differs; one value for all would not.
    assert "FATCONTROLLER_INSTANCE" not in environment
    assert environment["FATCONTROLLER_LOG_FORMAT"] == "json"


def test_the_port_the_probe_and_the_stop_agree_with_the_bot() -> None:
    task_definition = _example("task-definition.json")
    (container,) = task_definition["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}

    assert [m["containerPort"] for m in container["portMappings"]] == [int(environment["FATCONTROLLER_HTTP_PORT"])]
    assert container["healthCheck"]["command"][0] == "CMD" and "/healthz" in container["healthCheck"]["command"][-1]
    # On SIGTERM the bot lets the step under way finish within its lease: ECS must wait longer before SIGKILL.
    assert container["stopTimeout"] > Settings.model_fields["lease_seconds"].default
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert task_definition["taskRoleArn"] and task_definition["executionRoleArn"]
