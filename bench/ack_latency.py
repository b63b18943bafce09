"""Ack latency under load: 50 people typing commands and clicking buttons while deploys are mid-flight and
every outside system (GitHub, Jenkins, AWS) takes 200 ms per call.

Runs the real bot in-process against the sandbox and reports the latency of every acknowledgement
as the Slack emulator measured it (envelope sent → ack received), p50 / p99 / max, by envelope type:
for the opening burst (everyone queues a deploy at the same instant), then for the rest of the run.
Target: p99 under 100 ms (Slack's limit is 3 s). Bounded: a fixed number of actions per person,
then it stops by itself (about half a minute).

After a short run thrown away (the first in a process fills its caches), the run is played, then played again
with 10 browsers on the web dashboard (DESIGN §10), each as its page's
script does it: its JSON every second, and the page itself again whenever that changed (taken here as every
time, the worst case): the acks must not slow down (issue 17: ack p99 unchanged while browsers poll).

    .venv/bin/python -m bench.ack_latency [--people 50] [--rounds 20] [--latency 0.2] [--browsers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import defaultdict
from typing import Any

import aiohttp

from bench.common import config_for, free_port, people, quiet, spread, start_bot_on, start_sandbox, write_json
from bot.metrics import Metrics
from sandbox.slack import Ack, Message
from sandbox.world import Sandbox, SandboxSpec

COMMANDS = ("queue", "help", "history", "stats", "")  # "" opens the form
# A dashboard page and the JSON its script polls (web/static/live.js); a deploy's page is filled in per browser.
PAGES = (("/", "/api/trains"), ("/history", "/api/history"), ("/stats", "/api/stats"),
         ("/deploys/{id}", "/api/deploys/{id}"))
POLL_SECONDS = 1.0  # the pages' own poll (data-poll-ms)


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


async def browser(base: str, page: str, api: str, done: asyncio.Event) -> list[float]:
    """One browser on a dashboard page: its JSON every POLL_SECONDS, the page again each time; each request's
    time (ms)."""
    took: list[float] = []
    async with aiohttp.ClientSession(base) as session:
        while not done.is_set():
            for path in (api, page):
                began = time.perf_counter()
                async with session.get(path) as answer:
                    await answer.read()
                took.append((time.perf_counter() - began) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), POLL_SECONDS)
    return took


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


def by_type(acks: list[Ack]) -> dict[str, dict[str, float]]:
    """count, p50, p99 and max of the ack latencies (ms), by envelope type and for all of them."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for ack in acks:
        latencies[ack.type].append(ack.latency_ms)
    return {name: spread(values) for name, values in
            [*sorted(latencies.items()), ("all", [a.latency_ms for a in acks])] if values}


def table(figures: dict[str, dict[str, float]]) -> str:
    lines = [f"{'envelope':<16}{'count':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
    lines += [f"{name:<16}{v['count']:>7}{v['p50']:>10.1f}{v['p99']:>10.1f}{v['max']:>10.1f}"
              for name, v in figures.items()]
    return "\n".join(lines)


async def one_run(people_count: int, rounds: int, latency: float, seed: int, browsers: int) -> dict[str, Any]:
    """The run, with `browsers` browsers polling the dashboard throughout (0: none)."""
    users = people(people_count)
    sandbox = start_sandbox(SandboxSpec(users=users, step_interval=0.05, build_duration=0.5))
    port = free_port()
    bot = await start_bot_on(sandbox, config_for(sandbox, deploy={"tick": "500ms"}), FATCONTROLLER_HTTP_PORT=port)
    watching = asyncio.Event()
    pages = [PAGES[n % len(PAGES)] for n in range(browsers)]
    polling = [asyncio.create_task(browser(f"http://127.0.0.1:{port}", page.format(id=1 + n % 5),
                                           api.format(id=1 + n % 5), watching))
               for n, (page, api) in enumerate(pages)]
    try:
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
        in_flight = [d.deploy for d in (await bot.train().deploys.queue()).entries if d.position == 0]
        finished = await bot.train().deploys.counts()
    finally:
        watching.set()
        requests = [ms for task in await asyncio.gather(*polling, return_exceptions=True)
                    if isinstance(task, list) for ms in task]
        await bot.stop()
        sandbox.stop()
    if browsers and len(requests) < browsers:
        raise RuntimeError("the browsers could not poll the dashboard")
    acks = sandbox.slack.acks
    return {
        "browsers": browsers, "dashboard_requests": spread(requests) if requests else None,
        "people": people_count, "rounds": rounds, "latency_ms": latency * 1000, "presses": presses, "took": took,
        "in_flight": ", ".join(f"#{d.pr_number} {d.state}" for d in in_flight) or "none",
        "states": {s: n for s, n in finished.items() if n},
        "burst": by_type(acks[:burst]), "after": by_type(acks[burst:]), "all": by_type(acks),
        "inside": measured_inside,
    }


async def main(people_count: int, rounds: int, latency: float, seed: int, browsers: int) -> dict[str, Any]:
    """The run without browsers, then the same run (same seed) with `browsers` polling the dashboard, both after a
    short run thrown away: the first run in a process pays for its caches (SQL statements, service models), and
    the two compared must not differ by that."""
    quiet()
    await one_run(people_count, 2, latency, seed, 0)
    figures = await one_run(people_count, rounds, latency, seed, 0)
    figures["with_browsers"] = await one_run(people_count, rounds, latency, seed, browsers)
    return figures


def report(figures: dict[str, Any]) -> str:
    polled = figures["with_browsers"]
    served = polled["dashboard_requests"]
    asked = "no request" if served is None else (f"{served['count']} page and JSON requests, p50 {served['p50']:.0f} "
                                                 f"ms, p99 {served['p99']:.0f} ms, max {served['max']:.0f} ms")
    return "\n".join([
        *_run_report(figures),
        f"\nthe same run with {polled['browsers']} browsers polling the dashboard ({asked})",
        table(polled["all"]),
    ])


def _run_report(figures: dict[str, Any]) -> list[str]:
    return [
        f"{figures['people']} people, {figures['rounds']} actions each after queuing a deploy, {figures['presses']} "
        f"gate buttons pressed by requesters, outside systems +{figures['latency_ms']:.0f} ms per call; "
        f"{figures['took']:.1f}s; deploy in flight at the end: {figures['in_flight']}; deploys by state: "
        f"{', '.join(f'{s} {n}' for s, n in figures['states'].items())}",
        f"\nthe opening burst: {figures['people']} `/deploy <pr>` sent at the same instant",
        table(figures["burst"]),
        "\nthen, with deploys mid-flight: commands, Home tabs and clicks",
        table(figures["after"]),
        "\neverything",
        table(figures["all"]),
        "\nthe same acks timed inside the bot (without the emulator's side of the socket)",
        figures["inside"],
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every outside call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--browsers", type=int, default=10, help="browsers polling the dashboard in the second run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.people, args.rounds, args.latency, args.seed, args.browsers))
    print(report(figures))
    write_json(args.json, figures)
