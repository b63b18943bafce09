"""A pea's task definition revisions: each deploy's is deregistered once the next one replaces it and on
release, so a pea service's family keeps no ACTIVE pile of them; the revision it started from stays."""

from __future__ import annotations

from tests.fixtures.aws import active_revisions
from tests.fixtures.peas import PROCESSES, Pool
from tests.fixtures.world import REQUESTER


async def test_a_replaced_or_released_peas_revision_is_deregistered(pool: Pool) -> None:
    first, _ = await pool.ready_pr("First idea")
    second, second_sha = await pool.ready_pr("Second idea")
    families = {process: f"pea-sweet-pea-{process}" for process in PROCESSES}
    seeds = {process: active_revisions(pool.sandbox.aws, family) for process, family in families.items()}

    await pool.flows.deploy(REQUESTER, "sweet-pea", first)
    replaced = (await pool.reaches("sweet-pea", "up")).task_definitions
    await pool.flows.deploy(REQUESTER, "sweet-pea", second)
    current = (await pool.reaches("sweet-pea", "up")).task_definitions

    for process, family in families.items():
        assert active_revisions(pool.sandbox.aws, family) == [*seeds[process], current[process]]
        assert pool.sandbox.aws.task_definition(replaced[process])["status"] == "INACTIVE"

    await pool.flows.release(REQUESTER, "sweet-pea")
    await pool.reaches("sweet-pea", "free")

    for process, family in families.items():
        assert active_revisions(pool.sandbox.aws, family) == seeds[process]
        assert pool.service("sweet-pea", process)["taskDefinition"] == current[process]  # scaled to zero on it

    await pool.flows.deploy(REQUESTER, "sweet-pea", second)  # copied from a deregistered revision: ECS allows it
    await pool.reaches("sweet-pea", "up")
    await pool.runs("sweet-pea", pool.sandbox.image(second_sha))
