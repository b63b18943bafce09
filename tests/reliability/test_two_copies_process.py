"""Two copies of `fatcontroller run` share one PostgreSQL database, and Slack spreads its envelopes over
both connections. Over a train of deploys (built ahead, DESIGN §8) and a stream of pea deploys beside it, every
outside action happens once; one copy is killed with SIGKILL in the middle of a rollout, and the other finishes that
deploy within a lease period."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.world import Sandbox
from storage.models import Deploy
from tests.fixtures.bot_process import LEASE_SECONDS, ProcessWorld
from tests.fixtures.peas import PEAS
from tests.fixtures.world import eventually

ALICE, BOB = "U0ALICE", "U0BOB"
DEPLOYS = 20
PEA_DEPLOYS = 10
KILL_AT = 5  # the deploy during whose rollout one copy dies
PEA_CONFIG = {"cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"}
QUICK = {"confirm_timeout": "1s"}  # awaiting_confirmation completes by itself: nobody has to click Done


async def _pea_stream(world: ProcessWorld, prs: list[int]) -> None:
    """Bob deploys each PR to a pea in turn, releasing the pea first when he holds it."""
    slack = world.slack
    for index, pr in enumerate(prs):
        pea = PEAS[index % len(PEAS)]
        if index >= len(PEAS):
            await slack.command(BOB, "/pea", f"release {pea}")
            await slack.wait_for(lambda pea=pea: any(f"You released `{pea}`" in m.render() for m in slack.dms(BOB)),
                                 30, what=f"{pea} released")
        up = f"is up at https://{pea}.dev.acme.com"
        before = sum(up in m.render() for m in slack.dms(BOB))
        answer = await (await slack.command(BOB, "/pea", f"deploy {pea} {pr}")).ephemeral()
        assert "Nothing was changed" not in answer.text, answer.text
        await slack.wait_for(lambda up=up, before=before: sum(up in m.render() for m in slack.dms(BOB)) > before,
                             60, what=f"{pea} up with #{pr}")


async def test_two_copies_do_every_outside_action_once_and_take_over_from_each_other(
        pea_sandbox: Sandbox, db_backend: str, db_url: str, bot_process: Callable[..., Any]) -> None:
    if db_backend != "postgresql":
        pytest.skip("copies share a PostgreSQL database; SQLite is for one copy")
    sandbox, github = pea_sandbox, pea_sandbox.github
    world = await bot_process(sandbox, database_url=db_url, peas=PEA_CONFIG, deploy=QUICK)
    await bot_process(sandbox, world, database_url=db_url, peas=PEA_CONFIG, deploy=QUICK)
    prs = [world.new_pr(f"Train change {n}") for n in range(DEPLOYS)]
    pea_prs = [world.new_pr(f"Pea change {n}", author="bob") for n in range(PEA_DEPLOYS)]
    await world.slack.wait_for(lambda: all(sandbox.jenkins.build_count("app-pr", github.pr_head(pr))
                                           for pr in pea_prs), 30, what="the PR job's builds")
    for pr in prs:
        answer = await (await world.slack.command(ALICE, "/deploy", str(pr))).ephemeral()
        assert "Queued" in answer.text, answer.text
    peas = asyncio.create_task(_pea_stream(world, pea_prs))

    handed_over = None
    for index, pr in enumerate(prs):
        await world.reaches(pr, "canary_check", within=60)
        await world.press(pr, "Proceed")
        if index == KILL_AT:
            deploy = await world.reaches(pr, "rolling_out", "awaiting_confirmation", within=30)
            owner = deploy.work_owner or "copy-0"
            doomed = world.processes[int(owner.removeprefix("copy-"))]
            doomed.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            assert doomed.wait(10) == -signal.SIGKILL

            async def taken_over(pr: int = pr, owner: str = owner) -> Deploy | None:
                found = await world.deploy_of(pr)
                return found if found.work_owner not in (None, owner) or found.state == "completed" else None

            await eventually(taken_over, within=LEASE_SECONDS + 10, what="the other copy taking the deploy over")
            handed_over = time.monotonic() - killed_at
            await bot_process(sandbox, world, database_url=db_url, peas=PEA_CONFIG, deploy=QUICK)
        await world.reaches(pr, "completed", within=60)
    await asyncio.wait_for(peas, 120)

    async with world.sessions() as session:
        states = (await session.execute(sa.select(Deploy.pr_number, Deploy.state))).all()
    assert sorted(states) == sorted((pr, "completed") for pr in prs)
    # built ahead (DESIGN §8): most landed as fast-forwards to the commit built, each built once
    finished = [await world.deploy_of(pr) for pr in prs]
    landed = [d for d in finished if d.candidate_sha == d.merge_sha]
    assert landed and github.writes["merges"] == DEPLOYS - len(landed)
    assert all(sandbox.jenkins.build_count("app-master", d.merge_sha or "") == 1 for d in landed)
    assert not [b for b in github.branches() if b.startswith("fatcontroller/")]
    merges = [message for _, message, parents in github.log("master", 200) if len(parents) == 2]
    assert sorted(merges) == sorted(set(merges)) and len(merges) == DEPLOYS
    calls = sandbox.aws.calls
    assert calls.count("ecs:CreateService") == 2 * DEPLOYS  # one canary per process per deploy
    assert calls.count("ecs:DeleteService") == 2 * DEPLOYS
    # a new revision per process for each deploy's canary (reused by its rollout) and for each pea deploy
    assert calls.count("ecs:RegisterTaskDefinition") == 2 * (DEPLOYS + PEA_DEPLOYS)
    for service in ("app-web", "app-worker"):
        assert set(sandbox.aws.running_images("production", service)) == {sandbox.image(github.branch_head())}
    assert handed_over is not None and handed_over < LEASE_SECONDS + 10
    loads = sandbox.slack.deliveries()
    assert len([n for n in loads.values() if n > 0]) >= 2, loads
