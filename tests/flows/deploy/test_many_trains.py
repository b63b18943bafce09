"""Many trains in one engine (DESIGN §6): each train advances on its own lane, side by side, and one train's
failing outside systems never hold another train up."""

from __future__ import annotations

import asyncio

from flows.notices import Queued
from tests.fixtures.world import Train


async def _to_the_gate(train: Train) -> tuple[int, str]:
    deploy = await train.request(train.new_pr(f"Change {train.config.name}"))
    at_gate = await train.reaches(deploy.id, "canary_check", within=30)
    assert at_gate.merge_sha is not None
    return deploy.id, at_gate.merge_sha


async def _complete(train: Train, deploy_id: int) -> None:
    await train.press(deploy_id, "Proceed")
    await train.reaches(deploy_id, "awaiting_confirmation", within=30)
    await train.press(deploy_id, "Done")
    await train.reaches(deploy_id, "completed")


async def test_two_trains_deploy_at_once_each_in_its_own_repository_and_services(
        side_by_side: tuple[Train, Train]) -> None:
    app, billing = side_by_side
    (app_id, app_sha), (billing_id, billing_sha) = await asyncio.gather(_to_the_gate(app), _to_the_gate(billing))

    # both in flight at once: neither queue waits for the other's deploy
    assert {(await app.deploy(app_id)).train_id, (await billing.deploy(billing_id)).train_id} == {"app", "billing"}
    assert app.sandbox.github.writes["merges"] == 1 and billing.sandbox.github.writes["merges"] == 1
    assert app.sandbox.aws.running_images("production", "app-web-canary") == [app.sandbox.image(app_sha)]
    assert billing.sandbox.aws.running_images("production", "billing-api-canary") == [
        billing.sandbox.image(billing_sha)]
    assert billing.sandbox.jenkins.builds("billing-master") and app.sandbox.jenkins.builds("app-master")

    await asyncio.gather(_complete(app, app_id), _complete(billing, billing_id))
    assert set(app.sandbox.aws.running_images("production", "app-web")) == {app.sandbox.image(app_sha)}
    assert set(billing.sandbox.aws.running_images("production", "billing-api")) == {billing.sandbox.image(billing_sha)}
    queued = {n.train: n.deploy_id for n in app.notifier.notices if isinstance(n, Queued)}
    assert queued == {"app": app_id, "billing": billing_id}


async def test_a_train_whose_github_fails_holds_up_no_other_train(side_by_side: tuple[Train, Train]) -> None:
    app, billing = side_by_side
    merge = r"^PUT .*/merge$"
    # app's GitHub takes 6 s to refuse each merge: a loop shared with billing would wait that long on every pass
    app.sandbox.github.faults.latency(6.0, match=merge)
    app.sandbox.github.faults.error_rate(1.0, match=merge, status=500)
    stuck = await app.request(app.new_pr("Cannot merge"))

    deploy_id, _ = await _to_the_gate(billing)
    await _complete(billing, deploy_id)  # its ten steps, each well within the 30 s of a state's wait

    still = await app.deploy(stuck.id)
    assert still.state == "merging" and not still.needs_attention  # its merge not answered yet, or retrying
    app.sandbox.github.faults.clear()
    await app.reaches(stuck.id, "canary_check", within=30)
