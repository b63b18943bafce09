"""Crash and resume: an engine that dies right after an outside action, before recording its result,
is replaced by another on the same database, and the deploy ends as it would have.

The first engine runs in a process of its own. The emulator carries the request out but holds its
answer; the process is killed with SIGKILL meanwhile (the result is never recorded, its lease is
never released), and a second engine with another owner takes the deploy over once that lease
has expired. Afterwards: one merge, at most one revert, no canary left, every service where it
should be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.world import Sandbox
from tests.fixtures.aws import registered_since_seed
from tests.fixtures.storage import Database
from tests.fixtures.world import Train, eventually, raw_train_config

HOLD = 3.0  # seconds the emulator sits on its answer: longer than the crash takes
LEASE = timedelta(seconds=2)
ROOT = Path(__file__).resolve().parents[3]


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
          lambda t, _: registered_since_seed(t.sandbox.aws), "complete"),
    Crash("register a task definition, then roll back", "aws", "ecs:RegisterTaskDefinition",
          lambda t, _: registered_since_seed(t.sandbox.aws), "roll back at the gate"),
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


@pytest.fixture
def engine_process(sandbox: Sandbox, sqlite_database: Database) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start an engine in a process of its own on the test's database; killed at teardown if still alive."""
    started: list[subprocess.Popen] = []

    def start(owner: str, **sections: Any) -> subprocess.Popen:
        spec = {"config": raw_train_config(sandbox, **sections), "database_url": sqlite_database.url,
                "owner": owner, "lease_seconds": LEASE.total_seconds()}
        process = subprocess.Popen([sys.executable, "-m", "tests.fixtures.engine_process", json.dumps(spec)],
                                   cwd=ROOT, env={**os.environ, **sandbox.env()}, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("crash", CRASHES, ids=[c.name for c in CRASHES])
async def test_a_crash_right_after_an_outside_action_is_resumed_without_doing_it_twice(
        make_train: Callable[..., Train], engine_process: Callable[..., subprocess.Popen], crash: Crash) -> None:
    # People talk to this copy; its own engine stays off so that the process below does the work.
    first = make_train(start=False, **(crash.config or {}))
    sandbox = first.sandbox
    if first.config.jenkins.trigger == "api":
        sandbox.github.remove_webhook(sandbox.jenkins_webhook)
    before = first.snapshot()
    emulator = getattr(sandbox, crash.system)
    if crash.arm_at is None:
        emulator.faults.hold_after(HOLD, match=crash.match)
    doomed = engine_process("copy-1", **(crash.config or {}))
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
    doomed.kill()  # SIGKILL: the answer to that call is never read, the lease never released
    doomed.wait(10)

    second = make_train(owner="copy-2", lease_ttl=LEASE, **(crash.config or {}))
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
        # also when the crash came after the rolling update had changed it: the configuration kept is the first read
        second.assert_configured_as(before)
        if crash.name == "start the build":
            assert sandbox.jenkins.build_count("app-master", finished.merge_sha) == 1
    else:
        await second.assert_restored(before)


SPECULATE = {"deploy": {"speculate": 1}}
# (what crashes, the request whose answer is held, when it has been carried out)
SPECULATION_CRASHES = [
    ("make a candidate", "github", r"^POST /api/v3/repos/acme/app/merges$",
     lambda sandbox, first, second: f"fatcontroller/app/{second}" in sandbox.github.branches()),
    ("start a candidate's build", "jenkins", r"buildWithParameters",
     lambda sandbox, first, second: len(sandbox.jenkins.builds("app-master")) > 1),
    ("land a candidate", "github", r"^PATCH /api/v3/repos/acme/app/git/refs/heads/master$",
     lambda sandbox, first, second: sandbox.github.branch_head() != first),
]


@pytest.mark.parametrize(("name", "system", "match", "acted"), SPECULATION_CRASHES,
                         ids=[c[0] for c in SPECULATION_CRASHES])
async def test_a_crash_right_after_a_speculative_step_is_resumed_exactly_once(
        make_train: Callable[..., Train], engine_process: Callable[..., subprocess.Popen], name: str, system: str,
        match: str, acted: Callable[[Sandbox, str, int], bool]) -> None:
    people = make_train(start=False, **SPECULATE)
    sandbox = people.sandbox
    doomed = engine_process("copy-1", **SPECULATE)
    first = await people.request(people.new_pr("Ahead"))
    merged = (await people.reaches(first.id, "canary_check", within=30)).merge_sha or ""
    getattr(sandbox, system).faults.hold_after(HOLD, match=match)
    second = await people.request(people.new_pr(f"Built ahead: {name}"))
    if name == "land a candidate":
        async def built() -> bool:
            return (await people.deploy(second.id)).candidate_queue_id is not None
        await eventually(built, within=30, what="the candidate and its build")
        assert await _press_through(people, first.id, "complete") == "completed"

    async def landed() -> bool:
        return acted(sandbox, merged, second.id)

    await eventually(landed, within=30, what=f"{name} carried out")
    doomed.kill()
    doomed.wait(10)

    resumed = make_train(owner="copy-2", lease_ttl=LEASE, **SPECULATE)
    if name != "land a candidate":
        assert await _press_through(resumed, first.id, "complete") == "completed"
    assert await _press_through(resumed, second.id, "complete") == "completed"

    finished = await resumed.deploy(second.id)
    on_master = [sha for sha, message, _ in sandbox.github.log(n=50)
                 if message.startswith(f"Merge pull request #{second.pr_number} ")]
    # Merged once: a candidate made by the copy that died is found again and lands, or, if its turn came
    # before that, it merges the normal way; a landing the copy that died made is found done.
    assert on_master == [finished.merge_sha]
    if name != "make a candidate":
        assert sandbox.github.writes["merges"] == 1  # only the first was merged; the second landed
        assert sandbox.jenkins.build_count("app-master", finished.merge_sha or "") == 1  # its build, once
    assert not [b for b in sandbox.github.branches() if b.startswith("fatcontroller/")]
    assert set(sandbox.aws.running_images("production", "app-web")) == {sandbox.image(finished.merge_sha)}



async def test_a_crash_while_dropping_a_cancelled_deploy_s_candidate_is_resumed_and_leaves_nothing(
        make_train: Callable[..., Train], engine_process: Callable[..., subprocess.Popen]) -> None:
    people = make_train(start=False, **SPECULATE)
    sandbox = people.sandbox
    doomed = engine_process("copy-1", **SPECULATE)
    first = await people.request(people.new_pr("Ahead"))
    await people.reaches(first.id, "canary_check", within=30)
    sandbox.jenkins.script_next("app-master", ["SUCCESS"], duration=60)  # the candidate's build is still running
    second = await people.request(people.new_pr("Leaves"))

    async def building() -> str | None:
        deploy = await people.deploy(second.id)
        return deploy.candidate_sha if deploy.candidate_build_number is not None else None
    candidate = await eventually(building, within=30, what="the candidate's build to start")
    branch = f"fatcontroller/app/{second.id}"
    sandbox.github.faults.hold_after(HOLD, match=rf"^DELETE /api/v3/repos/acme/app/git/refs/heads/{branch}$")
    await people.flows.cancel("U0ALICE", second.id)

    await eventually(lambda: _gone(sandbox, branch), within=30, what="the candidate's branch deleted")
    doomed.kill()  # the deletion happened; the copy never read its answer nor saved the candidate dropped
    doomed.wait(10)

    resumed = make_train(owner="copy-2", lease_ttl=LEASE, **SPECULATE)

    async def forgotten() -> bool:
        return (await resumed.deploy(second.id)).candidate_base is None
    await eventually(forgotten, within=30, what="the drop resumed and recorded")
    [build] = [b for b in sandbox.jenkins.builds("app-master") if candidate in str(b)]
    assert build["result"] == "ABORTED" and branch not in sandbox.github.branches()
    assert await _press_through(resumed, first.id, "complete") == "completed"
    assert sandbox.github.branch_head() == (await resumed.deploy(first.id)).merge_sha  # nothing of it landed


async def _gone(sandbox: Sandbox, branch: str) -> bool:
    return branch not in sandbox.github.branches()


async def test_a_crash_while_an_alarm_rolls_the_deploy_back_is_resumed_and_rolls_back_once(
        make_train: Callable[..., Train], engine_process: Callable[..., subprocess.Popen]) -> None:
    watched = {"deploy": {"alarms": ["app-5xx-rate"]}}
    people = make_train(start=False, **watched)
    sandbox = people.sandbox
    sandbox.aws.create_alarm("app-5xx-rate")
    before = people.snapshot()
    doomed = engine_process("copy-1", **watched)
    deploy = await people.request(people.new_pr("Serves errors"))
    await people.reaches(deploy.id, "canary_check", within=30)
    sandbox.github.faults.hold_after(HOLD, match=r"^PATCH .*/git/refs/heads/master$")  # the revert lands, unanswered
    sandbox.aws.set_alarm("app-5xx-rate", "ALARM", "Threshold Crossed")

    await eventually(lambda: _reverted(sandbox), within=30, what="the revert pushed")
    doomed.kill()
    doomed.wait(10)

    resumed = make_train(owner="copy-2", lease_ttl=LEASE, **watched)
    done = await resumed.reaches(deploy.id, "rolled_back", within=40)
    assert done.outcome_reason == "alarm app-5xx-rate is in ALARM: Threshold Crossed"
    assert _reverts(sandbox) == 1 and sandbox.github.writes["merges"] == 1
    await resumed.assert_restored(before)


async def _reverted(sandbox: Sandbox) -> bool:
    return _reverts(sandbox) == 1
