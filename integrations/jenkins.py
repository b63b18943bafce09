"""Jenkins: find the build of a commit, start one, follow it (python-jenkins, off the event loop).

A build belongs to a commit when the git plugin's data (`lastBuiltRevision.SHA1`, or the branch
head it merged: `lastBuiltRevision.branch[0].SHA1`) or the build parameter named `sha_parameter`
equals that commit. GitHub Branch Source builds a pull request merged with its target by
default: then what was built (and whose image was pushed) is the merge, not the head, and
`Build` says both. Reads use the JSON API's `tree` query so that one request brings the last
builds with exactly the fields needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import jenkins
import requests

from integrations.outside import (
    CallPolicy,
    Facade,
    NotFound,
    OutsideCaller,
    OutsideError,
    PermanentError,
    TransientError,
)

SYSTEM = "Jenkins"
# not `buildsByBranchName`: in a job that builds many branches it grows with every branch ever built
_BUILD_FIELDS = ("number,url,building,result,timestamp,duration,"
                 "actions[parameters[name,value],lastBuiltRevision[SHA1,branch[SHA1]]]")


@dataclass(frozen=True)
class Build:
    """One run of a job, as far as a deploy cares."""

    job: str
    number: int
    url: str
    building: bool
    result: str | None  # SUCCESS, FAILURE, ABORTED, UNSTABLE, NOT_BUILT; None while building
    sha: str | None  # the commit it belongs to: the one looked for, else its parameter, else its checkout
    started_at: datetime  # naive UTC
    duration: float  # seconds; 0 while building
    revision: str | None  # what the git plugin checked out for `sha`; None before the checkout, or without git
    merged_head: str | None  # the branch head `revision` merged with another branch, when it is not the head

    @property
    def built(self) -> str | None:
        """The commit whose image the build makes: what it checked out, else the commit it was started for."""
        return self.revision or self.sha

    @property
    def green(self) -> bool:
        return self.result == "SUCCESS"

    @property
    def finished(self) -> bool:
        return not self.building and self.result is not None

    @property
    def red(self) -> bool:
        return self.finished and not self.green


def _checkouts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """What the git plugin checked out, as (revision, branch head): the same commit twice unless the checkout
    merged the head with another branch (a pull request with its target)."""
    found = []
    # a pipeline that also checks out shared libraries has one BuildData per checkout
    for action in data.get("actions") or []:
        revision = (action or {}).get("lastBuiltRevision") or {}
        if revision.get("SHA1"):
            built = str(revision["SHA1"]).lower()
            branches = revision.get("branch") or [{}]
            found.append((built, str((branches[0] or {}).get("SHA1") or built).lower()))
    return found


def _commits(data: dict[str, Any], sha_parameter: str) -> list[str]:
    """The commits a build belongs to: its parameter first, then what the git plugin checked out (and merged)."""
    by_parameter = [str(parameter["value"]).lower() for action in data.get("actions") or []
                    for parameter in (action or {}).get("parameters") or []
                    if parameter.get("name") == sha_parameter and parameter.get("value")]
    checked_out = _checkouts(data)
    return by_parameter + [built for built, _ in checked_out] + [head for _, head in checked_out]


def _build(job: str, data: dict[str, Any], sha: str | None) -> Build:
    revision, head = next(((built, head) for built, head in _checkouts(data) if sha in (built, head)), (None, None))
    return Build(
        job=job,
        number=int(data["number"]),
        url=data["url"],
        building=bool(data.get("building")),
        result=data.get("result"),
        sha=sha,
        started_at=datetime.fromtimestamp(data["timestamp"] / 1000, tz=UTC).replace(tzinfo=None),
        duration=(data.get("duration") or 0) / 1000,
        revision=revision,
        merged_head=head if head != revision else None,
    )


def _job_path(job: str) -> str:
    """`folder/job` -> `job/folder/job/job/` (the folders plugin's URL scheme)."""
    return "".join(f"job/{quote(part, safe='')}/" for part in job.split("/"))


def _http_response(exc: BaseException | None) -> requests.Response | None:
    """The HTTP response behind an error; python-jenkins re-raises its own exceptions inside `except`."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return exc.response
        exc = exc.__cause__ or exc.__context__
    return None


class Jenkins(Facade):
    """Async facade over python-jenkins; every call goes through `OutsideCaller` (retries, timeout)."""

    def __init__(
        self,
        url: str,
        user: str | None,
        token: str | None,
        *,
        sha_parameter: str = "GIT_COMMIT",
        policy: CallPolicy | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.sha_parameter = sha_parameter
        # retries=0: OutsideCaller is the one retry loop; python-jenkins fetches and sends the crumb itself
        self._client = jenkins.Jenkins(url, username=user, password=token, timeout=timeout, retries=0)
        self._caller = OutsideCaller(SYSTEM, self._classify, policy)

    async def find_build(self, job: str, sha: str, *, limit: int = 50) -> Build | None:
        """The newest build of `sha` among the job's last `limit` builds, or None (maybe still queued)."""
        tree = f"builds[{_BUILD_FIELDS}]{{0,{limit}}}"
        data = await self._caller.call("find build", self._get_json, f"{_job_path(job)}api/json", tree)
        wanted = sha.lower()
        for item in sorted(data.get("builds") or [], key=lambda b: b["number"], reverse=True):
            if wanted in _commits(item, self.sha_parameter):
                return _build(job, item, wanted)
        return None

    async def in_queue(self, job: str) -> bool:
        """Whether a build of the job waits in Jenkins' queue (its `inQueue`), not started yet."""
        data = await self._caller.call("read job", self._get_json, f"{_job_path(job)}api/json", "inQueue")
        return bool(data.get("inQueue"))

    async def start_build(self, job: str, sha: str) -> int:
        """Queue a build of `sha` (`buildWithParameters`); the queue item id."""
        return await self._caller.call("start build", self._client.build_job, job, {self.sha_parameter: sha})

    async def stop_build(self, job: str, number: int) -> None:
        """Abort build `number` of `job` (a finished one stays as it ended: Jenkins ignores the stop)."""
        await self._caller.call("stop build", self._client.stop_build, job, number)

    async def cancel_queued(self, queue_id: int) -> None:
        """Take a build that has not started out of Jenkins' queue (one that started already: nothing happens)."""
        await self._caller.call("cancel queue item", self._client.cancel_queue, queue_id)

    async def build_from_queue(self, queue_id: int) -> tuple[str, int] | None:
        """(build URL, build number) once the queued item has started; None while it waits."""
        item = await self._caller.call("read queue item", self._client.get_queue_item, queue_id)
        if item.get("cancelled"):
            raise PermanentError(SYSTEM, f"queue item {queue_id} was cancelled in Jenkins before it started")
        executable = item.get("executable")
        if not executable:
            return None
        return executable["url"], int(executable["number"])

    async def get_build(self, job: str, number: int, *, sha: str | None = None) -> Build:
        """Build `number` of `job`; `sha`: the commit it was found for, whose checkout it reports."""
        data = await self._caller.call("read build", self._get_json, f"{_job_path(job)}{number}/api/json",
                                       _BUILD_FIELDS)
        commits = _commits(data, self.sha_parameter)
        wanted = sha.lower() if sha and sha.lower() in commits else (commits[0] if commits else None)
        return _build(job, data, wanted)

    # -- blocking, run in a thread by OutsideCaller ---------------------------------------
    def _get_json(self, path: str, tree: str) -> dict[str, Any]:
        url = urljoin(self._client.server, f"{path}?tree={quote(tree, safe=',')}")
        answer: dict[str, Any] = json.loads(self._client.jenkins_open(requests.Request("GET", url)))
        return answer

    # -- errors --------------------------------------------------------------------------------
    def _classify(self, exc: BaseException) -> OutsideError | None:
        if isinstance(exc, (jenkins.TimeoutException, requests.Timeout)):
            return TransientError(SYSTEM, f"no answer from {self.url} in time")
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return TransientError(SYSTEM, f"cannot reach {self.url}: {type(exc).__name__}")
        response = _http_response(exc)
        status = response.status_code if response is not None else None
        where = urlsplit(response.url).path if response is not None else ""
        if status in (401, 403):
            return PermanentError(SYSTEM, f"Jenkins refused the credentials (HTTP {status} on {where})",
                                  status=status)
        if status == 404 or isinstance(exc, jenkins.NotFoundException):
            return NotFound(SYSTEM, f"not found: {where or exc}", status=404)
        if status is not None and (status == 429 or status >= 500):
            return TransientError(SYSTEM, f"HTTP {status} on {where}", status=status)
        if isinstance(exc, json.JSONDecodeError):
            return PermanentError(SYSTEM, "Jenkins answered with something that is not JSON")
        if status is not None or isinstance(exc, (jenkins.JenkinsException, requests.RequestException)):
            # str() carries no response body here: python-jenkins quotes bodies only for 401/403/500, above
            return PermanentError(SYSTEM, f"{type(exc).__name__}: {exc}", status=status)
        return None

    # -- checks for `fatcontroller doctor`: who the credentials are and what they may read (GETs only) ---------
    @dataclass(frozen=True)
    class Access:
        """Whom Jenkins takes JENKINS_USER and JENKINS_TOKEN for, and whether it lets them read (Overall/Read)."""

        user: str
        anonymous: bool
        denied: str | None  # the permission Jenkins says is missing (Overall/Read); None: allowed

    @dataclass(frozen=True)
    class JobAccess:
        """What the user may see of one job (or folder, or multibranch project)."""

        job: str
        exists: bool  # False: no such item, or one the user may not even discover (Jenkins answers 404 to both)
        denied: str | None = None  # the permission Jenkins says is missing to read it (Job/Read)
        kind: str | None = None  # Jenkins' class of the item
        buildable: bool | None = None  # False: disabled

    # what Jenkins calls a permission in the X-Required-Permission header of a 403, and in its words
    _PERMISSION_NAMES = {"hudson.model.Hudson.Read": "Overall/Read", "hudson.model.Item.Discover": "Job/Discover",
                         "hudson.model.Item.Read": "Job/Read", "hudson.model.Item.Build": "Job/Build"}

    async def access(self) -> Jenkins.Access:
        """whoAmI (answered without Overall/Read), then the root; PermanentError (401) if the token is refused."""
        return await self._caller.call("check the credentials", self._access)

    async def job_access(self, job: str) -> Jenkins.JobAccess:
        return await self._caller.call(f"check job {job}", self._job_access, job)

    def _access(self) -> Jenkins.Access:
        _, who, _ = self._probe("whoAmI/api/json?tree=name,anonymous")
        status, _, denied = self._probe("api/json?tree=mode")
        return Jenkins.Access(str(who.get("name") or "anonymous"), bool(who.get("anonymous")),
                              denied if status == 403 else None)

    def _job_access(self, job: str) -> Jenkins.JobAccess:
        status, data, denied = self._probe(f"{_job_path(job)}api/json?tree=name,buildable")
        if status == 404:
            return Jenkins.JobAccess(job, exists=False)
        if status == 403:
            return Jenkins.JobAccess(job, exists=True, denied=denied)
        buildable = data.get("buildable")
        return Jenkins.JobAccess(job, exists=True, kind=data.get("_class"),
                                 buildable=None if buildable is None else bool(buildable))

    def _probe(self, path: str) -> tuple[int, dict[str, Any], str | None]:
        """GET `path`: (status, its JSON, the permission a 403 names); 401 and the rest raise as usual."""
        request = requests.Request("GET", urljoin(self._client.server, path))
        try:
            response = self._client.jenkins_request(request, add_crumb=False)  # a GET needs no crumb
        except (jenkins.JenkinsException, requests.HTTPError) as exc:
            answer = _http_response(exc)
            if answer is None or answer.status_code not in (403, 404):
                raise
            return answer.status_code, {}, self._missing_permission(answer)
        data: dict[str, Any] = json.loads(response.text)
        return response.status_code, data, None

    def _missing_permission(self, answer: requests.Response) -> str | None:
        """`Job/Read` of Jenkins' "<user> is missing the Job/Read permission", else of its header."""
        if answer.status_code != 403:
            return None
        said = answer.text.partition(" is missing the ")[2].partition(" permission")[0].strip()
        header = answer.headers.get("X-Required-Permission", "")
        return said or self._PERMISSION_NAMES.get(header, header) or None
