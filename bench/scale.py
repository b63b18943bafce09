"""Scale: a database holding 10,000 finished deploys (with their audit trail), 200 queued deploys behind one
in flight, and 300 peas; how long one engine tick with nothing due takes, and each view people open:
`/deploy queue`, `/deploy history`, `/deploy stats`, `/pea`, the App Home; and the process's peak memory.
With `--trains N` the deploys, the queue and the peas are shared out among N trains in one engine (each with
its own deploy in flight): the tick is every train's at once, and `/deploy queue (all)`, `/pea` and the App
Home cover every train.

The database is seeded directly with SQLAlchemy (the models of `storage.models`); the views are the same
functions the Slack handlers call, timed without Slack's side. Run it in a process of its own: the peak
memory is the process's.

    .venv/bin/python -m bench.scale [--finished 10000] [--queued 200] [--peas 300] [--trains 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bench.common import config_for, quiet, write_json
from bot.app import settle_memory
from bot.deploy.answers import history_text, run_subcommand, stats_text
from bot.grammar import PeaCommand, Subcommand
from bot.home import HomePublisher
from bot.metrics import Metrics
from bot.pea.answers import run_listing
from bot.surface import Surface
from bot.trains import TrainFlows
from bot.wiring import build_outside
from flows.config import Settings, TrainConfig, train_name_of
from flows.deploy.figures import figures_of
from flows.deploy.machine import State
from flows.engine import Engine, Lane, TrainSetup
from sandbox.world import Sandbox, SandboxSpec
from storage.clock import utcnow
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.models import AuditEvent, Deploy, Pea, Train
from storage.slack import SlackStore

REPEATS = 20
TRAIN = train_name_of("acme/app")  # the sandbox's repository: the train of `config_for`
DAYS = 28  # the finished deploys fall inside `/deploy stats`' window: the worst case for it
USERS = [f"U{n:04d}" for n in range(1, 201)]
FINISHED = {State.COMPLETED: 0.85, State.ROLLED_BACK: 0.07, State.FAILED: 0.03, State.CANCELLED: 0.05}
LEG = ("merging", "building", "canarying", "canary_check", "rolling_out", "awaiting_confirmation")


def train_names(count: int) -> list[str]:
    """The trains of a run: the sandbox's own for one, else train-01, train-02, ..."""
    return [TRAIN] if count == 1 else [f"train-{n:02d}" for n in range(1, count + 1)]


def _finished_deploy(n: int, rng: random.Random, now: Any, train: str = TRAIN) -> dict[str, Any]:
    state = rng.choices(list(FINISHED), weights=list(FINISHED.values()))[0]
    created = now - timedelta(days=DAYS) + timedelta(seconds=n * DAYS * 86400 / 10_000)
    started = created + timedelta(minutes=rng.uniform(0, 30))
    times, at = {}, started
    entered = {}
    for leg in LEG:
        times[leg] = at.isoformat()
        entered[leg] = at
        at += timedelta(minutes=rng.uniform(0.5, 4))
    rolling_back_at = None
    if state is State.ROLLED_BACK:
        times["rolling_back"] = at.isoformat()
        rolling_back_at = at
        at += timedelta(minutes=2)
    times[state.value] = at.isoformat()
    sha = f"{rng.getrandbits(160):040x}"
    row = {"train_id": train, "state": state.value, "requester": rng.choice(USERS), "pr_number": 1000 + n,
            "pr_title": f"Change number {n}", "pr_url": f"https://github.com/acme/{train}/pull/{1000 + n}",
            "pr_author": "dev", "pr_head_sha": sha, "pr_created_at": created - timedelta(hours=5),
            "processes": ["web", "worker"], "queue_seq": float(n), "merge_sha": sha,
            "build_url": f"https://jenkins/job/app-master/{n}/", "image": f"app:{sha}",
            "created_at": created, "updated_at": at, "state_entered_at": at, "started_at": started,
            "finished_at": at, "state_times": times, "rolling_back_at": rolling_back_at,
            "in_production_at": entered.get(State.AWAITING_CONFIRMATION.value),
            "targets": {p: {"service": f"app-{p}", "old_td": f"arn:td/app-{p}:{n}", "new_td": f"arn:td/app-{p}:{n + 1}"}
                        for p in ("web", "worker")}}
    return row | figures_of(row)  # a bulk insert passes by the mapper hook that keeps them


async def seed(sessions: Any, finished: int, queued: int, peas: list[str], trains: int = 1) -> None:
    rng = random.Random(1)
    now = utcnow()
    names = train_names(trains)
    async with sessions() as session, session.begin():
        session.add_all([Train(id=name, next_seq=finished + queued + 2) for name in names])
        rows = [_finished_deploy(n, rng, now, names[n % trains]) for n in range(finished)]
        await session.execute(sa.insert(Deploy), rows)
        audit = [{"at": now - timedelta(days=DAYS) + timedelta(seconds=n * DAYS * 86400 / finished),
                  "actor": "fatcontroller", "action": f"transition:{leg}", "deploy_id": n + 1,
                  "train_id": names[n % trains], "detail": f"{leg}"} for n in range(finished) for leg in LEG]
        await session.execute(sa.insert(AuditEvent), audit)
        for t, name in enumerate(names):  # deploy `finished + 1 + t` is the train's in flight
            in_flight = {**_finished_deploy(finished + t, rng, now, name), "state": State.CANARY_CHECK.value,
                         "finished_at": None, "state_entered_at": now, "created_at": now - timedelta(minutes=20),
                         "started_at": now - timedelta(minutes=10), "due_at": now + timedelta(minutes=10)}
            await session.execute(sa.insert(Deploy), [in_flight])
            await session.execute(sa.update(Train).where(Train.id == name).values(in_flight_id=finished + 1 + t))
        waiting = [{**_finished_deploy(finished + trains + n, rng, now, names[n % trains]),
                    "state": State.QUEUED.value, "finished_at": None, "started_at": None, "state_times": {},
                    "targets": {}, "merge_sha": None, "created_at": now - timedelta(minutes=queued - n),
                    "state_entered_at": now, "requester": USERS[n % len(USERS)]} for n in range(queued)]
        await session.execute(sa.insert(Deploy), waiting)
        held = [{"name": name, "state": "up", "holder": USERS[i % len(USERS)], "pr_number": 500 + i,
                 "pr_title": f"Preview {i}", "head_sha": f"{i:040x}", "url": f"https://{name}.dev.acme.com",
                 "claimed_at": now - timedelta(hours=1), "claim_expires_at": now + timedelta(hours=7),
                 "state_entered_at": now - timedelta(hours=1), "checked_at": now,
                 "task_definitions": {"web": f"arn:td/pea-{name}-web:1"},
                 "due_at": now + timedelta(minutes=5 + i % 60)} for i, name in enumerate(peas) if i % 2 == 0]
        free = [{"name": name, "state": "free"} for i, name in enumerate(peas) if i % 2]
        await session.execute(sa.insert(Pea), held + free)


def _seed_database(url: str, finished: int, queued: int, peas: list[str], trains: int) -> None:
    async def run() -> None:
        database = make_engine(url)
        await upgrade(database)
        await seed(make_sessionmaker(database), finished, queued, peas, trains)
        await database.dispose()

    asyncio.run(run())


async def timed(what: Callable[[], Awaitable[Any]], repeats: int = REPEATS) -> dict[str, float]:
    """Median and max milliseconds of `repeats` runs (after one warm-up run)."""
    await what()
    took = []
    for _ in range(repeats):
        began = time.perf_counter()
        await what()
        took.append((time.perf_counter() - began) * 1000)
    return {"p50": statistics.median(took), "max": max(took)}


def scale_configs(sandbox: Sandbox, peas: list[str], trains: int) -> list[TrainConfig]:
    """The trains' configurations, the peas shared out among them in order."""
    # A 1 h tick: only the ticks this bench runs, the scheduler's own stay out of the way.
    names, share = train_names(trains), -(-len(peas) // trains)
    return [config_for(sandbox, deploy={"tick": "1h"}, **({"github": {"repo": f"acme/{name}"}} if trains > 1 else {}),
                       peas={"cluster": "peas", "names": peas[t * share:(t + 1) * share],
                             "url": "https://{pea}.dev.acme.com"})
            for t, name in enumerate(names)]


async def main(finished: int, queued: int, peas_count: int, trains: int = 1) -> dict[str, Any]:
    quiet()
    # Not started: the facades point at closed ports, as nothing here should call an outside system.
    sandbox = Sandbox(SandboxSpec())
    peas = [f"pea-{n}" for n in range(peas_count)]
    configs = scale_configs(sandbox, peas, trains)
    workdir = Path(tempfile.mkdtemp(prefix="fc-scale-"))
    url = f"sqlite+aiosqlite:///{workdir / 'scale.db'}"
    began = time.perf_counter()
    # Seeded by a process of its own: the rows built to insert them must not count in this one's memory.
    seeder = multiprocessing.get_context("spawn").Process(target=_seed_database,
                                                          args=(url, finished, queued, peas, trains))
    seeder.start()
    seeder.join()
    if seeder.exitcode != 0:
        raise RuntimeError(f"seeding the database failed (exit code {seeder.exitcode})")
    seeded = time.perf_counter() - began
    database = make_engine(url)
    sessions = make_sessionmaker(database)
    settings = Settings(**sandbox.env(), DATABASE_URL=url, FATCONTROLLER_HTTP_PORT=0)
    engine = Engine([TrainSetup(c, build_outside(c, settings, Metrics())) for c in configs], sessions)
    flows = {name: TrainFlows(lane.config, lane.deploys, lane.peas) for name, lane in engine.lanes.items()}
    commands = configs[0].slack.commands
    home = HomePublisher(AsyncWebClient(base_url=sandbox.slack.api_url), list(flows.values()), commands,
                         SlackStore(sessions))
    surface = Surface(flows, commands, home)
    lane = next(iter(engine.lanes.values()))
    viewer = USERS[0]  # holds peas, has a queued deploy and a history
    figures: dict[str, Any] = {"finished": finished, "queued": queued, "peas": peas_count, "trains": trains,
                               "seed_seconds": seeded}
    try:
        settle_memory()  # as `start_bot` does once everything is loaded
        engine.start()  # with its scheduler, so that a tick also brings the next one forward as in production
        await asyncio.sleep(0.2)
        for _ in range(500):  # the scheduler's first ticks must be over, or the timed ones would return at once
            if all(lane._tick_task is None for lane in engine.lanes.values()):
                break
            await asyncio.sleep(0.01)
        figures["tick"] = await timed(engine.tick)
        if trains > 1:
            figures["tick (one train)"] = await timed(lane.tick)
        figures["pea pass"] = await timed(lane.pea_worker.pass_once)
        figures["/deploy queue"] = await timed(
            lambda: run_subcommand(surface, Subcommand("queue", train=lane.name), viewer, None))
        if trains > 1:
            figures["/deploy queue (all)"] = await timed(
                lambda: run_subcommand(surface, Subcommand("queue"), viewer, None))
        figures["/deploy history"] = await timed(lambda: history_text(lane.deploys))
        figures["/deploy stats"] = await timed(lambda: _stats(lane))
        figures["/pea"] = await timed(lambda: run_listing(list(flows.values()), PeaCommand("list"), commands.pea))
        figures["App Home"] = await timed(lambda: _home(home, viewer))
        figures["steps run"] = engine.steps_run
    finally:
        await engine.stop()
        await database.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    figures["peak memory MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


async def _stats(lane: Lane) -> str:
    return stats_text(await lane.deploys.stats())


async def _home(home: HomePublisher, user: str) -> list[dict[str, Any]]:
    return await home.render(user, await home.queues())


def report(figures: dict[str, Any]) -> str:
    trains = figures.get("trains", 1)
    among = f" among {trains} trains" if trains > 1 else ""
    lines = [f"{figures['finished']} finished deploys, {figures['queued']} queued, {figures['peas']} peas{among} "
             f"(seeded in {figures['seed_seconds']:.1f}s)"]
    for name, value in figures.items():
        if isinstance(value, dict):
            lines.append(f"{name:<18} p50 {value['p50']:8.1f} ms   max {value['max']:8.1f} ms")
    lines.append(f"peak memory        {figures['peak memory MB']:.0f} MB; steps run {figures['steps run']}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--peas", type=int, default=300)
    parser.add_argument("--trains", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.finished, args.queued, args.peas, args.trains))
    print(report(figures))
    write_json(args.json, figures)
