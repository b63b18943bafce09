"""A worker that dies in the middle of a pea deploy (SIGKILL: its work lease stays behind) is replaced by
another on the same database once that lease has expired, and the deploy ends as it would have."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import boto3

from flows.notices import PeaUp
from tests.fixtures.pea_process import write_config
from tests.fixtures.peas import PROCESSES, Pool
from tests.fixtures.world import REQUESTER, eventually

ROOT = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 2.0


def revisions(pool: Pool, family: str) -> list[str]:
    ecs = boto3.client("ecs", endpoint_url=pool.sandbox.aws.url, region_name="eu-west-1")
    return ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


async def test_a_pea_deploy_interrupted_by_a_crash_is_finished_by_another_worker(
        make_pool: Callable[..., Pool], tmp_path: Path) -> None:
    pool = make_pool()
    sandbox = pool.sandbox
    pr, sha = await pool.ready_pr("Survives a crash")
    sandbox.aws.step_interval = None  # ECS stands still: the deploy cannot finish before the crash
    config = write_config(pool.config, tmp_path / "app.yaml")
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fixtures.pea_process", str(config), pool.database.url, "doomed",
        str(LEASE_SECONDS), cwd=ROOT, env={**sandbox.env(), "PATH": "/usr/bin:/bin"})
    try:
        await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

        async def pointed() -> dict[str, str] | None:
            recorded = (await pool.pea("sweet-pea")).task_definitions
            done = set(recorded) == set(PROCESSES) and all(
                pool.service("sweet-pea", p)["taskDefinition"] == recorded[p] for p in PROCESSES)
            return recorded if done else None

        recorded = await eventually(pointed, within=30, what="task definitions registered and services pointed")
        # Catch the worker in the middle of its next step: AWS holds its answer while the process dies.
        calls = sandbox.aws.calls.count("ecs:DescribeServices")
        sandbox.aws.faults.hold_after(3, match="ecs:DescribeServices")

        async def mid_step() -> bool:
            return sandbox.aws.calls.count("ecs:DescribeServices") > calls

        await eventually(mid_step, what="the doomed worker in the middle of a step")
    finally:
        doomed.kill()
        await doomed.wait()

    left = await pool.pea("sweet-pea")
    assert (left.state, left.work_owner) == ("deploying", "doomed")  # its lease stays behind
    survivor = pool.worker("survivor")
    assert await survivor.pass_once() == 0  # not before the dead worker's lease has expired
    sandbox.aws.step_interval = 0.02
    pool.run(survivor)

    up = await pool.reaches("sweet-pea", "up", within=30)
    assert up.task_definitions == recorded and up.head_sha == sha
    for process in PROCESSES:
        assert pool.service("sweet-pea", process)["taskDefinition"] == recorded[process]
        assert len(revisions(pool, f"pea-sweet-pea-{process}")) == 2  # the seed's and one of ours: not two
    await pool.runs("sweet-pea", sandbox.image(sha))
    await pool.told(PeaUp, "sweet-pea")


async def test_a_crash_between_registering_a_task_definition_and_recording_it_registers_no_second_one(
        make_pool: Callable[..., Pool], tmp_path: Path) -> None:
    pool = make_pool()
    sandbox = pool.sandbox
    pr, sha = await pool.ready_pr("Registered once")
    config = write_config(pool.config, tmp_path / "app.yaml")
    # AWS registers the revision and holds its answer: the worker dies before it can record it.
    sandbox.aws.faults.hold_after(5, match="ecs:RegisterTaskDefinition")
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fixtures.pea_process", str(config), pool.database.url, "doomed",
        str(LEASE_SECONDS), cwd=ROOT, env={**sandbox.env(), "PATH": "/usr/bin:/bin"})
    try:
        await pool.flows.deploy(REQUESTER, "sweet-pea", pr)

        async def registered() -> bool:
            return sandbox.aws.calls.count("ecs:RegisterTaskDefinition") >= 1

        await eventually(registered, within=30, what="the first revision registered")
    finally:
        doomed.kill()
        await doomed.wait()
    assert (await pool.pea("sweet-pea")).task_definitions == {}  # the dead worker recorded nothing

    pool.run(pool.worker("survivor"))
    up = await pool.reaches("sweet-pea", "up", within=30)

    assert set(up.task_definitions) == set(PROCESSES) and up.head_sha == sha
    for process in PROCESSES:
        assert len(revisions(pool, f"pea-sweet-pea-{process}")) == 2  # the seed's and one of ours: not two
    await pool.runs("sweet-pea", sandbox.image(sha))
