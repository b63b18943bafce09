"""Waiting at production durations: what a deploy costs in Jenkins and ECS calls while it waits for a 60 s build
and a 60 s rollout, how soon it notices a finished build (polling only, and with the Jenkins hook), and
fabfuel's `ecs-deploy` rolling the same ECS service beside it.

Everything runs on the real bot and the sandbox, four trains at once (a sandbox and a bot each, in one process,
so that the real-duration parts overlap); every figure comes from the emulators' own records: the requests each
received (`.received`: time, operation), the Jenkins builds (start, duration, the Notification plugin's
COMPLETED timestamp when the hook is on), each ECS service's history (when its rollout was COMPLETED), and when
each Slack message was posted or edited.

- **cost** (real durations, a train with no history): one two-process deploy whose build takes 60 s in Jenkins
  and whose rollout takes ~60 s in ECS (the emulator's scheduler steps every `ROLLOUT_STEP` s: app-web's 4
  tasks at the default `batch_percent` 25 take 9 steps, app-worker's 2 take 3; the canaries 2-3 steps). Jenkins
  calls per minute of build waiting (build start → build end in Jenkins), ECS calls (`ecs:` operations only;
  CloudWatch and the rest apart) per minute of rollout waiting (first `UpdateService` → the last service
  COMPLETED), and the projection to a 10-minute build and a 10-minute rollout: the deploy's calls plus the
  looks (the reads a waiting step repeats: Jenkins' build JSON, ECS' Describe and List) its window would have
  made over the rest of the 10 minutes, by the product's own schedule without a history
  (`flows.waiting.next_look`: every `deploy.poll` at first, then a sixth of the time waited so far, at most
  30 s), each look costing what a look cost in the measured minute; the actions (UpdateService, the canaries'
  calls...) counted once. The measured minute checks the schedule: its looks are the schedule's.
- **10 minutes at 1:10** (a train with a history): the product looks more often when a build should be about to
  end (near the median of the train's recent builds) and in halving steps before that, so its cost does not
  grow linearly with the wait. This train plays a 10-minute build and a 10-minute rollout ten times faster: the
  same 60 s build and ~60 s rollout with `deploy.poll` at a tenth (0.5 s), after one deploy whose 60 s build
  makes the history; the calls of the whole deploy (its windows made exactly 60 s long as above) are the
  projection. What does not scale is the product's absolute limits (at most 60 s between two looks; a history
  trusted for 60 s), so a real 10-minute build makes a few more looks than this run shows (about one a minute
  while that 60 s limit holds).
- **notice latency** (`LATENCY_BUILD` s builds, polling only, `deploy.poll` 5 s): `WARMUPS` deploys first, for a
  history (for at least `HISTORY_SECONDS`, since the product reads its history at most once a minute), then
  `MEASURED` deploys whose builds end spread over one poll period around the usual duration. From the build
  finishing in Jenkins to the card or its thread saying "passed", and to the canary's
  `ecs:RegisterTaskDefinition`; p50. The deploys are rolled back at the canary gate (quicker than rolling out).
- **the same with the Jenkins hook**: the bot serves `POST /hooks/jenkins` on `FATCONTROLLER_HTTP_PORT` with
  `FATCONTROLLER_HOOK_TOKEN`, and the Jenkins emulator notifies it (the Notification plugin's JSON, the token in
  the URL's query). When the endpoint answers 404 the hook is reported as not available.
- **ecs-deploy beside it**: once Fat Controller's bot is stopped, `ecs deploy production app-web -i app <image>`
  (the CLI, in a process of its own, pointed at the emulator with `AWS_ENDPOINT_URL` and the sandbox's
  credentials) rolls the same service, with the deployment configuration Fat Controller gives it and the same
  ECS speed: its ECS calls, and from ECS reporting the deployment COMPLETED to the tool printing "Deployment
  successful" (and exiting), once with its defaults (`--timeout 300 --sleep-time 1`) and once with
  `--sleep-time 5` (Fat Controller's poll, on the hook train's sandbox); beside Fat Controller's calls for its
  rollout of that service (with app-worker's, in one call per look) and its latency from COMPLETED to the thread
  saying "Rolled out". Each latency of this comparison is one rollout: expect up to one sleep (or poll) more.

Knobs the product may not have (this benchmark degrades instead of failing): `deploy.poll` (without it the
figures are at the product's built-in poll, reported) and `/hooks/jenkins` (reported as not available).

    .venv/bin/python -m bench.waiting [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import boto3
from pydantic import ValidationError

from bench.common import (
    config_for,
    dm_with,
    finished_deploy,
    free_port,
    people,
    quiet,
    spread,
    start_bot_on,
    write_json,
)
from bot.app import Bot
from flows.config import TrainConfig
from flows.waiting import next_look
from integrations.ecs import max_percent
from sandbox.world import Sandbox, SandboxSpec

JOB = "app-master"
SERVICES = ("app-web", "app-worker")
COMPARED = "app-web"  # the service ecs-deploy rolls too
BUILD_SECONDS = 60.0
ROLLOUT_SECONDS = 60.0
BATCH_PERCENT = 25  # the product's default: app-web's 4 tasks at 125 %, one more task at a time
ROLLOUT_STEPS = 9  # ECS emulator steps app-web's rolling update takes at 125 % (app-worker's: 3)
# The scheduler's first step comes at a random point of the first interval: 8.5 intervals on average.
ROLLOUT_STEP = ROLLOUT_SECONDS / (ROLLOUT_STEPS - 0.5)
FAST_STEP = 0.05  # ECS as quick as the sandbox goes, where the benchmark does not look at it
POLL = "5s"  # deploy.poll, the product's default (given explicitly)
SCALE = 10  # the 1:10 train: a 10-minute build in 60 s
SCALED_POLL = "500ms"
LATENCY_BUILD = 20.0  # the usual build of the latency trains
WARMUPS, MEASURED = 3, 5
HISTORY_SECONDS = 65.0  # the product reads the train's history at most once a minute
THINK = 0.3  # seconds a person takes to press a button
HOOK_TOKEN = "bench-hook-token"
_STARTING = asyncio.Lock()
TARGETS = {"jenkins_10min": 60, "ecs_10min": 150, "notice_polling": 2.0, "notice_hook": 1.0}


# -- one train --------------------------------------------------------------------------------------

@dataclass
class Train:
    """A sandbox and the real bot on it, with the poll the bot was given and the one it uses."""

    name: str
    sandbox: Sandbox
    bot: Bot | None
    config: TrainConfig
    poll_knob: bool  # deploy.poll was accepted by the product's app.yaml
    poll: float  # seconds: what the bot's waiting steps use as their poll
    users: Iterator[str] = field(default_factory=lambda: itertools.cycle(f"U{n:04d}" for n in range(1, 5)))
    prs: int = 0

    async def stop_bot(self) -> None:
        if self.bot is not None:
            bot, self.bot = self.bot, None
            await bot.stop()

    async def close(self) -> None:
        try:
            await self.stop_bot()
        finally:
            self.sandbox.stop()


def _config(sandbox: Sandbox, poll: str) -> tuple[TrainConfig, bool]:
    """The bench train's app.yaml with `deploy.poll`; without it when the product does not know that key yet."""
    sections: dict[str, dict[str, Any]] = {
        "jenkins": {"build_timeout": "15m"},
        "deploy": {"batch_percent": BATCH_PERCENT, "rollout_timeout": "15m", "poll": poll},
    }
    try:
        return config_for(sandbox, **sections), True
    except ValidationError as exc:
        if "poll" not in str(exc):
            raise
        del sections["deploy"]["poll"]
        return config_for(sandbox, **sections), False


async def open_train(name: str, *, poll: str, step: float, **environment: Any) -> Train:
    sandbox = Sandbox(SandboxSpec(users=people(4), step_interval=step)).start()
    # Credentials for every boto3 client; each train's endpoint goes to its bot explicitly (several sandboxes).
    os.environ.update({k: v for k, v in sandbox.env().items() if k.startswith("AWS_") and k != "AWS_ENDPOINT_URL"})
    try:
        config, knob = _config(sandbox, poll)
        async with _STARTING:  # alembic's migration context is process-global: one bot starts at a time
            bot = await start_bot_on(sandbox, config, **environment)
    except BaseException:
        sandbox.stop()
        raise
    context_poll = getattr(bot.engine.lanes[bot.train().name].context, "poll", None)
    effective = context_poll.total_seconds() if context_poll is not None else float("nan")
    return Train(name, sandbox, bot, config, knob, effective)


# -- one deploy ---------------------------------------------------------------------------------------

async def run_deploy(train: Train, build: float, *, roll_back: bool,
                     before_proceed: Callable[[], None] | None = None) -> dict[str, Any]:
    """Queue a PR whose build takes `build` s; at the canary gate roll it back, or proceed and press Done."""
    sandbox, slack, bot = train.sandbox, train.sandbox.slack, train.bot
    assert bot is not None
    user = next(train.users)
    train.prs += 1
    sandbox.jenkins.script_next(JOB, ["SUCCESS"], duration=build)
    pr = sandbox.github.create_pr(f"Change {train.prs} by {user}", {f"app/{user}_{train.prs}.py": f"# {user}\n"},
                                  author=user.lower())
    run: dict[str, Any] = {"pr": pr, "build_seconds": build, "requested": time.time()}
    await slack.command(user, "/deploy", str(pr))
    gate = await slack.wait_for(lambda: dm_with(sandbox, user, "Proceed"), build + 240, what=f"#{pr}'s canary gate")
    await asyncio.sleep(THINK)
    if roll_back:
        run["rolled_back_at"] = time.time()
        await slack.click(user, "Roll back", message=gate)
    else:
        if before_proceed is not None:
            before_proceed()
        run["proceeded"] = time.time()
        await slack.click(user, "Proceed", message=gate)
        done = await slack.wait_for(lambda: dm_with(sandbox, user, "Done"), 4 * ROLLOUT_SECONDS + 60,
                                    what=f"#{pr}'s Done DM")
        await asyncio.sleep(THINK)
        await slack.click(user, "Done", message=done)
    deadline = time.monotonic() + 120
    while (deploy := await finished_deploy(bot, pr)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the deploy of #{pr} did not finish")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the last card edit lands in this deploy's window
    run.update(state=deploy.state, merge_sha=deploy.merge_sha, ended=time.time())
    return run


# -- what the emulators recorded ----------------------------------------------------------------------

def build_window(sandbox: Sandbox, sha: str) -> tuple[float, float]:
    """When the build of `sha` started, and when it finished in Jenkins (the COMPLETED notification's own
    timestamp when the hook is on, else start + duration: the emulator's STARTED notification comes first)."""
    build = next(b for b in sandbox.jenkins.builds(JOB) if sha in json.dumps(b))
    start = build["timestamp"] / 1000
    completed = next((n for n in list(sandbox.jenkins.notifications)
                      if n.job == JOB and n.number == build["number"] and n.phase == "COMPLETED"), None)
    end = completed.body["build"]["timestamp"] / 1000 if completed else start + build["duration"] / 1000
    return start, end


def said(sandbox: Sandbox, pr: int, text: str, after: float) -> float | None:
    """When the card of `pr` (an edit of it) or a reply in its thread first said `text` after `after`."""
    channel, slack = sandbox.spec.channel, sandbox.slack
    card = next(m for m in slack.messages(channel) if m.thread_ts is None and m.text.startswith(f"#{pr} "))
    times = [e.at for e in card.edits if e.at >= after and text in (e.text + json.dumps(e.blocks)).lower()]
    times += [m.posted_at for m in slack.thread(channel, card.ts) if m.posted_at >= after and text in m.text.lower()]
    return min(times, default=None)


def first_call(calls: Iterable[tuple[float, str]], operation: str, after: float) -> float | None:
    return next((at for at, op in calls if op == operation and at >= after), None)


def completed_at(sandbox: Sandbox, service: str, after: float) -> float:
    """When `service`'s rollout begun after `after` was COMPLETED (one deployment left), per ECS's history."""
    history = [e for e in sandbox.aws.history(sandbox.spec.cluster, service) if e["at"] >= after]
    began = next(e["at"] for e in history if len(e["deployments"]) > 1)
    return float(next(e["at"] for e in history if e["at"] > began and len(e["deployments"]) == 1
                      and e["deployments"][0]["rolloutState"] == "COMPLETED"))


def canaries_up(sandbox: Sandbox, after: float) -> float:
    """When the last canary service had its task running (ECS's history)."""
    ups: list[float] = []
    for service in SERVICES:
        canary = [e for e in sandbox.aws.history(sandbox.spec.cluster, f"{service}-canary") if e["at"] >= after]
        ups.append(next(e["at"] for e in canary if e["desired"] and e["running"] >= e["desired"]))
    return max(ups)


def _between(log_: Iterable[tuple[float, str]], start: float, end: float) -> list[str]:
    return [op for at, op in list(log_) if start <= at < end]


def jenkins_calls(sandbox: Sandbox, start: float, end: float) -> list[str]:
    """The product's requests to Jenkins (GitHub's webhook to Jenkins left out)."""
    return [op for op in _between(sandbox.jenkins.received, start, end) if op != "POST /github-webhook/"]


def aws_calls(sandbox: Sandbox, start: float, end: float) -> dict[str, int]:
    """Requests to the AWS emulator by kind: `ecs:` operations, CloudWatch, and the rest (ECR, ELBv2)."""
    ops = _between(sandbox.aws.received, start, end)
    ecs = sum(op.startswith("ecs:") for op in ops)
    cloudwatch = sum(op.startswith("cloudwatch:") for op in ops)
    return {"ecs": ecs, "cloudwatch": cloudwatch, "other": len(ops) - ecs - cloudwatch}


def by_operation(ops: Iterable[str]) -> dict[str, int]:
    return dict(Counter(re.sub(r"/\d+", "/{n}", op) for op in ops).most_common())


def ecs_by_operation(sandbox: Sandbox, start: float, end: float) -> dict[str, int]:
    return by_operation(op for op in _between(sandbox.aws.received, start, end))


def per_minute(count: float, seconds: float) -> float:
    return count * 60 / seconds if seconds > 0 else float("nan")


def is_look(op: str) -> bool:
    """A read a waiting step repeats (Jenkins' build and queue JSON, ECS' Describe and List), as opposed to an
    action done once (UpdateService, a crumb, a build started)."""
    return op.startswith(("GET /job/", "GET /queue/", "ecs:Describe", "ecs:List"))


def project(deploy_calls: int, looks: list[float], seconds: float, target: float) -> float:
    """The deploy's calls if its waiting window (`seconds` long, with a look at each of `looks`) had lasted `target`
    seconds, looking at the rate it did (between its first and last look); the rest (the actions, the calls
    outside the window) counted as made."""
    if len(looks) >= 2 and max(looks) > min(looks):
        rate = (len(looks) - 1) / (max(looks) - min(looks))
    else:
        rate = len(looks) / seconds
    return deploy_calls + (target - seconds) * rate


def scheduled_looks(seconds: float, poll: float) -> int:
    """How many times the product's schedule without a history looks during a wait of `seconds`."""
    elapsed, count = 0.0, 0
    while elapsed < seconds:
        count += 1
        elapsed += next_look(timedelta(seconds=elapsed), None, timedelta(seconds=poll)).total_seconds()
    return count


def project_scheduled(deploy_calls: int, looks: list[float], seconds: float, target: float, poll: float) -> float:
    """The deploy's calls if its waiting window (`seconds` long, its look calls at `looks`) had lasted `target`
    seconds, looking as the product's schedule without a history does, each look as costly as the measured
    ones; the rest (the actions, the calls outside the window) counted as made."""
    measured = scheduled_looks(seconds, poll)
    per_look = len(looks) / measured if measured else 0.0
    return deploy_calls + (scheduled_looks(target, poll) - measured) * per_look


def looks_in(log_: Iterable[tuple[float, str]], start: float, end: float) -> list[float]:
    """When the waiting step looked (see `is_look`) in [start, end)."""
    return [at for at, op in list(log_) if start <= at < end and is_look(op)]


def ecs_ops(sandbox: Sandbox, start: float, end: float) -> list[str]:
    return [op for op in _between(sandbox.aws.received, start, end) if op.startswith("ecs:")]


# -- the trains ---------------------------------------------------------------------------------------

async def cost_train() -> dict[str, Any]:
    """Real durations, no history: one deploy with a 60 s build and a ~60 s rollout; then ecs-deploy."""
    train = await open_train("cost", poll=POLL, step=ROLLOUT_STEP)
    sandbox = train.sandbox
    try:
        run = await run_deploy(train, BUILD_SECONDS, roll_back=False)
        await train.stop_bot()  # from here on, every call the AWS emulator gets is ecs-deploy's
        figures = {"poll": train.poll, "poll_knob": train.poll_knob, "state": run["state"],
                   **analyse_cost(sandbox, run, train.poll)}
        figures["ecs_deploy"] = await ecs_deploy(sandbox)
        return figures
    finally:
        await train.close()


def analyse_cost(sandbox: Sandbox, run: dict[str, Any], poll: float) -> dict[str, Any]:
    start, end = build_window(sandbox, run["merge_sha"])
    requested, ended, proceeded = run["requested"], run["ended"], run["proceeded"]
    aws = list(sandbox.aws.received)
    update = first_call(aws, "ecs:UpdateService", proceeded)
    assert update is not None, "no UpdateService after Proceed"
    done = max(completed_at(sandbox, s, proceeded) for s in SERVICES)
    rolled_out = said(sandbox, run["pr"], "rolled out", done)
    passed = said(sandbox, run["pr"], "passed", end)
    up = canaries_up(sandbox, end)

    build_calls = jenkins_calls(sandbox, start, end)
    all_jenkins = jenkins_calls(sandbox, requested, ended)
    rollout = aws_calls(sandbox, update, done)
    whole = aws_calls(sandbox, requested, ended)
    build_rate = per_minute(len(build_calls), end - start)
    rollout_rate = per_minute(rollout["ecs"], done - update)
    fc_rollout_end = rolled_out if rolled_out is not None else ended
    return {
        "build": {"seconds": end - start, "jenkins_calls": len(build_calls), "per_minute": build_rate,
                  "deploy_jenkins_calls": len(all_jenkins), "by_operation": by_operation(all_jenkins),
                  "notice_passed": None if passed is None else passed - end,
                  "looks": [round(at - start, 2) for at, op in list(sandbox.jenkins.received)
                            if start <= at < end + 10 and is_look(op)],
                  "projection_10min": project_scheduled(len(all_jenkins),
                                                        looks_in(sandbox.jenkins.received, start, end), end - start,
                                                        600, poll)},
        "rollout": {"seconds": done - update, "ecs_calls": rollout["ecs"], "per_minute": rollout_rate,
                    "cloudwatch_calls": rollout["cloudwatch"], "other_aws_calls": rollout["other"],
                    "deploy_ecs_calls": whole["ecs"], "deploy_cloudwatch_calls": whole["cloudwatch"],
                    "deploy_other_aws_calls": whole["other"],
                    "canary_seconds": up - end,
                    "by_operation": ecs_by_operation(sandbox, requested, ended),
                    "projection_10min": project_scheduled(whole["ecs"], looks_in(sandbox.aws.received, update, done),
                                                          done - update, 600, poll)},
        # Fat Controller's rollout of both services, read together: Proceed → the thread says "Rolled out"
        "fc_rollout": {"ecs_calls": aws_calls(sandbox, proceeded, fc_rollout_end)["ecs"],
                       "projection_10min": project_scheduled(aws_calls(sandbox, proceeded, fc_rollout_end)["ecs"],
                                                             looks_in(sandbox.aws.received, update, done),
                                                             done - update, 600, poll),
                       "by_operation": ecs_by_operation(sandbox, proceeded, fc_rollout_end),
                       "per_minute": rollout_rate, "seconds": done - update,
                       "completed_to_notice": None if rolled_out is None else rolled_out - done,
                       "web_seconds": completed_at(sandbox, COMPARED, proceeded) - update},
    }


async def scaled_train() -> dict[str, Any]:
    """A train with a history playing a 10-minute build and a 10-minute rollout at 1:10."""
    train = await open_train("1:10", poll=SCALED_POLL, step=FAST_STEP)
    sandbox = train.sandbox
    try:
        if not train.poll_knob:
            return {"available": False, "why": "the product has no deploy.poll: it cannot be scaled",
                    "poll": train.poll}
        began = time.monotonic()
        await run_deploy(train, BUILD_SECONDS, roll_back=True)  # the history: one 60 s ("10-minute") build
        await asyncio.sleep(max(0.0, HISTORY_SECONDS - (time.monotonic() - began)))
        sandbox.aws.step_interval = ROLLOUT_STEP / SCALE  # canaries as quick as the real train's, scaled
        run = await run_deploy(train, BUILD_SECONDS, roll_back=False,
                               before_proceed=lambda: setattr(sandbox.aws, "step_interval", ROLLOUT_STEP))
        start, end = build_window(sandbox, run["merge_sha"])
        jenkins = jenkins_calls(sandbox, run["requested"], run["ended"])
        update = first_call(list(sandbox.aws.received), "ecs:UpdateService", run["proceeded"])
        assert update is not None
        done = max(completed_at(sandbox, s, run["proceeded"]) for s in SERVICES)
        calls = aws_calls(sandbox, run["requested"], run["ended"])
        in_build, in_rollout = jenkins_calls(sandbox, start, end), ecs_ops(sandbox, update, done)
        # exactly 10 scaled minutes each: the looks of the build and rollout windows stretched to 60 s
        return {"available": True, "poll": train.poll, "state": run["state"], "build_seconds": end - start,
                "rollout_seconds": done - update, "jenkins_calls": len(jenkins), "jenkins_build_calls": len(in_build),
                "jenkins_by_operation": by_operation(jenkins), "ecs_calls": calls["ecs"],
                "cloudwatch_calls": calls["cloudwatch"], "other_aws_calls": calls["other"],
                "ecs_rollout_calls": len(in_rollout),
                "ecs_by_operation": ecs_by_operation(sandbox, run["requested"], run["ended"]),
                "jenkins_10min": project(len(jenkins), looks_in(sandbox.jenkins.received, start, end), end - start,
                                         600 / SCALE),
                "ecs_10min": project(calls["ecs"], looks_in(sandbox.aws.received, update, done), done - update,
                                     600 / SCALE),
                "looks": [round(at - start, 2) for at, op in list(sandbox.jenkins.received)
                          if start <= at < end + 2 and is_look(op)]}
    finally:
        await train.close()


async def _hook_answers(url: str) -> int | None:
    """What the bot's hook answers an empty object (400 when it is there, 404 when not); None: no answer."""
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"{url}?token={HOOK_TOKEN}", json={}, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def phases(poll: float, count: int) -> list[float]:
    """Build durations around the usual one, spread over one poll period so that they end at every phase of it."""
    return [LATENCY_BUILD + (i / count - 0.5) * poll for i in range(count)]


async def latency_train(hook: bool) -> dict[str, Any]:
    """Deploys whose builds end near their usual duration at different phases of the poll; polling only, or
    with the Jenkins hook. Then ecs-deploy with `--sleep-time 5` on this train's sandbox."""
    port = free_port() if hook else 0
    environment = {"FATCONTROLLER_HTTP_PORT": port, "FATCONTROLLER_HOOK_TOKEN": HOOK_TOKEN} if hook else {}
    train = await open_train("hook" if hook else "polling", poll=POLL, step=FAST_STEP, **environment)
    sandbox = train.sandbox
    figures: dict[str, Any] = {"poll": train.poll, "poll_knob": train.poll_knob, "usual_build": LATENCY_BUILD}
    try:
        if hook:
            url = f"http://127.0.0.1:{port}/hooks/jenkins"
            status = await _hook_answers(url)
            figures["hook_probe_status"] = status
            figures["available"] = status not in (None, 404, 405)
            if figures["available"]:
                sandbox.jenkins.notify_to(url, job=JOB, token=HOOK_TOKEN)
        if not hook or figures["available"]:
            began = time.monotonic()
            for n in itertools.count():
                if n >= (WARMUPS if not hook else 1) and (hook or time.monotonic() - began >= HISTORY_SECONDS):
                    break
                await run_deploy(train, LATENCY_BUILD, roll_back=True)
            poll = 5.0 if math.isnan(train.poll) else train.poll
            runs = [await run_deploy(train, build, roll_back=True) for build in phases(poll, MEASURED)]
            figures["deploys"] = [latency_of(sandbox, run) for run in runs]
            for key in ("passed", "task_definition"):
                values = [d[key] for d in figures["deploys"] if d[key] is not None]
                figures[key] = spread(values) if values else None
            if hook:
                answered = Counter(n.status if n.status is not None else n.error for n in sandbox.jenkins.notifications)
                figures["hook_answers"] = {str(k): v for k, v in answered.items()}
        await train.stop_bot()
        if hook:
            figures["ecs_deploy_sleep_5"] = await ecs_deploy(sandbox, sleep_time=5)
        return figures
    finally:
        await train.close()


def latency_of(sandbox: Sandbox, run: dict[str, Any]) -> dict[str, Any]:
    start, end = build_window(sandbox, run["merge_sha"])
    passed = said(sandbox, run["pr"], "passed", end)
    registered = first_call(list(sandbox.aws.received), "ecs:RegisterTaskDefinition", end)
    return {"pr": run["pr"], "build_seconds": end - start, "state": run["state"],
            "passed": None if passed is None else passed - end,
            "task_definition": None if registered is None else registered - end,
            "jenkins_build_calls": len(jenkins_calls(sandbox, start, end)),
            "looks": [round(at - start, 2) for at, op in list(sandbox.jenkins.received)
                      if start <= at < end + 6 and is_look(op)]}


# -- ecs-deploy ---------------------------------------------------------------------------------------

def _ecs_deploy_defaults() -> dict[str, Any]:
    """The installed ecs-deploy's version and the defaults of `ecs deploy --timeout` and `--sleep-time`."""
    from ecs_deploy import cli  # optional (a dev dependency): imported only here

    options = {p.name: p.default for p in cli.deploy.params}
    return {"version": importlib.metadata.version("ecs-deploy"), "timeout": options.get("timeout"),
            "sleep_time": options.get("sleep_time")}


def _prepare_service(sandbox: Sandbox) -> None:
    """Give app-web the deployment configuration Fat Controller's rolling update gives it (ecs-deploy keeps the
    service's own), so both roll it at the same pace."""
    env = sandbox.env()
    client = boto3.client("ecs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    desired = sandbox.aws.service(sandbox.spec.cluster, COMPARED)["desiredCount"]
    client.update_service(cluster=sandbox.spec.cluster, service=COMPARED, deploymentConfiguration={
        "maximumPercent": max_percent(desired, BATCH_PERCENT), "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}})


async def ecs_deploy(sandbox: Sandbox, *, sleep_time: int | None = None) -> dict[str, Any]:
    """Roll app-web to a new image with ecs-deploy's CLI, at the real-duration ECS speed; what it cost and how
    soon after COMPLETED it said so."""
    try:
        defaults = _ecs_deploy_defaults()
    except ImportError:
        return {"available": False, "why": "ecs-deploy is not installed (pip install -e '.[dev]')"}
    sandbox.aws.step_interval = ROLLOUT_STEP
    await asyncio.to_thread(_prepare_service, sandbox)
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    sandbox.aws.push_image(sandbox.spec.image_repository, sha)
    command = [sys.executable, "-m", "ecs_deploy.cli", "deploy", sandbox.spec.cluster, COMPARED,
               "-i", sandbox.spec.container, sandbox.image(sha)]
    if sleep_time is not None:
        command += ["--sleep-time", str(sleep_time)]
    env = {**os.environ, **sandbox.env(), "PYTHONUNBUFFERED": "1"}
    began = time.time()
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    succeeded, lines = None, []
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if succeeded is None and "Deployment successful" in line:
            succeeded = time.time()
    code = await asyncio.wait_for(process.wait(), 30)
    exited = time.time()
    aws = list(sandbox.aws.received)
    update = first_call(aws, "ecs:UpdateService", began)
    figures: dict[str, Any] = {"available": True, **defaults, "sleep_time_used": sleep_time or defaults["sleep_time"],
                               "exit_code": code, "calls": aws_calls(sandbox, began, exited),
                               "by_operation": ecs_by_operation(sandbox, began, exited),
                               "wall": exited - began}
    if code != 0 or update is None:
        figures["output"] = lines[-15:]
        return figures
    done = completed_at(sandbox, COMPARED, update)
    rollout = ecs_ops(sandbox, update, done)
    figures.update(rollout_seconds=done - update, rollout_calls=len(rollout),
                   per_minute=per_minute(len(rollout), done - update),
                   completed_to_success=None if succeeded is None else succeeded - done,
                   completed_to_exit=exited - done,
                   projection_10min=project(figures["calls"]["ecs"], looks_in(sandbox.aws.received, update, done),
                                            done - update, 600))
    return figures


# -- all of it ----------------------------------------------------------------------------------------

async def _guarded(name: str, work: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await work
        return result
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}", "train": name}


async def main() -> dict[str, Any]:
    quiet()
    began = time.monotonic()
    cost, scaled, polling, hook = await asyncio.gather(
        _guarded("cost", cost_train()), _guarded("1:10", scaled_train()),
        _guarded("polling", latency_train(hook=False)), _guarded("hook", latency_train(hook=True)))
    return {"cost": cost, "scaled": scaled, "polling": polling, "hook": hook,
            "build_seconds": BUILD_SECONDS, "rollout_seconds": ROLLOUT_SECONDS, "step_seconds": ROLLOUT_STEP,
            "scale": SCALE, "targets": TARGETS, "took": time.monotonic() - began}


def _f(value: float | None, unit: str = "s", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}" if unit else f"{value:.{digits}f}"


def report(figures: dict[str, Any]) -> str:
    lines = [f"Four trains at once, {figures['took']:.0f} s; builds of {figures['build_seconds']:g} s, ECS stepping "
             f"every {figures['step_seconds']:.2f} s (a ~{figures['rollout_seconds']:g} s rollout)."]
    cost = figures["cost"]
    if "error" in cost:
        lines.append(f"cost: failed: {cost['error']}")
    else:
        b, r, fc = cost["build"], cost["rollout"], cost["fc_rollout"]
        knob = "deploy.poll" if cost["poll_knob"] else "built in (no deploy.poll knob)"
        lines += [
            f"cost (real durations, no history; poll {cost['poll']:g}s, {knob}); ended {cost['state']}",
            f"  build {b['seconds']:.1f}s: {b['jenkins_calls']} Jenkins calls = {b['per_minute']:.1f}/min; the "
            f"deploy {b['deploy_jenkins_calls']}; 10-minute build, by the schedule: {b['projection_10min']:.0f}; "
            f"build → passed {_f(b['notice_passed'])}",
            "    " + ", ".join(f"{op} {n}" for op, n in b["by_operation"].items()),
            f"  rollout {r['seconds']:.1f}s: {r['ecs_calls']} ECS calls = {r['per_minute']:.1f}/min (CloudWatch "
            f"{r['cloudwatch_calls']}, other AWS {r['other_aws_calls']}); the deploy {r['deploy_ecs_calls']} ECS "
            f"(CloudWatch {r['deploy_cloudwatch_calls']}, other {r['deploy_other_aws_calls']}), canaries up "
            f"{r['canary_seconds']:.1f}s after the build; 10-minute rollout, by the schedule: "
            f"{r['projection_10min']:.0f}",
            "    " + ", ".join(f"{op} {n}" for op, n in r["by_operation"].items()),
        ]
        lines.append(f"  Fat Controller rolling {', '.join(SERVICES)} ({COMPARED} {fc['web_seconds']:.1f}s): "
                     f"{fc['ecs_calls']} ECS calls from Proceed to 'Rolled out' ({fc['per_minute']:.1f}/min while "
                     f"rolling; a 10-minute rollout: {fc['projection_10min']:.0f}); COMPLETED → 'Rolled out' "
                     f"{_f(fc['completed_to_notice'])}")
        lines.append("    " + ", ".join(f"{op} {n}" for op, n in fc["by_operation"].items()))
    for key, label in (("cost", "ecs_deploy"), ("hook", "ecs_deploy_sleep_5")):
        tool = figures[key].get(label) if isinstance(figures[key], dict) else None
        if tool is not None:
            lines.append(_ecs_deploy_line(tool))
    scaled = figures["scaled"]
    if "error" in scaled:
        lines.append(f"1:10: failed: {scaled['error']}")
    elif not scaled.get("available"):
        lines.append(f"1:10: not available: {scaled['why']}")
    else:
        lines += [
            f"10 minutes at 1:{figures['scale']} (poll {scaled['poll']:g}s, a history of one build); ended "
            f"{scaled['state']}: build {scaled['build_seconds']:.1f}s, rollout {scaled['rollout_seconds']:.1f}s",
            f"  Jenkins {scaled['jenkins_calls']} calls for the deploy ({scaled['jenkins_build_calls']} while the "
            f"build ran); ECS {scaled['ecs_calls']} ({scaled['ecs_rollout_calls']} while rolling out; CloudWatch "
            f"{scaled['cloudwatch_calls']}, other AWS {scaled['other_aws_calls']}); for exactly 10 minutes: Jenkins "
            f"{scaled['jenkins_10min']:.0f}, ECS {scaled['ecs_10min']:.0f}",
            "    " + ", ".join(f"{op} {n}" for op, n in scaled["jenkins_by_operation"].items()),
            "    " + ", ".join(f"{op} {n}" for op, n in scaled["ecs_by_operation"].items()),
        ]
    for key in ("polling", "hook"):
        lat = figures[key]
        if "error" in lat:
            lines.append(f"{key}: failed: {lat['error']}")
            continue
        if key == "hook" and not lat.get("available"):
            lines.append(f"hook: not available (POST /hooks/jenkins answered {lat.get('hook_probe_status')})")
            continue
        lines.append(f"notice latency, {key} (poll {lat['poll']:g}s, usual build {lat['usual_build']:g}s"
                     + (f", the hook answered {lat.get('hook_answers')}" if key == "hook" else "") + ")")
        for name in ("passed", "task_definition"):
            values = lat[name]
            if values:
                lines.append(f"  build end → {name:<16} p50 {values['p50']:5.2f}s  max {values['max']:5.2f}s "
                             f"({values['count']} deploys)")
        lines.append("  builds: " + ", ".join(
            f"{d['build_seconds']:.1f}s→{_f(d['passed'])} ({d['jenkins_build_calls']} looks)" for d in lat["deploys"]))
    return "\n".join(lines)


def _ecs_deploy_line(tool: dict[str, Any]) -> str:
    if not tool.get("available"):
        return f"ecs-deploy: not available: {tool.get('why')}"
    head = (f"ecs-deploy {tool['version']} (--timeout {tool['timeout']}, --sleep-time {tool['sleep_time_used']}; "
            f"defaults {tool['timeout']} / {tool['sleep_time']})")
    if tool["exit_code"] != 0 or "rollout_calls" not in tool:
        return f"{head}: exit code {tool['exit_code']}: " + " / ".join(tool.get("output", []))
    return (f"{head} rolling {COMPARED} {tool['rollout_seconds']:.1f}s: {tool['calls']['ecs']} ECS calls in all, "
            f"{tool['rollout_calls']} while rolling = {tool['per_minute']:.1f}/min; COMPLETED → 'Deployment "
            f"successful' {_f(tool['completed_to_success'])}, → exit {_f(tool['completed_to_exit'])}; a 10-minute "
            f"rollout: {tool['projection_10min']:.0f} calls\n    "
            + ", ".join(f"{op} {n}" for op, n in tool["by_operation"].items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main())
    print(report(figures))
    write_json(args.json, figures)
