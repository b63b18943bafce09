"""Crash and resume: an engine that dies right after an outside action, before recording its result,
is replaced by another on the same database, and the deploy ends as it would have.

The emulator carries the request out but holds its answer; the first engine is stopped meanwhile
(its call's result is lost, exactly as in a crash), and a second engine with another owner takes
the deploy over. Afterwards: one merge, at most one revert, no canary left, every service where it
should be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.world import Sandbox
from tests.fixtures.world import Train, eventually

HOLD = 3.0  # seconds the emulator sits on its answer: longer than the crash takes


def _service(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    try:
        return sandbox.aws.service("production", name)
    except Exception:
        return None


def _reverts(sandbox: Sandbox) -> int:
    return sum("This reverts commit" in message for _, message, _ in sandbox.github.log("master", 50))


@dataclass(frozen=True)
class Crash:
    name: str
    system: str  # which emulator holds the answer
    match: str  # the operation whose answer is held
    acted: Callable[[Train, dict[str, Any]], bool]  # the outside action has landed
    plan: str  # "complete", "roll back at the gate" or "roll back after the rollout"
    arm_at: str | None = None  # arm the hold once the deploy reaches this state (None: at once)
    config: dict[str, Any] | None = None


CRASHES = [
    Crash("merge", "github", r"^PUT .*/merge$", lambda t, _: t.sandbox.github.writes["merges"] == 1, "complete"),
    Crash("start the build", "jenkins", r"buildWithParameters",
          lambda t, _: bool(t.sandbox.jenkins.builds("app-master")), "complete",
          config={"jenkins": {"trigger": "api"}}),
    Crash("register the canary task definition", "aws", "ecs:RegisterTaskDefinition",
          lambda t, _: "ecs:RegisterTaskDefinition" in t.sandbox.aws.calls, "complete"),
    Crash("create a canary", "aws", "ecs:CreateService",
          lambda t, _: _service(t.sandbox, "app-web-canary") is not None
          or _service(t.sandbox, "app-worker-canary") is not None, "roll back at the gate"),
    Crash("start the rolling update", "aws", "ecs:UpdateService",
          lambda t, before: any(_service(t.sandbox, s)["taskDefinition"] != td
                                for s, td in before["services"].items()),
          "complete", arm_at="canary_check"),
    Crash("delete a canary", "aws", "ecs:DeleteService",
          lambda t, _: any((_service(t.sandbox, f"{s}-canary") or {}).get("status") == "DRAINING"
                           for s in ("app-web", "app-worker")), "complete", arm_at="canary_check"),
    Crash("revert the merge", "github", r"^PATCH .*/git/refs/heads/master$",
          lambda t, _: _reverts(t.sandbox) == 1, "roll back at the gate", arm_at="canary_check"),
    Crash("restore a service", "aws", "ecs:UpdateService",
          lambda t, before: any(_service(t.sandbox, s)["taskDefinition"] == td
                                for s, td in before["services"].items()),
          "roll back after the rollout", arm_at="awaiting_confirmation"),
]


async def _press_through(train: Train, deploy_id: int, plan: str) -> str:
    """Click as the requester would until the deploy ends; returns the end state."""
    while True:
        deploy = await train.reaches(deploy_id, "canary_check", "awaiting_confirmation", "completed",
                                     "rolled_back", "failed", "build_failed", within=40)
        if deploy.state in ("completed", "rolled_back", "failed", "build_failed"):
            return deploy.state
        if deploy.state == "canary_check":
            await train.press(deploy_id, "Roll back" if plan == "roll back at the gate" else "Proceed")
        elif plan == "roll back after the rollout":
            await train.press(deploy_id, "Roll back")
        else:
            await train.press(deploy_id, "Done")
        await train.reaches(deploy_id, "rolling_out", "rolling_back", "completed", "awaiting_confirmation",
                            "rolled_back")


@pytest.mark.parametrize("crash", CRASHES, ids=[c.name for c in CRASHES])
async def test_a_crash_right_after_an_outside_action_is_resumed_without_doing_it_twice(
        make_train: Callable[..., Train], crash: Crash) -> None:
    first = make_train(owner="copy-1", **(crash.config or {}))
    sandbox = first.sandbox
    if first.config.jenkins.trigger == "api":
        sandbox.github.remove_webhook(sandbox.jenkins_webhook)
    before = first.snapshot()
    emulator = getattr(sandbox, crash.system)
    if crash.arm_at is None:
        emulator.faults.hold_after(HOLD, match=crash.match)
    deploy = await first.request(first.new_pr(f"Survives: {crash.name}"))
    if crash.arm_at is not None:
        await first.reaches(deploy.id, "canary_check", within=30)
        if crash.arm_at == "awaiting_confirmation":
            await first.press(deploy.id, "Proceed")
            await first.reaches(deploy.id, crash.arm_at, within=30)
        emulator.faults.hold_after(HOLD, match=crash.match)
        await first.press(deploy.id, "Proceed" if crash.plan == "complete" else "Roll back")

    async def landed() -> bool:
        return crash.acted(first, before)

    await eventually(landed, within=30, what=f"{crash.name} landed")
    await first.engine.stop()  # the crash: the answer to that call is never read

    second = make_train(owner="copy-2", **(crash.config or {}))
    end = await _press_through(second, deploy.id, crash.plan)

    finished = await second.deploy(deploy.id)
    assert end == ("completed" if crash.plan == "complete" else "rolled_back"), finished.outcome_reason
    assert sandbox.github.writes["merges"] == 1
    assert _reverts(sandbox) == (0 if crash.plan == "complete" else 1)
    for name in ("app-web-canary", "app-worker-canary"):
        assert await second.canary_gone(name)
    if crash.plan == "complete":
        image = sandbox.image(finished.merge_sha)
        for service in before["services"]:
            assert set(sandbox.aws.running_images("production", service)) == {image}
        if crash.name == "start the build":
            assert sandbox.jenkins.build_count("app-master", finished.merge_sha) == 1
    else:
        await second.assert_restored(before)
