"""An AWS endpoint for the sandbox: ECS and ECR (JSON 1.1), CloudWatch alarms (CBOR, JSON 1.0 or query) and
ELBv2 target health (query protocol).

boto3 reaches it through `endpoint_url` or `AWS_ENDPOINT_URL`; any SigV4 signature is accepted and
the region is read from it (eu-west-1 when absent). A request is routed by its protocol: the CBOR
path `/service/<target prefix>/operation/<Op>`, the `X-Amz-Target` header of the JSON protocols, or,
for query requests, the service its signature names (`monitoring` is CloudWatch, anything else
ELBv2). The ECS services move: a ticker in the server loop advances simulated time every
`step_interval` seconds (see `sandbox.ecs` for the rules), or tests set `step_interval = None` and
call `advance()` themselves.

Control API for tests and the demo (thread-safe): `create_cluster`, `register_task_definition`,
`create_service` (starts steady), `push_image` (what a CI job does), `service`, `running_images`,
`history`, `advance`, `create_alarm`, `set_alarm`, `alarm`, `describe_alarms_calls`, the read-only listings
`clusters`, `services`, `task_definition` and `alarms`, and AWS-shaped faults `throttle` and
`server_error` (CBOR and query clients get them in their own shape); knobs
`unhealthy_images`, `require_pushed_images`, `failure_threshold`, `alarm_bake_steps`, `step_interval`.
`calls` lists every request's operation (`ecs:UpdateService`, `cloudwatch:DescribeAlarms`, ...) in
order, faulted ones included; `call_log` has an `AwsCall` for every request that reached a service
(the IAM action, the ARNs it names, its request tags and condition keys, and the actions AWS authorises
besides it: ecs:TagResource for tags given on creation, iam:PassRole for the roles it passes), to check
the product's calls against a policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

from aiohttp import web

from sandbox import cloudwatch
from sandbox.cloudwatch import CloudWatchBackend
from sandbox.ecr import ACCOUNT_ID, DEFAULT_REGION, AwsError, Registry
from sandbox.ecs import INACTIVE, RUNNING, EcsBackend
from sandbox.server import Fault, ThreadedServer

log = logging.getLogger(__name__)

_TARGETS = {"AmazonEC2ContainerServiceV20141113": "ecs", "AmazonEC2ContainerRegistry_V20150921": "ecr",
            cloudwatch.TARGET_PREFIX: "cloudwatch"}
_CREDENTIAL = re.compile(r"Credential=[^/,]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/")
_CBOR_PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")
_SIGNING_NAMES = {"monitoring": "cloudwatch", "elasticloadbalancing": "elbv2"}
_IAM_PREFIXES = {"elbv2": "elasticloadbalancing"}
_QUERY_PENDING = "cloudwatch:(query)"  # a query request's action is in its body, read after the faults
# where `operation` leaves the index of a query call in `calls`, for the handler to name it
_CALL_INDEX: Any = web.RequestKey("call_index", int) if hasattr(web, "RequestKey") else "call_index"
_ELB_NAMESPACE = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
_JSON_TYPE = "application/x-amz-json-1.1"
SANDBOX_NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0sandbox000000001"],
                                           "securityGroups": ["sg-0sandbox000000001"],
                                           "assignPublicIp": "DISABLED"}}


def _region(request: web.Request) -> str:
    match = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    return match.group(1) if match else DEFAULT_REGION


class _Route(NamedTuple):
    service: str  # ecs, ecr, cloudwatch, elbv2; "unknown" when nothing matches
    protocol: str  # json, cbor or query
    operation: str | None  # None for query requests: the Action is in the body


def _route(request: web.Request) -> _Route:
    if request.path.startswith("/service/"):
        match = _CBOR_PATH.match(request.path)
        if match is None:
            return _Route("unknown", "cbor", None)
        return _Route(_TARGETS.get(match[1], "unknown"), "cbor", match[2])
    target = request.headers.get("X-Amz-Target")
    if target is not None:
        prefix, _, op = target.partition(".")
        return _Route(_TARGETS.get(prefix, "unknown"), "json", op)
    match = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    return _Route(_SIGNING_NAMES.get(match.group(2) if match else "", "elbv2"), "query", None)


def _tags(params: dict[str, Any]) -> dict[str, str]:
    """Request tags, in ECS's `tags: [{key, value}]` or CloudWatch's and ECR's `Tags: [{Key, Value}]`."""
    tags = params.get("tags") if isinstance(params.get("tags"), list) else params.get("Tags")
    found = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict):
            key, value = tag.get("key", tag.get("Key")), tag.get("value", tag.get("Value", ""))
            if isinstance(key, str):
                found[key] = str(value)
    return found


@dataclass(frozen=True)
class AwsCall:
    """One request that reached an emulated service, as IAM sees it."""

    action: str  # the IAM action: ecs:UpdateService, cloudwatch:DescribeAlarms, elasticloadbalancing:...
    region: str
    resources: tuple[str, ...]  # the ARNs the request names; empty when it names none (IAM's "*")
    request_tags: dict[str, str]  # tags the request puts on what it creates or tags (aws:RequestTag)
    conditions: dict[str, str]  # condition keys the request carries, e.g. ecs:cluster
    status: int
    error: str | None  # the error code when it failed
    protocol: str
    at: float = field(default_factory=time.time)
    # what AWS authorises besides `action` for this request, each as a call of its own (same status): ecs:TagResource
    # (ecs:CreateAction) when a create call carries tags, iam:PassRole (iam:PassedToService) for each role it passes
    implies: tuple[AwsCall, ...] = ()

    @property
    def authorised(self) -> tuple[AwsCall, ...]:
        """Every action IAM checks for this request: its own, then those it implies."""
        return (self, *self.implies)

    @property
    def service(self) -> str:
        return self.action.partition(":")[0]

    @property
    def operation(self) -> str:
        return self.action.partition(":")[2]


def _json_error(error: AwsError) -> web.Response:
    return web.json_response({"__type": error.code, "message": error.message}, status=error.status,
                             content_type=_JSON_TYPE, headers={"x-amzn-RequestId": str(uuid.uuid4())})


def _xml(element: str, value: Any) -> str:
    return "" if value is None else f"<{element}>{escape(str(value))}</{element}>"


def _xml_error(error: AwsError) -> web.Response:
    body = (f'<ErrorResponse xmlns="{_ELB_NAMESPACE}"><Error><Type>Sender</Type>{_xml("Code", error.code)}'
            f'{_xml("Message", error.message)}</Error>{_xml("RequestId", uuid.uuid4())}</ErrorResponse>')
    return web.Response(status=error.status, text=body, content_type="text/xml")


class AwsEmulator(ThreadedServer):
    """ECS + ECR + CloudWatch alarms + ELBv2 target health on one 127.0.0.1 endpoint, with deployments
    that move."""

    def __init__(self, *, step_interval: float | None = 0.1, port: int = 0) -> None:
        super().__init__("aws", port)
        self.step_interval = step_interval
        self.registry = Registry()
        self.cloudwatch = CloudWatchBackend()
        self.ecs = EcsBackend(self.registry, self.cloudwatch)
        self.calls: list[str] = []
        self.call_log: list[AwsCall] = []
        self._lock = threading.RLock()
        self._ticker: asyncio.Task | None = None

    # -- knobs -------------------------------------------------------------------------------
    @property
    def unhealthy_images(self) -> set[str]:
        """Full image URIs whose essential containers exit as soon as they start."""
        return self.ecs.unhealthy_images

    @property
    def require_pushed_images(self) -> bool:
        """Whether images of this registry must have been pushed to start (CannotPullContainerError)."""
        return self.ecs.require_pushed_images

    @require_pushed_images.setter
    def require_pushed_images(self, value: bool) -> None:
        self.ecs.require_pushed_images = value

    @property
    def failure_threshold(self) -> int | None:
        """Failed tasks that trip the circuit breaker; None for ECS's max(3, min(200, ceil(desired / 2)))."""
        return self.ecs.failure_threshold

    @failure_threshold.setter
    def failure_threshold(self, value: int | None) -> None:
        self.ecs.failure_threshold = value

    @property
    def alarm_bake_steps(self) -> int:
        """Steps a deployment watched by alarms stays IN_PROGRESS once steady (ECS's bake time); default 0."""
        return self.ecs.alarm_bake_steps

    @alarm_bake_steps.setter
    def alarm_bake_steps(self, value: int) -> None:
        self.ecs.alarm_bake_steps = value

    @property
    def describe_alarms_calls(self) -> int:
        """DescribeAlarms requests answered so far, whatever their protocol."""
        return self.cloudwatch.describe_calls

    # -- AWS-shaped faults (for the JSON APIs, ECS and ECR) ----------------------------------
    def throttle(self, count: int = 1, *, match: str = ".*") -> Fault:
        """The next `count` matching calls answer 400 ThrottlingException, as AWS does under load."""
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        return self.faults.fail_next(count, match=match, status=400, body=body)

    def server_error(self, count: int = 1, *, match: str = ".*") -> Fault:
        """The next `count` matching calls answer 500 ServerException."""
        body = json.dumps({"__type": "ServerException", "message": "Service is temporarily unavailable"})
        return self.faults.fail_next(count, match=match, status=500, body=body)

    # -- server ------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        app.router.add_post("/service/{service}/operation/{operation}", self._handle)
        app.on_response_prepare.append(self._fault_shape)
        app.on_cleanup.append(self._stop_ticker)
        return app

    def operation(self, request: web.Request) -> str:
        """`ecs:UpdateService`, `cloudwatch:DescribeAlarms`, ...; also records the call in `calls`."""
        route = _route(request)
        if route.operation is not None:
            name = f"{route.service}:{route.operation}"
        elif route.service == "elbv2":
            # the Action of a query request is in its body, out of reach here: DescribeTargetHealth is
            # the only ELBv2 one served, and the handler refuses any other
            name = "elbv2:DescribeTargetHealth"
        else:
            # named once the handler has read the body; faults can match "cloudwatch:" only
            name = _QUERY_PENDING
            request[_CALL_INDEX] = len(self.calls)
        self.calls.append(name)
        return name

    async def _fault_shape(self, request: web.Request, response: web.StreamResponse) -> None:
        """Faults answer in AWS's JSON error shape; a CBOR or query CloudWatch client gets its own shape."""
        route = _route(request)
        if not isinstance(response, web.Response) or response.content_type != "application/json":
            return
        if route.service != "cloudwatch" or route.protocol == "json" or not isinstance(response.body, bytes):
            return
        translated = cloudwatch.translate_json_error(route.protocol, response.body)
        if translated is None:
            return
        # the headers are already computed when this signal fires: the length is set again by hand
        response.body = translated.body
        response.headers["Content-Type"] = translated.content_type
        response.headers["Content-Length"] = str(len(translated.body))
        response.headers.update(translated.headers)

    async def on_started(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.step_interval or 0.05)
            if self.step_interval:  # read again: a test may have stopped the clock meanwhile
                try:
                    with self._lock:
                        self.ecs.step()
                except Exception:  # a bug here must not freeze every rollout silently
                    log.exception("ECS emulator step failed")

    async def _stop_ticker(self, app: web.Application) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _handle(self, request: web.Request) -> web.Response:
        route = _route(request)
        if route.protocol == "query":
            return await self._query(request, route)
        region = _region(request)
        op = route.operation or ""
        params: dict[str, Any] = {}
        try:
            body = await request.read()
            if route.protocol == "cbor":
                params = cloudwatch.decode_cbor(body) if route.service == "cloudwatch" else {}
            else:
                params = cloudwatch.decode_json(body)
            backend = {"ecs": self.ecs, "ecr": self.registry, "cloudwatch": self.cloudwatch}.get(route.service)
            if backend is None or (route.protocol == "cbor" and route.service != "cloudwatch"):
                raise AwsError("UnknownOperationException", f"unknown operation {request.path} "
                                                             f"{request.headers.get('X-Amz-Target', '')}".strip())
            with self._lock:
                result = backend.handle(op, params, region)
                self._log(route, op, params, result, region, 200, None)
        except AwsError as error:
            with self._lock:
                self._log(route, op, params, None, region, error.status, error.code)
            if route.service == "cloudwatch":
                return self._response(cloudwatch.encode_error(route.protocol, error))
            return _json_error(error)
        if route.service == "cloudwatch":
            return self._response(cloudwatch.encode(route.protocol, op, result))
        return web.json_response(result, content_type=_JSON_TYPE, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    @staticmethod
    def _response(encoded: cloudwatch.Encoded) -> web.Response:
        return web.Response(status=encoded.status, body=encoded.body, content_type=encoded.content_type,
                            headers=encoded.headers)

    def _log(self, route: _Route, op: str, params: dict[str, Any], result: dict[str, Any] | None, region: str,
             status: int, error: str | None) -> None:
        resources: list[str] = []
        conditions: dict[str, str] = {}
        implied: list[tuple[str, list[str], dict[str, str]]] = []
        try:
            if route.service == "ecs":
                resources, conditions = self.ecs.resources(op, params, result, region)
                implied = self.ecs.implied(op, params, resources)
            elif route.service == "ecr":
                name, registry = params.get("repositoryName"), params.get("registryId") or ACCOUNT_ID
                names = [name] if isinstance(name, str) else list(params.get("repositoryNames") or [])
                resources = [f"arn:aws:ecr:{region}:{registry}:repository/{n}" for n in names]
            elif route.service == "cloudwatch":
                resources = self.cloudwatch.resources(op, params, region)
            elif route.service == "elbv2" and params.get("TargetGroupArn"):
                resources = [str(params["TargetGroupArn"])]
        except (TypeError, AttributeError, KeyError):  # a malformed request names what it names
            pass
        action = f"{_IAM_PREFIXES.get(route.service, route.service)}:{op}"
        tags = _tags(params)
        implies = tuple(AwsCall(name, region, tuple(arns), tags if name == "ecs:TagResource" else {}, keys, status,
                                error, route.protocol) for name, arns, keys in implied)
        self.call_log.append(AwsCall(action, region, tuple(dict.fromkeys(resources)), tags, conditions,
                                     status, error, route.protocol, implies=implies))

    async def _query(self, request: web.Request, route: _Route) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        region = _region(request)
        if route.service == "cloudwatch":
            op, params = form.get("Action", ""), {}
            index = request.get(_CALL_INDEX)
            if index is not None and index < len(self.calls) and self.calls[index] == _QUERY_PENDING:
                self.calls[index] = f"cloudwatch:{op}"
            try:
                op, params = cloudwatch.decode_query(form)
                with self._lock:
                    result = self.cloudwatch.handle(op, params, region)
                    self._log(route, op, params, result, region, 200, None)
            except AwsError as error:
                with self._lock:
                    self._log(route, op, params, None, region, error.status, error.code)
                return self._response(cloudwatch.encode_error("query", error))
            return self._response(cloudwatch.encode("query", op, result))
        try:
            if form.get("Action") != "DescribeTargetHealth":
                raise AwsError("InvalidAction", f"The action {form.get('Action')} is not valid for this web service.")
            targets = []
            for index in range(1, 1001):
                target_id = form.get(f"Targets.member.{index}.Id")
                if target_id is None:
                    break
                port = form.get(f"Targets.member.{index}.Port")
                targets.append({"Id": target_id, "Port": int(port) if port else None})
            with self._lock:
                found = self.ecs.target_health(str(form.get("TargetGroupArn", "")), targets)
                self._log(route, "DescribeTargetHealth", dict(form), None, region, 200, None)
        except AwsError as error:
            with self._lock:
                self._log(route, str(form.get("Action", "")), dict(form), None, region, error.status, error.code)
            return _xml_error(error)
        members = "".join(
            f"<member><Target>{_xml('Id', t['Id'])}{_xml('Port', t['Port'])}</Target>"
            f"{_xml('HealthCheckPort', t['Port'])}<TargetHealth>{_xml('State', t['State'])}"
            f"{_xml('Reason', t['Reason'])}{_xml('Description', t['Description'])}</TargetHealth></member>"
            for t in found)
        body = (f'<DescribeTargetHealthResponse xmlns="{_ELB_NAMESPACE}"><DescribeTargetHealthResult>'
                f"<TargetHealthDescriptions>{members}</TargetHealthDescriptions></DescribeTargetHealthResult>"
                f"<ResponseMetadata>{_xml('RequestId', uuid.uuid4())}</ResponseMetadata>"
                f"</DescribeTargetHealthResponse>")
        return web.Response(text=body, content_type="text/xml")

    # -- control -----------------------------------------------------------------------------
    def advance(self, steps: int = 1) -> None:
        """Run `steps` steps of the ECS scheduler now (with `step_interval = None`, the only clock)."""
        with self._lock:
            for _ in range(steps):
                self.ecs.step()

    def create_cluster(self, name: str) -> str:
        with self._lock:
            return self.ecs.handle("CreateCluster", {"clusterName": name}, DEFAULT_REGION)["cluster"]["clusterArn"]

    def register_task_definition(self, family: str, containers: list[dict[str, Any]] | None = None, *,
                                 image: str | None = None, **extra: Any) -> str:
        """Register a revision; `image=` alone makes a one-container ("app") Fargate definition."""
        if containers is None:
            if image is None:
                raise ValueError("give containers or image")
            containers = [{"name": "app", "image": image, "essential": True}]
            extra = {"networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
                     "memory": "512", **extra}
        params = {"family": family, "containerDefinitions": copy.deepcopy(containers), **extra}
        with self._lock:
            return self.ecs.handle("RegisterTaskDefinition", params, DEFAULT_REGION)["taskDefinition"][
                "taskDefinitionArn"]

    def create_service(self, cluster: str, name: str, task_definition: str, desired: int = 2,
                       launch_type: str = "FARGATE", load_balancers: list[dict[str, Any]] | None = None,
                       network_configuration: dict[str, Any] | None = None, **extra: Any) -> str:
        """A service already in its steady state (tasks running, rollout COMPLETED); returns its ARN."""
        params: dict[str, Any] = {"cluster": cluster, "serviceName": name, "taskDefinition": task_definition,
                                  "desiredCount": desired, "launchType": launch_type, **extra}
        if load_balancers:
            params["loadBalancers"] = load_balancers
        with self._lock:
            if network_configuration is None and self.ecs.task_definition(task_definition).awsvpc:
                network_configuration = SANDBOX_NETWORK
            if network_configuration is not None:
                params["networkConfiguration"] = network_configuration
            service = self.ecs.create_service(params)
            self.ecs.settle(service)
            return service.arn

    def push_image(self, repository: str, tag: str) -> str:
        """Push an image as CI would (the repository is created if needed); returns its URI."""
        with self._lock:
            return self.registry.push(repository, tag)

    def service(self, cluster: str, name: str) -> dict[str, Any]:
        """The service as DescribeServices (with tags) would return it."""
        with self._lock:
            return self.ecs.service(self.ecs.cluster(cluster), name, active=False).describe(include_tags=True)

    def clusters(self) -> list[str]:
        """The names of the clusters, in the order they were created."""
        with self._lock:
            return list(self.ecs.clusters)

    def services(self, cluster: str) -> list[dict[str, Any]]:
        """The cluster's services not yet deleted (ACTIVE or DRAINING), as `service` describes them."""
        with self._lock:
            return [s.describe(include_tags=True) for s in self.ecs.cluster(cluster).services.values()
                    if s.status != INACTIVE]

    def task_definition(self, identifier: str) -> dict[str, Any]:
        """A task definition (`family`, `family:revision` or ARN) as DescribeTaskDefinition returns it."""
        with self._lock:
            return self.ecs.task_definition(identifier).describe()

    def alarms(self) -> list[dict[str, Any]]:
        """Every alarm as `alarm` describes it, in the order they were created."""
        with self._lock:
            return [a.describe() for a in self.cloudwatch.alarms.values()]

    def running_images(self, cluster: str, name: str, container: str | None = None) -> list[str]:
        """Images of the service's RUNNING tasks, for `container` (default: each task's first container)."""
        with self._lock:
            service = self.ecs.service(self.ecs.cluster(cluster), name, active=False)
            images = []
            for task in service.tasks:
                if task.last_status == RUNNING:
                    containers = task.task_definition.containers
                    name = container or containers[0]["name"]
                    images += [c["image"] for c in containers if c["name"] == name]
            return images

    def create_alarm(self, name: str, state: str = cloudwatch.OK, reason: str = "Created by the sandbox",
                     **fields: Any) -> str:
        """A metric alarm (a plausible 5xx-count one unless `fields` say otherwise) in `state`; its ARN.
        Creating an existing alarm replaces its configuration and sets its state."""
        with self._lock:
            self.cloudwatch.handle("PutMetricAlarm", cloudwatch.put_alarm_params(name, **fields), DEFAULT_REGION)
            return self.cloudwatch.set_state(name, state, reason).arn

    def set_alarm(self, name: str, state: str, reason: str | None = None) -> None:
        """Put an existing alarm in OK, ALARM or INSUFFICIENT_DATA, as SetAlarmState does."""
        with self._lock:
            if self.cloudwatch.alarm(name) is None:
                raise KeyError(f"no alarm {name!r}: create it first (create_alarm)")
            try:
                self.cloudwatch.set_state(name, state, reason or f"Set to {state} by the sandbox")
            except AwsError as error:
                raise ValueError(error.message) from None

    def alarm(self, name: str) -> dict[str, Any]:
        """The alarm as DescribeAlarms would return it (timestamps as datetimes)."""
        with self._lock:
            found = self.cloudwatch.alarm(name)
            if found is None:
                raise KeyError(f"no alarm {name!r}")
            return found.describe()

    def history(self, cluster: str, name: str) -> list[dict[str, Any]]:
        """The service's counts after every step that changed them: desired, running, pending, healthy,
        and the same per deployment — a complete record to check rollout limits against; `at` is when
        (time.time())."""
        with self._lock:
            return copy.deepcopy(list(self.ecs.service(self.ecs.cluster(cluster), name, active=False).history))
