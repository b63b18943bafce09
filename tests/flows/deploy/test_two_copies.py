"""Two running copies of the product on one database drive the train together, building ahead (DESIGN §8):
every outside action happens exactly once, and deploys go in queue order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.fixtures.storage import Database
from tests.fixtures.world import Train

DEPLOYS = 10


async def test_two_engines_drive_ten_deploys_doing_each_outside_action_once_in_queue_order(
        make_train: Callable[..., Train], database: Database) -> None:
    copies = [make_train(database=database, owner=f"copy-{name}", deploy={"confirm_timeout": "500ms"})
              for name in "ab"]
    sandbox = copies[0].sandbox
    deploys = []
    for i in range(DEPLOYS):
        via = copies[i % 2]
        deploys.append(await via.request(via.new_pr(f"Change {i}")))

    async def press_proceed_until_all_done() -> None:
        clicks = 0
        while True:
            current = [await copies[0].deploy(d.id) for d in deploys]
            if all(d.state == "completed" for d in current):
                return
            for deploy in current:
                if deploy.state == "canary_check":
                    await copies[clicks % 2].press(deploy.id, "Proceed")
                    clicks += 1
            await asyncio.sleep(0.05)

    await asyncio.wait_for(press_proceed_until_all_done(), timeout=120)

    finished = [await copies[0].deploy(d.id) for d in deploys]
    # Built ahead (DESIGN §8), most land as fast-forwards to the commit that was built; the others are merged.
    landed = [d for d in finished if d.candidate_sha == d.merge_sha]
    assert landed and sandbox.github.writes["merges"] == DEPLOYS - len(landed)
    assert not [b for b in sandbox.github.branches() if b.startswith("fatcontroller/")]
    merged_in_order = [message for _, message, _ in reversed(sandbox.github.log("master", 3 * DEPLOYS))
                       if message.startswith("Merge pull request")]
    assert [f"#{d.pr_number} " in m for d, m in zip(finished, merged_in_order, strict=True)] == [True] * DEPLOYS
    started = [d.started_at for d in finished]
    assert started == sorted(started)
    calls = sandbox.aws.calls
    processes = len(copies[0].config.processes)
    assert calls.count("ecs:RegisterTaskDefinition") == DEPLOYS * processes
    assert calls.count("ecs:CreateService") == DEPLOYS * processes
    assert calls.count("ecs:DeleteService") == DEPLOYS * processes
    # One rolling update per service and one restore of its own deployment configuration once it is done, and one
    # scale-to-zero per canary before it is deleted.
    assert calls.count("ecs:UpdateService") == 3 * DEPLOYS * processes
    for deploy in finished:
        assert sandbox.jenkins.build_count("app-master", deploy.merge_sha) == 1
    assert all(copy.engine.steps_run > 0 for copy in copies), "both copies did work"
