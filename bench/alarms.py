"""Canary analysis on the real bot (DESIGN §9): how soon an alarm going to ALARM is acted on, against
`deploy.poll` (production's default, 5 s), at the canary gate and during the rolling update.

Each deploy is queued and built; at its gate (or, for the rollout phase, once its rolling update has started) the
alarm it is watched by is set to ALARM at a random moment of the poll. The reaction is from that moment to the
product's first move back in ECS (a canary deleted or scaled down, a service restored), as the AWS emulator
received it. The rollout phase holds ECS in its alarm bake, so the product, not ECS, is what reacts.

    .venv/bin/python -m bench.alarms [--gate 8] [--rollout 4] [--poll 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
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

ALARM = "app-5xx-rate"
MOVES_BACK = ("ecs:DeleteService", "ecs:UpdateService")  # writes the product makes to undo canaries or a rollout
STEP_SECONDS = 0.1


def _moved_back(sandbox: Sandbox, after: float) -> float | None:
    return next((at for at, op in list(sandbox.aws.received) if op in MOVES_BACK and at >= after), None)


def _started_rollout(sandbox: Sandbox, after: float) -> bool:
    return any(op == "ecs:UpdateService" and at >= after for at, op in list(sandbox.aws.received))


async def one_deploy(sandbox: Sandbox, bot: Bot, user: str, phase: str, delay: float) -> dict[str, Any]:
    """A deploy whose alarm goes off `delay` seconds into its gate (or its rollout): when, and when the product
    first moved back."""
    slack = sandbox.slack
    pr = sandbox.github.create_pr(f"Change by {user}", {f"app/{user}.py": f"# {user}\n"}, author=user.lower())
    await slack.command(user, "/deploy", str(pr))
    gate = await slack.wait_for(lambda: dm_with(sandbox, user, "Proceed"), 60, what="the Proceed DM")
    if phase == "rollout":
        proceeded = time.time()
        await slack.click(user, "Proceed", message=gate)
        await slack.wait_for(lambda: _started_rollout(sandbox, proceeded) or None, 60, what="the rolling update")
    await asyncio.sleep(delay)
    fired = time.time()
    sandbox.aws.set_alarm(ALARM, "ALARM", "Threshold Crossed: 1 datapoint [12.0] > 5.0")
    moved = await slack.wait_for(lambda: _moved_back(sandbox, fired), 60, what="the rollback")
    deadline = time.monotonic() + 60
    while (deploy := await finished_deploy(bot, pr)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the deploy of #{pr} did not finish")
        await asyncio.sleep(0.05)
    sandbox.aws.set_alarm(ALARM, "OK", "Threshold no longer crossed")
    return {"pr": pr, "phase": phase, "state": deploy.state, "reaction": moved - fired,
            "reason": deploy.outcome_reason}


async def main(gate: int, rollout: int, poll: float, seed: int = 1) -> dict[str, Any]:
    quiet()
    count = gate + rollout
    sandbox = start_sandbox(SandboxSpec(users=people(count), step_interval=STEP_SECONDS))
    sandbox.aws.create_alarm(ALARM)
    sandbox.aws.alarm_bake_steps = 10_000  # ECS bakes a rollout it watches: the product is the one to react
    config = config_for(sandbox, deploy={"poll": f"{poll:g}s", "alarms": [ALARM]})
    bot = await start_bot_on(sandbox, config)
    rng = random.Random(seed)
    runs = []
    try:
        for n in range(1, count + 1):
            phase = "gate" if n <= gate else "rollout"
            runs.append(await one_deploy(sandbox, bot, f"U{n:04d}", phase, rng.uniform(0, poll)))
    finally:
        await bot.stop()
        sandbox.stop()
    return {
        "poll": poll, "tick": config.deploy.tick.total_seconds(),
        "states": sorted({run["state"] for run in runs}),
        "reasons_name_the_alarm": all(ALARM in (run["reason"] or "") for run in runs),
        "reaction": {phase: spread([r["reaction"] for r in runs if r["phase"] == phase])
                     for phase in ("gate", "rollout") if any(r["phase"] == phase for r in runs)},
    }


def report(figures: dict[str, Any]) -> str:
    lines = [f"alarm → ALARM, acted on (deploy.poll {figures['poll']:g}s, tick {figures['tick']:g}s); ended: "
             f"{figures['states']}, every reason names the alarm: {figures['reasons_name_the_alarm']}"]
    for phase, values in figures["reaction"].items():
        lines.append(f"{phase:<8} ({values['count']}) p50 {values['p50']:5.2f}s  max {values['max']:5.2f}s")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", type=int, default=8, help="deploys whose alarm goes off at the canary gate")
    parser.add_argument("--rollout", type=int, default=4, help="deploys whose alarm goes off while rolling out")
    parser.add_argument("--poll", type=float, default=5.0, help="deploy.poll, in seconds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.gate, args.rollout, args.poll))
    print(report(figures))
    write_json(args.json, figures)
