"""An AWS endpoint for the sandbox: ECS and ECR (JSON 1.1 protocol) and ELBv2 target health (query protocol).

boto3 reaches it through `endpoint_url` or `AWS_ENDPOINT_URL`; any SigV4 signature is accepted and
the region is read from it (eu-west-1 when absent). The ECS services move: a ticker in the server
loop advances simulated time every `step_interval` seconds (see `sandbox.ecs` for the rules), or
tests set `step_interval = None` and call `advance()` themselves.

Control API for tests and the demo (thread-safe): `create_cluster`, `register_task_definition`,
`create_service` (starts steady), `push_image` (what a CI job does), `service`, `running_images`,
`history`, `advance`, and AWS-shaped faults `throttle` and `server_error`; knobs `unhealthy_images`,
`require_pushed_images`, `failure_threshold`, `step_interval`; `calls` lists every request's
operation (`ecs:UpdateService`, ...) in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import threading
import uuid
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from sandbox.ecr import DEFAULT_REGION, AwsError, Registry
from sandbox.ecs import RUNNING, EcsBackend
from sandbox.server import Fault, ThreadedServer

log = logging.getLogger(__name__)

_TARGETS = {"AmazonEC2ContainerServiceV20141113": "ecs", "AmazonEC2ContainerRegistry_V20150921": "ecr"}
_CREDENTIAL_REGION = re.compile(r"Credential=[^/,]+/\d{8}/([a-z0-9-]+)/")
_ELB_NAMESPACE = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
_JSON_TYPE = "application/x-amz-json-1.1"
SANDBOX_NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0sandbox000000001"],
                                           "securityGroups": ["sg-0sandbox000000001"],
                                           "assignPublicIp": "DISABLED"}}


def _region(request: web.Request) -> str:
    match = _CREDENTIAL_REGION.search(request.headers.get("Authorization", ""))
    return match.group(1) if match else DEFAULT_REGION


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
    """ECS + ECR + ELBv2 target health on one 127.0.0.1 endpoint, with deployments that move."""

    def __init__(self, *, step_interval: float | None = 0.1, port: int = 0) -> None:
        super().__init__("aws", port)
        self.step_interval = step_interval
        self.registry = Registry()
        self.ecs = EcsBackend(self.registry)
        self.calls: list[str] = []
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
        app.on_cleanup.append(self._stop_ticker)
        return app

    def operation(self, request: web.Request) -> str:
        """`ecs:UpdateService`, `ecr:DescribeImages`, ...; also records the call in `calls`."""
        prefix, _, op = request.headers.get("X-Amz-Target", "").partition(".")
        # the Action of a query-protocol request is in its body, out of reach here: DescribeTargetHealth
        # is the only one served, and the handler refuses any other
        name = f"{_TARGETS[prefix]}:{op}" if prefix in _TARGETS else "elbv2:DescribeTargetHealth"
        self.calls.append(name)
        return name

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
        region = _region(request)
        target = request.headers.get("X-Amz-Target")
        if target is None:
            return await self._query(request)
        prefix, _, op = target.partition(".")
        backend = {"ecs": self.ecs, "ecr": self.registry}.get(_TARGETS.get(prefix, ""))
        try:
            if backend is None:
                raise AwsError("UnknownOperationException", f"unknown target {target}")
            try:
                params = json.loads(await request.read() or b"{}")
            except ValueError:
                raise AwsError("SerializationException", "request body is not JSON") from None
            with self._lock:
                result = backend.handle(op, params, region)
        except AwsError as error:
            return _json_error(error)
        return web.json_response(result, content_type=_JSON_TYPE, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _query(self, request: web.Request) -> web.Response:
        form = await request.post()
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
        except AwsError as error:
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

    def history(self, cluster: str, name: str) -> list[dict[str, Any]]:
        """The service's counts after every step that changed them: desired, running, pending, healthy,
        and the same per deployment — a complete record to check rollout limits against; `at` is when
        (time.time())."""
        with self._lock:
            return copy.deepcopy(list(self.ecs.service(self.ecs.cluster(cluster), name, active=False).history))
