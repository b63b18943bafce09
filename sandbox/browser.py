"""The emulated Slack as a web page: a person uses the app end to end in a browser, with no accounts.

`BrowserView(sandbox).start()` serves, on 127.0.0.1, one page (`sandbox/browser/index.html`, plain
HTML, CSS and JavaScript with no build step) and a small JSON API behind it:

    GET  /                      the page: `?user=alice` picks who you are (or the picker at the top),
                                `#channel/C0DEPLOYS`, `#dm` (your DM with the app) or `#home` what you see
    GET  /static/<file>         its scripts and style: `blocks.js` (the Block Kit renderer), `app.js`
    GET  /api/state?user=U..    everything the page shows, for that person (see below); `&since=<version>`
                                answers `{"version": v, "unchanged": true}` when nothing changed
    POST /api/command           {user, command, text, channel?}        a person types `/command text`
    POST /api/click             {user, label, block_id, action_id, surface}   presses a button; surface is
                                {type: message, channel, ts} | {type: home} | {type: modal, values}
    POST /api/submit            {user, view_id, values}                presses Submit on the open modal
    POST /api/close             {user, all?}                           presses Close (or the X) on it
    POST /api/suggest           {user, block_id, action_id, value}     types into an external select
    POST /api/home              {user}                                 opens the App Home tab
    POST /api/alarm             {name, state}                          sets a CloudWatch alarm OK / ALARM
    POST /api/jenkins/fail-next {pr, repo?} | {job}                    the next build fails (then green)

Every person's action goes through the Slack emulator's own Python API (`command`, `click`,
`submit_view`, `close_view`, `suggest`, `open_home`), so it becomes the Socket Mode envelope real
Slack sends, and waits for the app's ack as a person's Slack client does. Each is logged in an
activity list with its ack latency: one over Slack's 3 s is shown with what Slack would have told the
person. A slash command the app does not have (when `slack.commands` is set) is answered by Slack
at once. The world's buttons call the emulators' controls (`aws.set_alarm`, `jenkins.script_pr`,
`jenkins.script_next`); everything else on the page is read-only.

The page polls `/api/state` (every 300 ms) and re-renders only the parts whose JSON changed, so a
modal being filled in is not disturbed. The state holds the workspace (people, channels, the app's
commands); what the person asked about sees: the channels' messages with their own ephemeral ones
among them (thread replies nested under their parent, edits in place), their DM with the app, their
App Home and modal stack; the activity log; and the outside world: each repository of the sandbox
(`world.repos`, the first one first) with its base branch's history, its candidate branches
(`fatcontroller/<train>/<id>`, a deploy's merge built ahead) and other branches with their heads, its
pull requests, and its Jenkins jobs and builds; ECS clusters and services (with deployments and
images), CloudWatch alarms and the peas.
The world is read from the emulators' Python state at most every `world_ttl` seconds, off the
server's loop, so many open pages cost no more than one.

Block Kit is rendered by the page itself (`blocks.js`, `window.BlockKit`): an element or block type
it does not know shows a visible "unsupported: <type>" marker (class `bk-unsupported`), which a
test can look for in the page, or ask for directly: `page.evaluate("b => BlockKit.unsupportedIn(b)",
blocks)` lists the unsupported types in any list of blocks. Nothing here imports the product.

Use (the demo's `--keep`): set `sandbox.slack.commands` to the app's slash commands (so that Slack
answers a mistyped one), then `view = serve_browser(sandbox)`, print `view.url`, `view.stop()` at the
end; the page needs only the sandbox and a bot connected to its Slack emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.github import GitHubEmulator
from sandbox.jenkins import JenkinsEmulator
from sandbox.server import ThreadedServer
from sandbox.slack import ACK_DEADLINE_MS, SLACKBOT, Interaction, Message
from sandbox.world import Sandbox

STATIC = Path(__file__).with_name("browser")
_PR_IN_BRANCH = re.compile(r"(?:pr/(\d+)/head|PR-(\d+))")
_PR_IN_CAUSE = re.compile(r"#(\d+)")
_CANDIDATE = re.compile(r"fatcontroller/(?P<train>[^/]+)/(?P<id>\d+)")  # a deploy's merge, built ahead on its branch
_ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")

# What a person sees in Slack when the app acknowledges too late, by envelope kind
_LATE_NOTICE = {
    "slash_commands": '{what} failed with the error "operation_timeout"',
    "block_actions": "a warning sign beside the button: the click did not go through",
    "view_submission": "We had some trouble connecting. Try again?",
    "view_closed": "nothing (the modal is already closed), but the envelope counts as failed",
    "app_home_opened": "nothing, but Slack retries the event (retry_attempt 1, 2, 3)",
}


def _first_line(text: str) -> str:
    return text.partition("\n")[0]


def short(arn: str) -> str:
    """`family:revision` of a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


def _stamp(value: Any) -> float | None:
    """A time as seconds since the epoch (the AWS emulators use datetimes or floats)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


class BrowserView(ThreadedServer):
    """The page and its JSON API for one running `Sandbox`, on 127.0.0.1 (a random port by default)."""

    def __init__(self, sandbox: Sandbox, *, port: int = 0, world_ttl: float = 0.25,
                 poll_ms: int = 300) -> None:
        super().__init__("browser", port)
        self.sandbox = sandbox
        self.slack = sandbox.slack
        self.world_ttl = world_ttl
        self.poll_ms = poll_ms
        self._lock = threading.Lock()
        self._activity: deque[dict[str, Any]] = deque(maxlen=200)
        self._activity_ids = itertools.count(1)
        self._scripted: list[dict[str, Any]] = []  # what the page asked Jenkins to fail, newest last
        self._world: dict[str, Any] = {}
        self._world_at = 0.0
        self._world_refresh: asyncio.Lock | None = None
        self._commits: dict[str, tuple[tuple, dict[str, Any]]] = {}  # repo -> (branch heads, their commits)
        self._images: dict[str, list[str]] = {}  # task definition ARN -> its images (they never change)
        self._tasks: set[asyncio.Task] = set()

    # -- server -------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._no_cache])
        app.router.add_get("/", self._index)
        app.router.add_get("/favicon.ico", self._no_icon)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/state", self._state)
        actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "command": self._command, "click": self._click, "submit": self._submit, "close": self._close,
            "suggest": self._suggest, "home": self._home, "alarm": self._alarm, "jenkins/fail-next": self._fail_next,
        }
        for name, action in actions.items():
            app.router.add_post(f"/api/{name}", self._action(action))
        return app

    async def on_started(self) -> None:
        self._world_refresh = asyncio.Lock()

    @web.middleware
    async def _no_cache(self, request: web.Request, handler):
        response = await handler(request)
        response.headers["Cache-Control"] = "no-store"  # the page is edited while the sandbox runs
        return response

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # a 404 would show as an error in the browser's console

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    def _action(self, action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]):
        async def handle(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": "the body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"ok": False, "error": "the body must be a JSON object"}, status=400)
            # the emulator's work goes on even if the page goes away mid-request: the activity log
            # must still learn how the app answered
            task = asyncio.ensure_future(action(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            try:
                result = await asyncio.shield(task)
            except (AssertionError, KeyError, ValueError) as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                return web.json_response({"ok": False, "error": str(message)})
            return web.json_response({"ok": True, **result})
        return handle

    # -- the activity log -----------------------------------------------------------------------
    def _begin(self, user: str, kind: str, what: str) -> dict[str, Any]:
        entry = {"id": next(self._activity_ids), "at": time.time(), "user": self.slack.users.get(user, user),
                 "kind": kind, "what": what, "status": "pending", "latency_ms": None, "detail": ""}
        with self._lock:
            self._activity.append(entry)
        return entry

    def _end(self, entry: dict[str, Any], **changes: Any) -> None:
        with self._lock:
            entry.update(changes)

    async def _person_acts(self, user: str, kind: str, what: str,
                           act: Awaitable[Interaction | None]) -> dict[str, Any]:
        """Run one of the emulator's person coroutines, logging it and how the app acknowledged it."""
        entry = self._begin(user, kind, what)
        try:
            interaction = await act
        except AssertionError as exc:
            self._end(entry, status="failed", detail=str(exc))
            raise
        if interaction is None:
            self._end(entry, status="ok", detail="nothing sent to the app")
            return {"latency_ms": None, "late": False, "answered_by_slack": False, "errors": None}
        if interaction.answered_by_slack:
            self._end(entry, status="slack", latency_ms=0.0, detail="the app has no such command: it never heard of it")
        elif interaction.late:
            notice = _LATE_NOTICE.get(kind, "an error").format(what=what.split(" ", 1)[0])
            self._end(entry, status="late", latency_ms=interaction.latency_ms,
                      detail=f"acknowledged after {interaction.latency_ms / 1000:.1f} s, over Slack's "
                             f"{ACK_DEADLINE_MS / 1000:.0f} s: the person would have seen {notice}")
        else:
            errors = interaction.errors
            self._end(entry, status="ok", latency_ms=interaction.latency_ms,
                      detail=f"errors: {json.dumps(errors)}" if errors else "")
        return {"latency_ms": interaction.latency_ms, "late": interaction.late,
                "answered_by_slack": interaction.answered_by_slack, "errors": interaction.errors}

    # -- people's actions ---------------------------------------------------------------------
    def _user(self, body: dict[str, Any]) -> str:
        return self.slack.user_id(str(body.get("user", "")))

    async def _command(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        command = str(body.get("command", "")).strip()
        text = str(body.get("text", ""))
        if not command.startswith("/") or len(command) < 2 or " " in command:
            raise ValueError(f"a slash command starts with / and has no spaces, not {command!r}")
        channel = body.get("channel") or None
        what = f"{command} {text}".strip()
        return await self._person_acts(user, "slash_commands", what,
                                       self.slack.command(user, command, text, channel=channel))

    async def _click(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        label = str(body.get("label", ""))
        surface = body.get("surface") or {}
        narrow = {"block_id": body.get("block_id") or None, "action_id": body.get("action_id") or None}
        kind = surface.get("type")
        if kind == "message":
            message = self._message(user, str(surface.get("channel")), str(surface.get("ts")))
            act = self.slack.click(user, label, message=message, **narrow)
            where = "a DM" if message.channel == self.slack.dm_channel(user) else (
                f"#{self.slack.channels.get(message.channel, message.channel)}")
        elif kind == "home":
            act, where = self.slack.click(user, label, in_home=True, **narrow), "the App Home"
        elif kind == "modal":
            act = self.slack.click(user, label, in_modal=True, values=surface.get("values") or {}, **narrow)
            where = "the modal"
        else:
            raise ValueError(f"unknown surface {surface!r}")
        return await self._person_acts(user, "block_actions", f"[{label}] in {where}", act)

    def _message(self, user: str, channel: str, ts: str) -> Message:
        """The message (or ephemeral message to `user`) the page shows at channel/ts."""
        for message in [*self.slack.messages(channel), *self.slack.ephemerals(user)]:
            if message.channel == channel and message.ts == ts:
                return message
        raise ValueError(f"no message {ts} in {channel} (deleted?)")

    async def _submit(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        view = self.slack.current_view(user)
        if view is None:
            raise ValueError("no modal is open")
        if body.get("view_id") and body["view_id"] != view["id"]:
            raise ValueError("the modal has changed since: look again before submitting")
        title = (view.get("title") or {}).get("text", "")
        return await self._person_acts(user, "view_submission", f"submits {title!r}",
                                       self.slack.submit_view(user, body.get("values") or {}))

    async def _close(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        view = self.slack.current_view(user)
        title = (view.get("title") or {}).get("text", "") if view else ""
        return await self._person_acts(user, "view_closed", f"closes {title!r}",
                                       self.slack.close_view(user, all_views=bool(body.get("all"))))

    async def _suggest(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        options = await self.slack.suggest(user, str(body.get("action_id")), str(body.get("block_id")),
                                           str(body.get("value", "")))
        return {"options": options}

    async def _home(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        return await self._person_acts(user, "app_home_opened", "opens the App Home", self.slack.open_home(user))

    # -- the world's switches -------------------------------------------------------------------
    async def _alarm(self, body: dict[str, Any]) -> dict[str, Any]:
        name, state = str(body.get("name")), str(body.get("state"))
        if state not in _ALARM_STATES:
            raise ValueError(f"an alarm's state is one of {_ALARM_STATES}, not {state!r}")
        self.sandbox.aws.set_alarm(name, state, "Set from the browser sandbox")
        entry = self._begin("", "alarm", f"alarm {name} → {state}")
        self._end(entry, status="ok", user="sandbox")
        self._world_at = 0.0  # show it at the next poll
        return {"state": state}

    async def _fail_next(self, body: dict[str, Any]) -> dict[str, Any]:
        outcomes = ["FAILURE", "SUCCESS"]
        repos = self.sandbox.repos
        if body.get("pr") is not None:
            pr = int(body["pr"])
            repo = str(body.get("repo") or self.sandbox.spec.repo)
            if repo not in repos:
                raise ValueError(f"no repository {repo!r}; the sandbox has {', '.join(repos)}")
            repos[repo].jenkins.script_pr(pr, outcomes)
            what = f"the next build of PR #{pr} of {repo} fails, later ones pass"
        elif body.get("job"):
            job = str(body["job"])
            jenkins = next((r.jenkins for r in repos.values() if job in r.jenkins.job_names()), None)
            if jenkins is None:
                raise ValueError(f"no Jenkins job {job!r}")
            jenkins.script_next(job, outcomes)
            what = f"the next commit {job} builds fails once, then passes"
        else:
            raise ValueError("say which pull request (pr) or job")
        with self._lock:
            self._scripted.append({"at": time.time(), "what": what})
        self._end(self._begin("", "jenkins", what), status="ok", user="sandbox")
        return {"scripted": what}

    # -- the state ------------------------------------------------------------------------------
    async def _state(self, request: web.Request) -> web.Response:
        try:
            user = self.slack.user_id(request.query.get("user") or next(iter(self.slack.users)))
        except (AssertionError, StopIteration) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        world = await self._fresh_world()
        state = {"workspace": self._workspace(), "user": user, "slack": self._slack_state(user),
                 "activity": self._activity_state(), "world": world}
        text = json.dumps(state, default=str)
        version = hashlib.sha1(text.encode()).hexdigest()[:16]
        if request.query.get("since") == version:
            return web.json_response({"version": version, "unchanged": True})
        return web.Response(text=f'{{"version": "{version}", {text[1:]}', content_type="application/json")

    def _workspace(self) -> dict[str, Any]:
        s = self.slack
        return {"team": s.team_domain, "bot": {"id": s.bot_user_id, "name": s.bot_name},
                "users": [{"id": uid, "name": name} for uid, name in s.users.items()],
                "channels": [{"id": cid, "name": name} for cid, name in s.channels.items()],
                "commands": sorted(s.commands) if s.commands is not None else None,
                "poll_ms": self.poll_ms, "ack_deadline_ms": ACK_DEADLINE_MS}

    def _message_json(self, message: Message) -> dict[str, Any]:
        sender = {self.slack.bot_user_id: self.slack.bot_name, SLACKBOT: "Slackbot"}.get(
            message.user, self.slack.users.get(message.user, message.user))
        return {"channel": message.channel, "ts": message.ts, "text": message.text,
                "blocks": copy.deepcopy(message.blocks), "user": message.user, "sender": sender,
                "is_app": message.user == self.slack.bot_user_id, "thread_ts": message.thread_ts,
                "ephemeral": message.ephemeral_to is not None, "via": message.via, "posted_at": message.posted_at,
                "edits": [e.at for e in message.edits]}

    def _conversation(self, messages: list[Message]) -> list[dict[str, Any]]:
        """Top-level messages oldest first, each with its thread replies (oldest first) under it."""
        top: list[dict[str, Any]] = []
        by_ts: dict[str, dict[str, Any]] = {}
        for message in sorted(messages, key=lambda m: float(m.ts)):
            shown = self._message_json(message)
            parent = by_ts.get(message.thread_ts or "") if message.thread_ts != message.ts else None
            if parent is not None:
                parent["replies"].append(shown)
            else:
                shown["replies"] = []
                top.append(shown)
                by_ts.setdefault(message.ts, shown)
        return top

    def _slack_state(self, user: str) -> dict[str, Any]:
        s = self.slack
        dm = s.dm_channel(user)
        ephemerals = s.ephemerals(user)
        channels = {cid: self._conversation([*s.messages(cid), *(m for m in ephemerals if m.channel == cid)])
                    for cid in s.channels}
        acks = s.acks
        return {
            "app_connected": s.connected,
            "dm_channel": dm,
            "channels": channels,
            "dm": self._conversation([*s.dms(user), *(m for m in ephemerals if m.channel == dm)]),
            "dm_counts": {uid: len(s.dms(uid)) for uid in s.users},
            "home": copy.deepcopy(s.home(user)),
            "modals": copy.deepcopy(s.views(user)),
            "acks": {"count": len(acks), "late": sum(a.latency_ms > ACK_DEADLINE_MS for a in acks),
                     "slowest_ms": max((a.latency_ms for a in acks), default=0.0)},
        }

    def _activity_state(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in list(self._activity)[-60:]]

    # -- the outside world ----------------------------------------------------------------------
    async def _fresh_world(self) -> dict[str, Any]:
        assert self._world_refresh is not None
        async with self._world_refresh:  # one refresh at a time; later pollers reuse it
            if time.monotonic() - self._world_at >= self.world_ttl:
                self._world = await asyncio.to_thread(self.world_state)
                self._world_at = time.monotonic()
            return self._world

    def world_state(self) -> dict[str, Any]:
        """The outside world as the page shows it (each part on its own: one failing leaves the others)."""
        labels: dict[str, str] = {}
        world: dict[str, Any] = {"repos": []}
        for name, repo in self.sandbox.repos.items():
            github = _part(functools.partial(self._github, repo.github, labels))
            jenkins = _part(functools.partial(self._jenkins, repo.jenkins))
            if isinstance(jenkins, list):  # each candidate with the builds of its head
                for candidate in github.get("candidates", []):
                    candidate["builds"] = [{"job": job["name"], "number": b["number"], "result": b["result"],
                                            "building": b["building"]}
                                           for job in jenkins for b in job["builds"] if b["sha"] == candidate["sha"]]
            world["repos"].append({"repo": name, "github": github, "jenkins": jenkins})
        world["ecs"] = _part(lambda: self._ecs(labels))
        world["alarms"] = _part(self._alarms)
        with self._lock:
            world["scripted"] = list(self._scripted[-5:])
        return world

    def _github(self, gh: GitHubEmulator, labels: dict[str, str]) -> dict[str, Any]:
        """One repository: its base branch's history, its candidate branches and other branches, its pull
        requests; `labels` learns what its commits are, for the images ECS runs."""
        base = gh.base_branch
        branches = gh.branches()
        key = tuple(sorted(branches.items()))
        cached = self._commits.get(gh.repo)
        if cached is None or cached[0] != key:  # git log only when a branch moved
            commits = {name: [self._commit_json(c) for c in (
                gh.commits(base, 15) if name == base else gh.commits(name, 10, exclude=base))]
                for name in branches}
            cached = self._commits[gh.repo] = (key, commits)
        commits = cached[1]
        pulls = gh.pull_requests()
        for c in commits.get(base, []):
            labels.setdefault(c["sha"], c["subject"])
        candidates = []
        for name in sorted(branches, key=_candidate_order):
            found = _CANDIDATE.fullmatch(name)
            if found is None:
                continue
            head = commits.get(name) or []
            candidates.append({"name": name, "train": found["train"], "deploy": int(found["id"]),
                               "sha": branches[name], "subject": head[0]["subject"] if head else "",
                               "commits": head})
            labels.setdefault(branches[name], f"{name} head")
        for p in pulls:
            labels[p.head_sha] = f"PR #{p.number} head"
        if base in branches:
            labels[branches[base]] = f"{base} head"
        order = [base, *sorted(b for b in branches if b != base and not _CANDIDATE.fullmatch(b))]
        return {
            "repo": gh.repo, "base": base,
            "branches": [{"name": b, "sha": branches[b], "commits": commits.get(b, [])} for b in order],
            "candidates": candidates,
            "pulls": [{"number": p.number, "title": p.title, "author": p.author, "branch": p.branch,
                       "state": "merged" if p.merged else p.state, "head": p.head_sha,
                       "merge_commit": p.merge_commit_sha} for p in reversed(pulls)],
        }

    @staticmethod
    def _commit_json(commit: Any) -> dict[str, Any]:
        return {"sha": commit.sha, "subject": _first_line(commit.message), "author": commit.author[0],
                "at": commit.committer[2], "merge": len(commit.parents) > 1}

    def _jenkins(self, jenkins: JenkinsEmulator) -> list[dict[str, Any]]:
        """One repository's Jenkins: its jobs, each with its newest builds."""
        jobs = []
        for job in jenkins.job_names():
            builds = []
            for build in jenkins.builds(job)[:8]:
                sha, branch, cause = None, "", ""
                for action in build.get("actions", []):
                    kind = action.get("_class", "")
                    if kind.endswith("BuildData"):
                        revision = action.get("lastBuiltRevision") or {}
                        sha = revision.get("SHA1")
                        branch = ((revision.get("branch") or [{}])[0]).get("name", "")
                    elif kind.endswith("ParametersAction") and sha is None:
                        sha = next((p["value"] for p in action.get("parameters", [])
                                    if p.get("name") == jenkins.sha_parameter), None)
                    elif kind.endswith("CauseAction"):
                        cause = "; ".join(c.get("shortDescription", "") for c in action.get("causes", []))
                found = _PR_IN_BRANCH.search(branch) or _PR_IN_BRANCH.search(job)
                pr = next((g for g in found.groups() if g), None) if found else None
                if pr is None and (in_cause := _PR_IN_CAUSE.search(cause)):
                    pr = in_cause.group(1)
                builds.append({"number": build["number"], "result": build.get("result"),
                               "building": build.get("building", False), "sha": sha,
                               "pr": int(pr) if pr else None, "cause": cause,
                               "at": build.get("timestamp", 0) / 1000, "duration_ms": build.get("duration", 0)})
            jobs.append({"name": job, "builds": builds})
        return jobs

    def _image_label(self, image: str, labels: dict[str, str]) -> str:
        sha = image.rsplit(":", 1)[-1]
        label = labels.get(sha)
        return f"{sha[:10]} ({label})" if label else sha[:10]

    def _images_of(self, task_definition: str) -> list[str]:
        if task_definition not in self._images:
            described = self.sandbox.aws.task_definition(task_definition)
            self._images[task_definition] = [c["image"] for c in described.get("containerDefinitions", [])]
        return self._images[task_definition]

    def _ecs(self, labels: dict[str, str]) -> dict[str, Any]:
        aws, spec = self.sandbox.aws, self.sandbox.spec
        clusters = []
        for cluster in aws.clusters():
            services = []
            for service in aws.services(cluster):
                deployments = [{
                    "status": d["status"], "rollout": d.get("rolloutState"), "reason": d.get("rolloutStateReason"),
                    "task_definition": short(d["taskDefinition"]), "desired": d["desiredCount"],
                    "running": d["runningCount"], "pending": d["pendingCount"], "failed": d.get("failedTasks", 0),
                    "images": [self._image_label(i, labels) for i in self._images_of(d["taskDefinition"])],
                } for d in service["deployments"]]
                services.append({
                    "name": service["serviceName"], "status": service["status"],
                    "canary": service["serviceName"].endswith("-canary"),
                    "desired": service["desiredCount"], "running": service["runningCount"],
                    "pending": service["pendingCount"], "task_definition": short(service["taskDefinition"]),
                    "images": [self._image_label(i, labels) for i in self._images_of(service["taskDefinition"])],
                    "deployments": deployments,
                    "events": [e["message"] for e in service.get("events", [])[:3]],
                })
            clusters.append({"name": cluster, "peas": cluster == spec.pea_cluster, "services": services})
        return {"clusters": clusters}

    def _alarms(self) -> list[dict[str, Any]]:
        return [{"name": a["AlarmName"], "state": a["StateValue"], "reason": a.get("StateReason", ""),
                 "updated": _stamp(a.get("StateUpdatedTimestamp"))} for a in self.sandbox.aws.alarms()]

    def stop(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                if self.loop is not None:
                    self.loop.call_soon_threadsafe(task.cancel)
        super().stop()


def _part(read: Callable[[], Any]) -> Any:
    """One part of the world, or what went wrong reading it: an emulator mid-change must not blank the page."""
    try:
        return read()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _candidate_order(branch: str) -> tuple[str, int]:
    """Candidate branches by train, then by deploy (`fatcontroller/app/10` after `fatcontroller/app/9`)."""
    found = _CANDIDATE.fullmatch(branch)
    return (found["train"], int(found["id"])) if found else (branch, 0)


def serve_browser(sandbox: Sandbox, port: int = 0) -> BrowserView:
    """Start the browser view of a started `sandbox`; its page is at `.url`."""
    view = BrowserView(sandbox, port=port)
    view.start()
    return view
