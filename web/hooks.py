"""`POST /hooks/jenkins`: the Jenkins Notification plugin tells us a build moved; the waiting steps look at once.

The body is a hint, never trusted for the result: it names the job whose waiting deploys and peas
are woken, and each then reads the build through Jenkins' API as usual. 202 for a well-formed body,
400 for anything else, 401 without the token when one is set, 413 over 64 kB (the server's limit).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
PHASES = frozenset({"QUEUED", "STARTED", "COMPLETED", "FINALIZED"})
TOKEN_HEADER = "X-Fatcontroller-Token"


@dataclass(frozen=True)
class BuildHint:
    """What a notification says: a build of `job` (its full name, folders included) moved."""

    job: str
    number: int
    phase: str
    commit: str | None


class BadHint(ValueError):
    """A body that is not the Notification plugin's JSON."""


def job_name(name: str, url: str | None) -> str:
    """The job's full name: the plugin's `name` is the short one (`PR-110`), its `url` has the folders
    (`job/app-pr/job/PR-110/`)."""
    if url:
        parts = [p for p in url.strip("/").split("/") if p]
        names = [parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "job"]
        if names:
            return "/".join(names)
    return name


def read_hint(body: Any) -> BuildHint:
    """The hint in a notification body; BadHint if it is not the plugin's shape."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        raise BadHint("expected an object with the job's `name`")
    build = body.get("build")
    if not isinstance(build, dict):
        raise BadHint("expected `build`, an object")
    number, phase = build.get("number"), build.get("phase")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise BadHint("expected `build.number`, a build number")
    if phase not in PHASES:
        raise BadHint(f"expected `build.phase` to be one of {', '.join(sorted(PHASES))}")
    scm = build.get("scm")
    commit = scm.get("commit") if isinstance(scm, dict) and isinstance(scm.get("commit"), str) else None
    url = body.get("url") if isinstance(body.get("url"), str) else None
    return BuildHint(job_name(body["name"], url), number, phase, commit)


def jenkins_hook(wake: Callable[[str], Awaitable[int]], token: str | None) -> Callable[
        [web.Request], Awaitable[web.Response]]:
    """The handler: `wake(job)` makes what waits on that job look now, and says how many it woke."""

    async def handle_jenkins_hook(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get(TOKEN_HEADER) or request.query.get("token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response({"error": f"a valid {TOKEN_HEADER} header (or ?token=) is needed"},
                                         status=401)
        try:
            hint = read_hint(json.loads(await request.read()))
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"the body is over {MAX_BODY // 1024} kB"}, status=413)
        except (BadHint, ValueError) as exc:  # json's errors are ValueErrors too
            return web.json_response({"error": f"not a Jenkins notification: {exc}"}, status=400)
        woken = await wake(hint.job)
        log.info("jenkins says build %s #%s is %s: woke %d", hint.job, hint.number, hint.phase, woken)
        return web.json_response({"job": hint.job, "woken": woken}, status=202)

    return handle_jenkins_hook
