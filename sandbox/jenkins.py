"""A Jenkins that speaks the JSON API as python-jenkins uses it, with build outcomes scripted per commit.

Each job builds either a branch (started by GitHub `push` webhooks to that branch) or pull
requests (the job mapped to "pr", started by `pull_request` webhooks). Any job can also be
started through `buildWithParameters` with the commit in `sha_parameter`. Builds go through a
short queue, run for a configurable time, "push" the commit's image to a registry half-way
through, and end with the outcome scripted for their commit (SUCCESS unless told otherwise).

POSTs need the crumb from `/crumbIssuer/api/json` (the GitHub webhook is exempt, as in Jenkins);
Basic auth is accepted whatever the user and token, and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from sandbox.server import ThreadedServer

log = logging.getLogger(__name__)

VERSION = "2.440"
CRUMB_FIELD = "Jenkins-Crumb"
PR_JOB = "pr"  # the "branch" of a job that builds pull request heads
OUTCOMES = ("SUCCESS", "FAILURE", "ABORTED", "HANG")
WEBHOOK_PATH = "/github-webhook/"
_PR_ACTIONS = ("opened", "synchronize", "reopened")
_DELETED = "0" * 40  # the `after` of a push that deleted the branch
_JOB_CLASS = "hudson.model.FreeStyleProject"
_BUILD_CLASS = "hudson.model.FreeStyleBuild"

# tree=... parsed: field name -> (sub-tree or None, slice of a list field or None)
Tree = dict[str, tuple["Tree | None", slice | None]]


class Registry(Protocol):
    """Where a build pushes the image of its commit (the ECR emulator has this method)."""

    def push_image(self, repository: str, tag: str) -> None: ...


@dataclass
class _Script:
    outcomes: list[str]
    duration: float | None
    push: bool
    used: int = 0

    def next_outcome(self) -> str:
        outcome = self.outcomes[min(self.used, len(self.outcomes) - 1)]
        self.used += 1
        return outcome


@dataclass
class _Build:
    job: str
    number: int
    url: str
    sha: str | None
    params: dict[str, str] | None
    checkout: bool  # the build checked out `sha` itself (git plugin BuildData)
    cause: str
    outcome: str
    duration: float
    push: bool
    timestamp: int  # ms since the epoch
    result: str | None = None
    took: float = 0.0  # seconds, once finished

    def to_json(self) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        if self.params is not None:
            actions.append({
                "_class": "hudson.model.ParametersAction",
                "parameters": [{"_class": "hudson.model.StringParameterValue", "name": name, "value": value}
                               for name, value in self.params.items()],
            })
        actions.append({"_class": "hudson.model.CauseAction",
                        "causes": [{"_class": "hudson.model.Cause", "shortDescription": self.cause}]})
        if self.checkout and self.sha:
            actions.append({
                "_class": "hudson.plugins.git.util.BuildData",
                "lastBuiltRevision": {"SHA1": self.sha,
                                      "branch": [{"SHA1": self.sha, "name": "origin/HEAD"}]},
                "remoteUrls": [],
            })
        building = self.result is None
        return {
            "_class": _BUILD_CLASS,
            "number": self.number,
            "id": str(self.number),
            "url": self.url,
            "displayName": f"#{self.number}",
            "fullDisplayName": f"{self.job} #{self.number}",
            "building": building,
            "result": self.result,
            "timestamp": self.timestamp,
            "duration": 0 if building else int(self.took * 1000),
            "estimatedDuration": int(self.duration * 1000),
            "actions": actions,
        }

    def ref(self) -> dict[str, Any]:
        return {"_class": _BUILD_CLASS, "number": self.number, "url": self.url}


@dataclass
class _Job:
    name: str
    branch: str
    builds: list[_Build]  # oldest first


@dataclass
class _QueueItem:
    id: int
    job: str
    sha: str | None
    params: dict[str, str] | None
    checkout: bool
    cause: str
    since: int  # ms since the epoch
    build: _Build | None = None
    cancelled: bool = False

    @property
    def waiting(self) -> bool:
        return self.build is None and not self.cancelled


def parse_tree(text: str) -> Tree:
    """Parse a Jenkins `tree` query (`a,b[c,d]{0,5}`) into fields to keep."""
    tree, _ = _parse_tree(text, 0)
    return tree


def _parse_tree(text: str, pos: int) -> tuple[Tree, int]:
    tree: Tree = {}
    while pos < len(text):
        end = pos
        while end < len(text) and text[end] not in ",[]{}":
            end += 1
        name, pos = text[pos:end].strip(), end
        sub: Tree | None = None
        span: slice | None = None
        if pos < len(text) and text[pos] == "[":
            sub, pos = _parse_tree(text, pos + 1)
            pos += 1  # the closing bracket
        if pos < len(text) and text[pos] == "{":
            close = text.index("}", pos)
            span = _parse_range(text[pos + 1:close])
            pos = close + 1
        if name:
            tree[name] = (sub, span)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    return tree, pos


def _parse_range(text: str) -> slice:
    """`{M,N}`, `{M,}`, `{,N}` or `{N}` as a slice of a list."""
    if "," not in text:
        return slice(int(text), int(text) + 1)
    start, stop = text.split(",", 1)
    return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)


def select(value: Any, tree: Tree) -> Any:
    """Keep only the fields `tree` names (and `_class`), as Jenkins does for `?tree=`."""
    if isinstance(value, list):
        return [select(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    kept = {"_class": value["_class"]} if "_class" in value else {}
    for name, (sub, span) in tree.items():
        if name not in value:
            continue
        field = value[name]
        if span is not None and isinstance(field, list):
            field = field[span]
        kept[name] = field if sub is None else select(field, sub)
    return kept


def _basic_user(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


class JenkinsEmulator(ThreadedServer):
    """Jenkins jobs, queue, builds and the GitHub webhook; outcomes scripted per commit."""

    def __init__(
        self,
        jobs: Mapping[str, str] | None = None,
        *,
        sha_parameter: str = "GIT_COMMIT",
        registry: Registry | None = None,
        image_repository: str = "app",
        default_duration: float = 0.3,
        push_at: float = 0.5,
        queue_delay: float = 0.05,
        port: int = 0,
    ) -> None:
        super().__init__("jenkins", port)
        jobs = {"app-master": "master", "app-pr": PR_JOB} if jobs is None else jobs
        self.sha_parameter = sha_parameter
        self.registry = registry
        self.image_repository = image_repository
        self.default_duration = default_duration
        self.push_at = push_at  # fraction of a build's duration at which it pushes its image
        self.queue_delay = queue_delay
        self.crumb = uuid.uuid4().hex
        self.started: list[tuple[str, int, str | None]] = []  # (job, number, sha) as builds start
        self.users: set[str] = set()  # Basic-auth users seen
        self.anonymous_requests = 0
        self.crumb_rejections = 0
        self._jobs = {name: _Job(name, branch, []) for name, branch in jobs.items()}
        self._scripts: dict[str, _Script] = {}
        self._job_scripts: dict[str, _Script] = {}  # job -> script for the next unscripted commit it builds
        self._queue: dict[int, _QueueItem] = {}
        self._heads: dict[str, str] = {}  # branch -> last pushed commit
        self._tasks: set[asyncio.Task] = set()
        self._lock = threading.Lock()

    # -- control API (any thread) ------------------------------------------------------------
    def script(self, sha: str, outcomes: list[str], duration: float | None = None, push: bool = True) -> None:
        """Successive builds of `sha` end with the successive `outcomes` (the last one repeats)."""
        unknown = [o for o in outcomes if o not in OUTCOMES]
        if not outcomes or unknown:
            raise ValueError(f"outcomes must be a non-empty list of {OUTCOMES}, got {outcomes}")
        with self._lock:
            self._scripts[sha] = _Script(list(outcomes), duration, push)

    def script_next(self, job: str, outcomes: list[str], duration: float | None = None, push: bool = True) -> None:
        """The next commit that `job` builds without a script of its own gets this one (for commits not known
        in advance, such as the merge commit of a deploy)."""
        self.script("", outcomes, duration, push)  # validates
        with self._lock:
            self._job_scripts[job] = self._scripts.pop("")

    def start_build(self, job: str, sha: str, params: dict[str, str] | None = None) -> int:
        """Start a build of `sha` now, as an SCM trigger would (it checks the commit out); its number."""
        build = self.run(self._start_now(job, sha, params))
        assert isinstance(build, _Build)
        return build.number

    def builds(self, job: str) -> list[dict[str, Any]]:
        """The job's builds as the API shows them, newest first."""
        with self._lock:
            return [b.to_json() for b in reversed(self._jobs[job].builds)]

    def build_count(self, job: str, sha: str) -> int:
        with self._lock:
            return sum(1 for b in self._jobs[job].builds if b.sha == sha)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.run(self._cancel_builds())
        super().stop()

    # -- builds (server loop) ----------------------------------------------------------------
    async def _start_now(self, job: str, sha: str, params: dict[str, str] | None) -> _Build:
        if job not in self._jobs:
            raise KeyError(f"no job {job!r}")
        return self._begin(job, sha, params, checkout=True, cause="Started by an SCM change")

    def _begin(self, job: str, sha: str | None, params: dict[str, str] | None, *,
               checkout: bool, cause: str) -> _Build:
        with self._lock:
            script = self._scripts.get(sha) if sha else None
            if script is None and sha and job in self._job_scripts:
                script = self._scripts[sha] = self._job_scripts.pop(job)
            builds = self._jobs[job].builds
            number = builds[-1].number + 1 if builds else 1
            build = _Build(
                job=job, number=number, url=f"{self.url}/job/{job}/{number}/", sha=sha, params=params,
                checkout=checkout, cause=cause,
                outcome=script.next_outcome() if script else "SUCCESS",
                duration=script.duration if script and script.duration is not None else self.default_duration,
                push=script.push if script else True,
                timestamp=int(time.time() * 1000),
            )
            builds.append(build)
            self.started.append((job, number, sha))
        task = asyncio.ensure_future(self._run(build))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return build

    async def _run(self, build: _Build) -> None:
        began = time.monotonic()
        outcome = build.outcome
        await asyncio.sleep(build.duration * self.push_at)
        if build.push and build.sha and self.registry is not None:
            try:
                await asyncio.to_thread(self.registry.push_image, self.image_repository, build.sha)
            except Exception:
                log.exception("jenkins emulator: pushing the image of %s failed", build.sha)
                outcome = "FAILURE"
        if outcome == "HANG":
            return
        await asyncio.sleep(max(0.0, build.duration - (time.monotonic() - began)))
        with self._lock:
            build.result = outcome
            build.took = time.monotonic() - began

    async def _cancel_builds(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _enqueue(self, job: str, sha: str | None, params: dict[str, str] | None, *,
                 checkout: bool, cause: str) -> _QueueItem:
        with self._lock:
            # Jenkins folds a request into an identical one still waiting in the queue
            for item in self._queue.values():
                if item.waiting and (item.job, item.sha, item.params) == (job, sha, params):
                    return item
            since = int(time.time() * 1000)
            item = _QueueItem(len(self._queue) + 1, job, sha, params, checkout, cause, since)
            self._queue[item.id] = item
        assert self.loop is not None
        self.loop.call_later(self.queue_delay, self._leave_queue, item)
        return item

    def _leave_queue(self, item: _QueueItem) -> None:
        if item.cancelled:
            return
        item.build = self._begin(item.job, item.sha, item.params, checkout=item.checkout, cause=item.cause)

    # -- HTTP --------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.on_response_prepare.append(self._version_header)
        routes = app.router
        routes.add_get("/", self._root)
        routes.add_get("/api/json", self._info)
        routes.add_get("/crumbIssuer/api/json", self._crumb)
        routes.add_get("/me/api/json", self._whoami)
        routes.add_get("/job/{job}/api/json", self._job)
        routes.add_get(r"/job/{job}/{number:\d+}/api/json", self._build)
        routes.add_post("/job/{job}/build", self._trigger)
        routes.add_post("/job/{job}/buildWithParameters", self._trigger)
        routes.add_get(r"/queue/item/{id:\d+}/api/json", self._queue_item)
        routes.add_post("/queue/cancelItem", self._cancel_item)
        routes.add_post(WEBHOOK_PATH, self._webhook)
        return app

    @staticmethod
    async def _version_header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Jenkins"] = VERSION

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        user = _basic_user(request.headers.get("Authorization"))
        with self._lock:
            if user is None:
                self.anonymous_requests += 1
            else:
                self.users.add(user)
            refused = (request.method == "POST" and request.path != WEBHOOK_PATH
                       and request.headers.get(CRUMB_FIELD) != self.crumb)
            if refused:
                self.crumb_rejections += 1
        if refused:
            return web.Response(status=403, text="No valid crumb was included in the request")
        return await handler(request)

    def _respond(self, data: Any, request: web.Request) -> web.Response:
        tree = request.query.get("tree")
        return web.json_response(select(data, parse_tree(tree)) if tree else data)

    def _job_or_404(self, request: web.Request) -> _Job:
        job = self._jobs.get(request.match_info["job"])
        if job is None:
            raise web.HTTPNotFound(text="Not Found")
        return job

    async def _root(self, _request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Jenkins (sandbox)</body></html>", content_type="text/html")

    async def _info(self, request: web.Request) -> web.Response:
        with self._lock:
            jobs = [{"_class": _JOB_CLASS, "name": job.name, "url": f"{self.url}/job/{job.name}/",
                     "color": self._color(job)} for job in self._jobs.values()]
        return self._respond({"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeDescription": "sandbox",
                              "numExecutors": 2, "useCrumbs": True, "url": f"{self.url}/", "jobs": jobs},
                             request)

    async def _crumb(self, request: web.Request) -> web.Response:
        return self._respond({"_class": "hudson.security.csrf.DefaultCrumbIssuer",
                              "crumb": self.crumb, "crumbRequestField": CRUMB_FIELD}, request)

    async def _whoami(self, request: web.Request) -> web.Response:
        user = _basic_user(request.headers.get("Authorization")) or "anonymous"
        return self._respond({"_class": "hudson.model.User", "id": user, "fullName": user,
                              "absoluteUrl": f"{self.url}/user/{user}"}, request)

    async def _job(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        # builds in full only when asked for (a tree or depth >= 1), as Jenkins does
        deep = "tree" in request.query or request.query.get("depth", "0") not in ("", "0")
        with self._lock:
            data = self._job_json(job, deep=deep)
        return self._respond(data, request)

    def _job_json(self, job: _Job, *, deep: bool) -> dict[str, Any]:
        newest_first = list(reversed(job.builds))
        completed = [b for b in newest_first if b.result is not None]

        def first(builds: list[_Build]) -> dict[str, Any] | None:
            return builds[0].ref() if builds else None

        waiting = [item for item in self._queue.values() if item.job == job.name and item.waiting]
        data = {
            "_class": _JOB_CLASS,
            "name": job.name,
            "fullName": job.name,
            "displayName": job.name,
            "url": f"{self.url}/job/{job.name}/",
            "buildable": True,
            "color": self._color(job),
            "builds": [b.to_json() if deep else b.ref() for b in newest_first[:100]],
            "firstBuild": job.builds[0].ref() if job.builds else None,
            "lastBuild": first(newest_first),
            "lastCompletedBuild": first(completed),
            "lastSuccessfulBuild": first([b for b in completed if b.result == "SUCCESS"]),
            "lastFailedBuild": first([b for b in completed if b.result == "FAILURE"]),
            "inQueue": bool(waiting),
            "queueItem": ({"_class": "hudson.model.Queue$WaitingItem", "id": waiting[0].id}
                          if waiting else None),
            "nextBuildNumber": (job.builds[-1].number + 1) if job.builds else 1,
            "property": [{
                "_class": "hudson.model.ParametersDefinitionProperty",
                "parameterDefinitions": [{"_class": "hudson.model.StringParameterDefinition",
                                          "name": self.sha_parameter, "type": "StringParameterDefinition"}],
            }],
        }
        if deep:
            data["allBuilds"] = [b.to_json() for b in newest_first]
        return data

    @staticmethod
    def _color(job: _Job) -> str:
        completed = [b for b in job.builds if b.result is not None]
        if completed:
            color = {"SUCCESS": "blue", "FAILURE": "red"}.get(completed[-1].result or "", "aborted")
        else:
            color = "notbuilt"
        return f"{color}_anime" if job.builds and job.builds[-1].result is None else color

    async def _build(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        number = int(request.match_info["number"])
        with self._lock:
            found = [b.to_json() for b in job.builds if b.number == number]
        if not found:
            raise web.HTTPNotFound(text="Not Found")
        return self._respond(found[0], request)

    async def _trigger(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        if request.path.endswith("/buildWithParameters"):
            params = dict(request.query)
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
            for reserved in ("token", "delay", "cause"):
                params.pop(reserved, None)
            # the job checks out ${sha_parameter}; builds started this way show only their parameters,
            # so a client that finds builds by the parameter is told apart from one using BuildData
            sha, checkout = params.get(self.sha_parameter), False
        else:
            with self._lock:
                sha = self._heads.get(job.branch)
            params, checkout = None, True
        user = _basic_user(request.headers.get("Authorization")) or "anonymous"
        item = self._enqueue(job.name, sha, params, checkout=checkout, cause=f"Started by user {user}")
        return web.Response(status=201, headers={"Location": f"{self.url}/queue/item/{item.id}/"})

    async def _queue_item(self, request: web.Request) -> web.Response:
        with self._lock:
            item = self._queue.get(int(request.match_info["id"]))
            if item is None:
                raise web.HTTPNotFound(text="Not Found")
            data: dict[str, Any] = {
                "id": item.id,
                "url": f"queue/item/{item.id}/",
                "inQueueSince": item.since,
                "params": "".join(f"\n{k}={v}" for k, v in (item.params or {}).items()),
                "task": {"_class": _JOB_CLASS, "name": item.job, "url": f"{self.url}/job/{item.job}/"},
                "stuck": False,
            }
            if item.waiting:
                left_in_ms = max(0, int(item.since + self.queue_delay * 1000 - time.time() * 1000))
                data.update({"_class": "hudson.model.Queue$WaitingItem", "blocked": False, "buildable": False,
                             "why": f"In the quiet period. Expires in {left_in_ms} ms"})
            else:
                data.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": item.cancelled,
                             "why": None, "executable": item.build.ref() if item.build else None})
        return self._respond(data, request)

    async def _cancel_item(self, request: web.Request) -> web.Response:
        with self._lock:
            item = self._queue.get(int(request.query.get("id", "0")))
            if item is None:
                raise web.HTTPNotFound(text="Not Found")
            if item.waiting:
                item.cancelled = True
        return web.Response(status=204)

    async def _webhook(self, request: web.Request) -> web.Response:
        event = request.headers.get("X-GitHub-Event", "")
        try:
            if request.content_type == "application/x-www-form-urlencoded":
                payload = json.loads(str((await request.post())["payload"]))
            else:
                payload = await request.json()
        except (KeyError, ValueError):
            raise web.HTTPBadRequest(text="the webhook payload is not JSON") from None
        if event == "push":
            self._on_push(payload)
        elif event == "pull_request" and payload.get("action") in _PR_ACTIONS:
            pull = payload["pull_request"]
            for job in self._jobs_building(PR_JOB):
                self._enqueue(job, pull["head"]["sha"], None, checkout=True,
                              cause=f"GitHub pull request #{pull['number']}")
        return web.Response(text="")

    def _on_push(self, payload: dict[str, Any]) -> None:
        ref, after = payload.get("ref", ""), payload.get("after")
        if not ref.startswith("refs/heads/") or not after or after == _DELETED:
            return
        branch = ref.removeprefix("refs/heads/")
        with self._lock:
            self._heads[branch] = after
        pusher = (payload.get("pusher") or {}).get("name", "someone")
        for job in self._jobs_building(branch):
            self._enqueue(job, after, None, checkout=True, cause=f"Started by GitHub push by {pusher}")

    def _jobs_building(self, branch: str) -> list[str]:
        return [job.name for job in self._jobs.values() if job.branch == branch]
