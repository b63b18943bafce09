"""The crash suite on the real process: `fatcontroller run` is killed with SIGKILL right after an outside
action (the emulator carries it out and holds the answer) or while it waits, at each stage of the
flowchart and of a pea deploy; a new `run` on the same database takes over once the dead copy's lease
ends. People keep clicking in Slack. Afterwards the outside world is as if nothing had happened: one
merge, at most one revert, no canary left, every service on the image it should run, the deploy ended
as it would have, and its card shows that end."""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.world import Sandbox
from storage.models import Deploy, Pea
from tests.fixtures.aws import registered_since_seed
from tests.fixtures.bot_process import ProcessWorld
from tests.fixtures.peas import PEAS, PROCESSES
from tests.fixtures.world import eventually

ALICE = "U0ALICE"
HOLD = 4.0  # seconds the emulator sits on the answer: longer than the kill takes
SERVICES = ("app-web", "app-worker")
TERMINAL = ("completed", "rolled_back", "failed", "build_failed")
LABELS = {"completed": "completed", "rolled_back": "rolled back"}


def _service(sandbox: Sandbox, cluster: str, name: str) -> dict[str, Any] | None:
    try:
        return sandbox.aws.service(cluster, name)
    except Exception:  # the emulator refuses a service it never had
        return None


def _reverts(sandbox: Sandbox) -> int:
    return sum("This reverts commit" in message for _, message, _ in sandbox.github.log("master", 50))


@dataclass(frozen=True)
class Crash:
    state: str  # the flowchart state the process dies in (or, for "registering", the moment within canarying)
    system: str | None  # the emulator that holds its answer (None: killed while waiting)
    match: str
    landed: Callable[[ProcessWorld, dict[str, str]], Any]  # the outside action has happened
    plan: str = "complete"  # or "roll back"
    arm_at: str | None = None  # arm once the deploy is at this state (clicking on through it)


CRASHES = [
    Crash("merging", "github", r"^PUT .*/merge$", lambda w, _: w.sandbox.github.writes["merges"] == 1),
    Crash("building", None, "", lambda w, _: _state_is(w, "building")),
    Crash("registering", "aws", "ecs:RegisterTaskDefinition", lambda w, _: registered_since_seed(w.sandbox.aws)),
    Crash("canarying", "aws", "ecs:CreateService",
          lambda w, _: any(_service(w.sandbox, "production", f"{s}-canary") for s in SERVICES)),
    Crash("rolling_out", "aws", "ecs:UpdateService",
          lambda w, before: any(_service(w.sandbox, "production", s)["taskDefinition"] != before[s]
                                for s in SERVICES), arm_at="canary_check"),
    Crash("canary_check", None, "", lambda w, _: _state_is(w, "canary_check")),
    Crash("awaiting_confirmation", None, "", lambda w, _: _state_is(w, "awaiting_confirmation"),
          arm_at="canary_check"),
    Crash("rolling_back", "github", r"^PATCH .*/git/refs/heads/master$", lambda w, _: _reverts(w.sandbox) == 1,
          plan="roll back", arm_at="canary_check"),
]


async def _state_is(world: ProcessWorld, state: str) -> bool:
    """Whether the newest deploy is in `state`."""
    async with world.sessions() as session:
        return await session.scalar(sa.select(Deploy.state).order_by(Deploy.id.desc()).limit(1)) == state


@pytest.mark.parametrize("crash", CRASHES, ids=[c.state for c in CRASHES])
async def test_a_killed_process_is_replaced_and_the_deploy_ends_as_it_would_have(
        sandbox: Sandbox, bot_process: Callable[..., Any], crash: Crash) -> None:
    world = await bot_process(sandbox)
    before = {s: sandbox.aws.service("production", s)["taskDefinition"] for s in SERVICES}
    if crash.system is not None and crash.arm_at is None:
        getattr(sandbox, crash.system).faults.hold_after(HOLD, match=crash.match)
    pr = world.new_pr(f"Survives {crash.state}")
    await world.slack.command(ALICE, "/deploy", str(pr))
    if crash.arm_at is not None:
        await world.reaches(pr, crash.arm_at, within=30)
        if crash.system is not None:
            getattr(sandbox, crash.system).faults.hold_after(HOLD, match=crash.match)
        await world.slack.click(ALICE, "Proceed" if crash.plan == "complete" else "Roll back",
                                message=await world.card_showing(pr, "Proceed"))

    async def landed() -> bool:
        found = crash.landed(world, before)
        return bool(await found) if inspect.isawaitable(found) else bool(found)

    await eventually(landed, within=30, what=f"the outside action of {crash.state}")
    doomed = world.processes[-1]
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    await bot_process(sandbox, world)

    while (deploy := await world.reaches(pr, "canary_check", "awaiting_confirmation", *TERMINAL, within=40)).state \
            not in TERMINAL:
        if deploy.state == "canary_check":
            await world.press(pr, "Proceed" if crash.plan == "complete" else "Roll back")
        else:
            await world.press(pr, "Done")

    expected = "completed" if crash.plan == "complete" else "rolled_back"
    assert deploy.state == expected, deploy.outcome_reason
    assert sandbox.github.writes["merges"] == 1
    assert _reverts(sandbox) == (0 if crash.plan == "complete" else 1)
    # One task definition revision per process, however the crash fell (found again by its deploy's tag).
    assert sandbox.aws.calls.count("ecs:RegisterTaskDefinition") == len(SERVICES)
    for service in SERVICES:
        canary = _service(sandbox, "production", f"{service}-canary")
        assert canary is None or canary["status"] in ("DRAINING", "INACTIVE"), canary
        if crash.plan == "complete":
            assert set(sandbox.aws.running_images("production", service)) == {sandbox.image(deploy.merge_sha)}
        else:
            assert sandbox.aws.service("production", service)["taskDefinition"] == before[service]
    await world.card_showing(pr, LABELS[expected])


async def test_a_process_killed_while_a_pea_deploys_is_replaced_and_the_pea_comes_up(
        pea_sandbox: Sandbox, bot_process: Callable[..., Any]) -> None:
    peas = {"cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"}
    world = await bot_process(pea_sandbox, peas=peas)
    github = pea_sandbox.github
    pr = world.new_pr("Pea survives")
    await world.slack.wait_for(lambda: pea_sandbox.jenkins.build_count("app-pr", github.pr_head(pr)),
                               what="the PR job's build")
    pea_sandbox.aws.faults.hold_after(HOLD, match="ecs:UpdateService")
    await world.slack.command(ALICE, "/pea", f"deploy sweet-pea {pr}")
    await world.slack.wait_for(lambda: "ecs:UpdateService" in pea_sandbox.aws.calls, 30,
                               what="the first pea service pointed at the PR's image")
    doomed = world.processes[-1]
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    await bot_process(pea_sandbox, world, peas=peas)

    await world.slack.wait_for(lambda: any("is up at https://sweet-pea.dev.acme.com" in m.render()
                                           for m in world.slack.dms(ALICE)), 40, what="the pea's URL by DM")
    async with world.sessions() as session:
        pea = await session.scalar(sa.select(Pea).where(Pea.name == "sweet-pea"))
    assert pea is not None and pea.state == "up" and pea.holder == ALICE
    for process in PROCESSES:
        assert pea_sandbox.aws.running_images("peas", f"pea-sweet-pea-{process}") == [pea.image]
    assert pea.image == pea_sandbox.image(github.pr_head(pr))
