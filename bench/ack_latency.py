"""Ack latency under load: 50 people typing commands and clicking buttons while deploys are mid-flight and
every outside system (GitHub, Jenkins, AWS) takes 200 ms per call.

Runs the real bot in-process against the sandbox and reports the latency of every acknowledgement
as the Slack emulator measured it (envelope sent → ack received), p50 / p99 / max, by envelope type:
for the opening burst (everyone queues a deploy at the same instant), then for the rest of the run.
Target: p99 under 100 ms (Slack's limit is 3 s). Bounded: a fixed number of actions per person,
then it stops by itself (about half a minute).

    .venv/bin/python -m bench.ack_latency [--people 50] [--rounds 20] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bot.app import start_bot
from bot.metrics import Metrics
from flows.config import AppConfig, Settings
from flows.deploy.stats import count_by_state
from sandbox.slack import Ack, Message
from sandbox.world import Sandbox, SandboxSpec

ADMIN, EMERGENCY = "U0ADMIN", "U0EMERGENCY"
COMMANDS = ("queue", "help", "history", "stats", "")  # "" opens the form


def config_for(sandbox: Sandbox) -> AppConfig:
    spec = sandbox.spec
    return AppConfig.model_validate({
        "slack": {"channel": spec.channel},
        "github": {"repo": spec.repo, "base_branch": spec.base_branch},
        "jenkins": {"job": "app-master", "pr_job": "app-pr", "build_timeout": "60s"},
        "image": sandbox.image_template,
        "ecs": {"cluster": spec.cluster, "region": "eu-west-1"},
        "processes": {"web": {"service": "app-web", "container": "app"},
                      "worker": {"service": "app-worker", "container": "app"}},
        "deploy": {"batch_percent": 50, "rollout_timeout": "120s", "tick": "500ms"},
        "permissions": {"emergency": [EMERGENCY], "admins": [ADMIN]},
    })


def card_of(sandbox: Sandbox, pr: int) -> Message | None:
    return next((m for m in sandbox.slack.messages(sandbox.spec.channel)
                 if m.thread_ts is None and m.text.startswith(f"#{pr} ")), None)


async def person(sandbox: Sandbox, user: str, others: list[int], rounds: int, rng: random.Random) -> None:
    """One developer with a deploy on the train: looks at the train, opens the Home tab, presses buttons."""
    slack = sandbox.slack
    for _ in range(rounds):
        await asyncio.sleep(rng.uniform(0.2, 1.2))
        roll = rng.random()
        if roll < 0.45:
            await slack.command(user, "/deploy", rng.choice(COMMANDS))
        elif roll < 0.6:
            await slack.open_home(user)
        else:  # the first button of someone else's card: refused, not theirs
            card = card_of(sandbox, rng.choice(others))
            if card is not None and card.buttons:
                await slack.click(user, card.buttons[0], message=card)


async def requesters(sandbox: Sandbox, users: list[str], done: asyncio.Event) -> int:
    """Whoever's deploy waits for them presses its first button (Proceed, Done, Retry build) from their DM,
    so deploys keep moving through every stage while the others type; how many presses."""
    presses = 0
    while not done.is_set():
        for user in users:
            waiting = [m for m in sandbox.slack.dms(user) if m.buttons]
            if waiting:
                await sandbox.slack.click(user, waiting[-1].buttons[0], message=waiting[-1])
                presses += 1
        await asyncio.sleep(0.2)
    return presses


def inside_the_bot(metrics: Metrics) -> str:
    """The bot's own view (receipt of the envelope → ack sent): upper bounds of the histogram bucket that
    holds the 50th and 99th percentile, per envelope type."""
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in next(iter(metrics.ack_seconds.collect())).samples:
        if sample.name.endswith("_bucket"):
            buckets[sample.labels["type"]].append((float(sample.labels["le"]), sample.value))
    lines = [f"{'envelope':<16}{'count':>7}{'p50 ≤ ms':>10}{'p99 ≤ ms':>10}"]
    for kind, counts in sorted(buckets.items()):
        total = counts[-1][1]

        def bound(share: float, counts: list[tuple[float, float]] = counts, total: float = total) -> str:
            le = next(le for le, count in counts if count >= share * total)
            return "inf" if le == float("inf") else f"{le * 1000:.0f}"

        lines.append(f"{kind:<16}{int(total):>7}{bound(0.5):>10}{bound(0.99):>10}")
    return "\n".join(lines)


def summarise(acks: list[Ack]) -> str:
    latencies: dict[str, list[float]] = defaultdict(list)
    for ack in acks:
        latencies[ack.type].append(ack.latency_ms)
    lines = [f"{'envelope':<16}{'count':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
    everything = [v for values in latencies.values() for v in values]
    for name, values in [*sorted(latencies.items()), ("all", everything)]:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        lines.append(f"{name:<16}{len(values):>7}{statistics.median(values):>10.1f}{p99:>10.1f}{max(values):>10.1f}")
    return "\n".join(lines)


async def main(people: int, rounds: int, latency: float, seed: int) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)  # the emulators are on 127.0.0.1
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # connections cut while the emulators stop
    users = {f"U{n:04d}": f"dev{n}" for n in range(1, people + 1)} | {ADMIN: "admin", EMERGENCY: "emergency"}
    sandbox = Sandbox(SandboxSpec(users=users, step_interval=0.05, build_duration=0.5)).start()
    os.environ.update({k: v for k, v in sandbox.env().items() if k.startswith("AWS_")})
    workdir = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    settings = Settings(**sandbox.env(), DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
                        FATCONTROLLER_HTTP_PORT=0)
    bot = await start_bot(config_for(sandbox), settings)
    try:
        await sandbox.slack.wait_connected()
        prs = {user: sandbox.github.create_pr(f"Change by {name}", {f"app/{name}.py": f"# {name}\n"}, author=name)
               for user, name in users.items() if user.startswith("U0") and user[2:].isdigit()}
        for emulator in (sandbox.github, sandbox.jenkins, sandbox.aws):
            emulator.faults.latency(latency)
        rng = random.Random(seed)
        started = time.monotonic()
        # Everyone queues a deploy at the same instant: the worst burst, reported on its own.
        await asyncio.gather(*(sandbox.slack.command(user, "/deploy", str(pr)) for user, pr in prs.items()))
        burst = len(sandbox.slack.acks)
        done = asyncio.Event()
        pressing = asyncio.create_task(requesters(sandbox, list(prs), done))
        await asyncio.gather(*(person(sandbox, user, [p for p in prs.values() if p != pr], rounds,
                                      random.Random(rng.random()))
                               for user, pr in prs.items()))
        done.set()
        presses = await pressing
        took = time.monotonic() - started
        measured_inside = inside_the_bot(bot.metrics)
        in_flight = [d.deploy for d in await bot.flows.queue() if d.position == 0]
        finished = await count_by_state(bot.engine.sessions)
    finally:
        await bot.stop()
        sandbox.stop()
    acks = sandbox.slack.acks
    print(f"{people} people, {rounds} actions each after queuing a deploy, {presses} gate buttons pressed by "
          f"requesters, outside systems +{latency * 1000:.0f} ms per call; {took:.1f}s; deploy in flight at the end: "
          f"{', '.join(f'#{d.pr_number} {d.state}' for d in in_flight) or 'none'}; "
          f"deploys by state: {', '.join(f'{s} {n}' for s, n in finished.items() if n)}")
    print(f"\nthe opening burst: {people} `/deploy <pr>` sent at the same instant")
    print(summarise(acks[:burst]))
    print("\nthen, with deploys mid-flight: commands, Home tabs and clicks")
    print(summarise(acks[burst:]))
    print("\neverything")
    print(summarise(acks))
    print("\nthe same acks timed inside the bot (without the emulator's side of the socket)")
    print(measured_inside)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every outside call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.people, args.rounds, args.latency, args.seed))
