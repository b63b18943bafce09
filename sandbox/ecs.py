"""The ECS half of the AWS emulator: clusters, task definitions, and services whose deployments move.

moto's ECS records an UpdateService and never moves the rollout; this one moves it, one step of
simulated time per `step()` (the emulator's ticker calls it), the way the ECS rolling-update
scheduler does:

- a service has deployments, newest (the PRIMARY) first. UpdateService with another task
  definition, or forceNewDeployment, adds a PRIMARY and turns the previous one ACTIVE;
- each step, tasks move PENDING → RUNNING (after one step) → healthy (one more step when the
  service has load balancers, at once otherwise). Then tasks of older deployments are stopped
  while at least ceil(desired * minimumHealthyPercent / 100) healthy tasks remain, and the
  PRIMARY starts tasks while running + pending stays ≤ floor(desired * maximumPercent / 100)
  (the roundings the ECS documentation gives);
- when the PRIMARY runs `desired` healthy tasks and nothing else is left, the old deployments
  are gone, the rollout is COMPLETED and the service "has reached a steady state";
- a task whose image is unhealthy (`unhealthy_images`), or not in the registry when
  `require_pushed_images`, stops instead of running and counts as failed. With the circuit
  breaker on, enough failures mark the PRIMARY FAILED (it stops launching tasks); with rollback
  on, a new PRIMARY goes back to the task definition of the last COMPLETED deployment;
- deployment alarms (`deploymentConfiguration.alarms`, read from the CloudWatch emulator) do the
  same when one of them is in ALARM while the PRIMARY is IN_PROGRESS. As ECS documents, a
  deployment that starts while one of its alarms is already in ALARM is not watched at all, and
  a rollback deployment is not watched either; once steady, a watched deployment bakes for
  `alarm_bake_steps` steps (ECS derives its bake time from the alarms) before it is COMPLETED.

Task definitions, services and clusters keep their tags (TagResource, UntagResource,
ListTagsForResource); a deregistered (INACTIVE) revision can still be described and keeps
running where it runs, but no service can be created or updated onto it. Services keep every
placement and discovery setting as given: `serviceRegistries` on the service, and
`serviceConnectConfiguration` on each deployment (where DescribeServices reports it).

Not thread-safe by itself: the emulator serialises every call under its lock.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sandbox.cloudwatch import ALARM, CloudWatchBackend
from sandbox.ecr import ACCOUNT_ID, AwsError, Registry, paginate

PRIMARY, ACTIVE, DRAINING, INACTIVE = "PRIMARY", "ACTIVE", "DRAINING", "INACTIVE"
PENDING, RUNNING, STOPPED = "PENDING", "RUNNING", "STOPPED"
IN_PROGRESS, COMPLETED, FAILED = "IN_PROGRESS", "COMPLETED", "FAILED"

BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
ESSENTIAL_EXITED = "Essential container in task exited"
SERVICE_LINKED_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}
_SERVICE_EXTRAS = ("placementConstraints", "placementStrategy", "healthCheckGracePeriodSeconds",
                   "propagateTags", "enableECSManagedTags", "enableExecuteCommand", "serviceRegistries")
_STOPPED_TASKS_KEPT = 500  # per cluster; ECS too forgets stopped tasks after a while
_FAMILY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_MAX_TAGS = 50
# ARNs that carry tags: cluster/<name>, service/<cluster>/<name>, task-definition/<family>:<revision>
_TAGGABLE = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:(?P<kind>cluster|service|task-definition)/"
                       r"(?P<path>[^/]+(?:/[^/]+)?)$")
# what a request names, by parameter: (parameter, kind of resource)
_NAMED = (("service", "service"), ("serviceName", "service"), ("services", "service"),
          ("taskDefinition", "task-definition"), ("tasks", "task"), ("resourceArn", "arn"))
# the emulated tag-on-create calls, and the kind of resource each creates: tags given to one are authorised
# as ecs:TagResource on it too, with ecs:CreateAction naming the call (AWS's "tag resources on creation")
_TAG_ON_CREATE = {"CreateCluster": "cluster", "CreateService": "service", "RegisterTaskDefinition": "task-definition"}
# the roles a call passes, and to whom: each is authorised as iam:PassRole with iam:PassedToService
_PASSED_ROLES = {"RegisterTaskDefinition": (("executionRoleArn", "taskRoleArn"), "ecs-tasks.amazonaws.com"),
                 "CreateService": (("role",), "ecs.amazonaws.com")}


def _alarm_list(names: list[str]) -> str:
    return f"alarm {names[0]}" if len(names) == 1 else f"alarms {', '.join(names)}"


def _name(identifier: str) -> str:
    """The name at the end of an ARN (`...:service/cluster/name`), or the name itself."""
    return identifier.rsplit("/", 1)[-1]


def _bad(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


class Failure(NamedTuple):
    """Why a task stopped without being asked to."""

    container: str
    exit_code: int | None
    reason: str
    stop_code: str


@dataclass(eq=False)
class TaskDefinition:
    family: str
    revision: int
    region: str
    fields: dict[str, Any]  # as registered (ECS's defaults filled in), tags apart
    tags: list[dict[str, str]]
    status: str = ACTIVE
    registered_at: float = field(default_factory=time.time)
    deregistered_at: float | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:ecs:{self.region}:{ACCOUNT_ID}:task-definition/{self.family}:{self.revision}"

    @property
    def containers(self) -> list[dict[str, Any]]:
        return self.fields["containerDefinitions"]

    @property
    def awsvpc(self) -> bool:
        return self.fields.get("networkMode") == "awsvpc"

    @property
    def fargate(self) -> bool:
        return "FARGATE" in self.fields.get("requiresCompatibilities", [])

    def describe(self) -> dict[str, Any]:
        compatibilities = ["EC2"]
        if self.awsvpc and self.fields.get("cpu") and self.fields.get("memory"):
            compatibilities.append("FARGATE")
        described = {
            "taskDefinitionArn": self.arn,
            **copy.deepcopy(self.fields),
            "revision": self.revision,
            "status": self.status,
            "requiresAttributes": [],
            "compatibilities": compatibilities,
            "registeredAt": self.registered_at,
            "registeredBy": f"arn:aws:iam::{ACCOUNT_ID}:root",
        }
        if self.deregistered_at is not None:
            described["deregisteredAt"] = self.deregistered_at
        return described


@dataclass(eq=False)
class Deployment:
    id: str
    task_definition: TaskDefinition
    desired: int
    status: str = PRIMARY
    rollout_state: str = IN_PROGRESS
    rollout_reason: str = ""
    failed_tasks: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    rollback: bool = False  # started by ECS itself to undo a failed deployment
    alarms_ignored: bool = False  # an alarm was already in ALARM when it started: ECS does not watch it
    steady_at: int | None = None  # the step it first ran steady (for the alarms' bake time)
    service_connect: dict[str, Any] | None = None  # the serviceConnectConfiguration it was made with

    def __post_init__(self) -> None:
        if not self.rollout_reason:
            self.rollout_reason = f"ECS deployment {self.id} in progress."


@dataclass(eq=False)
class Cluster:
    name: str
    region: str
    tags: list[dict[str, str]] = field(default_factory=list)
    services: dict[str, Service] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)  # by id: live and recently stopped

    @property
    def arn(self) -> str:
        return f"arn:aws:ecs:{self.region}:{ACCOUNT_ID}:cluster/{self.name}"

    def describe(self, include_tags: bool) -> dict[str, Any]:
        live = [t for t in self.tasks.values() if t.live]
        described = {
            "clusterArn": self.arn,
            "clusterName": self.name,
            "status": ACTIVE,
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": sum(t.last_status == RUNNING for t in live),
            "pendingTasksCount": sum(t.last_status == PENDING for t in live),
            "activeServicesCount": sum(s.status == ACTIVE for s in self.services.values()),
            "statistics": [],
            "settings": [{"name": "containerInsights", "value": "disabled"}],
            "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
            "defaultCapacityProviderStrategy": [],
        }
        if include_tags:
            described["tags"] = copy.deepcopy(self.tags)
        return described


@dataclass(eq=False)
class Task:
    id: str
    cluster: Cluster
    service: Service
    deployment: Deployment
    task_definition: TaskDefinition
    ip: str
    last_status: str = PENDING
    healthy: bool = False  # passes the health checks that gate a rollout
    failing_checks: bool = False  # running, but its load balancer health checks fail
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stopped_at: float | None = None
    stopped_reason: str | None = None
    stop_code: str | None = None
    failure: Failure | None = None
    version: int = 1

    @property
    def arn(self) -> str:
        return f"arn:aws:ecs:{self.cluster.region}:{ACCOUNT_ID}:task/{self.cluster.name}/{self.id}"

    @property
    def live(self) -> bool:
        return self.last_status != STOPPED

    def target_health(self) -> tuple[str, str | None, str | None]:
        """(State, Reason, Description) of this task as an ELBv2 target."""
        if self.failing_checks:
            return "unhealthy", "Target.FailedHealthChecks", "Health checks failed"
        if self.healthy:
            return "healthy", None, None
        return "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"

    def describe(self, include_tags: bool) -> dict[str, Any]:
        attachment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.id))
        containers = []
        for definition in self.task_definition.containers:
            container_id = uuid.uuid5(uuid.NAMESPACE_URL, self.id + definition["name"])
            container: dict[str, Any] = {
                "containerArn": f"arn:aws:ecs:{self.cluster.region}:{ACCOUNT_ID}:container/"
                                f"{self.cluster.name}/{self.id}/{container_id}",
                "taskArn": self.arn,
                "name": definition["name"],
                "image": definition["image"],
                "lastStatus": self.last_status,
                "healthStatus": "UNKNOWN",
                "cpu": str(definition.get("cpu", 0)),
            }
            if self.task_definition.awsvpc:
                container["networkInterfaces"] = [{"attachmentId": attachment_id, "privateIpv4Address": self.ip}]
            if self.failure is not None and self.failure.container == definition["name"]:
                if self.failure.exit_code is not None:
                    container["exitCode"] = self.failure.exit_code
                container["reason"] = self.failure.reason
            elif self.last_status == STOPPED and self.started_at is not None:
                container["exitCode"] = 0
            containers.append(container)
        described: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster.arn,
            "taskDefinitionArn": self.task_definition.arn,
            "group": f"service:{self.service.name}",
            "startedBy": self.deployment.id,
            "lastStatus": self.last_status,
            "desiredStatus": STOPPED if self.last_status == STOPPED else RUNNING,
            "healthStatus": "HEALTHY" if self.healthy else "UNKNOWN",
            "createdAt": self.created_at,
            "availabilityZone": f"{self.cluster.region}a",
            "connectivity": "CONNECTED",
            "containers": containers,
            "version": self.version,
            "attachments": [],
        }
        if self.service.launch_type:
            described["launchType"] = self.service.launch_type
        for key in ("cpu", "memory"):
            if self.task_definition.fields.get(key):
                described[key] = self.task_definition.fields[key]
        if self.task_definition.awsvpc:
            subnets = ((self.service.network_configuration or {}).get("awsvpcConfiguration") or {}).get("subnets")
            described["attachments"] = [{
                "id": attachment_id,
                "type": "ElasticNetworkInterface",
                "status": "DELETED" if self.last_status == STOPPED else "ATTACHED",
                "details": [
                    {"name": "subnetId", "value": (subnets or ["subnet-0sandbox"])[0]},
                    {"name": "networkInterfaceId", "value": f"eni-{self.id[:17]}"},
                    {"name": "privateIPv4Address", "value": self.ip},
                ],
            }]
        if self.started_at is not None:
            described["startedAt"] = self.started_at
        if self.stopped_at is not None:
            described.update(stoppingAt=self.stopped_at, stoppedAt=self.stopped_at,
                             executionStoppedAt=self.stopped_at, stoppedReason=self.stopped_reason,
                             stopCode=self.stop_code)
        if include_tags:
            described["tags"] = []
        return described


@dataclass(eq=False)
class Service:
    name: str
    cluster: Cluster
    desired: int
    launch_type: str | None
    capacity_provider_strategy: list[dict[str, Any]]
    platform_version: str | None
    network_configuration: dict[str, Any] | None
    load_balancers: list[dict[str, Any]]
    deployment_configuration: dict[str, Any]
    role_arn: str | None
    tags: list[dict[str, str]]
    extras: dict[str, Any]  # accepted and echoed, without behaviour here
    service_connect: dict[str, Any] | None = None  # given on create or update; described per deployment
    status: str = ACTIVE
    created_at: float = field(default_factory=time.time)
    deployments: list[Deployment] = field(default_factory=list)  # the PRIMARY first
    tasks: list[Task] = field(default_factory=list)  # live ones
    events: deque = field(default_factory=lambda: deque(maxlen=100))  # newest first
    last_completed: Deployment | None = None
    steady: bool = False
    history: deque = field(default_factory=lambda: deque(maxlen=5000))

    @property
    def arn(self) -> str:
        return f"arn:aws:ecs:{self.cluster.region}:{ACCOUNT_ID}:service/{self.cluster.name}/{self.name}"

    @property
    def primary(self) -> Deployment:
        return self.deployments[0]

    def live(self, deployment: Deployment | None = None) -> list[Task]:
        return [t for t in self.tasks if deployment is None or t.deployment is deployment]

    def event(self, message: str) -> None:
        self.events.appendleft({"id": str(uuid.uuid4()), "createdAt": time.time(),
                                "message": f"(service {self.name}) {message}"})

    def counts(self, deployment: Deployment | None = None) -> dict[str, int]:
        tasks = self.live(deployment)
        return {"running": sum(t.last_status == RUNNING for t in tasks),
                "pending": sum(t.last_status == PENDING for t in tasks),
                "healthy": sum(t.healthy for t in tasks)}

    def describe_deployment(self, deployment: Deployment) -> dict[str, Any]:
        counts = self.counts(deployment)
        described: dict[str, Any] = {
            "id": deployment.id,
            "status": deployment.status,
            "taskDefinition": deployment.task_definition.arn,
            "desiredCount": deployment.desired,
            "pendingCount": counts["pending"],
            "runningCount": counts["running"],
            "failedTasks": deployment.failed_tasks,
            "createdAt": deployment.created_at,
            "updatedAt": deployment.updated_at,
            "rolloutState": deployment.rollout_state,
            "rolloutStateReason": deployment.rollout_reason,
        }
        if deployment.service_connect is not None:
            described["serviceConnectConfiguration"] = copy.deepcopy(deployment.service_connect)
        self._describe_placement(described)
        return described

    def _describe_placement(self, described: dict[str, Any]) -> None:
        if self.launch_type:
            described["launchType"] = self.launch_type
        if self.capacity_provider_strategy:
            described["capacityProviderStrategy"] = copy.deepcopy(self.capacity_provider_strategy)
        if self.platform_version:
            described["platformVersion"] = self.platform_version
            described["platformFamily"] = "Linux"
        if self.network_configuration:
            described["networkConfiguration"] = copy.deepcopy(self.network_configuration)

    def describe(self, include_tags: bool) -> dict[str, Any]:
        counts = self.counts()
        described: dict[str, Any] = {
            "serviceArn": self.arn,
            "serviceName": self.name,
            "clusterArn": self.cluster.arn,
            "loadBalancers": copy.deepcopy(self.load_balancers),
            "serviceRegistries": [],
            "status": self.status,
            "desiredCount": self.desired,
            "runningCount": counts["running"],
            "pendingCount": counts["pending"],
            "taskDefinition": self.primary.task_definition.arn,
            "deploymentConfiguration": copy.deepcopy(self.deployment_configuration),
            "deployments": [self.describe_deployment(d) for d in self.deployments],
            "events": list(self.events),
            "createdAt": self.created_at,
            "createdBy": f"arn:aws:iam::{ACCOUNT_ID}:root",
            "placementConstraints": [],
            "placementStrategy": [],
            "schedulingStrategy": "REPLICA",
            "deploymentController": {"type": "ECS"},
            "enableECSManagedTags": False,
            "propagateTags": "NONE",
            "enableExecuteCommand": False,
        }
        self._describe_placement(described)
        described.update(copy.deepcopy(self.extras))
        if self.role_arn or self.load_balancers:
            described["roleArn"] = self.role_arn or SERVICE_LINKED_ROLE
        if include_tags:
            described["tags"] = copy.deepcopy(self.tags)
        return described


class EcsBackend:
    """ECS state and operations, moved forward by `step()`."""

    def __init__(self, registry: Registry, cloudwatch: CloudWatchBackend | None = None) -> None:
        self.registry = registry
        self.cloudwatch = cloudwatch  # where deployment alarms are read; None: no alarm ever fires
        self.alarm_bake_steps = 0
        self.clusters: dict[str, Cluster] = {}
        self.task_definitions: dict[str, list[TaskDefinition]] = {}
        self.target_groups: set[str] = set()
        self.unhealthy_images: set[str] = set()
        self.require_pushed_images = True
        self.failure_threshold: int | None = None  # None: ECS's own formula
        self.clock = 0
        self._addresses = itertools.count(4)

    def handle(self, op: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        handler: Callable[[dict[str, Any], str], dict[str, Any]] | None = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise AwsError("UnknownOperationException", f"ECS operation {op} is not emulated")
        return handler(params, region)

    # -- lookups -----------------------------------------------------------------------------
    def cluster(self, identifier: str | None) -> Cluster:
        cluster = self.clusters.get(_name(identifier or "default"))
        if cluster is None:
            raise AwsError("ClusterNotFoundException", "Cluster not found.")
        return cluster

    def service(self, cluster: Cluster, identifier: str, *, active: bool = True) -> Service:
        service = cluster.services.get(_name(identifier))
        if service is None:
            raise AwsError("ServiceNotFoundException", "Service not found.")
        if active and service.status != ACTIVE:
            raise AwsError("ServiceNotActiveException", "Service was not ACTIVE.")
        return service

    def task_definition(self, identifier: str) -> TaskDefinition:
        """By `family` (latest ACTIVE revision), `family:revision` or full ARN."""
        family, _, revision = identifier.rsplit("task-definition/", 1)[-1].partition(":")
        revisions = self.task_definitions.get(family, [])
        if revision:
            if revision.isdigit() and 1 <= int(revision) <= len(revisions):
                return revisions[int(revision) - 1]
        else:
            active = [t for t in revisions if t.status == ACTIVE]
            if active:
                return active[-1]
        raise AwsError("ClientException", "Unable to describe task definition.")

    def _usable_task_definition(self, identifier: str | None) -> TaskDefinition:
        if not identifier:
            raise _bad("Task Definition can not be blank.")
        try:
            task_definition = self.task_definition(identifier)
        except AwsError:
            raise AwsError("ClientException", "TaskDefinition not found.") from None
        if task_definition.status != ACTIVE:
            raise AwsError("ClientException", "TaskDefinition is inactive")
        return task_definition

    # -- clusters and task definitions -------------------------------------------------------
    def _op_CreateCluster(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params.get("clusterName") or "default"
        cluster = self.clusters.get(name)
        if cluster is None:
            cluster = self.clusters[name] = Cluster(name, region, copy.deepcopy(params.get("tags", [])))
        return {"cluster": cluster.describe(include_tags=True)}

    def _op_DescribeClusters(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        include_tags = "TAGS" in params.get("include", [])
        clusters, failures = [], []
        for identifier in params.get("clusters") or ["default"]:
            cluster = self.clusters.get(_name(identifier))
            if cluster is None:
                failures.append({"arn": f"arn:aws:ecs:{region}:{ACCOUNT_ID}:cluster/{_name(identifier)}",
                                 "reason": "MISSING"})
            else:
                clusters.append(cluster.describe(include_tags))
        return {"clusters": clusters, "failures": failures}

    def _op_RegisterTaskDefinition(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        fields = copy.deepcopy(params)
        tags = fields.pop("tags", [])
        family = fields.get("family", "")
        if not _FAMILY.match(family):
            raise AwsError("ClientException", "Family contains invalid characters or is too long.")
        containers = fields.get("containerDefinitions") or []
        if not containers:
            raise AwsError("ClientException", "Container list cannot be empty.")
        names = [c.get("name") for c in containers]
        if not all(names) or not all(c.get("image") for c in containers):
            raise AwsError("ClientException", "Container.name and Container.image should not be null or empty.")
        if len(set(names)) != len(names):
            raise AwsError("ClientException", "Duplicate container names are not allowed.")
        if not any(c.get("essential", True) for c in containers):
            raise AwsError("ClientException", "Task definition does not have any essential container.")
        if "FARGATE" in fields.get("requiresCompatibilities", []):
            if fields.get("networkMode") != "awsvpc":
                raise AwsError("ClientException", "Fargate only supports network mode 'awsvpc'.")
            for key in ("cpu", "memory"):
                if not fields.get(key):
                    raise AwsError("ClientException", f"Fargate requires that '{key}' be defined at the task level.")
        # ECS fills in defaults, so a described definition holds more than was registered
        fields.setdefault("volumes", [])
        fields.setdefault("placementConstraints", [])
        for container in containers:
            container.setdefault("cpu", 0)
            container.setdefault("essential", True)
            for key in ("portMappings", "environment", "mountPoints", "volumesFrom"):
                container.setdefault(key, [])
            for mapping in container["portMappings"]:
                mapping.setdefault("protocol", "tcp")
                if fields.get("networkMode") == "awsvpc":
                    mapping.setdefault("hostPort", mapping.get("containerPort"))
        revisions = self.task_definitions.setdefault(family, [])
        task_definition = TaskDefinition(family, len(revisions) + 1, region, fields, copy.deepcopy(tags))
        revisions.append(task_definition)
        return {"taskDefinition": task_definition.describe(), "tags": copy.deepcopy(tags)}

    def _op_DescribeTaskDefinition(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        task_definition = self.task_definition(params.get("taskDefinition", ""))
        described: dict[str, Any] = {"taskDefinition": task_definition.describe()}
        if "TAGS" in params.get("include", []):
            described["tags"] = copy.deepcopy(task_definition.tags)
        return described

    def _op_DeregisterTaskDefinition(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        identifier = params.get("taskDefinition", "")
        if ":" not in identifier.rsplit("task-definition/", 1)[-1]:
            raise AwsError("ClientException", "The specified task definition identifier is invalid. "
                                              "Specify a valid name or ARN and try again.")
        task_definition = self.task_definition(identifier)
        if task_definition.status == ACTIVE:
            task_definition.status, task_definition.deregistered_at = INACTIVE, time.time()
        return {"taskDefinition": task_definition.describe()}

    def _op_ListTaskDefinitions(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        status = params.get("status", ACTIVE)
        found = [t for family, revisions in sorted(self.task_definitions.items())
                 if family == params.get("familyPrefix", family)
                 for t in revisions if t.status == status]
        if params.get("sort") == "DESC":
            found.reverse()
        page, token = paginate(found, params, default=100, limit=100)
        return {"taskDefinitionArns": [t.arn for t in page], **({"nextToken": token} if token else {})}

    # -- tags --------------------------------------------------------------------------------
    def _tagged(self, arn: str) -> list[dict[str, str]]:
        """The tag list (itself, to change in place) of a cluster, service or task definition revision."""
        match = _TAGGABLE.match(arn or "")
        if match is None:
            raise _bad(f"Invalid identifier: Unexpected number of separators in {arn}" if arn
                       else "resourceArn can not be blank.")
        kind, path = match["kind"], match["path"]
        missing = AwsError("ResourceNotFoundException", "The specified resource wasn't found.")
        if kind == "cluster":
            cluster = self.clusters.get(path)
            if cluster is None:
                raise AwsError("ClusterNotFoundException", "Cluster not found.")
            return cluster.tags
        if kind == "service":
            cluster_name, _, name = path.partition("/")
            cluster = self.clusters.get(cluster_name)
            if cluster is None:
                raise AwsError("ClusterNotFoundException", "Cluster not found.")
            service = cluster.services.get(name)
            if service is None or service.status == INACTIVE:
                raise missing
            return service.tags
        family, _, revision = path.partition(":")
        revisions = self.task_definitions.get(family, [])
        if not revision.isdigit() or not 1 <= int(revision) <= len(revisions):
            raise missing
        return revisions[int(revision) - 1].tags

    def _op_TagResource(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        tags = self._tagged(params.get("resourceArn", ""))
        given = params.get("tags") or []
        for tag in given:
            if str(tag.get("key", "")).lower().startswith("aws:"):
                raise _bad("Tag keys prefixed with 'aws:' are reserved for AWS use.")
        merged = {t["key"]: t.get("value", "") for t in tags}
        merged.update({t["key"]: t.get("value", "") for t in given})
        if len(merged) > _MAX_TAGS:
            raise _bad(f"A resource can have at most {_MAX_TAGS} tags.")
        tags[:] = [{"key": k, "value": v} for k, v in merged.items()]
        return {}

    def _op_UntagResource(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        tags = self._tagged(params.get("resourceArn", ""))
        tags[:] = [t for t in tags if t["key"] not in set(params.get("tagKeys") or [])]
        return {}

    def _op_ListTagsForResource(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return {"tags": copy.deepcopy(self._tagged(params.get("resourceArn", "")))}

    # -- what a request names, for the call log ----------------------------------------------
    def resources(self, op: str, params: dict[str, Any], result: dict[str, Any] | None,
                  region: str) -> tuple[list[str], dict[str, str]]:
        """The ARNs a request names (services, task definitions, tasks, tagged resources, the cluster of a
        CreateCluster) and its ecs:cluster / ecs:task-definition condition keys."""
        prefix = f"arn:aws:ecs:{region}:{ACCOUNT_ID}"
        cluster_name = _name(params.get("clusterName") or params.get("cluster") or "default")
        cluster_arn = f"{prefix}:cluster/{cluster_name}"
        found: list[str] = [cluster_arn] if op in ("CreateCluster", "DeleteCluster") else []
        if op == "DescribeClusters":
            named = params.get("clusters") or ["default"]
            found = [f"{prefix}:cluster/{_name(c)}" for c in named if isinstance(c, str)]
        conditions: dict[str, str] = {}
        if "cluster" in params or op in ("ListServices", "ListTasks", "DescribeServices", "DescribeTasks",
                                         "CreateService", "UpdateService", "DeleteService"):
            conditions["ecs:cluster"] = cluster_arn
        for key, kind in _NAMED:
            values = params.get(key)
            for value in values if isinstance(values, list) else [values] if isinstance(values, str) else []:
                if value.startswith("arn:"):
                    found.append(value)
                elif kind == "service":
                    found.append(f"{prefix}:service/{cluster_name}/{value}")
                elif kind == "task":
                    found.append(f"{prefix}:task/{cluster_name}/{value}")
                elif kind == "task-definition":
                    try:
                        found.append(self.task_definition(value).arn)
                    except AwsError:
                        found.append(f"{prefix}:task-definition/{value}")
        registered = ((result or {}).get("taskDefinition") or {}).get("taskDefinitionArn")
        family = params.get("family")
        if op == "RegisterTaskDefinition" and registered:
            found.append(registered)
        elif op == "RegisterTaskDefinition" and isinstance(family, str) and _FAMILY.match(family):
            # refused or not, a registration is authorised on the revision it makes
            found.append(f"{prefix}:task-definition/{family}:{len(self.task_definitions.get(family, [])) + 1}")
        definitions = [a for a in found if ":task-definition/" in a]
        if op in ("CreateService", "UpdateService") and definitions:
            conditions["ecs:task-definition"] = definitions[0]
        return found, conditions

    @staticmethod
    def implied(op: str, params: dict[str, Any], named: list[str]) -> list[tuple[str, list[str], dict[str, str]]]:
        """What AWS authorises besides `op` itself, given the ARNs the request names (`resources`): ecs:TagResource
        on what a tag-on-create call creates when it is given tags, and iam:PassRole for each role it passes.
        Each as (IAM action, resources, condition keys)."""
        found: list[tuple[str, list[str], dict[str, str]]] = []
        kind = _TAG_ON_CREATE.get(op)
        if kind is not None and params.get("tags"):
            created = [arn for arn in named if f":{kind}/" in arn][:1]
            found.append(("ecs:TagResource", created, {"ecs:CreateAction": op}))
        keys, principal = _PASSED_ROLES.get(op, ((), ""))
        for key in keys:
            role = params.get(key)
            if isinstance(role, str) and role:
                arn = role if role.startswith("arn:") else f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"
                found.append(("iam:PassRole", [arn], {"iam:PassedToService": principal}))
        return found

    # -- services ----------------------------------------------------------------------------
    def _deployment_configuration(self, given: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(current)
        config.update(copy.deepcopy(given or {}))
        maximum, minimum = config["maximumPercent"], config["minimumHealthyPercent"]
        if not 0 <= minimum <= 100:
            raise _bad("minimumHealthyPercent must be between 0 and 100.")
        if maximum < max(minimum, 1):
            raise _bad("maximumPercent must be at least minimumHealthyPercent.")
        alarms = config.get("alarms")
        if alarms is not None:
            names = alarms.get("alarmNames")
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise _bad("alarmNames must be a list of alarm names.")
        return config

    def _firing(self, service: Service) -> list[str]:
        """The service's deployment alarms (when enabled) that are in ALARM now."""
        alarms = service.deployment_configuration.get("alarms") or {}
        if not alarms.get("enable") or self.cloudwatch is None:
            return []
        return [n for n in alarms.get("alarmNames", [])
                if (alarm := self.cloudwatch.alarm(n)) is not None and alarm.state == ALARM]

    def _check_placement(self, service: Service, task_definition: TaskDefinition) -> None:
        if service.launch_type == "FARGATE" and not task_definition.fargate:
            raise _bad("Task definition does not support launch_type FARGATE.")
        if task_definition.awsvpc and not service.network_configuration:
            raise _bad("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        if service.network_configuration and not task_definition.awsvpc:
            raise _bad("Network Configuration is not valid for the given networkMode of this task definition.")
        for balancer in service.load_balancers:
            if not balancer.get("targetGroupArn") and not balancer.get("loadBalancerName"):
                raise _bad("Load balancer name or target group ARN is required.")
            container = next((c for c in task_definition.containers
                              if c["name"] == balancer.get("containerName")), None)
            ports = [m.get("containerPort") for m in (container or {}).get("portMappings", [])]
            if balancer.get("containerPort") not in ports:
                raise _bad(f"The container {balancer.get('containerName')} did not have a container port "
                           f"{balancer.get('containerPort')} defined.")

    def _new_deployment(self, service: Service, task_definition: TaskDefinition, reason: str = "", *,
                        rollback: bool = False) -> Deployment:
        deployment = Deployment(f"ecs-svc/{uuid.uuid4().int % 10**19:019d}", task_definition, service.desired,
                                rollout_reason=reason, rollback=rollback,
                                alarms_ignored=bool(self._firing(service)),
                                service_connect=copy.deepcopy(service.service_connect))
        for previous in service.deployments:
            previous.status = ACTIVE
        service.deployments.insert(0, deployment)
        service.steady = False
        return deployment

    def _op_CreateService(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return {"service": self.create_service(params).describe(include_tags=True)}

    def create_service(self, params: dict[str, Any]) -> Service:
        cluster = self.cluster(params.get("cluster"))
        name = params.get("serviceName", "")
        existing = cluster.services.get(name)
        if existing is not None and existing.status == ACTIVE:
            raise _bad("Creation of service was not idempotent.")
        if existing is not None and existing.status == DRAINING:
            raise _bad("Unable to Start a service that is still Draining.")
        task_definition = self._usable_task_definition(params.get("taskDefinition"))
        if params.get("launchType") and params.get("capacityProviderStrategy"):
            raise _bad("Specifying both a launch type and capacity provider strategy is not supported.")
        desired = params.get("desiredCount", 0)
        if desired < 0:
            raise _bad("desiredCount must be at least 0.")
        launch_type = params.get("launchType") or (None if params.get("capacityProviderStrategy") else "EC2")
        fargate = launch_type == "FARGATE" or any(
            s.get("capacityProvider", "").startswith("FARGATE") for s in params.get("capacityProviderStrategy", []))
        if params.get("role") and task_definition.awsvpc:
            raise _bad("You cannot specify an IAM role for services that require a service linked role.")
        if params.get("healthCheckGracePeriodSeconds") is not None and not params.get("loadBalancers"):
            raise _bad("Health check grace period is only valid for services configured to use load balancers")
        if params.get("placementStrategy") and fargate:
            raise _bad("Placement strategies are not supported with FARGATE launch type.")
        service = Service(
            name=name,
            cluster=cluster,
            desired=desired,
            launch_type=launch_type,
            capacity_provider_strategy=copy.deepcopy(params.get("capacityProviderStrategy", [])),
            platform_version=params.get("platformVersion") or ("LATEST" if fargate else None),
            network_configuration=copy.deepcopy(params.get("networkConfiguration")),
            load_balancers=copy.deepcopy(params.get("loadBalancers", [])),
            deployment_configuration=self._deployment_configuration(
                params.get("deploymentConfiguration"), DEFAULT_DEPLOYMENT_CONFIGURATION),
            role_arn=params.get("role"),
            tags=copy.deepcopy(params.get("tags", [])),
            extras={k: copy.deepcopy(params[k]) for k in _SERVICE_EXTRAS if k in params},
            service_connect=copy.deepcopy(params.get("serviceConnectConfiguration")),
        )
        self._check_placement(service, task_definition)
        self._new_deployment(service, task_definition)
        self.target_groups.update(b["targetGroupArn"] for b in service.load_balancers if b.get("targetGroupArn"))
        cluster.services[name] = service
        return service

    def _op_UpdateService(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        service = self.service(cluster, params.get("service", ""))
        task_definition = service.primary.task_definition
        if params.get("taskDefinition"):
            task_definition = self._usable_task_definition(params["taskDefinition"])
        if params.get("desiredCount") is not None and params["desiredCount"] < 0:
            raise _bad("desiredCount must be at least 0.")
        config = self._deployment_configuration(params.get("deploymentConfiguration"),
                                                service.deployment_configuration)
        current = {**service.describe(include_tags=False), "serviceConnectConfiguration": service.service_connect}
        changed = [k for k in ("networkConfiguration", "loadBalancers", "platformVersion", "serviceRegistries",
                               "serviceConnectConfiguration")
                   if k in params and params[k] != current.get(k)]
        candidate = copy.copy(service)  # validate the whole change before applying any of it
        candidate.network_configuration = params.get("networkConfiguration", service.network_configuration)
        candidate.load_balancers = params.get("loadBalancers", service.load_balancers)
        self._check_placement(candidate, task_definition)

        service.deployment_configuration = config
        service.network_configuration = copy.deepcopy(candidate.network_configuration)
        service.load_balancers = copy.deepcopy(candidate.load_balancers)
        service.platform_version = params.get("platformVersion", service.platform_version)
        for key in _SERVICE_EXTRAS:
            if key in params:
                service.extras[key] = copy.deepcopy(params[key])
        if "serviceConnectConfiguration" in params:
            service.service_connect = copy.deepcopy(params["serviceConnectConfiguration"])
        self.target_groups.update(b["targetGroupArn"] for b in service.load_balancers if b.get("targetGroupArn"))
        if params.get("desiredCount") is not None:
            service.desired = service.primary.desired = params["desiredCount"]
            service.steady = False
        if (task_definition is not service.primary.task_definition or params.get("forceNewDeployment")
                or changed):
            self._new_deployment(service, task_definition)
        return {"service": service.describe(include_tags=False)}

    def _op_DeleteService(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        service = self.service(cluster, params.get("service", ""))
        if service.desired > 0 and not params.get("force"):
            raise _bad("The service cannot be stopped while it is scaled above 0.")
        service.status = DRAINING
        service.desired = service.primary.desired = 0
        return {"service": service.describe(include_tags=False)}

    def _op_DescribeServices(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        identifiers = params.get("services") or []
        if not 1 <= len(identifiers) <= 10:
            raise _bad("services can have between 1 and 10 items.")
        include_tags = "TAGS" in params.get("include", [])
        services, failures = [], []
        for identifier in identifiers:
            service = cluster.services.get(_name(identifier))
            if service is None:
                failures.append({"arn": f"arn:aws:ecs:{region}:{ACCOUNT_ID}:service/{cluster.name}/"
                                        f"{_name(identifier)}", "reason": "MISSING"})
            else:
                services.append(service.describe(include_tags))
        return {"services": services, "failures": failures}

    def _op_ListServices(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        found = [s for s in cluster.services.values() if s.status != INACTIVE
                 and params.get("launchType") in (None, s.launch_type)]
        page, token = paginate(found, params, default=10, limit=100)
        return {"serviceArns": [s.arn for s in page], **({"nextToken": token} if token else {})}

    # -- tasks -------------------------------------------------------------------------------
    def _op_ListTasks(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        service = self.service(cluster, params["serviceName"], active=False) if params.get("serviceName") else None
        wanted = params.get("desiredStatus", RUNNING)
        found = [t for t in cluster.tasks.values()
                 if (service is None or t.service is service)
                 and (STOPPED if t.last_status == STOPPED else RUNNING) == wanted
                 and params.get("family") in (None, t.task_definition.family)
                 and params.get("startedBy") in (None, t.deployment.id)
                 and params.get("launchType") in (None, t.service.launch_type)]
        page, token = paginate(found, params, default=100, limit=100)
        return {"taskArns": [t.arn for t in page], **({"nextToken": token} if token else {})}

    def _op_DescribeTasks(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        cluster = self.cluster(params.get("cluster"))
        identifiers = params.get("tasks") or []
        if not 1 <= len(identifiers) <= 100:
            raise _bad("tasks can have between 1 and 100 items.")
        include_tags = "TAGS" in params.get("include", [])
        tasks, failures = [], []
        for identifier in identifiers:
            task = cluster.tasks.get(_name(identifier))
            if task is None:
                failures.append({"arn": identifier, "reason": "MISSING"})
            else:
                tasks.append(task.describe(include_tags))
        return {"tasks": tasks, "failures": failures}

    # -- load balancer view ------------------------------------------------------------------
    def target_health(self, target_group: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """ELBv2 TargetHealthDescriptions: one target (the task's IP) per running task behind it."""
        if target_group not in self.target_groups:
            raise AwsError("TargetGroupNotFound", f"One or more target groups not found: '{target_group}'")
        found = []
        for cluster in self.clusters.values():
            for service in cluster.services.values():
                ports = [b["containerPort"] for b in service.load_balancers
                         if b.get("targetGroupArn") == target_group]
                if not ports or service.status == INACTIVE:
                    continue
                for task in service.tasks:
                    if task.last_status == RUNNING:
                        state, reason, description = task.target_health()
                        found.append({"Id": task.ip, "Port": ports[0], "State": state, "Reason": reason,
                                      "Description": description})
        if not targets:
            return found
        chosen = []
        for target in targets:
            match = [f for f in found if f["Id"] == target["Id"] and target.get("Port") in (None, f["Port"])]
            chosen += match or [{"Id": target["Id"], "Port": target.get("Port"), "State": "unused",
                                 "Reason": "Target.NotRegistered",
                                 "Description": "Target is not registered to the target group"}]
        return chosen

    # -- control (sandbox set-up) ------------------------------------------------------------
    def settle(self, service: Service) -> None:
        """Bring a new service straight to its steady state, as if it had been running for days."""
        deployment = service.primary
        for task in self._launch(service, service.desired):
            task.last_status, task.healthy, task.started_at = RUNNING, True, task.created_at
        deployment.rollout_state = COMPLETED
        deployment.rollout_reason = f"ECS deployment {deployment.id} completed."
        service.last_completed, service.steady = deployment, True
        service.event("has reached a steady state.")
        self._record(service)

    # -- the scheduler -----------------------------------------------------------------------
    def step(self) -> None:
        """Advance simulated time by one step for every service."""
        self.clock += 1
        for cluster in self.clusters.values():
            for service in cluster.services.values():
                if service.status != INACTIVE:
                    self._tick(service)
            stopped = [i for i, t in cluster.tasks.items() if not t.live]
            for task_id in stopped[:max(0, len(stopped) - _STOPPED_TASKS_KEPT)]:
                del cluster.tasks[task_id]

    def _tick(self, service: Service) -> None:
        self._advance_tasks(service)
        if service.status == DRAINING:
            if service.tasks:
                self._stop(service, list(service.tasks))
            else:
                service.status = INACTIVE
        else:
            self._trip_breaker(service)
            self._trip_alarms(service)
            self._schedule(service)
            self._settle_deployments(service)
        self._record(service)

    def _launch_failure(self, task: Task) -> Failure | None:
        containers = task.task_definition.containers
        if self.require_pushed_images:
            for container in containers:
                if not self.registry.has_image(container["image"]):
                    return Failure(container["name"], None,
                                   "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                                   f"failed to resolve ref {container['image']}: not found", "TaskFailedToStart")
        return self._crash(task)

    def _crash(self, task: Task) -> Failure | None:
        for container in task.task_definition.containers:
            if container.get("essential", True) and container["image"] in self.unhealthy_images:
                return Failure(container["name"], 1, ESSENTIAL_EXITED, "EssentialContainerExited")
        return None

    def _advance_tasks(self, service: Service) -> None:
        registered = 0
        for task in list(service.tasks):
            if task.last_status == PENDING:
                failure = self._launch_failure(task)
                if failure is not None:
                    self._fail(service, task, failure)
                    continue
                task.last_status, task.started_at = RUNNING, time.time()
                task.healthy = not service.load_balancers
                registered += 1
            else:
                failure = self._crash(task)  # its image turned bad while it ran
                if failure is None:
                    if task.healthy:
                        continue
                    task.healthy = True  # passed its first load balancer health check
                elif service.load_balancers and not task.failing_checks:
                    task.failing_checks, task.healthy = True, False
                else:
                    if service.load_balancers:
                        group = next(b.get("targetGroupArn") for b in service.load_balancers)
                        failure = failure._replace(
                            reason=f"Task failed ELB health checks in (target-group {group})",
                            stop_code="ServiceSchedulerInitiated", exit_code=None)
                    self._fail(service, task, failure)
                    continue
            task.version += 1
            task.deployment.updated_at = time.time()
        for balancer in service.load_balancers:
            if registered and balancer.get("targetGroupArn"):
                service.event(f"registered {registered} targets in (target-group {balancer['targetGroupArn']})")

    def _failure_threshold(self, service: Service) -> int:
        if self.failure_threshold is not None:
            return self.failure_threshold
        return max(3, min(200, math.ceil(service.desired * 0.5)))

    def _trip_breaker(self, service: Service) -> None:
        primary = service.primary
        breaker = service.deployment_configuration.get("deploymentCircuitBreaker") or {}
        if (not breaker.get("enable") or primary.rollout_state != IN_PROGRESS
                or primary.failed_tasks < self._failure_threshold(service)):
            return
        primary.rollout_state, primary.rollout_reason = FAILED, BREAKER_REASON
        primary.updated_at = time.time()
        service.event(f"(deployment {primary.id}) deployment failed: tasks failed to start.")
        previous = service.last_completed
        if breaker.get("rollback") and previous is not None and previous.task_definition is not primary.task_definition:
            self._new_deployment(service, previous.task_definition,
                                 reason=f"ECS deployment circuit breaker: rolling back to deploymentId {previous.id}.")
            service.event(f"rolling back to deployment {previous.id}.")

    def _trip_alarms(self, service: Service) -> None:
        primary = service.primary
        if primary.rollout_state != IN_PROGRESS or primary.rollback or primary.alarms_ignored:
            return
        firing = self._firing(service)
        if not firing:
            return
        previous = service.last_completed
        rollback = ((service.deployment_configuration.get("alarms") or {}).get("rollback")
                    and previous is not None and previous.task_definition is not primary.task_definition)
        primary.rollout_state = FAILED
        primary.rollout_reason = (f"ECS deployment {primary.id} {'rolled back' if rollback else 'failed'}: "
                                  f"{_alarm_list(firing)} in ALARM state.")
        primary.updated_at = time.time()
        service.event(f"(deployment {primary.id}) deployment failed: alarm detected.")
        if rollback:
            assert previous is not None
            self._new_deployment(service, previous.task_definition, rollback=True,
                                 reason=f"ECS deployment alarms: {_alarm_list(firing)} in ALARM state, "
                                        f"rolling back to deploymentId {previous.id}.")
            service.event(f"rolling back to deployment {previous.id}.")

    def _baking(self, service: Service) -> bool:
        """Whether a steady PRIMARY watched by alarms is still in its bake time."""
        primary = service.primary
        alarms = service.deployment_configuration.get("alarms") or {}
        if not self.alarm_bake_steps or not alarms.get("enable") or primary.rollback or primary.alarms_ignored:
            return False
        if primary.steady_at is None:
            primary.steady_at = self.clock
        return self.clock - primary.steady_at < self.alarm_bake_steps

    def _schedule(self, service: Service) -> None:
        primary, config = service.primary, service.deployment_configuration
        most = service.desired * config["maximumPercent"] // 100
        fewest = math.ceil(service.desired * config["minimumHealthyPercent"] / 100)
        # scaled in: the least useful of the PRIMARY's own tasks go first (pending, unhealthy, newest)
        own = sorted(service.live(primary), key=lambda t: (t.last_status == RUNNING, t.healthy, -t.created_at))
        doomed = own[:max(0, len(own) - service.desired)]
        # older deployments: what serves nothing goes at once, healthy tasks only while enough stay healthy
        older = [t for d in reversed(service.deployments[1:]) for t in service.live(d)]
        doomed += [t for t in older if not t.healthy]
        healthy_left = sum(t.healthy for t in service.tasks if t not in doomed)
        doomed += [t for t in older if t.healthy][:max(0, healthy_left - fewest)]
        if doomed:
            self._stop(service, doomed)
        if primary.rollout_state == FAILED:
            return  # the circuit breaker stops launching
        count = min(service.desired - len(service.live(primary)), most - len(service.tasks))
        if count > 0:
            started = self._launch(service, count)
            service.event(f"has started {count} tasks: {' '.join(f'(task {t.id})' for t in started)}.")

    def _settle_deployments(self, service: Service) -> None:
        primary = service.primary
        service.deployments = [primary] + [d for d in service.deployments[1:] if service.live(d)]
        for deployment in service.deployments[1:]:
            deployment.desired = len(service.live(deployment))  # ECS shrinks a draining deployment's count
        own = service.live(primary)
        steady = len(service.deployments) == 1 and len(own) == service.desired and all(t.healthy for t in own)
        if steady and primary.rollout_state == IN_PROGRESS and not self._baking(service):
            primary.rollout_state = COMPLETED
            primary.rollout_reason = f"ECS deployment {primary.id} completed."
            primary.updated_at = time.time()
            service.last_completed = primary
            service.event(f"(deployment {primary.id}) deployment completed.")
        if steady and not service.steady:
            service.event("has reached a steady state.")
        service.steady = steady

    def _launch(self, service: Service, count: int) -> list[Task]:
        deployment = service.primary
        tasks = []
        for _ in range(count):
            address = next(self._addresses)
            task = Task(uuid.uuid4().hex, service.cluster, service, deployment, deployment.task_definition,
                        ip=f"10.0.{address // 250}.{address % 250 + 4}")
            service.cluster.tasks[task.id] = task
            service.tasks.append(task)
            tasks.append(task)
        deployment.updated_at = time.time()
        return tasks

    def _finish(self, service: Service, task: Task, reason: str, stop_code: str) -> None:
        task.last_status, task.healthy, task.failing_checks = STOPPED, False, False
        task.stopped_at, task.stopped_reason, task.stop_code = time.time(), reason, stop_code
        task.version += 1
        task.deployment.updated_at = task.stopped_at
        service.tasks.remove(task)

    def _stop(self, service: Service, tasks: list[Task]) -> None:
        """Stop tasks the scheduler no longer wants."""
        running = [t for t in tasks if t.last_status == RUNNING]
        for task in tasks:
            self._finish(service, task, f"Scaling activity initiated by (deployment {service.primary.id})",
                         "ServiceSchedulerInitiated")
        if running:
            service.event(f"has stopped {len(running)} running tasks: "
                          f"{' '.join(f'(task {t.id})' for t in running)}.")
            for balancer in service.load_balancers:
                if balancer.get("targetGroupArn"):
                    service.event(f"deregistered {len(running)} targets in "
                                  f"(target-group {balancer['targetGroupArn']})")

    def _fail(self, service: Service, task: Task, failure: Failure) -> None:
        task.failure = failure
        self._finish(service, task, failure.reason, failure.stop_code)
        task.deployment.failed_tasks += 1

    def _record(self, service: Service) -> None:
        snapshot = {
            "status": service.status,
            "desired": service.desired,
            **service.counts(),
            "deployments": [{"id": d.id, "taskDefinition": d.task_definition.arn, "status": d.status,
                             "rolloutState": d.rollout_state, **service.counts(d)} for d in service.deployments],
        }
        if not service.history or {k: v for k, v in service.history[-1].items() if k not in ("step", "at")} != snapshot:
            service.history.append({"step": self.clock, "at": time.time(), **snapshot})
