"""A Jenkins that speaks the JSON API as python-jenkins uses it, with build outcomes scripted per commit.

Jobs come from a mapping of name to what the job builds:
- a branch name (e.g. "master"): a freestyle job started by GitHub `push` webhooks to that branch
  (a push whose head is what the job's newest or queued build builds starts none: the Git plugin's
  polling finds "No changes", as when the train lands a candidate it built through the API);
- "pr": a freestyle job building pull request heads, started by `pull_request` webhooks;
- "multibranch": a GitHub Branch Source multibranch project (`WorkflowMultiBranchProject`) whose
  children are pipeline jobs `PR-<n>` (URL `/job/<project>/job/PR-<n>/`, python-jenkins name
  `<project>/PR-<n>`), created and built when a pull request is opened, pushed to or reopened, and
  no longer buildable once it is closed. Only pull requests are discovered, not branches.
Any job can also be started through `build` (the branch's last pushed head, or the PR's head) or
`buildWithParameters` with the commit in `sha_parameter` (a freestyle job checks that parameter
out; a PR job always checks out its pull request, and records the parameter). Builds go through
the queue (a quiet period of `queue_delay`, then possibly a wait for an executor; the job's
`inQueue` holds until its build has begun, also while a merge-ref checkout is made), run for a
configurable time, "push" the built commit's image to a registry half-way through, and end with
the outcome scripted for them (SUCCESS unless told otherwise). `POST .../<n>/stop` aborts a
running build (ABORTED), `POST /queue/cancelItem?id=` a queued one.

Python-side controls (any thread):
- `script(sha, outcomes)`: successive builds of a commit (built or, for a merge, the PR head);
  `script_pr(pr, outcomes)`: successive builds of a pull request in any job (e.g. ["FAILURE",
  "SUCCESS"]: red once, then green); `script_next(job, outcomes)`: the next commit `job` builds
  (a multibranch project's name covers all its PR jobs). The last outcome repeats; "HANG" runs
  until stopped.
- `build_merge_ref(job)`: PR builds of a multibranch project (or one `project/PR-<n>`) build the
  PR head merged with its base, as Branch Source does by default: the base commit named by the
  latest event is merged into the head by `merge_ref(pr, head, base)` (set by the world: returns
  the merge, or None on a conflict, which fails the build). `lastBuiltRevision.SHA1` (and the image
  pushed) is the merge; the head stays in `lastBuiltRevision.branch[0].SHA1` and
  `buildsByBranchName["PR-<n>"].marked`. A push to the base branch rebuilds such PR jobs.
- `notify_to(url, job=None, token=None, event="all")`: the Notification plugin: POST its JSON at
  STARTED, COMPLETED and FINALIZED (the token goes in the URL's query, where the plugin can carry
  it); each attempt is recorded in `notifications`; a failed delivery never stops the build.
- `coalesce(job, window)`: webhook builds of `job` wait `window` seconds, and later pushes in that
  time fold into the waiting build, which builds only the latest commit (Jenkins' quiet period);
  `coalesce_next(job, count=1)`: the next webhook events start no build of their own. Both record
  the commits left without a build in `coalesced`.
- `delay_queue(job, seconds, why=..., count=None)`: after the quiet period, builds of `job` wait for
  an executor (`Queue$BuildableItem` with `why`) that long (None: until `release_queue(job)`).
- `add_user(user, token, permissions, jobs=...)`: a user whose token and permissions (Overall/Read,
  Job/Discover, Job/Read, Job/Build, Job/Cancel) are enforced: 401 for a wrong token, 403 naming
  the missing permission, 404 for a job one may not even discover. Anyone else (and anonymous,
  see `anonymous_permissions`) keeps full access unless `require_known_users` is set.
- Reading back: `started` ((job, number, sha) as builds start), `builds(job)`, `build_count(job,
  sha)`, `job_names()`, `users`; `start_build(job, sha)` starts a build at once; `scm_url` is the
  remote the builds say they checked out.

POSTs need the crumb from `/crumbIssuer/api/json` (the GitHub webhook is exempt, as in Jenkins).
Known gaps: a multibranch project cannot be scanned (`POST /job/<project>/build` is not found),
and the Notification plugin's notes, test summary and log lines are never sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from sandbox.server import ThreadedServer

log = logging.getLogger(__name__)

VERSION = "2.440"
CRUMB_FIELD = "Jenkins-Crumb"
PR_JOB = "pr"  # the "branch" of a freestyle job that builds pull request heads
MULTIBRANCH = "multibranch"  # the "branch" of a multibranch project of PR jobs
OUTCOMES = ("SUCCESS", "FAILURE", "ABORTED", "HANG")
PHASES = ("STARTED", "COMPLETED", "FINALIZED")
WEBHOOK_PATH = "/github-webhook/"
# what each permission is called in the X-Required-Permission header of a 403
PERMISSIONS = {
    "Overall/Read": "hudson.model.Hudson.Read",
    "Job/Discover": "hudson.model.Item.Discover",
    "Job/Read": "hudson.model.Item.Read",
    "Job/Build": "hudson.model.Item.Build",
    "Job/Cancel": "hudson.model.Item.Cancel",
}
EXECUTOR_WHY = "Waiting for next available executor"
_PR_ACTIONS = ("opened", "synchronize", "reopened")
_DELETED = "0" * 40  # the `after` of a push that deleted the branch
_FREESTYLE = ("hudson.model.FreeStyleProject", "hudson.model.FreeStyleBuild")
_PIPELINE = ("org.jenkinsci.plugins.workflow.job.WorkflowJob", "org.jenkinsci.plugins.workflow.job.WorkflowRun")
_MULTIBRANCH_CLASS = "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"
_USER_CAUSE = "hudson.model.Cause$UserIdCause"
_PUSH_CAUSE = "com.cloudbees.jenkins.GitHubPushCause"
_EVENT_CAUSE = "jenkins.branch.BranchEventCause"
_SCM_CAUSE = "hudson.triggers.SCMTrigger$SCMTriggerCause"
_GHPRB_CAUSE = "org.jenkinsci.plugins.ghprb.GhprbCause"
_PERMALINKS = ("lastBuild", "lastCompletedBuild", "lastSuccessfulBuild", "lastFailedBuild")

# tree=... parsed: field name -> (sub-tree or None, slice of a list field or None)
Tree = dict[str, tuple["Tree | None", slice | None]]
# (pull request number, head, base commit) -> the commit merging them, None when they conflict
MergeRef = Callable[[int, str, str], "str | None"]


class Registry(Protocol):
    """Where a build pushes the image of its commit (the ECR emulator has this method)."""

    def push_image(self, repository: str, tag: str) -> None: ...


@dataclass
class Notification:
    """One delivery of the Notification plugin's JSON: where, what, and how the endpoint answered."""

    url: str
    job: str  # full name
    number: int
    phase: str
    body: dict[str, Any]
    status: int | None  # None: nothing answered (see `error`)
    response: str = ""
    error: str | None = None


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
class _PullRequest:
    number: int
    head: str
    base_ref: str
    base_sha: str | None  # the base branch's head as of the latest event, what Branch Source merges
    title: str = ""
    url: str = ""
    author: str = ""
    body: str = ""


@dataclass
class _Build:
    job: str
    number: int
    url: str
    classes: tuple[str, str]
    display: str  # the job's full display name
    queue_id: int
    sha: str | None  # the commit checked out and built: a merge for a merge-ref PR build
    params: dict[str, str] | None
    checkout: bool  # the build checked out `sha` itself (git plugin BuildData)
    cause: str
    cause_class: str
    outcome: str
    duration: float
    push: bool
    timestamp: int  # ms since the epoch
    branch: str  # the git plugin's name for what was checked out
    pr: int | None = None
    head: str | None = None  # the PR head (the same as `sha` unless merged)
    base: str | None = None  # a merge-ref build: the base commit merged into the head
    result: str | None = None
    took: float = 0.0  # seconds, once finished
    lines: list[str] = field(default_factory=list)  # the console log
    task: asyncio.Task | None = None
    stopping: bool = False

    def ref(self) -> dict[str, Any]:
        return {"_class": self.classes[1], "number": self.number, "url": self.url}


@dataclass
class _Job:
    name: str  # the full name: `project/PR-<n>` for a multibranch project's PR job
    branch: str  # the branch it builds, PR_JOB, or `PR-<n>`
    builds: list[_Build] = field(default_factory=list)  # oldest first
    project: str | None = None
    pr: _PullRequest | None = None
    merge: bool = False  # builds its PR merged with the base (build_merge_ref)
    rebuild_on_base_push: bool = True
    closed: bool = False  # its pull request was closed: kept, no longer buildable

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def path(self) -> str:
        return _path(self.name)

    @property
    def classes(self) -> tuple[str, str]:
        return _PIPELINE if self.project else _FREESTYLE

    @property
    def display(self) -> str:
        return self.name.replace("/", " » ")


@dataclass
class _Project:
    name: str
    jobs: list[str] = field(default_factory=list)  # full names of its PR jobs
    merge: bool = False
    rebuild_on_base_push: bool = True


@dataclass
class _QueueItem:
    id: int
    job: str
    sha: str | None
    params: dict[str, str] | None
    checkout: bool
    cause: str
    cause_class: str
    since: int  # ms since the epoch
    quiet_until: float  # time.time() at which the quiet period ends
    wait: float | None  # then seconds waiting for an executor; None: until released
    why: str
    pr: int | None = None
    base_sha: str | None = None
    webhook: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    buildable: bool = False  # past the quiet period, waiting for an executor
    starting: bool = False
    build: _Build | None = None
    cancelled: bool = False

    @property
    def waiting(self) -> bool:
        return self.build is None and not self.cancelled and not self.starting

    @property
    def queued(self) -> bool:
        """Still in Jenkins' queue: waiting, or pending (handed to an executor, its build not begun yet)."""
        return self.waiting or (self.starting and self.build is None)


@dataclass
class _Delay:
    seconds: float | None
    why: str
    count: int | None


@dataclass(frozen=True)
class _Principal:
    name: str
    permissions: frozenset[str]
    jobs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    anonymous: bool = False

    def can(self, permission: str, job: str | None = None) -> bool:
        wanted = {permission, "Job/Read"} if permission == "Job/Discover" else {permission}
        granted = set(self.permissions)
        if job is not None:
            for key in (job.split("/", 1)[0], job):  # a grant on a folder covers what is in it
                granted |= self.jobs.get(key, frozenset())
        return bool(wanted & granted)


_PRINCIPAL = web.RequestKey("principal", _Principal)


@dataclass
class _Account:
    token: str
    permissions: frozenset[str]
    jobs: dict[str, frozenset[str]]


@dataclass
class _Endpoint:
    url: str
    job: str | None
    event: str
    timeout: float
    retries: int

    def wants(self, job: _Job, phase: str, result: str | None) -> bool:
        if self.job is not None and self.job not in (job.name, job.project):
            return False
        if self.event == "all":
            return True
        if self.event == "failed":
            return phase == "FINALIZED" and result == "FAILURE"
        return self.event == phase.lower()


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
        field_value = value[name]
        if span is not None and isinstance(field_value, list):
            field_value = field_value[span]
        kept[name] = field_value if sub is None else select(field_value, sub)
    return kept


def _basic_auth(header: str | None) -> tuple[str | None, str]:
    if not header or not header.lower().startswith("basic "):
        return None, ""
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, _, token = decoded.partition(":")
    return user or None, token


def _path(name: str) -> str:
    """`folder/job` -> `job/folder/job/job/` (the folders plugin's URL scheme)."""
    return "".join(f"job/{part}/" for part in name.split("/"))


def _time_span(ms: int) -> str:
    """A duration the way Jenkins words it in a queue item's `why` (Util.getTimeSpanString)."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f} sec"
    if ms < 60_000:
        return f"{ms // 1000} sec"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} sec"


def _parse_delay(text: str | None) -> float | None:
    """`buildWithParameters?delay=10sec` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:sec|secs|s)?\s*", text or "")
    return float(match.group(1)) if match else None


class JenkinsEmulator(ThreadedServer):
    """Jenkins jobs, multibranch projects, queue, builds, notifications and the GitHub webhook."""

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
        scm_url: str = "https://github.com/acme/app.git",
        first_queue_id: int = 1,
        port: int = 0,
    ) -> None:
        super().__init__("jenkins", port)
        self.first_queue_id = first_queue_id  # apart from another Jenkins' behind one front (`sandbox.front`)
        jobs = {"app-master": "master", "app-pr": PR_JOB} if jobs is None else jobs
        self.sha_parameter = sha_parameter
        self.registry = registry
        self.image_repository = image_repository
        self.default_duration = default_duration
        self.push_at = push_at  # fraction of a build's duration at which it pushes its image
        self.queue_delay = queue_delay  # the quiet period, seconds
        self.scm_url = scm_url  # the remote the jobs check out (BuildData.remoteUrls, GIT_URL)
        self.merge_ref: MergeRef | None = None
        self.crumb = uuid.uuid4().hex
        self.started: list[tuple[str, int, str | None]] = []  # (job, number, sha) as builds start
        self.users: set[str] = set()  # Basic-auth users seen
        self.anonymous_requests = 0
        self.crumb_rejections = 0
        self.notifications: list[Notification] = []
        self.coalesced: list[tuple[str, str]] = []  # (job, sha) of webhook commits left without a build
        self.anonymous_permissions: set[str] = set(PERMISSIONS)
        self.require_known_users = False  # True: Basic auth of a user not added by add_user() answers 401
        self._top = list(jobs)  # top-level items in their given order
        self._jobs = {name: _Job(name, branch) for name, branch in jobs.items() if branch != MULTIBRANCH}
        self._projects = {name: _Project(name) for name, branch in jobs.items() if branch == MULTIBRANCH}
        self._scripts: dict[str, _Script] = {}
        self._job_scripts: dict[str, _Script] = {}  # job -> script for the next unscripted commit it builds
        self._pr_scripts: dict[int, _Script] = {}
        self._delays: dict[str, _Delay] = {}
        self._windows: dict[str, float] = {}
        self._skips: dict[str, int] = {}
        self._accounts: dict[str, _Account] = {}
        self._endpoints: list[_Endpoint] = []
        self._queue: dict[int, _QueueItem] = {}
        self._heads: dict[str, str] = {}  # branch -> last pushed commit
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()

    # -- control API (any thread) ------------------------------------------------------------
    def script(self, sha: str, outcomes: list[str], duration: float | None = None, push: bool = True) -> None:
        """Successive builds of `sha` end with the successive `outcomes` (the last one repeats)."""
        with self._lock:
            self._scripts[sha] = self._new_script(outcomes, duration, push)

    def script_next(self, job: str, outcomes: list[str], duration: float | None = None, push: bool = True) -> None:
        """The next commit that `job` builds without a script of its own gets this one (for commits not known
        in advance, such as the merge commit of a deploy); a multibranch project's name covers its PR jobs."""
        with self._lock:
            self._job_scripts[job] = self._new_script(outcomes, duration, push)

    def script_pr(self, pr: int, outcomes: list[str], duration: float | None = None, push: bool = True) -> None:
        """Successive builds of pull request `pr`, in any job and whatever commit they build, end with the
        successive `outcomes` (the last one repeats); a script of the commit itself comes first."""
        with self._lock:
            self._pr_scripts[pr] = self._new_script(outcomes, duration, push)

    def start_build(self, job: str, sha: str, params: dict[str, str] | None = None) -> int:
        """Start a build of `sha` now, as an SCM trigger would (it checks the commit out); its number.
        For a PR job `sha` is the head, merged first if the job builds the merge ref."""
        build = self.run(self._start_now(job, sha, params))
        assert isinstance(build, _Build)
        return build.number

    def builds(self, job: str) -> list[dict[str, Any]]:
        """The job's builds as the API shows them, newest first."""
        with self._lock:
            found = self._jobs[job]
            return [self._build_json(b) for b in reversed(found.builds)]

    def build_count(self, job: str, sha: str) -> int:
        with self._lock:
            return sum(1 for b in self._jobs[job].builds if b.sha == sha)

    def job_names(self) -> list[str]:
        """Full names of every job that builds (PR jobs of multibranch projects included)."""
        with self._lock:
            return sorted(self._jobs)

    def build_merge_ref(self, job: str, enabled: bool = True, *, rebuild_on_base_push: bool = True) -> None:
        """PR builds of a multibranch project (its PR jobs now and later) or of one `project/PR-<n>` build the
        PR head merged with its base, as GitHub Branch Source does by default; `rebuild_on_base_push`: a push
        to the base branch rebuilds them (Branch Source's default too)."""
        with self._lock:
            if job in self._projects:
                project = self._projects[job]
                project.merge, project.rebuild_on_base_push = enabled, rebuild_on_base_push
                targets = [self._jobs[name] for name in project.jobs]
            elif job in self._jobs and self._jobs[job].project is not None:
                targets = [self._jobs[job]]
            else:
                raise ValueError(f"{job!r} is not a multibranch project or one of its PR jobs")
            for target in targets:
                target.merge, target.rebuild_on_base_push = enabled, rebuild_on_base_push

    def notify_to(self, url: str, *, job: str | None = None, token: str | None = None, event: str = "all",
                  timeout: float = 5.0, retries: int = 0) -> None:
        """POST the Notification plugin's JSON to `url` for builds of `job` (a project covers its PR jobs;
        None: every job) at `event` ("all", "started", "completed", "finalized" or "failed"). The plugin
        can only carry a secret in the URL, so `token` is added to its query as `token=`; user:password
        in the URL is sent as Basic auth, as the plugin does."""
        if event not in ("all", "started", "completed", "finalized", "failed"):
            raise ValueError(f"unknown notification event {event!r}")
        if token is not None:
            parts = urlsplit(url)
            query = urlencode([*parse_qsl(parts.query), ("token", token)])
            url = urlunsplit(parts._replace(query=query))
        with self._lock:
            self._endpoints.append(_Endpoint(url, job, event, timeout, retries))

    def coalesce(self, job: str, window: float) -> None:
        """Webhook builds of `job` wait `window` seconds in the queue, and each push (or PR update) in that
        time folds into the waiting build, which builds only the latest commit; 0 turns it off."""
        with self._lock:
            if window > 0:
                self._windows[job] = window
            else:
                self._windows.pop(job, None)

    def coalesce_next(self, job: str, count: int = 1) -> None:
        """The next `count` webhook events for `job` start no build of their own (as if folded into a later
        one): a commit pushed that way may never be built."""
        with self._lock:
            self._skips[job] = self._skips.get(job, 0) + count

    def delay_queue(self, job: str, seconds: float | None, *, why: str = EXECUTOR_WHY,
                    count: int | None = None) -> None:
        """After their quiet period, the next `count` builds of `job` (None: all, until delayed by 0) wait
        `seconds` for an executor, the queue item saying `why`; None: until `release_queue`."""
        with self._lock:
            if seconds == 0:
                self._delays.pop(job, None)
            else:
                self._delays[job] = _Delay(seconds, why, count)

    def release_queue(self, job: str | None = None) -> None:
        """Let builds of `job` (None: of every job) waiting for an executor start now."""
        with self._lock:
            items = [item for item in self._queue.values() if item.waiting
                     and (job is None or job in (item.job, self._jobs[item.job].project))]
        assert self.loop is not None
        for item in items:
            self.loop.call_soon_threadsafe(item.released.set)

    def add_user(self, user: str, token: str, permissions: Iterable[str] = tuple(PERMISSIONS), *,
                 jobs: Mapping[str, Iterable[str]] | None = None) -> None:
        """A user known by token, with global `permissions` and more per job or folder (`jobs`)."""
        granted = frozenset(permissions)
        per_job = {name: frozenset(p) for name, p in (jobs or {}).items()}
        unknown = (granted | {p for ps in per_job.values() for p in ps}) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {list(PERMISSIONS)}")
        with self._lock:
            self._accounts[user] = _Account(token, granted, per_job)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.run(self._shutdown())
        super().stop()

    def _new_script(self, outcomes: list[str], duration: float | None, push: bool) -> _Script:
        unknown = [o for o in outcomes if o not in OUTCOMES]
        if not outcomes or unknown:
            raise ValueError(f"outcomes must be a non-empty list of {OUTCOMES}, got {outcomes}")
        return _Script(list(outcomes), duration, push)

    # -- the queue and builds (server loop) --------------------------------------------------
    async def on_started(self) -> None:
        self._session = aiohttp.ClientSession()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _keys(self, job: str) -> tuple[str, ...]:
        """The names a rule for `job` may be set under: its own, then its project's."""
        project = self._jobs[job].project
        return (job, project) if project else (job,)

    async def _start_now(self, job: str, sha: str, params: dict[str, str] | None) -> _Build:
        with self._lock:
            if job not in self._jobs:
                raise KeyError(f"no job {job!r}")
            found = self._jobs[job]
            pr = found.pr
            item = self._new_item(job, sha, params, checkout=True, cause="Started by an SCM change",
                                  cause_class=_SCM_CAUSE, pr=pr.number if pr else None,
                                  base_sha=pr.base_sha if pr else None, quiet=0.0, delay=None)
        build = await self._checkout_and_begin(item)
        assert build is not None
        return build

    def _new_item(self, job: str, sha: str | None, params: dict[str, str] | None, *, checkout: bool, cause: str,
                  cause_class: str, pr: int | None, base_sha: str | None, quiet: float, delay: _Delay | None,
                  webhook: bool = False) -> _QueueItem:
        now = time.time()
        item = _QueueItem(self.first_queue_id + len(self._queue), job, sha, params, checkout, cause, cause_class,
                          int(now * 1000), quiet_until=now + quiet, wait=delay.seconds if delay else 0.0,
                          why=delay.why if delay else EXECUTOR_WHY, pr=pr, base_sha=base_sha, webhook=webhook)
        self._queue[item.id] = item
        return item

    def _take_delay(self, job: str) -> _Delay | None:
        for key in self._keys(job):
            delay = self._delays.get(key)
            if delay is not None:
                if delay.count is not None:
                    delay.count -= 1
                    if delay.count <= 0:
                        del self._delays[key]
                return delay
        return None

    def _enqueue(self, job: str, sha: str | None, params: dict[str, str] | None, *, checkout: bool, cause: str,
                 cause_class: str = _USER_CAUSE, pr: int | None = None, base_sha: str | None = None,
                 webhook: bool = False, quiet: float | None = None) -> _QueueItem | None:
        with self._lock:
            keys = self._keys(job)
            if webhook:
                skip = next((key for key in keys if self._skips.get(key)), None)
                if skip is not None:
                    self._skips[skip] -= 1
                    if sha:
                        self.coalesced.append((job, sha))
                    return None
                window = next((self._windows[key] for key in keys if key in self._windows), None)
                if window is not None:
                    # Jenkins' quiet period: a trigger for a job already waiting joins it and pushes its start
                    # back; the build then checks out whatever is newest
                    for item in self._queue.values():
                        if item.waiting and item.webhook and (item.job, item.pr) == (job, pr):
                            if item.sha and item.sha != sha:
                                self.coalesced.append((job, item.sha))
                            item.sha, item.base_sha = sha, base_sha
                            item.quiet_until = max(item.quiet_until, time.time() + window)
                            return item
                    quiet = window
            # Jenkins folds a request into an identical one still waiting in the queue
            for item in self._queue.values():
                if item.waiting and (item.job, item.sha, item.params, item.pr) == (job, sha, params, pr):
                    return item
            item = self._new_item(job, sha, params, checkout=checkout, cause=cause, cause_class=cause_class, pr=pr,
                                  base_sha=base_sha, quiet=self.queue_delay if quiet is None else quiet,
                                  delay=self._take_delay(job), webhook=webhook)
        self._spawn(self._wait_in_queue(item))
        return item

    async def _wait_in_queue(self, item: _QueueItem) -> None:
        # a coalescing push may move the end of the quiet period while we sleep
        while True:
            left = item.quiet_until - time.time()
            if left <= 0:
                break
            await asyncio.sleep(left)
        with self._lock:
            if item.cancelled:
                return
            item.buildable = True
        if item.wait is None:
            await item.released.wait()
        elif item.wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(item.released.wait(), item.wait)
        await self._checkout_and_begin(item)

    async def _checkout_and_begin(self, item: _QueueItem) -> _Build | None:
        """Check out what the item asks for (merging first for a merge-ref PR job) and begin the build."""
        with self._lock:
            if item.cancelled:
                return None
            item.starting = True
            job = self._jobs[item.job]
            merge = job.merge and item.checkout and item.pr is not None and item.sha is not None
            hook = self.merge_ref
        built, failure, lines = item.sha, None, []
        if merge:
            assert item.sha is not None and item.pr is not None
            base_name = job.pr.base_ref if job.pr else "the base branch"
            lines.append(f"Merging {base_name} commit {item.base_sha} into PR head commit {item.sha}")
            if item.base_sha is None or hook is None:
                failure = "the base commit to merge is not known" if hook else "no merge_ref hook is set"
            else:
                try:
                    built = await asyncio.to_thread(hook, item.pr, item.sha, item.base_sha)
                except Exception as exc:
                    log.exception("jenkins emulator: merging PR #%s failed", item.pr)
                    built, failure = None, f"{type(exc).__name__}: {exc}"
                else:
                    failure = None if built else "Merge conflict"
            lines.append(f"ERROR: {failure}" if failure else f"Merge succeeded, producing {built}")
            if failure:
                built = None
        return self._begin(item, built, lines, failure)

    def _find_script(self, job: _Job, sha: str | None, head: str | None, pr: int | None) -> _Script | None:
        for commit in (sha, head):
            if commit and commit in self._scripts:
                return self._scripts[commit]
        if pr is not None and pr in self._pr_scripts:
            return self._pr_scripts[pr]
        if sha:
            for key in self._keys(job.name):
                if key in self._job_scripts:
                    script = self._scripts[sha] = self._job_scripts.pop(key)
                    return script
        return None

    def _begin(self, item: _QueueItem, sha: str | None, lines: list[str], failure: str | None) -> _Build:
        with self._lock:
            job = self._jobs[item.job]
            head = item.sha if item.pr is not None else None
            script = None if failure else self._find_script(job, sha, head, item.pr)
            number = job.builds[-1].number + 1 if job.builds else 1
            if job.project:
                branch = job.branch
            elif item.pr is not None:
                branch = f"origin/pr/{item.pr}/head"
            else:
                branch = f"origin/{job.branch}" if job.branch != PR_JOB else "origin/HEAD"
            build = _Build(
                job=job.name, number=number, url=f"{self.url}/{job.path}{number}/", classes=job.classes,
                display=job.display, queue_id=item.id, sha=sha, params=item.params,
                checkout=item.checkout or bool(job.project), cause=item.cause, cause_class=item.cause_class,
                outcome="FAILURE" if failure else script.next_outcome() if script else "SUCCESS",
                duration=(min(0.05, self.default_duration) if failure
                          else script.duration if script and script.duration is not None else self.default_duration),
                push=not failure and (script.push if script else True),
                timestamp=int(time.time() * 1000), branch=branch, pr=item.pr, head=head,
                base=item.base_sha if job.merge and item.pr is not None else None,
                lines=[item.cause, *lines],
            )
            job.builds.append(build)
            item.build = build
            self.started.append((job.name, number, sha))
            build.task = self._spawn(self._run(build))
        return build

    async def _run(self, build: _Build) -> None:
        began = time.monotonic()
        outcome = build.outcome
        try:
            await self._notify(build, "STARTED")
            began = time.monotonic()
            await asyncio.sleep(build.duration * self.push_at)
            if build.push and build.sha and self.registry is not None:
                try:
                    await asyncio.to_thread(self.registry.push_image, self.image_repository, build.sha)
                    build.lines.append(f"Pushed {self.image_repository}:{build.sha}")
                except Exception:
                    log.exception("jenkins emulator: pushing the image of %s failed", build.sha)
                    outcome = "FAILURE"
            if outcome == "HANG":
                await asyncio.Event().wait()  # until stopped
            await asyncio.sleep(max(0.0, build.duration - (time.monotonic() - began)))
        except asyncio.CancelledError:
            if not build.stopping:
                raise  # the emulator is shutting down
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the abort is handled here; later timeouts must not mistake it for theirs
            outcome = "ABORTED"
        with self._lock:
            build.result = outcome
            build.took = time.monotonic() - began
            build.lines.append(f"Finished: {outcome}")
        await self._notify(build, "COMPLETED")
        await self._notify(build, "FINALIZED")

    # -- notifications (server loop) -----------------------------------------------------------
    async def _notify(self, build: _Build, phase: str) -> None:
        with self._lock:
            job = self._jobs[build.job]
            endpoints = [e for e in self._endpoints if e.wants(job, phase, build.result)]
            if not endpoints:
                return
            body = self._notification_json(job, build, phase)
        for endpoint in endpoints:
            await self._deliver(endpoint, build, phase, body)

    def _notification_json(self, job: _Job, build: _Build, phase: str) -> dict[str, Any]:
        """The Notification plugin's JobState as its Gson writes it: snake_case fields, nulls left out."""
        scm: dict[str, Any] = {}
        if phase != "STARTED" and build.checkout and build.sha:
            scm.update(url=self.scm_url, branch=build.branch, commit=build.sha)
        # the plugin reads GIT_URL, GIT_BRANCH and GIT_COMMIT from the build's environment, parameters included
        for variable in ("GIT_URL", "GIT_BRANCH", "GIT_COMMIT"):
            if build.params and variable in build.params:
                scm[variable.removeprefix("GIT_").lower()] = build.params[variable]
        scm.update(changes=[], culprits=[])
        state: dict[str, Any] = {
            "full_url": build.url,
            "number": build.number,
            "queue_id": build.queue_id,
            "phase": phase,
            "timestamp": int(time.time() * 1000),
            "duration": int(build.took * 1000) if build.result else 0,
            "url": f"{job.path}{build.number}/",
            "scm": scm,
            "log": "",
            "artifacts": {},
        }
        if build.result is not None:
            state["status"] = build.result
        if build.params is not None:
            state["parameters"] = dict(build.params)
        return {"name": job.short_name, "display_name": job.short_name, "url": job.path, "build": state}

    async def _deliver(self, endpoint: _Endpoint, build: _Build, phase: str, body: dict[str, Any]) -> None:
        assert self._session is not None
        parts = urlsplit(endpoint.url)
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        url = endpoint.url
        if "@" in parts.netloc:
            # the plugin sends the URL's user info, as written, as Basic auth
            userinfo, host = parts.netloc.rsplit("@", 1)
            headers["Authorization"] = f"Basic {base64.b64encode(userinfo.encode()).decode()}"
            url = urlunsplit(parts._replace(netloc=host))
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            record = Notification(endpoint.url, build.job, build.number, phase, body, None)
            try:
                async with self._session.post(url, data=data, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=endpoint.timeout)) as response:
                    record.status, record.response = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.notifications.append(record)
            # like the plugin, only a failure to deliver is retried, never an answer, whatever its status
            if record.error is None or attempt >= endpoint.retries:
                if record.error is not None:
                    build.lines.append(f"Failed to notify endpoint with url '{endpoint.url}' - {record.error}")
                return
            attempt += 1

    # -- HTTP --------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.on_response_prepare.append(self._version_header)
        routes = app.router
        routes.add_get("/", self._root)
        routes.add_get("/api/json", self._info)
        routes.add_get("/crumbIssuer/api/json", self._crumb)
        routes.add_get("/me/api/json", self._me)
        routes.add_get("/whoAmI/api/json", self._who_am_i)
        routes.add_get("/queue/api/json", self._queue_info)
        routes.add_get(r"/queue/item/{id:\d+}/api/json", self._queue_item)
        routes.add_post("/queue/cancelItem", self._cancel_item)
        routes.add_post(WEBHOOK_PATH, self._webhook)
        routes.add_route("*", "/job/{tail:.+}", self._job_route)
        return app

    @staticmethod
    async def _version_header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Jenkins"] = VERSION

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        user, token = _basic_auth(request.headers.get("Authorization"))
        with self._lock:
            if user is None:
                self.anonymous_requests += 1
                principal: _Principal | None = _Principal("anonymous", frozenset(self.anonymous_permissions),
                                                          anonymous=True)
            else:
                self.users.add(user)
                account = self._accounts.get(user)
                if account is not None:
                    principal = (_Principal(user, account.permissions, account.jobs)
                                 if token == account.token else None)
                else:
                    principal = None if self.require_known_users else _Principal(user, frozenset(PERMISSIONS))
            refused = (principal is not None and request.method == "POST" and request.path != WEBHOOK_PATH
                       and request.headers.get(CRUMB_FIELD) != self.crumb)
            if refused:
                self.crumb_rejections += 1
        if principal is None:
            return web.Response(status=401, text=f"Invalid password/token for user: {user}",
                                headers={"WWW-Authenticate": 'Basic realm="Jenkins"'})
        if refused:
            return web.Response(status=403, text="No valid crumb was included in the request")
        request[_PRINCIPAL] = principal
        # whoAmI and the webhook are unprotected root actions: everything else needs Overall/Read
        if request.path not in (WEBHOOK_PATH, "/whoAmI/api/json") and not principal.can("Overall/Read"):
            return self._denied(principal, "Overall/Read")
        try:
            return await handler(request)
        except _Denied as denied:
            return self._denied(principal, denied.permission)

    @staticmethod
    def _denied(principal: _Principal, permission: str) -> web.Response:
        return web.Response(status=403, text=f"{principal.name} is missing the {permission} permission",
                            headers={"X-You-Are-Authenticated-As": principal.name,
                                     "X-Required-Permission": PERMISSIONS[permission],
                                     "X-Permission-Implied-By": "hudson.model.Hudson.Administer"})

    @staticmethod
    def _principal(request: web.Request) -> _Principal:
        return request[_PRINCIPAL]

    def _respond(self, data: Any, request: web.Request) -> web.Response:
        tree = request.query.get("tree")
        return web.json_response(select(data, parse_tree(tree)) if tree else data)

    async def _root(self, _request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Jenkins (sandbox)</body></html>", content_type="text/html")

    async def _info(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        nested = "tree" in request.query  # a folder's children only when a tree asks for them
        with self._lock:
            jobs = []
            for name in self._top:
                if not principal.can("Job/Read", name):
                    continue
                if name in self._projects:
                    entry: dict[str, Any] = {"_class": _MULTIBRANCH_CLASS, "name": name,
                                             "url": f"{self.url}/{_path(name)}"}
                    if nested:
                        entry["jobs"] = self._children(self._projects[name], principal)
                else:
                    entry = self._job_entry(self._jobs[name])
                jobs.append(entry)
        return self._respond({"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeDescription": "sandbox",
                              "numExecutors": 2, "useCrumbs": True, "url": f"{self.url}/", "jobs": jobs},
                             request)

    def _job_entry(self, job: _Job) -> dict[str, Any]:
        return {"_class": job.classes[0], "name": job.short_name, "url": f"{self.url}/{job.path}",
                "color": self._color(job)}

    def _children(self, project: _Project, principal: _Principal) -> list[dict[str, Any]]:
        # Jenkins keeps a folder's items sorted by name, case-insensitively
        return [self._job_entry(self._jobs[name]) for name in sorted(project.jobs, key=str.lower)
                if principal.can("Job/Read", name)]

    async def _crumb(self, request: web.Request) -> web.Response:
        return self._respond({"_class": "hudson.security.csrf.DefaultCrumbIssuer",
                              "crumb": self.crumb, "crumbRequestField": CRUMB_FIELD}, request)

    async def _me(self, request: web.Request) -> web.Response:
        user = self._principal(request).name
        return self._respond({"_class": "hudson.model.User", "id": user, "fullName": user, "description": None,
                              "absoluteUrl": f"{self.url}/user/{user}", "property": []}, request)

    async def _who_am_i(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        return self._respond({
            "_class": "hudson.security.WhoAmI", "anonymous": principal.anonymous, "authenticated": True,
            "authorities": ["anonymous"] if principal.anonymous else ["authenticated"], "details": None,
            "name": principal.name, "toString": f"{principal.name} (sandbox)",
        }, request)

    # -- jobs, projects and builds -----------------------------------------------------------
    async def _job_route(self, request: web.Request) -> web.StreamResponse:
        """Everything under /job/: `job/<name>(/job/<name>)*` then what is asked of that item."""
        parts = [p for p in request.match_info["tail"].split("/") if p]
        if not parts:
            raise web.HTTPNotFound(text="Not Found")
        name, rest = parts[0], parts[1:]
        while len(rest) >= 2 and rest[0] == "job":
            name, rest = f"{name}/{rest[1]}", rest[2:]
        principal = self._principal(request)
        with self._lock:
            known = name in self._jobs or name in self._projects
        if not known or not principal.can("Job/Discover", name):
            raise web.HTTPNotFound(text="Not Found")
        if not principal.can("Job/Read", name):
            raise _Denied("Job/Read")
        method = request.method
        if name in self._projects:
            if rest == ["api", "json"] and method == "GET":
                return self._respond(self._project_json(self._projects[name], principal), request)
            if not rest and method == "GET":
                return self._html(f"{name} (multibranch)")
            raise web.HTTPNotFound(text="Not Found")
        if rest == ["api", "json"] and method == "GET":
            # builds in full only when asked for (a tree or depth >= 1), as Jenkins does
            deep = "tree" in request.query or request.query.get("depth", "0") not in ("", "0")
            with self._lock:
                data = self._job_json(self._jobs[name], deep=deep)
            return self._respond(data, request)
        if rest in (["build"], ["buildWithParameters"]) and method == "POST":
            return await self._trigger(request, name, parameterized=rest[0] == "buildWithParameters")
        if not rest and method == "GET":
            return self._html(name)
        if rest and (rest[0].isdigit() or rest[0] in _PERMALINKS):
            build = self._find_build(name, rest[0])
            if build is None:
                raise web.HTTPNotFound(text="Not Found")
            action = rest[1:]
            if action == ["api", "json"] and method == "GET":
                with self._lock:
                    data = self._build_json(build)
                return self._respond(data, request)
            if action == ["stop"] and method == "POST":
                return self._stop(principal, build)
            if action == ["consoleText"] and method == "GET":
                with self._lock:
                    text = "\n".join(build.lines) + "\n"
                return web.Response(text=text, content_type="text/plain")
            if not action and method == "GET":
                return self._html(f"{build.display} #{build.number}")
        raise web.HTTPNotFound(text="Not Found")

    @staticmethod
    def _html(title: str) -> web.Response:
        return web.Response(text=f"<html><head><title>{title} [Jenkins]</title></head><body></body></html>",
                            content_type="text/html")

    def _find_build(self, job: str, which: str) -> _Build | None:
        with self._lock:
            newest_first = list(reversed(self._jobs[job].builds))
            if which.isdigit():
                return next((b for b in newest_first if b.number == int(which)), None)
            done = [b for b in newest_first if b.result is not None]
            candidates = {"lastBuild": newest_first, "lastCompletedBuild": done,
                          "lastSuccessfulBuild": [b for b in done if b.result == "SUCCESS"],
                          "lastFailedBuild": [b for b in done if b.result == "FAILURE"]}[which]
            return candidates[0] if candidates else None

    def _project_json(self, project: _Project, principal: _Principal) -> dict[str, Any]:
        with self._lock:
            jobs = self._children(project, principal)
        url = f"{self.url}/{_path(project.name)}"
        views = [{"_class": "jenkins.branch.MultiBranchProjectViewHolder$ViewImpl", "name": "change-requests",
                  "url": f"{url}view/change-requests/"}]
        return {
            "_class": _MULTIBRANCH_CLASS,
            "actions": [],
            "description": None,
            "displayName": project.name,
            "displayNameOrNull": None,
            "fullDisplayName": project.name,
            "fullName": project.name,
            "name": project.name,
            "url": url,
            "healthReport": [],
            "jobs": jobs,
            "primaryView": views[0],
            "views": views,
            "sources": [{"_class": "jenkins.branch.BranchSource"}],
        }

    def _job_json(self, job: _Job, *, deep: bool) -> dict[str, Any]:
        newest_first = list(reversed(job.builds))
        completed = [b for b in newest_first if b.result is not None]

        def first(builds: list[_Build]) -> dict[str, Any] | None:
            return builds[0].ref() if builds else None

        queued = [item for item in self._queue.values() if item.job == job.name and item.queued]
        properties: list[dict[str, Any]] = [{
            "_class": "hudson.model.ParametersDefinitionProperty",
            "parameterDefinitions": [{"_class": "hudson.model.StringParameterDefinition",
                                      "name": self.sha_parameter, "type": "StringParameterDefinition"}],
        }]
        actions: list[dict[str, Any]] = []
        if job.pr is not None:
            properties.insert(0, {"_class": "org.jenkinsci.plugins.workflow.multibranch.BranchJobProperty"})
            # where Branch Source puts what it knows of the pull request on the job
            actions += [
                {"_class": "jenkins.scm.api.metadata.ContributorMetadataAction", "contributor": job.pr.author,
                 "contributorDisplayName": job.pr.author, "contributorEmail": None},
                {"_class": "jenkins.scm.api.metadata.ObjectMetadataAction", "objectDescription": job.pr.body,
                 "objectDisplayName": job.pr.title, "objectUrl": job.pr.url},
            ]
        data = {
            "_class": job.classes[0],
            "actions": actions,
            "name": job.short_name,
            "fullName": job.name,
            "displayName": job.short_name,
            "fullDisplayName": job.display,
            "url": f"{self.url}/{job.path}",
            "buildable": not job.closed,
            "color": self._color(job),
            "builds": [self._build_json(b) if deep else b.ref() for b in newest_first[:100]],
            "firstBuild": job.builds[0].ref() if job.builds else None,
            "lastBuild": first(newest_first),
            "lastCompletedBuild": first(completed),
            "lastSuccessfulBuild": first([b for b in completed if b.result == "SUCCESS"]),
            "lastFailedBuild": first([b for b in completed if b.result == "FAILURE"]),
            "inQueue": bool(queued),
            "queueItem": ({"_class": self._queue_class(queued[0]), "id": queued[0].id} if queued else None),
            "nextBuildNumber": (job.builds[-1].number + 1) if job.builds else 1,
            "property": properties,
        }
        if deep:
            data["allBuilds"] = [self._build_json(b) for b in newest_first]
        return data

    def _build_json(self, build: _Build) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        if build.params is not None:
            actions.append({
                "_class": "hudson.model.ParametersAction",
                "parameters": [{"_class": "hudson.model.StringParameterValue", "name": name, "value": value}
                               for name, value in build.params.items()],
            })
        cause: dict[str, Any] = {"_class": build.cause_class, "shortDescription": build.cause}
        if build.cause_class == _USER_CAUSE:
            user = build.cause.removeprefix("Started by user ")
            cause.update(userId=user, userName=user)
        actions.append({"_class": "hudson.model.CauseAction", "causes": [cause]})
        if build.classes == _PIPELINE:
            actions.append({"_class": "jenkins.scm.api.SCMRevisionAction"})
        if build.base is not None and build.sha is not None:
            actions.append({"_class": "hudson.plugins.git.util.MergeRecord"})
        if build.checkout and build.sha:
            # a merge keeps the PR head as the branch's SHA1 and as `marked` (MergeWithGitSCMExtension)
            marked = build.head or build.sha
            branch = [{"SHA1": marked, "name": build.branch}]
            actions.append({
                "_class": "hudson.plugins.git.util.BuildData",
                "buildsByBranchName": {build.branch: {
                    "_class": "hudson.plugins.git.util.Build", "buildNumber": build.number,
                    "buildResult": None,
                    "marked": {"SHA1": marked, "branch": branch},
                    "revision": {"SHA1": build.sha, "branch": branch},
                }},
                "lastBuiltRevision": {"SHA1": build.sha, "branch": branch},
                "remoteUrls": [self.scm_url],
                "scmName": "",
            })
        building = build.result is None
        data: dict[str, Any] = {
            "_class": build.classes[1],
            "actions": actions,
            "artifacts": [],
            "building": building,
            "description": None,
            "displayName": f"#{build.number}",
            "duration": 0 if building else int(build.took * 1000),
            "estimatedDuration": int(build.duration * 1000),
            "fullDisplayName": f"{build.display} #{build.number}",
            "id": str(build.number),
            "keepLog": False,
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result,
            "timestamp": build.timestamp,
            "url": build.url,
        }
        if build.classes == _PIPELINE:
            data["inProgress"] = building
        return data

    def _color(self, job: _Job) -> str:
        if job.closed:
            return "disabled"
        completed = [b for b in job.builds if b.result is not None]
        if completed:
            color = {"SUCCESS": "blue", "FAILURE": "red"}.get(completed[-1].result or "", "aborted")
        else:
            color = "notbuilt"
        return f"{color}_anime" if job.builds and job.builds[-1].result is None else color

    async def _trigger(self, request: web.Request, name: str, *, parameterized: bool) -> web.Response:
        principal = self._principal(request)
        if not principal.can("Job/Build", name):
            raise _Denied("Job/Build")
        quiet, params = None, {}
        if parameterized:
            params = dict(request.query)
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
            quiet = _parse_delay(params.get("delay"))
            for reserved in ("token", "delay", "cause"):
                params.pop(reserved, None)
        with self._lock:
            job = self._jobs[name]
            if job.closed:
                raise web.HTTPConflict(text=f"{name} is not buildable")
            pr = job.pr
            if pr is not None:
                # a PR job's pipeline checks out its pull request whatever the parameters say
                sha, base_sha, checkout = pr.head, pr.base_sha, True
            elif parameterized:
                # the job checks out ${sha_parameter}; builds started this way show only their parameters,
                # so a client that finds builds by the parameter is told apart from one using BuildData
                sha, base_sha, checkout = params.get(self.sha_parameter), None, False
            else:
                sha, base_sha, checkout = self._heads.get(job.branch), None, True
        item = self._enqueue(name, sha, params if parameterized else None, checkout=checkout,
                             cause=f"Started by user {principal.name}", pr=pr.number if pr else None,
                             base_sha=base_sha, quiet=quiet)
        assert item is not None
        return web.Response(status=201, headers={"Location": f"{self.url}/queue/item/{item.id}/"})

    def _stop(self, principal: _Principal, build: _Build) -> web.Response:
        if not principal.can("Job/Cancel", build.job):
            raise _Denied("Job/Cancel")
        with self._lock:
            task = build.task if build.result is None and not build.stopping else None
            if task is not None:
                build.stopping = True
                build.lines.append(f"Aborted by {principal.name}")
        if task is not None:
            task.cancel()
        # Run.doStop forwards to the previous page: the build's own without a Referer
        raise web.HTTPFound(location=build.url)

    # -- the queue ---------------------------------------------------------------------------
    @staticmethod
    def _queue_class(item: _QueueItem) -> str:
        return "hudson.model.Queue$BuildableItem" if item.buildable else "hudson.model.Queue$WaitingItem"

    def _queue_json(self, item: _QueueItem) -> dict[str, Any]:
        job = self._jobs[item.job]
        actions: list[dict[str, Any]] = [{"_class": "hudson.model.CauseAction", "causes": [
            {"_class": item.cause_class, "shortDescription": item.cause}]}]
        if item.params is not None:
            actions.insert(0, {"_class": "hudson.model.ParametersAction", "parameters": [
                {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
                for k, v in item.params.items()]})
        data: dict[str, Any] = {
            "actions": actions,
            "id": item.id,
            "url": f"queue/item/{item.id}/",
            "inQueueSince": item.since,
            "params": "".join(f"\n{k}={v}" for k, v in (item.params or {}).items()),
            "task": self._job_entry(job),
            "stuck": False,
        }
        now_ms = int(time.time() * 1000)
        if item.waiting and not item.buildable:
            left_in_ms = max(0, int(item.quiet_until * 1000) - now_ms)
            data.update({"_class": "hudson.model.Queue$WaitingItem", "blocked": False, "buildable": False,
                         "timestamp": int(item.quiet_until * 1000),
                         "why": f"In the quiet period. Expires in {_time_span(left_in_ms)}"})
        elif item.queued:
            data.update({"_class": "hudson.model.Queue$BuildableItem", "blocked": False, "buildable": True,
                         "buildableStartMilliseconds": int(item.quiet_until * 1000), "pending": item.starting,
                         "why": item.why})
        else:
            data.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": item.cancelled,
                         "why": None, "executable": item.build.ref() if item.build else None})
        return data

    async def _queue_info(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        with self._lock:
            items = [self._queue_json(item) for item in self._queue.values()
                     if item.queued and principal.can("Job/Read", item.job)]
        return self._respond({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items}, request)

    async def _queue_item(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        with self._lock:
            item = self._queue.get(int(request.match_info["id"]))
            if item is None or not principal.can("Job/Read", item.job):
                raise web.HTTPNotFound(text="Not Found")
            data = self._queue_json(item)
        return self._respond(data, request)

    async def _cancel_item(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            queue_id = int(request.query.get("id", ""))
        except ValueError:
            raise web.HTTPBadRequest(text="id must be a number") from None
        with self._lock:
            item = self._queue.get(queue_id)
            # as Queue.doCancelItem: an item that has left the queue (or that one may not see) is not found
            if item is None or not item.waiting or not principal.can("Job/Read", item.job):
                raise web.HTTPNotFound(text=f"Provided id ({queue_id}) not found")
            if not principal.can("Job/Cancel", item.job):
                raise web.HTTPUnprocessableEntity(text=f"Item for id ({queue_id}) is not cancellable")
            item.cancelled = True
        item.released.set()  # a held item's wait ends with it
        return web.Response(status=204)

    # -- the GitHub webhook ------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        event = request.headers.get("X-GitHub-Event", "")
        try:
            if request.content_type == "application/x-www-form-urlencoded":
                payload = json.loads(str((await request.post())["payload"]))
            else:
                payload = await request.json()
        except (KeyError, ValueError):
            raise web.HTTPBadRequest(text="the webhook payload is not JSON") from None
        if not isinstance(payload, dict):
            raise web.HTTPBadRequest(text="the webhook payload is not a JSON object")
        if event == "push":
            self._on_push(payload)
        elif event == "pull_request":
            self._on_pull_request(payload)
        return web.Response(text="")

    def _on_push(self, payload: dict[str, Any]) -> None:
        ref, after = payload.get("ref", ""), payload.get("after")
        if not isinstance(ref, str) or not ref.startswith("refs/heads/") or not after or after == _DELETED:
            return
        branch = ref.removeprefix("refs/heads/")
        landed = {c.get("id") for c in payload.get("commits") or [] if isinstance(c, dict)}
        with self._lock:
            self._heads[branch] = after
            rebuild = []
            for job in self._jobs.values():
                if job.pr is None or job.closed or job.pr.base_ref != branch:
                    continue
                job.pr.base_sha = after  # what the next merge of this PR is made with
                # a PR whose head has just landed on its base is being merged, not updated
                if job.merge and job.rebuild_on_base_push and job.pr.head not in landed:
                    rebuild.append((job.name, job.pr.number, job.pr.head))
        pusher = (payload.get("pusher") or {}).get("name", "someone")
        for job_name in self._jobs_building(branch):
            if self._built_last(job_name, after):
                continue  # the Git plugin's polling: "No changes" since the last build's revision
            self._enqueue(job_name, after, None, checkout=True, cause=f"Started by GitHub push by {pusher}",
                          cause_class=_PUSH_CAUSE, webhook=True)
        for job_name, number, head in rebuild:
            self._enqueue(job_name, head, None, checkout=True, cause=f"Push event to branch {branch}",
                          cause_class=_EVENT_CAUSE, pr=number, base_sha=after, webhook=True)

    def _on_pull_request(self, payload: dict[str, Any]) -> None:
        action, pull = payload.get("action"), payload.get("pull_request")
        if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
            return
        number, head = pull["number"], (pull.get("head") or {}).get("sha")
        if action in _PR_ACTIONS and head:
            for job_name in self._jobs_building(PR_JOB):
                self._enqueue(job_name, head, None, checkout=True, cause=f"GitHub pull request #{number}",
                              cause_class=_GHPRB_CAUSE, pr=number, webhook=True)
        for project in list(self._projects.values()):
            if action in _PR_ACTIONS and head:
                job = self._open_pr_job(project, pull)
                author = (pull.get("user") or {}).get("login", "someone")
                verb = {"opened": "opened", "reopened": "reopened"}.get(str(action), "updated")
                self._enqueue(job.name, head, None, checkout=True, cause=f"Pull request #{number} {verb} by {author}",
                              cause_class=_EVENT_CAUSE, pr=number, base_sha=job.pr.base_sha if job.pr else None,
                              webhook=True)
            elif action == "closed":
                with self._lock:
                    closed = self._jobs.get(f"{project.name}/PR-{number}")
                    if closed is not None:
                        closed.closed = True

    def _open_pr_job(self, project: _Project, pull: dict[str, Any]) -> _Job:
        """The project's job for this pull request, created on its first event, brought up to date."""
        base = pull.get("base") or {}
        pr = _PullRequest(number=pull["number"], head=pull["head"]["sha"], base_ref=base.get("ref", "master"),
                          base_sha=base.get("sha"), title=pull.get("title") or "", url=pull.get("html_url") or "",
                          author=(pull.get("user") or {}).get("login") or "", body=pull.get("body") or "")
        name = f"{project.name}/PR-{pr.number}"
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = _Job(name, f"PR-{pr.number}", project=project.name, merge=project.merge,
                                              rebuild_on_base_push=project.rebuild_on_base_push)
                project.jobs.append(name)
            job.pr, job.closed = pr, False
            return job

    def _built_last(self, job: str, sha: str) -> bool:
        """The job's newest build, or a build of it still in the queue, is of `sha` (e.g. one started through the
        API before the push that lands it)."""
        with self._lock:
            builds = self._jobs[job].builds
            newest = max(builds, key=lambda b: b.number, default=None)
            waiting = any(item.job == job and item.sha == sha and item.queued for item in self._queue.values())
        return waiting or (newest is not None and newest.sha == sha)

    def _jobs_building(self, branch: str) -> list[str]:
        with self._lock:
            return [job.name for job in self._jobs.values() if job.project is None and job.branch == branch]


class _Denied(Exception):
    """A request the principal lacks `permission` for (answered 403 by the gate)."""

    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission
