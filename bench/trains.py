"""Many trains in one process (DESIGN §6): how one engine serving 20 trains scales, and whether a train whose
GitHub fails holds another train up.

- scale: `bench.scale` with 20 trains, each with 10 queued deploys behind one in flight and 15 peas (300
  peas), 10,000 finished deploys among them: every train's tick at once and one train's, `/deploy queue` of
  one train and of all, `/pea`, the App Home, the process's peak memory;
- isolation: the billing train deploys one pull request after another, on its own repository, Jenkins and
  services, beside the app train; first with nothing wrong, then while app's GitHub answers 500 to every
  request for 60 s (app's deploy retrying its merge all along). Billing's reactions are timed as
  `bench.deploys` times them, from the emulators' timestamps: build green → canary task definition
  registered, Proceed → first UpdateService, rollout complete in ECS → `awaiting_confirmation`.

    .venv/bin/python -m bench.trains [--trains 20] [--fault 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from bench import scale
from bench.common import config_for, quiet, spread, start_sandbox, write_json
from bench.deploys import build_window, ecs_windows, first_after
from bot.metrics import Metrics
from bot.wiring import build_outside
from flows.config import Settings
from flows.deploy.machine import Event, State
from flows.deploy.service import DeployRequest
from flows.engine import Engine, Lane, TrainSetup
from sandbox.world import Sandbox, SandboxSpec
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade

BILLING = SandboxSpec(repo="acme/billing", jobs={"billing-master": "master", "billing-pr": "pr"},
                      image_repository="billing", container="billing", services={"billing-api": 2},
                      load_balanced=(), channel="C0BILLING", step_interval=0.1)
BUILD_SECONDS = 1.0  # short, so each minute holds ~25 deploys: the p50s of a few tens of ms need them
REACTIONS = ("build_to_canary", "proceed_to_update", "rollout_to_state")
USER = "U0ALICE"


async def _reaches(lane: Lane, deploy_id: int, state: State, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while (view := await lane.deploys.deploy(deploy_id)) is None or view.state is not state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"deploy {deploy_id} never reached {state.value} (it is {view and view.state.value})")
        await asyncio.sleep(0.05)


async def billing_deploy(world: Sandbox, lane: Lane, n: int) -> dict[str, float]:
    """One deploy of billing from request to completed, pressed at once; its three reactions in seconds."""
    world.jenkins.script_next("billing-master", ["SUCCESS"], duration=BUILD_SECONDS)
    pr = world.github.create_pr(f"Billing change {n}", {f"billing/change_{n}.py": f"n = {n}\n"}, author="alice")
    requested = time.time()
    deploy_id = (await lane.deploys.request(DeployRequest(requester=USER, pr_number=pr))).deploy.id
    await _reaches(lane, deploy_id, State.CANARY_CHECK)
    proceeded = time.time()
    await lane.deploys.act(deploy_id, State.CANARY_CHECK.value, Event.PROCEED, USER)
    await _reaches(lane, deploy_id, State.AWAITING_CONFIRMATION)
    view = await lane.deploys.deploy(deploy_id)
    assert view is not None and view.merge_sha is not None
    await lane.deploys.act(deploy_id, State.AWAITING_CONFIRMATION.value, Event.DONE, USER)
    await _reaches(lane, deploy_id, State.COMPLETED)
    _, build_end = build_window(world, view.merge_sha, "billing-master")
    _, rollout_done = ecs_windows(world, requested, proceeded, ("billing-api",))
    entered = view.entered(State.AWAITING_CONFIRMATION)
    assert entered is not None
    aws = list(world.aws.received)
    return {"build_to_canary": first_after(aws, "ecs:RegisterTaskDefinition", build_end) - build_end,
            "proceed_to_update": first_after(aws, "ecs:UpdateService", proceeded) - proceeded,
            "rollout_to_state": entered.replace(tzinfo=UTC).timestamp() - rollout_done}


async def _phase(billing_world: Sandbox, billing: Lane, seconds: float, first: int) -> list[dict[str, float]]:
    """Billing's deploys, one after another, until `seconds` have passed (at least one)."""
    runs, ends = [], time.monotonic() + seconds
    while not runs or time.monotonic() < ends:
        runs.append(await billing_deploy(billing_world, billing, first + len(runs)))
    return runs


async def isolation(fault_seconds: float) -> dict[str, Any]:
    quiet()
    worlds = {"app": start_sandbox(SandboxSpec(step_interval=0.1)), "billing": start_sandbox(BILLING)}
    configs = {"app": config_for(worlds["app"], deploy={"poll": "500ms"}),
               "billing": config_for(worlds["billing"], deploy={"poll": "500ms"},
                                     jenkins={"job": "billing-master", "pr_job": "billing-pr"},
                                     processes={"api": {"service": "billing-api", "container": "billing"}})}
    url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='fc-trains-')) / 'trains.db'}"
    database = make_engine(url)
    await upgrade(database)
    setups = [TrainSetup(config, build_outside(config, Settings(**worlds[name].env(), DATABASE_URL=url), Metrics()))
              for name, config in configs.items()]
    engine = Engine(setups, make_sessionmaker(database))
    app, billing = engine.lanes["app"], engine.lanes["billing"]
    engine.start()
    try:
        healthy = await _phase(worlds["billing"], billing, fault_seconds, 1)
        # app's deploy is merging when its GitHub starts answering 500, and retries through the whole fault
        app_pr = worlds["app"].github.create_pr("Blocked by GitHub", {"app/blocked.py": "x = 1\n"}, author="alice")
        app_deploy = (await app.deploys.request(DeployRequest(requester=USER, pr_number=app_pr))).deploy.id
        faults = worlds["app"].github.faults
        faults.error_rate(1.0, status=500)
        began = time.monotonic()
        faulty = await _phase(worlds["billing"], billing, fault_seconds, len(healthy) + 1)
        faulted = time.monotonic() - began
        faults.clear()
        app_view = await app.deploys.deploy(app_deploy)
        refused = faults.injected
    finally:
        await engine.stop()
        engine.close()
        await database.dispose()
        for world in worlds.values():
            world.stop()
    figures: dict[str, Any] = {"fault_seconds": faulted, "github_500s": refused,
                               "app_state_after": app_view.state.value if app_view else None}
    for name, runs in (("healthy", healthy), ("faulty", faulty)):
        figures[name] = {"deploys": len(runs), **{r: spread([run[r] for run in runs]) for r in REACTIONS}}
    figures["ratio"] = {r: figures["faulty"][r]["p50"] / figures["healthy"][r]["p50"] for r in REACTIONS}
    return figures


async def main(trains: int, fault_seconds: float) -> dict[str, Any]:
    return {"scale": await scale.main(10_000, 10 * trains, 15 * trains, trains),
            "isolation": await isolation(fault_seconds)}


def report(figures: dict[str, Any]) -> str:
    lines = [scale.report(figures["scale"])]
    iso = figures["isolation"]
    lines.append(f"isolation: billing deploys beside app; app's GitHub answered 500 for {iso['fault_seconds']:.0f} s "
                 f"({iso['github_500s']} requests refused; app's deploy ended the fault in "
                 f"{iso['app_state_after']})")
    for reaction in REACTIONS:
        healthy, faulty = iso["healthy"][reaction], iso["faulty"][reaction]
        lines.append(f"  {reaction:<18} healthy p50 {healthy['p50']:.2f}s ({iso['healthy']['deploys']} deploys)  "
                     f"fault p50 {faulty['p50']:.2f}s ({iso['faulty']['deploys']})  ratio {iso['ratio'][reaction]:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=20)
    parser.add_argument("--fault", type=float, default=60.0, help="seconds app's GitHub answers 500")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args.trains, args.fault))
    print(report(figures))
    write_json(args.json, figures)
