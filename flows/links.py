"""Where people see a deploy's outside facts: web addresses of commits and of ECS and CloudWatch in the AWS
console. Addresses only (each surface words and marks them up); None when there is nothing to link to."""

from __future__ import annotations

import re
from urllib.parse import quote

from flows.config import TrainConfig

_TASK_DEFINITION_ARN = re.compile(
    r"^arn:aws[\w-]*:ecs:(?P<region>[\w-]+):\d+:task-definition/(?P<family>[\w-]+):(?P<rev>\d+)$")


def commit_url(pr_url: str | None, sha: str) -> str | None:
    """A commit's page, from its pull request's (`.../pull/12` → `.../commit/<sha>`)."""
    if not pr_url or "/pull/" not in pr_url:
        return None
    return pr_url.rsplit("/pull/", 1)[0] + f"/commit/{quote(sha)}"


def task_definition_url(arn: str) -> str | None:
    """A task definition revision in the ECS console, from its ARN."""
    match = _TASK_DEFINITION_ARN.match(arn)
    if match is None:
        return None
    region = match["region"]
    return (f"https://{region}.console.aws.amazon.com/ecs/v2/task-definitions/{match['family']}/{match['rev']}"
            f"/containers?region={region}")


def service_url(config: TrainConfig, service: str, cluster: str | None = None) -> str | None:
    """A service in the ECS console (None when the train's region is left to AWS's configuration)."""
    region = config.region
    if region is None:
        return None
    return (f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{quote(cluster or config.ecs.cluster)}"
            f"/services/{quote(service)}/health?region={region}")


def alarm_url(config: TrainConfig, name: str) -> str | None:
    """A CloudWatch alarm in the console (None when the train's region is left to AWS's configuration)."""
    region = config.region
    if region is None:
        return None
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#alarmsV2:alarm/{quote(name, safe='')}")
