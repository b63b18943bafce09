"""Jenkins: find the build of a commit, start one, follow it (python-jenkins, off the event loop).

A build belongs to a commit when the git plugin's data (`lastBuiltRevision.SHA1`) or the
build parameter named `sha_parameter` equals that commit. Reads use the JSON API's `tree`
query so that one request brings the last builds with exactly the fields needed.
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
    NotFound,
    OutsideCaller,
    OutsideError,
    PermanentError,
    RetryPolicy,
    TransientError,
)

SYSTEM = "Jenkins"
_BUILD_FIELDS = ("number,url,building,result,timestamp,duration,"
                 "actions[parameters[name,value],lastBuiltRevision[SHA1]]")


@dataclass(frozen=True)
class Build:
    """One run of a job, as far as a deploy cares."""

    job: str
    number: int
    url: str
    building: bool
    result: str | None  # SUCCESS, FAILURE, ABORTED, UNSTABLE, NOT_BUILT; None while building
    sha: str | None
    started_at: datetime  # naive UTC
    duration: float  # seconds; 0 while building

    @property
    def green(self) -> bool:
        return self.result == "SUCCESS"

    @property
    def finished(self) -> bool:
        return not self.building and self.result is not None

    @property
    def red(self) -> bool:
        return self.finished and not self.green


def _commits(data: dict[str, Any], sha_parameter: str) -> list[str]:
    """The commits a build belongs to: its parameter first, then what the git plugin checked out."""
    by_parameter, checked_out = [], []
    # a pipeline that also checks out shared libraries has one BuildData per checkout
    for action in data.get("actions") or []:
        for parameter in (action or {}).get("parameters") or []:
            if parameter.get("name") == sha_parameter and parameter.get("value"):
                by_parameter.append(str(parameter["value"]).lower())
        revision = (action or {}).get("lastBuiltRevision") or {}
        if revision.get("SHA1"):
            checked_out.append(str(revision["SHA1"]).lower())
    return by_parameter + checked_out


def _build(job: str, data: dict[str, Any], sha: str | None) -> Build:
    return Build(
        job=job,
        number=int(data["number"]),
        url=data["url"],
        building=bool(data.get("building")),
        result=data.get("result"),
        sha=sha,
        started_at=datetime.fromtimestamp(data["timestamp"] / 1000, tz=UTC).replace(tzinfo=None),
        duration=(data.get("duration") or 0) / 1000,
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


class Jenkins:
    """Async facade over python-jenkins; every call goes through `OutsideCaller` (retries, timeout)."""

    def __init__(
        self,
        url: str,
        user: str | None,
        token: str | None,
        *,
        sha_parameter: str = "GIT_COMMIT",
        policy: RetryPolicy | None = None,
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

    async def start_build(self, job: str, sha: str) -> int:
        """Queue a build of `sha` (`buildWithParameters`); the queue item id."""
        return await self._caller.call("start build", self._client.build_job, job, {self.sha_parameter: sha})

    async def build_from_queue(self, queue_id: int) -> tuple[str, int] | None:
        """(build URL, build number) once the queued item has started; None while it waits."""
        item = await self._caller.call("read queue item", self._client.get_queue_item, queue_id)
        if item.get("cancelled"):
            raise PermanentError(SYSTEM, f"queue item {queue_id} was cancelled in Jenkins before it started")
        executable = item.get("executable")
        if not executable:
            return None
        return executable["url"], int(executable["number"])

    async def get_build(self, job: str, number: int) -> Build:
        data = await self._caller.call("read build", self._get_json, f"{_job_path(job)}{number}/api/json",
                                       _BUILD_FIELDS)
        commits = _commits(data, self.sha_parameter)
        return _build(job, data, commits[0] if commits else None)

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
