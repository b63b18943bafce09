"""AWS ECS and ECR: canaries, rolling updates and their progress, restores, image checks (boto3, off the loop).

Every call is idempotent or checks the outside world first, so a deploy that crashed between
acting and recording can run the same step again: a rolling update or a restore whose service
is already on the task definition does nothing, a canary that exists is updated rather than
created twice, a deleted service is not deleted again.

Progress is read from the service's deployments, as ECS reports them: the PRIMARY deployment's
task definition, running count and `rolloutState` (the circuit breaker marks it FAILED). A
canary behind a load balancer counts as up once its tasks' IP addresses are healthy targets
in every target group (awsvpc networking, which Fargate always uses; tasks without an IP count
as soon as they run).

A rolling update may be watched by CloudWatch alarms (`deploymentConfiguration.alarms`): ECS then
fails the rollout, and with rollback on starts a deployment back to the last completed one, when
one of them goes into ALARM; `Progress.by_alarm` and `Progress.alarms` say so. Task definition
revisions can carry a tag naming the deploy that registered them, so that a resumed step finds
the revision instead of registering a second one (`register_once`), and a rollback deregisters
them (`deregister_copies`); a service's own deploymentConfiguration can be read before a rollout
and put back after it, once the service is stable (`restore_deployment_configuration`).

A canary is reached the ways its service is: the same load balancers and service registries (a
Cloud Map service holds the instances of several ECS services). Service Connect is the exception:
an endpoint is published by one service only, so the canary of a service that publishes some joins
the namespace as a client, and takes none of that traffic (`create_canary` says so).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from integrations.aws import DEFAULT_REGION, classify, client_config, make_client, region_of_environment
from integrations.outside import (
    CallPolicy,
    Conflict,
    Facade,
    NotFound,
    OutsideCaller,
    OutsideError,
    PermanentError,
    TransientError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

SYSTEM = "AWS"
CANARY_TAG = "fatcontroller:canary-of"
_NOT_FOUND_CODES = {"ServiceNotFoundException", "ClusterNotFoundException", "ServiceNotActiveException",
                    "RepositoryNotFoundException", "ImageNotFoundException", "TargetGroupNotFound"}
_ECR_IMAGE = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# what UpdateService is given to switch deployment alarms off (it keeps what it is not given)
NO_ALARMS = {"alarmNames": [], "enable": False, "rollback": False}
# the parts of a deploymentConfiguration that are switched off by being given so, not by being left out
_SWITCHED_OFF = {"alarms": NO_ALARMS, "deploymentCircuitBreaker": {"enable": False, "rollback": False}}
# the circuit breaker of our own rollouts and restores: it reports a failure, and moving back is ours to decide
_OUR_BREAKER = {"enable": True, "rollback": False}
NEWEST_REVISIONS = 25  # how many of a family's newest revisions are looked at for the ones a deploy registered
_ALARM_NAMES = re.compile(r"\balarms? (.+?) in ALARM\b")
# what a canary copies from its main service, besides launch type or capacity providers
_CANARY_COPIES = ("networkConfiguration", "loadBalancers", "serviceRegistries", "platformVersion",
                  "healthCheckGracePeriodSeconds", "placementConstraints", "placementStrategy", "propagateTags",
                  "enableECSManagedTags", "enableExecuteCommand")


@dataclass(frozen=True)
class Deployment:
    """One of a service's deployments (PRIMARY is the newest, ACTIVE ones are draining)."""

    id: str
    status: str
    task_definition: str
    desired: int
    running: int
    pending: int
    failed: int
    rollout_state: str | None  # IN_PROGRESS, COMPLETED, FAILED
    rollout_reason: str | None


@dataclass(frozen=True)
class ServiceState:
    name: str
    cluster: str
    status: str  # ACTIVE or DRAINING (INACTIVE services are reported as missing)
    task_definition: str
    desired: int
    running: int
    pending: int
    launch_type: str | None
    load_balancers: tuple[dict, ...]
    deployments: tuple[Deployment, ...]
    events: tuple[str, ...]  # newest first
    deployment_configuration: dict[str, Any] | None = None  # as described (None where moto keeps none)

    @property
    def primary(self) -> Deployment | None:
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    def on(self, task_definition: str) -> bool:
        """Whether the service runs (or is rolling out) exactly this task definition."""
        primary = self.primary
        on_primary = primary is None or primary.task_definition == task_definition
        return self.task_definition == task_definition and on_primary


@dataclass(frozen=True)
class Progress:
    """How far one service (or canary) has come towards running a task definition."""

    done: bool
    failed: bool
    reason: str | None
    running: int
    desired: int
    by_alarm: bool = False  # ECS failed (or rolled back) the rollout because a deployment alarm went off
    alarms: tuple[str, ...] = ()  # the alarms ECS's words name (none once they are gone: see `reason`)
    healthy: int | None = None  # a canary's running tasks its target groups find healthy (read once it runs)
    load_balanced: bool = False  # the service has target groups (so `healthy` counts healthy targets)


def family_of(task_definition: str) -> str:
    """`app-web` of `arn:aws:ecs:...:task-definition/app-web:7` (or of `app-web:7`)."""
    return task_definition.rsplit("/", 1)[-1].split(":", 1)[0]


def revision_of(task_definition: str) -> int | None:
    """7 of `...:task-definition/app-web:7`; None for a bare family (its latest revision)."""
    _, _, revision = task_definition.rsplit("/", 1)[-1].partition(":")
    return int(revision) if revision.isdigit() else None


def ecr_region(image: str) -> str | None:
    """The region of an ECR image URI's registry (`us-east-1` of `123456789012.dkr.ecr.us-east-1.amazonaws.com/app`)."""
    match = _ECR_IMAGE.match(image)
    return match["region"] if match else None


def _guessed_region() -> str:
    log.warning("no AWS region is known (none configured, the image is not in ECR, and neither AWS_REGION, "
                "AWS_DEFAULT_REGION nor the AWS profile names one): assuming %s. Set ecs.region in app.yaml, or "
                "AWS_REGION.", DEFAULT_REGION)
    return DEFAULT_REGION


def _tagged(tags: Sequence[Mapping[str, str]], key: str, value: str | None = None) -> bool:
    """Whether a resource's tags hold `key` (with `value`, when given)."""
    return any(t.get("key") == key and value in (None, t.get("value")) for t in tags)


def _alarm_list(names: Sequence[str]) -> str:
    return f"alarm {names[0]}" if len(names) == 1 else f"alarms {', '.join(names)}"


def _alarm_failure(state: ServiceState, task_definition: str) -> tuple[tuple[str, ...], str, str] | None:
    """When ECS stopped the move to `task_definition` because a deployment alarm went off: the alarms its
    words name (maybe none), what to say of them, and ECS's words; None otherwise."""
    primary = state.primary
    moved = primary is not None and primary.task_definition != task_definition
    texts = [d.rollout_reason or "" for d in state.deployments
             if d.task_definition == task_definition and d.rollout_state == "FAILED"]
    if moved and primary is not None:
        texts.append(primary.rollout_reason or "")  # the rollback ECS started says why
    texts = [t for t in texts if "alarm" in t.lower()]
    if not texts and moved:
        # once the failed deployment has drained, only the events say why ECS rolled back
        latest = next((e for e in state.events if "deployment failed" in e), None)
        texts = [latest] if latest is not None and "alarm" in latest.lower() else []
    if not texts:
        return None
    configured = ((state.deployment_configuration or {}).get("alarms") or {}).get("alarmNames") or []
    named = tuple(n for n in configured if any(n in t for t in texts))
    if not named:
        words = next((m[1] for t in texts if (m := _ALARM_NAMES.search(t))), None)
        named = tuple(n.strip() for n in words.split(",")) if words else ()
    if named:
        said = f"{_alarm_list(named)} in ALARM"
    elif configured:
        said = f"one of the deployment {_alarm_list(configured)} went into ALARM"
    else:
        said = "a deployment alarm went into ALARM"
    return named, said, texts[0]


def _deployment(data: dict[str, Any]) -> Deployment:
    return Deployment(
        id=data["id"],
        status=data["status"],
        task_definition=data["taskDefinition"],
        desired=data.get("desiredCount", 0),
        running=data.get("runningCount", 0),
        pending=data.get("pendingCount", 0),
        failed=data.get("failedTasks", 0),
        rollout_state=data.get("rolloutState"),
        rollout_reason=data.get("rolloutStateReason"),
    )


def _state(cluster: str, data: dict[str, Any]) -> ServiceState:
    return ServiceState(
        name=data["serviceName"],
        cluster=cluster,
        status=data["status"],
        task_definition=data["taskDefinition"],
        desired=data.get("desiredCount", 0),
        running=data.get("runningCount", 0),
        pending=data.get("pendingCount", 0),
        launch_type=data.get("launchType"),
        load_balancers=tuple(data.get("loadBalancers") or ()),
        deployments=tuple(_deployment(d) for d in data.get("deployments") or ()),
        events=tuple(e["message"] for e in data.get("events") or ()),
        deployment_configuration=copy.deepcopy(data.get("deploymentConfiguration")),
    )


def max_percent(desired: int, batch_percent: int) -> int:
    """`100 + batch_percent`, raised where needed so that ECS may start at least one task per batch
    (it rounds the maximum down: 4 tasks at 125% allow 5, 2 tasks at 125% would allow only 2)."""
    percent = 100 + batch_percent
    if desired > 0 and desired * percent // 100 <= desired:
        percent = math.ceil(100 * (desired + 1) / desired)
    return percent


def failure_threshold(desired: int) -> int:
    """Failed tasks after which a deployment has failed: the ECS circuit breaker's own threshold."""
    return max(3, min(200, math.ceil(desired * 0.5)))


class Ecs(Facade):
    """Async facade over boto3's ECS, ECR and ELBv2 clients; every call goes through `OutsideCaller`."""

    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None,
                 policy: CallPolicy | None = None, timeout: float = 20.0) -> None:
        # AWS_REGION first, as the AWS CLI and the other SDKs read it (botocore reads only AWS_DEFAULT_REGION)
        self.region = region or os.environ.get("AWS_REGION") or region_of_environment() or _guessed_region()
        self._endpoint_url = endpoint_url  # None: boto3 itself honours AWS_ENDPOINT_URL
        self._config = client_config(timeout)
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()
        self._caller = OutsideCaller(SYSTEM, self._classify, policy)
        self._ecs = self._client("ecs")
        self._elb = self._client("elbv2")
        self._register_fields = set(
            self._ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members)

    def _client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        with self._clients_lock:
            if key not in self._clients:
                self._clients[key] = make_client(service, region=key[1], endpoint_url=self._endpoint_url,
                                                 config=self._config)
            return self._clients[key]

    @staticmethod
    def _classify(exc: BaseException) -> OutsideError | None:
        def read(code: str, message: str, text: str, status: int | None) -> OutsideError | None:
            if code in _NOT_FOUND_CODES:
                return NotFound(SYSTEM, text, status=status)
            if code == "InvalidParameterException" and "still Draining" in message:
                return TransientError(SYSTEM, text, status=status)  # gone once its tasks have stopped
            if code == "InvalidParameterException" and "not idempotent" in message:
                return Conflict(SYSTEM, text, status=status)
            return None

        return classify(exc, SYSTEM, read)

    async def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        return await self._caller.call(what, fn, **kwargs)

    # -- reading services ----------------------------------------------------------------------
    async def _describe_raw(self, cluster: str, services: list[str], *, tags: bool = False) -> dict[str, dict]:
        """Described services by name, 10 per call (the API's limit); missing ones left out."""
        found: dict[str, dict] = {}
        for start in range(0, len(services), 10):
            batch = services[start:start + 10]
            extra = {"include": ["TAGS"]} if tags else {}
            answer = await self._call(f"describe services {', '.join(batch)}", self._ecs.describe_services,
                                      cluster=cluster, services=batch, **extra)
            for data in answer.get("services", []):
                found[data["serviceName"]] = data
        return found

    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, ServiceState | None]:
        """Each named service, None when missing or INACTIVE."""
        found = await self._describe_raw(cluster, services)
        return {name: (_state(cluster, found[name]) if name in found and found[name]["status"] != "INACTIVE"
                       else None) for name in services}

    async def describe_service(self, cluster: str, service: str) -> ServiceState | None:
        return (await self.describe_services(cluster, [service]))[service]

    async def _existing(self, cluster: str, service: str) -> ServiceState:
        state = await self.describe_service(cluster, service)
        if state is None:
            raise NotFound(SYSTEM, f"service {service} not found in cluster {cluster}")
        return state

    # -- task definitions ----------------------------------------------------------------------
    async def _task_definition(self, task_definition: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
        answer = await self._call(f"describe task definition {task_definition}",
                                  self._ecs.describe_task_definition, taskDefinition=task_definition,
                                  include=["TAGS"])
        return answer["taskDefinition"], answer.get("tags") or []

    @staticmethod
    def _container(definition: dict[str, Any], container: str) -> dict[str, Any]:
        candidates: list[dict[str, Any]] = definition["containerDefinitions"]
        for candidate in candidates:
            if candidate["name"] == container:
                return candidate
        raise NotFound(SYSTEM, f"container {container} is not in task definition {definition['taskDefinitionArn']}")

    async def image_of(self, task_definition: str, container: str) -> str:
        definition, _ = await self._task_definition(task_definition)
        return str(self._container(definition, container)["image"])

    async def register_with_image(self, task_definition: str, container: str, image: str, *,
                                  tags: Mapping[str, str] | None = None) -> str:
        """A new revision of the same family with `container`'s image replaced and all else copied; its ARN.
        It carries the old revision's tags, and `tags` on top (replacing the values of keys it shares)."""
        definition, old_tags = await self._task_definition(task_definition)
        self._container(definition, container)["image"] = image
        # what DescribeTaskDefinition adds (ARN, revision, status, registeredAt...) is not accepted back
        params = {k: copy.deepcopy(v) for k, v in definition.items() if k in self._register_fields}
        merged = {t["key"]: t.get("value", "") for t in old_tags}
        merged.update(tags or {})
        if merged:
            params["tags"] = [{"key": k, "value": v} for k, v in merged.items()]
        answer = await self._call(f"register task definition {definition['family']}",
                                  self._ecs.register_task_definition, **params)
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    async def find_revision(self, family: str, key: str, value: str, *, newest: int = NEWEST_REVISIONS,
                            after: int | None = None) -> str | None:
        """The newest ACTIVE revision of `family` tagged `key=value`, or None. Only the family's `newest`
        revisions are looked at, and none numbered `after` or below: a deploy's revision is among the
        latest, newer than the one it was copied from, and each revision looked at costs a call."""
        for arn in await self._newest_revisions(family, newest, after):
            _, tags = await self._task_definition(arn)
            if _tagged(tags, key, value):
                return arn
        return None

    async def _newest_revisions(self, family: str, newest: int, after: int | None) -> list[str]:
        """The ARNs of the family's `newest` ACTIVE revisions numbered above `after`, newest first."""
        arns: list[str] = []
        token: str | None = None
        while len(arns) < newest:
            extra = {"nextToken": token} if token else {}
            answer = await self._call(f"list task definitions of {family}", self._ecs.list_task_definitions,
                                      familyPrefix=family, status="ACTIVE", sort="DESC",
                                      maxResults=min(100, newest - len(arns)), **extra)
            page = answer.get("taskDefinitionArns") or []
            fresh = [a for a in page if after is None or (revision_of(a) or 0) > after]
            arns += fresh
            token = answer.get("nextToken")
            if not token or len(fresh) < len(page):  # newest first: what follows is older still
                break
        return arns[:newest]

    async def register_once(self, task_definition: str, container: str, image: str, *, key: str, value: str,
                            tags: Mapping[str, str] | None = None) -> str:
        """`register_with_image` tagged `key=value` (e.g. the deploy's id), unless a revision of the family
        already carries that tag: then that one, so that a step resumed after a crash registers nothing."""
        found = await self.find_revision(family_of(task_definition), key, value,
                                         after=revision_of(task_definition))
        if found is not None:
            return found
        return await self.register_with_image(task_definition, container, image, tags={**(tags or {}), key: value})

    async def deregister_task_definition(self, task_definition: str, *, tagged: str | None = None) -> bool:
        """Mark a revision INACTIVE (services already on it keep running and scaling); one already INACTIVE is
        left, and so is one without the tag key `tagged`, when given. Whether it was deregistered now."""
        definition, tags = await self._task_definition(task_definition)
        if definition.get("status") != "ACTIVE" or (tagged is not None and not _tagged(tags, tagged)):
            return False
        await self._call(f"deregister task definition {task_definition}", self._ecs.deregister_task_definition,
                         taskDefinition=task_definition)
        return True

    async def deregister_copies(self, task_definition: str, key: str, value: str) -> list[str]:
        """Deregister what `register_once` registered from `task_definition` with the tag `key=value`: every
        ACTIVE revision of its family newer than it with that tag (among the newest, as `find_revision`
        looks); the ARNs deregistered."""
        gone = []
        for arn in await self._newest_revisions(family_of(task_definition), NEWEST_REVISIONS,
                                                revision_of(task_definition)):
            definition, tags = await self._task_definition(arn)
            if definition.get("status") == "ACTIVE" and _tagged(tags, key, value):
                await self._call(f"deregister task definition {arn}", self._ecs.deregister_task_definition,
                                 taskDefinition=arn)
                gone.append(arn)
        return gone

    async def task_definition_tags(self, task_definition: str) -> dict[str, str]:
        _, tags = await self._task_definition(task_definition)
        return {t["key"]: t.get("value", "") for t in tags}

    # -- canaries ------------------------------------------------------------------------------
    async def create_canary(self, cluster: str, service: str, canary: str, task_definition: str, count: int) -> bool:
        """Run `count` tasks of `task_definition` as service `canary`, placed, load-balanced and discoverable like
        `service`. True when the canary is only a Service Connect client: `service` publishes endpoints there,
        which no other service may publish too, so the canary takes none of that traffic."""
        found = await self._describe_raw(cluster, [service, canary], tags=True)
        main, existing = found.get(service), found.get(canary)
        if main is None or main["status"] == "INACTIVE":
            raise NotFound(SYSTEM, f"service {service} not found in cluster {cluster}")
        primary: dict[str, Any] = next((d for d in main.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
        connect: dict[str, Any] = primary.get("serviceConnectConfiguration") or {}
        client_only = bool(connect.get("enabled") and connect.get("services"))
        if existing is not None and existing["status"] == "ACTIVE":
            await self._update_canary(cluster, canary, task_definition, count, existing)
            return client_only
        params: dict[str, Any] = {
            "cluster": cluster,
            "serviceName": canary,
            "taskDefinition": task_definition,
            "desiredCount": count,
            # the breaker gives up on a canary that cannot start; rolling back is the deploy's decision
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                                        "deploymentCircuitBreaker": dict(_OUR_BREAKER)},
            "tags": [t for t in main.get("tags") or [] if t.get("key") != CANARY_TAG]
                    + [{"key": CANARY_TAG, "value": service}],
        }
        if main.get("capacityProviderStrategy"):
            params["capacityProviderStrategy"] = main["capacityProviderStrategy"]
        elif main.get("launchType"):
            params["launchType"] = main["launchType"]
        for key in _CANARY_COPIES:
            if main.get(key) not in (None, [], {}):
                params[key] = copy.deepcopy(main[key])
        if connect.get("enabled"):
            # in the namespace as a client (its calls to other services go through as the service's do)
            params["serviceConnectConfiguration"] = {k: copy.deepcopy(v) for k, v in connect.items() if k != "services"}
        role = main.get("roleArn")
        # ECS refuses a role for awsvpc services, and its own service-linked role is never passed
        if role and not main.get("networkConfiguration") and "/aws-service-role/" not in role:
            params["role"] = role
        try:
            await self._call(f"create service {canary}", self._ecs.create_service, **params)
        except Conflict:  # created by an earlier attempt whose answer was lost
            await self._update_canary(cluster, canary, task_definition, count, None)
        return client_only

    async def _update_canary(self, cluster: str, canary: str, task_definition: str, count: int,
                             existing: dict[str, Any] | None) -> None:
        if existing is not None and existing["taskDefinition"] == task_definition and existing["desiredCount"] == count:
            return
        await self._call(f"update service {canary}", self._ecs.update_service, cluster=cluster, service=canary,
                         taskDefinition=task_definition, desiredCount=count)

    async def canary_ready(self, cluster: str, canary: str, task_definition: str, count: int) -> Progress:
        return (await self.canaries_ready(cluster, {canary: task_definition}, count))[canary]

    async def canaries_ready(self, cluster: str, canaries: Mapping[str, str], count: int) -> dict[str, Progress]:
        """How far each canary service (name -> the task definition it should run) has come: up when `count`
        tasks run that task definition and its target groups find them healthy. One DescribeServices for all
        of them, and one DescribeTasks for those whose tasks are running."""
        states = await self.describe_services(cluster, list(canaries))
        progress: dict[str, Progress] = {}
        up: list[tuple[str, ServiceState]] = []
        for canary, task_definition in canaries.items():
            state = states[canary]
            if state is None:
                raise NotFound(SYSTEM, f"service {canary} not found in cluster {cluster}")
            primary = state.primary
            running = primary.running if primary is not None and primary.task_definition == task_definition else 0
            failure = await self._failure(cluster, state, task_definition, threshold=failure_threshold(count))
            if failure is not None:
                progress[canary] = Progress(done=False, failed=True, reason=failure, running=running, desired=count)
            elif running >= count:
                up.append((canary, state))
            else:
                progress[canary] = Progress(done=False, failed=False, reason=None, running=running, desired=count)
        tasks = await self._running_tasks(cluster, [state.name for _, state in up])
        for canary, state in up:
            healthy = await self._healthy_tasks(state, canaries[canary], tasks.get(canary, []))
            progress[canary] = Progress(done=healthy >= count, failed=False, reason=None,
                                        running=state.primary.running if state.primary else 0, desired=count,
                                        healthy=healthy,
                                        load_balanced=any(b.get("targetGroupArn") for b in state.load_balancers))
        return progress

    async def _running_tasks(self, cluster: str, services: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The RUNNING tasks of each service: a ListTasks each (it takes one service), one DescribeTasks."""
        arns: dict[str, str] = {}
        for service in services:
            listed = await self._call(f"list tasks of {service}", self._ecs.list_tasks, cluster=cluster,
                                      serviceName=service, desiredStatus="RUNNING", maxResults=100)
            arns.update({arn: service for arn in listed.get("taskArns") or []})
        found: dict[str, list[dict[str, Any]]] = {service: [] for service in services}
        batch = list(arns)
        for start in range(0, len(batch), 100):
            answer = await self._call("describe tasks", self._ecs.describe_tasks, cluster=cluster,
                                      tasks=batch[start:start + 100])
            for task in answer.get("tasks") or []:
                found[arns[task["taskArn"]]].append(task)
        return found

    async def _healthy_tasks(self, state: ServiceState, task_definition: str, tasks: list[dict[str, Any]]) -> int:
        """Running tasks on `task_definition` that every target group of the service finds healthy."""
        groups = [b["targetGroupArn"] for b in state.load_balancers if b.get("targetGroupArn")]
        addresses = [_address(t) for t in tasks
                     if t.get("lastStatus") == "RUNNING" and t.get("taskDefinitionArn") == task_definition]
        unchecked = sum(a is None for a in addresses)
        healthy = [a for a in addresses if a is not None]
        for group in groups if healthy else []:
            answer = await self._call(f"describe target health {group}", self._elb.describe_target_health,
                                      TargetGroupArn=group, Targets=[{"Id": a} for a in healthy])
            good = {d["Target"]["Id"] for d in answer.get("TargetHealthDescriptions", [])
                    if d.get("TargetHealth", {}).get("State") == "healthy"}
            healthy = [a for a in healthy if a in good]
        return unchecked + len(healthy)

    async def _tasks(self, cluster: str, service: str, status: str, limit: int = 100) -> list[dict[str, Any]]:
        listed = await self._call(f"list tasks of {service}", self._ecs.list_tasks, cluster=cluster,
                                  serviceName=service, desiredStatus=status, maxResults=limit)
        if not listed.get("taskArns"):
            return []
        answer = await self._call(f"describe tasks of {service}", self._ecs.describe_tasks, cluster=cluster,
                                  tasks=listed["taskArns"])
        tasks: list[dict[str, Any]] = answer.get("tasks", [])
        return tasks

    async def _failure(self, cluster: str, state: ServiceState, task_definition: str,
                       threshold: int | None = None) -> str | None:
        """Why the service's move to `task_definition` failed, or None while it has not."""
        primary = state.primary
        if primary is None or not state.on(task_definition):
            on = primary.task_definition if primary is not None else state.task_definition
            return f"service {state.name} is on {on}, no longer on {task_definition}"
        if primary.rollout_state == "FAILED":
            reason = primary.rollout_reason or "deployment failed"
        elif threshold is not None and primary.failed >= threshold:
            reason = f"{primary.failed} tasks failed to start"
        else:
            return None
        stopped = await self._last_stop_reason(cluster, state.name, task_definition)
        return f"{reason} (last task: {stopped})" if stopped else reason

    async def _last_stop_reason(self, cluster: str, service: str, task_definition: str) -> str | None:
        """Why the latest task of `task_definition` that failed (not stopped by the scheduler) stopped."""

        def failed(task: dict[str, Any]) -> bool:
            # ECS stops a task that fails its load balancer health checks itself, and says so
            unasked = (task.get("stopCode") != "ServiceSchedulerInitiated"
                       or "health checks" in (task.get("stoppedReason") or ""))
            return task.get("taskDefinitionArn") == task_definition and unasked

        tasks = [t for t in await self._tasks(cluster, service, "STOPPED", limit=20) if failed(t)]
        if not tasks:
            return None
        last = max(tasks, key=lambda t: t.get("stoppedAt") or t.get("createdAt") or 0)
        reasons = [last.get("stoppedReason")] + [c.get("reason") for c in last.get("containers", [])]
        return "; ".join(dict.fromkeys(r for r in reasons if r)) or None

    async def delete_service(self, cluster: str, service: str) -> None:
        """Scale to 0 and delete; a missing, draining or inactive service is left as it is."""
        state = await self.describe_service(cluster, service)
        if state is None or state.status != "ACTIVE":
            return
        try:
            if state.desired:
                await self._call(f"scale {service} to 0", self._ecs.update_service, cluster=cluster,
                                 service=service, desiredCount=0)
            await self._call(f"delete service {service}", self._ecs.delete_service, cluster=cluster,
                             service=service, force=True)
        except NotFound:  # deleted meanwhile by someone else: what we wanted
            return

    # -- rolling updates -----------------------------------------------------------------------
    async def rolling_update(self, cluster: str, service: str, task_definition: str, batch_percent: int, *,
                             alarms: Sequence[str] = (), alarm_rollback: bool = True) -> None:
        """Move the service to `task_definition` a batch at a time (the circuit breaker on, no ECS rollback).
        With `alarms`, ECS watches those CloudWatch alarms too and stops the rollout when one goes into ALARM
        (rolling back by itself unless `alarm_rollback` is False)."""
        state = await self._existing(cluster, service)
        if state.on(task_definition):
            return
        config: dict[str, Any] = {
            "maximumPercent": max_percent(state.desired, batch_percent), "minimumHealthyPercent": 100,
            "deploymentCircuitBreaker": dict(_OUR_BREAKER)}
        if alarms:
            config["alarms"] = {"alarmNames": list(dict.fromkeys(alarms)), "enable": True,
                                "rollback": alarm_rollback}
        await self._call(f"update service {service}", self._ecs.update_service, cluster=cluster, service=service,
                         taskDefinition=task_definition, deploymentConfiguration=config)

    async def rollout_progress(self, cluster: str, service: str, task_definition: str) -> Progress:
        return await self._progress(cluster, await self._existing(cluster, service), task_definition)

    async def rollouts_progress(self, cluster: str, task_definitions: dict[str, str]) -> dict[str, Progress]:
        """`rollout_progress` of several services (name → the task definition each moves to), read with one
        DescribeServices call per 10 services instead of one each: a rollout is polled every half second."""
        found = await self.describe_services(cluster, list(task_definitions))
        missing = [name for name, state in found.items() if state is None]
        if missing:
            raise NotFound(SYSTEM, f"service {missing[0]} not found in cluster {cluster}")
        return {name: await self._progress(cluster, state, task_definitions[name])
                for name, state in found.items() if state is not None}

    async def _progress(self, cluster: str, state: ServiceState, task_definition: str) -> Progress:
        primary = state.primary
        running = primary.running if primary is not None else state.running
        desired = primary.desired if primary is not None else state.desired
        failure = await self._failure(cluster, state, task_definition)
        if failure is not None:
            by_alarm = _alarm_failure(state, task_definition)
            if by_alarm is None:
                return Progress(done=False, failed=True, reason=failure, running=running, desired=desired)
            names, said, words = by_alarm
            return Progress(done=False, failed=True, reason=f"{said}; ECS: {words}", running=running,
                            desired=desired, by_alarm=True, alarms=names)
        if primary is None:  # _failure reports a service without one; this keeps the type checker informed
            return Progress(done=False, failed=True, reason="the service has no deployment", running=running,
                            desired=desired)
        done = primary.rollout_state == "COMPLETED" or (
            primary.rollout_state is None and len(state.deployments) == 1 and running == desired)
        return Progress(done=done, failed=False, reason=None, running=running, desired=desired)

    async def deployment_configuration(self, cluster: str, service: str) -> dict[str, Any]:
        """The service's own deploymentConfiguration as ECS describes it: what to keep before a rollout
        changes it, and to give `restore_deployment_configuration` after."""
        state = await self._existing(cluster, service)
        return copy.deepcopy(state.deployment_configuration or {})

    async def restore_deployment_configuration(self, cluster: str, service: str, config: Mapping[str, Any]) -> bool:
        """Put back a deploymentConfiguration read with `deployment_configuration` (starts no deployment); whether
        anything was sent (nothing is when the service has it already). UpdateService keeps what it is not given,
        so a circuit breaker or deployment alarms the saved configuration lacks are switched off explicitly.
        Only for a stable service: its own circuit breaker or alarms, with rollback on, would move it back to its
        last completed deployment."""
        wanted = copy.deepcopy(dict(config))
        state = await self._existing(cluster, service)
        current = state.deployment_configuration or {}
        for key, off in _SWITCHED_OFF.items():
            if key in current and key not in wanted:
                wanted[key] = copy.deepcopy(off)
        if current == wanted:
            return False
        await self._call(f"restore deployment configuration of {service}", self._ecs.update_service,
                         cluster=cluster, service=service, deploymentConfiguration=wanted)
        return True

    async def restore(self, cluster: str, service: str, task_definition: str) -> None:
        """Put the service back on exactly `task_definition` (an ARN it ran before), with ECS's own rollbacks off
        meanwhile (our circuit breaker, no deployment alarms): they move a service back to its last completed
        deployment, which may be the very one being undone."""
        state = await self._existing(cluster, service)
        if state.on(task_definition):
            return
        config = copy.deepcopy(state.deployment_configuration or {})
        config["deploymentCircuitBreaker"] = dict(_OUR_BREAKER)
        if (config.get("alarms") or {}).get("enable"):
            config["alarms"] = copy.deepcopy(NO_ALARMS)
        await self._call(f"restore service {service}", self._ecs.update_service, cluster=cluster, service=service,
                         taskDefinition=task_definition, deploymentConfiguration=config)

    async def scale(self, cluster: str, service: str, desired: int) -> None:
        await self._call(f"scale {service} to {desired}", self._ecs.update_service, cluster=cluster,
                         service=service, desiredCount=desired)

    async def point_service(self, cluster: str, service: str, task_definition: str, desired: int) -> None:
        """Run `desired` tasks of `task_definition` (a preview environment's services)."""
        await self._call(f"point service {service}", self._ecs.update_service, cluster=cluster, service=service,
                         taskDefinition=task_definition, desiredCount=desired)

    # -- images --------------------------------------------------------------------------------
    async def image_exists(self, image: str) -> bool:
        """Whether an ECR image URI (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`) has been pushed."""
        match = _ECR_IMAGE.match(image)
        if match is None:
            raise PermanentError(SYSTEM, f"{image} is not an ECR image URI")
        image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"] or "latest"}
        ecr = self._client("ecr", match["region"])
        try:
            await self._call(f"describe image {image}", ecr.describe_images, registryId=match["registry"],
                             repositoryName=match["repository"], imageIds=[image_id])
        except NotFound:
            return False
        return True

    # -- checks for `fatcontroller doctor`: what the credentials may read (no writes) -------------------------
    @dataclass(frozen=True)
    class ServiceAccess:
        """One service as the doctor sees it: its status and what its task definition holds."""

        name: str
        status: str | None  # ACTIVE or DRAINING; None when missing (or INACTIVE)
        task_definition: str | None = None
        containers: tuple[str, ...] = ()
        roles: tuple[str, ...] = ()  # the task definition's execution and task roles (passed to ECS)
        unreadable: str | None = None  # why the task definition could not be described

    @dataclass(frozen=True)
    class ImageRepository:
        """The ECR repository of an image URI."""

        name: str
        registry: str
        region: str
        exists: bool
        refused: str | None = None  # AWS's words when it would not say (a missing permission)

    # the codes that refuse the credentials themselves rather than one permission
    _CREDENTIALS_REFUSED = ("UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                            "ExpiredToken", "no AWS credentials")

    def credentials_refused(self, error: OutsideError) -> bool:
        """Whether `error` says AWS does not accept the credentials at all (not that one permission is missing)."""
        from integrations.aws import AccessDenied

        return isinstance(error, AccessDenied) and any(code in error.message for code in self._CREDENTIALS_REFUSED)

    async def cluster_status(self, cluster: str) -> str | None:
        """The cluster's status (ACTIVE, PROVISIONING, INACTIVE...), None when it does not exist."""
        answer = await self._call(f"describe cluster {cluster}", self._ecs.describe_clusters, clusters=[cluster])
        found = answer.get("clusters") or []
        return str(found[0].get("status")) if found else None

    async def service_access(self, cluster: str, services: list[str], *,
                             task_definitions: bool = True) -> dict[str, Ecs.ServiceAccess]:
        """Each named service, and (with `task_definitions`) the containers and roles of the one it runs;
        NotFound when the cluster does not exist."""
        states = await self.describe_services(cluster, services)
        found: dict[str, Ecs.ServiceAccess] = {}
        for name, state in states.items():
            if state is None or not task_definitions:
                found[name] = Ecs.ServiceAccess(name, state.status if state else None,
                                                state.task_definition if state else None)
                continue
            try:
                definition, _ = await self._task_definition(state.task_definition)
            except TransientError:
                raise
            except OutsideError as error:
                found[name] = Ecs.ServiceAccess(name, state.status, state.task_definition, unreadable=error.message)
                continue
            roles = tuple(str(definition[key]) for key in ("executionRoleArn", "taskRoleArn") if definition.get(key))
            found[name] = Ecs.ServiceAccess(
                name, state.status, state.task_definition,
                containers=tuple(str(c["name"]) for c in definition.get("containerDefinitions") or []), roles=roles)
        return found

    async def image_repository(self, image: str) -> Ecs.ImageRepository | None:
        """Whether the ECR repository of `image` exists (one DescribeImages: the permission the train has);
        None when `image` is not an ECR URI."""
        match = _ECR_IMAGE.match(image)
        if match is None:
            return None
        name, registry, region = match["repository"], match["registry"], match["region"]
        ecr = self._client("ecr", region)
        try:
            await self._call(f"describe images of {name}", ecr.describe_images, registryId=registry,
                             repositoryName=name, maxResults=1)
        except NotFound:
            return Ecs.ImageRepository(name, registry, region, exists=False)
        except TransientError:
            raise
        except PermanentError as error:
            return Ecs.ImageRepository(name, registry, region, exists=False, refused=error.message)
        return Ecs.ImageRepository(name, registry, region, exists=True)


def _address(task: dict[str, Any]) -> str | None:
    """The task's private IP (awsvpc), the ID its load balancer targets have."""
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address":
                value = detail.get("value")
                return None if value is None else str(value)
    return None
