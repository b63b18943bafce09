"""Whole deploys, one after another, on the real bot and the sandbox with the default 2 s tick: how soon the
product reacts to the outside world, how much time it adds to a deploy, and how many outside calls a
two-process deploy costs.

Every figure comes from timestamps the emulators keep (when each request arrived, when each Jenkins build
started and ended, each ECS service's history, each edit of a Slack message) and from when the simulated
person clicked:
- reaction: build green → the canary's `ecs:RegisterTaskDefinition`; Proceed click → the first
  `ecs:UpdateService`; the rollout complete in ECS (every service on one deployment, COMPLETED) → the card
  edited to say `awaiting confirmation`;
- overhead: from `/deploy` to `completed`, minus the time covered by the build, ECS starting the canaries
  or rolling out, and the person deciding (DM posted → click);
- outside calls: every request the emulators received from the product between one `/deploy` and the next.

    .venv/bin/python -m bench.deploys [--deploys 15] [--think 0.3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from bench.common import (
    config_for,
    dm_with,
    finished_deploy,
    people,
    quiet,
    spread,
    start_bot_on,
    start_sandbox,
    write_json,
)
from bot.app import Bot
from sandbox.world import Sandbox, SandboxSpec

SERVICES = ("app-web", "app-worker")
SETTLE = 1.5  # after `completed`: the last card edit and Home republish land in this deploy's window
BUILD_SECONDS = (1.5, 3.5)  # each build takes a different time, so builds end at every phase of the poll
STEP_SECONDS = 0.1


async def one_deploy(sandbox: Sandbox, bot: Bot, user: str, think: float, build: float) -> dict[str, Any]:
    """Queue a PR whose build takes `build` seconds, press Proceed and Done like a person who takes `think`
    seconds, and note when things happened."""
    slack = sandbox.slack
    sandbox.jenkins.script_next("app-master", ["SUCCESS"], duration=build)
    pr = sandbox.github.create_pr(f"Change by {user}", {f"app/{user}.py": f"# {user}\n"}, author=user.lower())
    requested = time.time()
    await slack.command(user, "/deploy", str(pr))
    canaries = await slack.wait_for(lambda: dm_with(sandbox, user, "Proceed"), 60, what="the Proceed DM")
    await asyncio.sleep(think)
    proceeded = time.time()
    await slack.click(user, "Proceed", message=canaries)
    rolled_out = await slack.wait_for(lambda: dm_with(sandbox, user, "Done"), 60, what="the Done DM")
    await asyncio.sleep(think)
    confirmed = time.time()
    await slack.click(user, "Done", message=rolled_out)
    deadline = time.monotonic() + 30
    while (deploy := await finished_deploy(bot, pr)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the deploy of #{pr} did not finish")
        await asyncio.sleep(0.05)
    await asyncio.sleep(SETTLE)
    return {"pr": pr, "state": deploy.state, "merge_sha": deploy.merge_sha, "requested": requested,
            "proceeded": proceeded, "confirmed": confirmed, "ended": time.time(),
            "finished": deploy.finished_at.replace(tzinfo=UTC).timestamp(),
            "asked_proceed": canaries.posted_at, "asked_done": rolled_out.posted_at}


def build_window(sandbox: Sandbox, sha: str, job: str = "app-master") -> tuple[float, float]:
    """When the build of `sha` started and ended, as Jenkins says."""
    build = next(b for b in sandbox.jenkins.builds(job) if sha in json.dumps(b))
    start = build["timestamp"] / 1000
    return start, start + build["duration"] / 1000


def first_after(calls: Iterable[tuple[float, str]], operation: str, after: float) -> float:
    """When `operation` was first asked for at `after` or later."""
    return next(at for at, op in calls if op == operation and at >= after)


def ecs_windows(sandbox: Sandbox, after: float, proceeded: float,
                services: tuple[str, ...] = SERVICES) -> tuple[list[tuple[float, float]], float]:
    """When ECS was busy for this deploy (canaries starting, services rolling out); when the rollout ended."""
    windows, rollout_done = [], 0.0
    for service in services:
        canary = [e for e in sandbox.aws.history("production", f"{service}-canary") if e["at"] >= after]
        up = next(e["at"] for e in canary if e["desired"] and e["running"] >= e["desired"])
        windows.append((canary[0]["at"], up))
        rolling = [e for e in sandbox.aws.history("production", service) if e["at"] >= proceeded]
        began = next(e["at"] for e in rolling if len(e["deployments"]) > 1)
        done = next(e["at"] for e in rolling if e["at"] > began and len(e["deployments"]) == 1
                    and e["deployments"][0]["rolloutState"] == "COMPLETED")
        windows.append((began, done))
        rollout_done = max(rollout_done, done)
    return windows, rollout_done


def _covered(windows: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] inside at least one window."""
    total, reached = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in windows):
        if b > a and b > reached:
            total += b - max(a, reached)
            reached = b
    return total


def _card_says(sandbox: Sandbox, pr: int, text: str, after: float) -> float:
    card = next(m for m in sandbox.slack.messages(sandbox.spec.channel)
                if m.thread_ts is None and m.text.startswith(f"#{pr} "))
    return next(e.at for e in card.edits
                if e.at >= after and text in (e.text + json.dumps(e.blocks)).lower())


def _calls(sandbox: Sandbox, start: float, end: float) -> dict[str, Counter]:
    """What the product asked of each outside system in [start, end), by operation."""
    def between(log: Iterable[tuple[float, str]], skip: tuple[str, ...] = ()) -> Counter:
        return Counter(re.sub(r"/\d+", "/{n}", op) for at, op in list(log) if start <= at < end and op not in skip)

    return {"GitHub": between(sandbox.github.received), "Jenkins": between(sandbox.jenkins.received,
                                                                           ("POST /github-webhook/",)),
            "ECS": between(sandbox.aws.received), "Slack": between(sandbox.slack.received, ("socket",))}


def analyse(sandbox: Sandbox, run: dict[str, Any]) -> dict[str, Any]:
    build_start, build_end = build_window(sandbox, run["merge_sha"])
    ecs, rollout_done = ecs_windows(sandbox, run["requested"], run["proceeded"])
    aws = list(sandbox.aws.received)
    people_waits = [(run["asked_proceed"], run["proceeded"]), (run["asked_done"], run["confirmed"])]
    wall = run["finished"] - run["requested"]
    waiting = _covered([(build_start, build_end), *ecs, *people_waits], run["requested"], run["finished"])
    return {
        "build_to_canary": first_after(aws, "ecs:RegisterTaskDefinition", build_end) - build_end,
        "proceed_to_update": first_after(aws, "ecs:UpdateService", run["proceeded"]) - run["proceeded"],
        "rollout_to_card": _card_says(sandbox, run["pr"], "awaiting confirmation", rollout_done) - rollout_done,
        "wall": wall, "waiting": waiting, "overhead": wall - waiting,
        "calls": {system: dict(ops) for system, ops in _calls(sandbox, run["requested"], run["ended"]).items()},
    }


async def main(deploys: int, think: float, seed: int = 1) -> dict[str, Any]:
    quiet()
    sandbox = start_sandbox(SandboxSpec(users=people(deploys), step_interval=STEP_SECONDS))
    # The default tick (2 s); the emulators build and roll out in seconds, so waiting steps look every 0.5 s
    # here, as they would look every few seconds at production's minutes (bench.waiting measures that).
    config = config_for(sandbox, deploy={"poll": "500ms"})
    bot = await start_bot_on(sandbox, config)
    try:
        rng = random.Random(seed)
        runs = [await one_deploy(sandbox, bot, f"U{n:04d}", think, rng.uniform(*BUILD_SECONDS))
                for n in range(1, deploys + 1)]
        results = [analyse(sandbox, run) for run in runs]
        poll = bot.engine.lanes[bot.train().name].context.poll.total_seconds()
    finally:
        await bot.stop()
        sandbox.stop()
    calls: dict[str, list[int]] = {}
    by_operation: dict[str, Counter] = {}
    for result in results:
        for system, ops in result["calls"].items():
            calls.setdefault(system, []).append(sum(ops.values()))
            by_operation.setdefault(system, Counter()).update(ops)
    return {
        "deploys": deploys, "states": dict(Counter(run["state"] for run in runs)),
        "tick": config.deploy.tick.total_seconds(), "poll": poll, "think": think,
        "build_seconds": BUILD_SECONDS, "ecs_step_seconds": STEP_SECONDS,
        "reaction": {name: spread([r[name] for r in results])
                     for name in ("build_to_canary", "proceed_to_update", "rollout_to_card")},
        "overhead": spread([r["overhead"] for r in results]),
        "wall": spread([r["wall"] for r in results]),
        "calls": {system: spread([float(n) for n in counts]) for system, counts in calls.items()},
        "calls_by_operation": {system: {op: n / deploys for op, n in ops.most_common()}
                               for system, ops in by_operation.items()},
    }


def report(figures: dict[str, Any]) -> str:
    lines = [f"{figures['deploys']} two-process deploys one after another (tick {figures['tick']:g}s, waiting steps "
             f"poll every {figures['poll']:g}s); ended: {figures['states']}"]
    for name, values in (*figures["reaction"].items(), ("overhead", figures["overhead"]),
                         ("wall", figures["wall"])):
        lines.append(f"{name:<20} p50 {values['p50']:6.2f}s  p99 {values['p99']:6.2f}s  max {values['max']:6.2f}s")
    for system, values in figures["calls"].items():
        lines.append(f"{system:<8} calls per deploy: p50 {values['p50']:.0f}, max {values['max']:.0f}")
        lines.append("    " + ", ".join(f"{op} {n:g}" for op, n in figures["calls_by_operation"][system].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=15)
    parser.add_argument("--think", type=float, default=0.3, help="seconds a person takes to press a button")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.deploys, args.think))
    print(report(figures))
    write_json(args.json, figures)
