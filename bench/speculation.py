"""Speculative builds (DESIGN §8) on the real bot and the sandbox: five deploys queued at once, built ahead or not
(`deploy.speculate`), how soon the last one finishes, and how far off each one's predicted finish was.

Minutes are scaled down to seconds, the ratios kept: ECS steps every 0.1 s (a canary starts in ~0.5 s, a two-process
rollout takes ~0.7 s), the person at the gate thinks 1.5 s before Proceed (~1.65 s with the DM's way there) and
presses Done at once, so canary start + gate + rollout come to ~2.8 s. Workloads, each on a fresh sandbox and bot:
- "equal": every build of app-master (merged commits and candidates alike: the job's own default duration) lasts as
  long as that, 2.8 s; run with speculate 0, 1 and 2. With 1, every build but the first is hidden behind the
  deploy ahead: the limit is 10/6 ≈ 1.67 times sooner than with 0.
- "long builds": builds of 5.6 s, twice the rest; run with speculate 1 and 2 (2 hides the build behind two deploys).
Each run first completes three deploys one after another (the train's history, which the ETA learns its stage
medians from), then five people `/deploy` five PRs touching different files, one right after the other (~0.4 s
apart). Right after each `/deploy` is answered the deploy's predicted finish is read from the train's queue
(`QueueEntry.finish`); once it has finished, the error is against its real finish, in seconds and as a share of its
wait (queued → completed). The timings are CPU-bound (sub-second steps): the load average is reported beside them.

    .venv/bin/python -m bench.speculation [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bench.common import config_for, dm_with, people, quiet, start_bot_on, start_sandbox, write_json
from bot.app import Bot
from flows.deploy.machine import State
from sandbox.world import Sandbox, SandboxSpec
from storage.models import AuditEvent, Deploy

STEP_SECONDS = 0.1  # ECS scheduler step
THINK = 1.5  # seconds the person at the gate looks at the canaries before Proceed
REST = 2.8  # canary start + gate + rollout at these timings, measured (each run reports its own)
POLL, TICK = "100ms", "1s"  # waiting steps look 10 times a second; wakes, not the tick, move the train on
WARMUP, QUEUED = 3, 5
# workload -> (build duration, the speculate settings it is run with)
WORKLOADS: dict[str, tuple[float, tuple[int, ...]]] = {"equal": (REST, (0, 1, 2)), "long builds": (2 * REST, (1, 2))}
TARGETS = {"ratio": 1.5, "eta_share": 0.25}
JOB = "app-master"
LIMIT = 120.0  # seconds a person waits for a button before the run is declared stuck
# Stages as the deploy's state_times show them: the state spent in, and the state that ends it.
STAGES = {"merging": ("merging", "building"), "building": ("building", "canarying"),
          "canary": ("canarying", "canary_check"), "gate": ("canary_check", "rolling_out"),
          "rollout": ("rolling_out", "awaiting_confirmation"), "confirm": ("awaiting_confirmation", "completed")}


class Stuck(AssertionError):
    """A run whose deploys did not all complete: what they were doing, for the lead to look at."""


@dataclass
class Queued:
    """One of the five: its PR and requester, when its /deploy was answered and what its finish was predicted as."""

    pr: int
    user: str
    requested: float = 0.0  # time.time() as /deploy was typed
    queued: float = 0.0  # when its row was read back, with the queue
    predicted: float | None = None  # time.time() it was predicted to finish at
    position: int | None = None


def _epoch(value: datetime | str | None) -> float | None:
    """A naive-UTC datetime (or its ISO text), as the database keeps them, as time.time()."""
    if value is None:
        return None
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


async def _rows(bot: Bot, prs: list[int]) -> dict[int, Deploy]:
    """The deploy of each of `prs` (the newest), read fresh."""
    async with bot.engine.sessions() as session:
        found = (await session.scalars(sa.select(Deploy).where(Deploy.pr_number.in_(prs)).order_by(Deploy.id))).all()
    return {deploy.pr_number: deploy for deploy in found}


async def _stuck(bot: Bot, sandbox: Sandbox, prs: list[int], why: str) -> Stuck:
    """Everything the lead needs about deploys that did not complete: their rows, audit trails, the emulators' calls."""
    rows = await _rows(bot, prs)
    lines = [why]
    async with bot.engine.sessions() as session:
        for pr in prs:
            deploy = rows.get(pr)
            if deploy is None:
                lines.append(f"#{pr}: no deploy row")
                continue
            lines.append(f"#{pr} deploy {deploy.id}: {deploy.state} attention={deploy.needs_attention} "
                         f"{deploy.attention or ''} merge={deploy.merge_sha} candidate={deploy.candidate_sha} "
                         f"base={deploy.candidate_base} build={deploy.candidate_build_number}/{deploy.build_number}")
            if deploy.state == State.COMPLETED.value:
                continue
            events = (await session.scalars(sa.select(AuditEvent).where(AuditEvent.deploy_id == deploy.id)
                                            .order_by(AuditEvent.at, AuditEvent.id))).all()
            lines += [f"    {e.at:%H:%M:%S.%f} {e.actor} {e.action}: {e.detail} {e.outside_ids or ''}" for e in events]
    lines.append(f"GitHub writes {dict(sandbox.github.writes)}")
    lines.append("Jenkins app-master: " + ", ".join(f"#{b['number']} {b['result']}" for b in
                                                    sandbox.jenkins.builds(JOB)))
    lines.append("last calls: GitHub " + "; ".join(op for _, op in list(sandbox.github.received)[-15:]))
    lines.append("            Jenkins " + "; ".join(op for _, op in list(sandbox.jenkins.received)[-15:]))
    return Stuck("\n".join(lines))


async def _person(sandbox: Sandbox, user: str) -> None:
    """The requester: looks at the canaries for THINK seconds, presses Proceed, and Done as soon as asked."""
    slack = sandbox.slack
    canaries = await slack.wait_for(lambda: dm_with(sandbox, user, "Proceed"), LIMIT, what=f"{user}'s Proceed DM")
    await asyncio.sleep(THINK)
    await slack.click(user, "Proceed", message=canaries)
    rolled_out = await slack.wait_for(lambda: dm_with(sandbox, user, "Done"), LIMIT, what=f"{user}'s Done DM")
    await slack.click(user, "Done", message=rolled_out)


async def _completed(bot: Bot, sandbox: Sandbox, prs: list[int]) -> dict[int, Deploy]:
    """Wait until every deploy of `prs` has finished (raise Stuck if one does not within LIMIT)."""
    deadline = time.monotonic() + LIMIT
    while True:
        rows = await _rows(bot, prs)
        if len(rows) == len(prs) and all(d.finished_at is not None for d in rows.values()):
            if any(d.state != State.COMPLETED.value for d in rows.values()):
                raise await _stuck(bot, sandbox, prs, "a deploy ended but not completed")
            return rows
        if time.monotonic() > deadline:
            raise await _stuck(bot, sandbox, prs, f"not all finished within {LIMIT:.0f} s")
        await asyncio.sleep(0.05)


async def _request(sandbox: Sandbox, bot: Bot, item: Queued) -> None:
    """Type /deploy, and once the deploy is on the train read its predicted finish from the queue."""
    await sandbox.slack.command(item.user, "/deploy", str(item.pr))
    flows = bot.train().deploys
    deadline = time.monotonic() + 10
    while (view := await flows.latest_of(item.pr)) is None:
        if time.monotonic() > deadline:
            raise await _stuck(bot, sandbox, [item.pr], "/deploy was answered but no deploy row appeared")
        await asyncio.sleep(0.01)
    queue = await flows.queue()
    item.queued = time.time()
    entry = queue.entry(view.id)
    if entry is not None and entry.finish is not None:
        item.predicted, item.position = item.queued + entry.finish.total_seconds(), entry.position


def _parameterized(build: dict[str, Any]) -> bool:
    """A build started with parameters (through `buildWithParameters`), as its JSON shows it."""
    return any(action.get("parameters") for action in build["actions"])


def _stages(deploy: Deploy) -> dict[str, float]:
    """Seconds the deploy spent in each stage, from its state_times."""
    at = {state: _epoch(when) for state, when in (deploy.state_times or {}).items()}
    return {name: ended - began for name, (a, b) in STAGES.items()
            if (began := at.get(a)) is not None and (ended := at.get(b)) is not None}


async def one_run(build: float, speculate: int) -> dict[str, Any]:
    """A fresh sandbox and bot: three deploys one after another, then five queued at once."""
    users = [f"U{n:04d}" for n in range(1, WARMUP + QUEUED + 1)]  # each deploy its own person: DMs never mix up
    # The job's default duration applies to every build of app-master: merges and candidates alike.
    sandbox = start_sandbox(SandboxSpec(users=people(len(users)), step_interval=STEP_SECONDS, build_duration=build))
    config = config_for(sandbox, deploy={"speculate": speculate, "poll": POLL, "tick": TICK})
    bot = await start_bot_on(sandbox, config)
    github = sandbox.github
    try:
        prs = {user: github.create_pr(f"Change by {user}", {f"app/{user.lower()}.py": f"# {user}\n"},
                                      author=user.lower()) for user in users}
        for user in users[:WARMUP]:
            person = asyncio.create_task(_person(sandbox, user))
            await sandbox.slack.command(user, "/deploy", str(prs[user]))
            await person
            await _completed(bot, sandbox, [prs[user]])
        merges_before, builds_before = github.writes["merges"], {b["number"] for b in sandbox.jenkins.builds(JOB)}
        items = [Queued(prs[user], user) for user in users[WARMUP:]]
        people_tasks = [asyncio.create_task(_person(sandbox, item.user)) for item in items]
        for item in items:  # one after another as fast as they are answered: "at once" for minutes-long deploys
            item.requested = time.time()
            await _request(sandbox, bot, item)
        try:
            await asyncio.gather(*people_tasks)
        except AssertionError as exc:
            raise await _stuck(bot, sandbox, [i.pr for i in items], str(exc)) from None
        rows = await _completed(bot, sandbox, [i.pr for i in items])
        merges = github.writes["merges"] - merges_before
        builds = [b for b in sandbox.jenkins.builds(JOB) if b["number"] not in builds_before]
        leftover = [b for b in github.branches() if b.startswith("fatcontroller/")]
    finally:
        await bot.stop()
        sandbox.stop()
    deploys: list[dict[str, Any]] = []
    for item in items:
        deploy = rows[item.pr]
        finished = _epoch(deploy.finished_at) or 0.0
        wait = finished - item.queued
        error = None if item.predicted is None else item.predicted - finished
        deploys.append({"pr": item.pr, "state": deploy.state, "position": item.position,
                        "landed_ahead": deploy.candidate_sha is not None and deploy.candidate_sha == deploy.merge_sha,
                        "wait": wait, "eta_error": error,
                        "eta_share": None if error is None or wait <= 0 else abs(error) / wait,
                        "stages": _stages(deploy), "finished": finished})
    ends = sorted(d["finished"] for d in deploys)
    errors = [abs(d["eta_error"]) for d in deploys if d["eta_error"] is not None]
    shares = [d["eta_share"] for d in deploys if d["eta_share"] is not None]
    stage_names = {name for d in deploys for name in d["stages"]}
    return {
        "speculate": speculate, "build_seconds": build,
        "wall": max(d["finished"] for d in deploys) - items[0].requested,
        "states": {s: sum(d["state"] == s for d in deploys) for s in {d["state"] for d in deploys}},
        "fast_forwards": sum(d["landed_ahead"] for d in deploys), "merges": merges, "builds": len(builds),
        # started through the API (a candidate's, with the commit as a parameter) or by GitHub's push webhook
        "api_builds": sum(_parameterized(b) for b in builds), "push_builds": sum(not _parameterized(b) for b in builds),
        # a push build may still run as the run ends (its duration is 0 until it has)
        "build_range": (min(done) / 1000, max(done) / 1000) if (done := [b["duration"] for b in builds
                                                                           if not b["building"]]) else None,
        # after the first deploy, one finished every this many seconds (what a deploy costs the train then)
        "cadence_p50": statistics.median(b - a for a, b in itertools.pairwise(ends)),
        "leftover_branches": leftover,
        "eta_error_p50": statistics.median(errors) if errors else None,
        "eta_share_p50": statistics.median(shares) if shares else None,
        "stages_p50": {name: statistics.median(d["stages"][name] for d in deploys if name in d["stages"])
                       for name in STAGES if name in stage_names},
        "deploys": deploys,
    }


async def main() -> dict[str, Any]:
    quiet()
    began, load = time.monotonic(), os.getloadavg()[0]  # timings here are CPU-bound: a busy machine slows them
    workloads: dict[str, dict[str, Any]] = {}
    for name, (build, settings) in WORKLOADS.items():
        runs = {str(speculate): await one_run(build, speculate) for speculate in settings}
        walls = {key: run["wall"] for key, run in runs.items()}
        workloads[name] = {"build_seconds": build, "runs": runs, "walls": walls}
    equal, long = workloads["equal"]["walls"], workloads["long builds"]["walls"]
    shares = [run["eta_share_p50"] for w in workloads.values() for run in w["runs"].values()]
    return {
        "step_seconds": STEP_SECONDS, "think": THINK, "rest": REST, "poll": POLL, "tick": TICK, "warmup": WARMUP,
        "queued": QUEUED, "targets": TARGETS, "workloads": workloads,
        "ratio_0_1": equal["0"] / equal["1"], "ratio_0_2": equal["0"] / equal["2"],
        "long_2_beats_1": long["2"] < long["1"], "long_ratio_1_2": long["1"] / long["2"],
        "eta_share_worst": max((s for s in shares if s is not None), default=None),
        "seconds": time.monotonic() - began, "load": (load, os.getloadavg()[0]),
    }


def report(figures: dict[str, Any]) -> str:
    lines = [f"{figures['queued']} deploys queued at once after {figures['warmup']} one after another; ECS step "
             f"{figures['step_seconds']:g}s, gate {figures['think']:g}s of thinking, Done at once (canary + gate + "
             f"rollout ≈ {figures['rest']:g}s), poll {figures['poll']}, tick {figures['tick']}; "
             f"{figures['seconds']:.0f}s in all, load average {figures['load'][0]:.1f} → {figures['load'][1]:.1f}"]
    for name, workload in figures["workloads"].items():
        lines.append(f"{name}: every build {workload['build_seconds']:g}s")
        for key, run in workload["runs"].items():
            stages = " ".join(f"{stage} {seconds:.2f}" for stage, seconds in run["stages_p50"].items())
            eta = ("n/a" if run["eta_share_p50"] is None else
                   f"{run['eta_error_p50']:.2f}s = {run['eta_share_p50']:.0%} of the wait")
            durations = "" if run["build_range"] is None else "{:.2f}-{:.2f}s".format(*run["build_range"])
            lines.append(f"  speculate {key}: wall {run['wall']:6.2f}s  ended {run['states']}  fast-forwards "
                         f"{run['fast_forwards']}/{len(run['deploys'])}  GitHub merges {run['merges']}  ETA error p50 "
                         f"{eta}")
            lines.append(f"      app-master builds {run['builds']} ({run['api_builds']} through the API, "
                         f"{run['push_builds']} by push webhooks), each {durations}; after the first, a deploy "
                         f"finished every {run['cadence_p50']:.2f}s (p50)")
            lines.append(f"      stage p50 s: {stages}")
            lines.append("      per deploy (#PR, place when queued, wait s, predicted - actual finish s): " + ", ".join(
                f"#{d['pr']} {d['position']} {d['wait']:.1f} {d['eta_error']:+.1f}"
                if d["eta_error"] is not None else f"#{d['pr']} n/a" for d in run["deploys"]))
            if run["leftover_branches"]:
                lines.append(f"      candidate branches left: {run['leftover_branches']}")
    lines.append(f"equal builds: wall(0)/wall(1) {figures['ratio_0_1']:.2f} (target ≥ {figures['targets']['ratio']:g}, "
                 f"limit 1.67), wall(0)/wall(2) {figures['ratio_0_2']:.2f}")
    lines.append(f"long builds: wall(1)/wall(2) {figures['long_ratio_1_2']:.2f} (speculate 2 beats 1: "
                 f"{'yes' if figures['long_2_beats_1'] else 'no'})")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main())
    print(report(figures))
    write_json(args.json, figures)
