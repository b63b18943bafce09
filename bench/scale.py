"""Scale: a database holding 10,000 finished deploys (with their audit trail), 200 queued deploys behind one
in flight, and 300 peas; how long one engine tick with nothing due takes, and each view people open:
`/deploy queue`, `/deploy history`, `/deploy stats`, `/pea`, the App Home; and the process's peak memory.

The database is seeded directly with SQLAlchemy (the models of `storage.models`); the views are the same
functions the Slack handlers call, timed without Slack's side. Run it in a process of its own: the peak
memory is the process's.

    .venv/bin/python -m bench.scale [--finished 10000] [--queued 200] [--peas 300] [--json PATH]
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
from bot.deploy.answers import history_text, queue_text, stats_text
from bot.home import HomePublisher
from bot.metrics import Metrics
from bot.pea.cards import list_text
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


def _finished_deploy(n: int, rng: random.Random, now: Any) -> dict[str, Any]:
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
    row = {"train_id": TRAIN, "state": state.value, "requester": rng.choice(USERS), "pr_number": 1000 + n,
            "pr_title": f"Change number {n}", "pr_url": f"https://github.com/acme/app/pull/{1000 + n}",
            "pr_author": "dev", "pr_head_sha": sha, "pr_created_at": created - timedelta(hours=5),
            "processes": ["web", "worker"], "queue_seq": float(n), "merge_sha": sha,
            "build_url": f"https://jenkins/job/app-master/{n}/", "image": f"app:{sha}",
            "created_at": created, "updated_at": at, "state_entered_at": at, "started_at": started,
            "finished_at": at, "state_times": times, "rolling_back_at": rolling_back_at,
            "in_production_at": entered.get(State.AWAITING_CONFIRMATION.value),
            "targets": {p: {"service": f"app-{p}", "old_td": f"arn:td/app-{p}:{n}", "new_td": f"arn:td/app-{p}:{n + 1}"}
                        for p in ("web", "worker")}}
    return row | figures_of(row)  # a bulk insert passes by the mapper hook that keeps them


async def seed(sessions: Any, finished: int, queued: int, peas: list[str]) -> None:
    rng = random.Random(1)
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(Train(id=TRAIN, next_seq=finished + queued + 2))
        rows = [_finished_deploy(n, rng, now) for n in range(finished)]
        await session.execute(sa.insert(Deploy), rows)
        audit = [{"at": now - timedelta(days=DAYS) + timedelta(seconds=n * DAYS * 86400 / finished),
                  "actor": "fatcontroller", "action": f"transition:{leg}", "deploy_id": n + 1,
                  "detail": f"{leg}"} for n in range(finished) for leg in LEG]
        await session.execute(sa.insert(AuditEvent), audit)
        in_flight = {**_finished_deploy(finished, rng, now), "state": State.CANARY_CHECK.value, "finished_at": None,
                     "state_entered_at": now, "created_at": now - timedelta(minutes=20),
                     "started_at": now - timedelta(minutes=10), "due_at": now + timedelta(minutes=10)}
        await session.execute(sa.insert(Deploy), [in_flight])
        waiting = [{**_finished_deploy(finished + 1 + n, rng, now), "state": State.QUEUED.value, "finished_at": None,
                    "started_at": None, "state_times": {}, "targets": {}, "merge_sha": None,
                    "created_at": now - timedelta(minutes=queued - n), "state_entered_at": now,
                    "requester": USERS[n % len(USERS)]} for n in range(queued)]
        await session.execute(sa.insert(Deploy), waiting)
        await session.execute(sa.update(Train).where(Train.id == TRAIN).values(in_flight_id=finished + 1))
        held = [{"name": name, "state": "up", "holder": USERS[i % len(USERS)], "pr_number": 500 + i,
                 "pr_title": f"Preview {i}", "head_sha": f"{i:040x}", "url": f"https://{name}.dev.acme.com",
                 "claimed_at": now - timedelta(hours=1), "claim_expires_at": now + timedelta(hours=7),
                 "state_entered_at": now - timedelta(hours=1), "checked_at": now,
                 "task_definitions": {"web": f"arn:td/pea-{name}-web:1"},
                 "due_at": now + timedelta(minutes=5 + i % 60)} for i, name in enumerate(peas) if i % 2 == 0]
        free = [{"name": name, "state": "free"} for i, name in enumerate(peas) if i % 2]
        await session.execute(sa.insert(Pea), held + free)


def _seed_database(url: str, finished: int, queued: int, peas: list[str]) -> None:
    async def run() -> None:
        database = make_engine(url)
        await upgrade(database)
        await seed(make_sessionmaker(database), finished, queued, peas)
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


def scale_config(sandbox: Sandbox, peas: list[str]) -> TrainConfig:
    # A 1 h tick: only the ticks this bench runs, the scheduler's own stay out of the way.
    return config_for(sandbox, deploy={"tick": "1h"},
                      peas={"cluster": "peas", "names": peas, "url": "https://{pea}.dev.acme.com"})


async def main(finished: int, queued: int, peas_count: int) -> dict[str, Any]:
    quiet()
    # Not started: the facades point at closed ports, as nothing here should call an outside system.
    sandbox = Sandbox(SandboxSpec())
    peas = [f"pea-{n}" for n in range(peas_count)]
    config = scale_config(sandbox, peas)
    workdir = Path(tempfile.mkdtemp(prefix="fc-scale-"))
    url = f"sqlite+aiosqlite:///{workdir / 'scale.db'}"
    began = time.perf_counter()
    # Seeded by a process of its own: the rows built to insert them must not count in this one's memory.
    seeder = multiprocessing.get_context("spawn").Process(target=_seed_database, args=(url, finished, queued, peas))
    seeder.start()
    seeder.join()
    if seeder.exitcode != 0:
        raise RuntimeError(f"seeding the database failed (exit code {seeder.exitcode})")
    seeded = time.perf_counter() - began
    database = make_engine(url)
    sessions = make_sessionmaker(database)
    settings = Settings(**sandbox.env(), DATABASE_URL=url, FATCONTROLLER_HTTP_PORT=0)
    engine = Engine([TrainSetup(config, build_outside(config, settings, Metrics()))], sessions)
    lane = engine.lanes[config.name]
    home = HomePublisher(AsyncWebClient(base_url=sandbox.slack.api_url),
                         [TrainFlows(config, lane.deploys, lane.peas)], config.slack.commands, SlackStore(sessions))
    viewer = USERS[0]  # holds peas, has a queued deploy and a history
    figures: dict[str, Any] = {"finished": finished, "queued": queued, "peas": peas_count,
                               "seed_seconds": seeded}
    try:
        settle_memory()  # as `start_bot` does once everything is loaded
        engine.start()  # with its scheduler, so that a tick also brings the next one forward as in production
        await asyncio.sleep(0.2)
        for _ in range(500):  # the scheduler's first tick must be over, or the timed ones would return at once
            if lane._tick_task is None:
                break
            await asyncio.sleep(0.01)
        figures["tick"] = await timed(lane.tick)
        figures["pea pass"] = await timed(lane.pea_worker.pass_once)
        figures["/deploy queue"] = await timed(lambda: queue_text(lane.deploys))
        figures["/deploy history"] = await timed(lambda: history_text(lane.deploys))
        figures["/deploy stats"] = await timed(lambda: _stats(lane))
        figures["/pea"] = await timed(lambda: _peas(lane))
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


async def _peas(lane: Lane) -> str:
    return list_text(await lane.peas.all())


async def _home(home: HomePublisher, user: str) -> list[dict[str, Any]]:
    return await home.render(user, await home.deploys.queue())


def report(figures: dict[str, Any]) -> str:
    lines = [f"{figures['finished']} finished deploys, {figures['queued']} queued, {figures['peas']} peas "
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
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.finished, args.queued, args.peas))
    print(report(figures))
    write_json(args.json, figures)
