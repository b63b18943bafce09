"""Every kind of outside misbehaviour at once, through the real bot: GitHub and Jenkins failing (at random)
and slow, Jenkins unreachable for a while, ECS throttling and failing, Slack answering 429 with
Retry-After, the Socket Mode connection dropped and a `disconnect` request. The deploy still completes,
with one merge and every service on the new image, and people are still answered."""

from __future__ import annotations

import time
from pathlib import Path

from flows.deploy.machine import Event
from sandbox.server import Fault
from sandbox.world import Sandbox
from tests.fixtures.bot import BotWorld, start_world
from tests.fixtures.peas import PEAS
from tests.fixtures.world import eventually

ALICE, BOB = "U0ALICE", "U0BOB"
JENKINS_API = r"^GET .*/api/json"


async def test_a_deploy_completes_through_every_kind_of_fault(world: BotWorld) -> None:
    sandbox, slack = world.sandbox, world.slack
    sandbox.github.faults.fail_next(2, status=502)
    sandbox.github.faults.error_rate(0.2, status=502)
    sandbox.github.faults.latency(0.02)
    # Jenkins's API only: GitHub's webhook that starts the build is not ours to retry
    sandbox.jenkins.faults.error_rate(0.2, match=JENKINS_API, status=503)
    sandbox.jenkins.faults.latency(0.02, match=JENKINS_API)
    sandbox.jenkins.faults.add(Fault(match=JENKINS_API, drop=True, remaining=4))  # unreachable for a while
    sandbox.aws.throttle(2, match="ecs:")
    sandbox.aws.server_error(1, match="ecs:")
    slack.ratelimit("chat.update", retry_after=1, count=2)
    slack.ratelimit("chat.postMessage", retry_after=1)
    pr = world.new_pr("Weathers the storm")

    answer = await (await slack.command(ALICE, "/deploy", str(pr))).ephemeral(timeout=15)
    assert "Queued" in answer.text, answer.text
    await slack.drop_socket()
    await slack.wait_connected()
    await world.reaches(pr, "canary_check", within=60)
    await slack.click(ALICE, "Proceed", message=await world.dm_with(ALICE, "Proceed", within=20))
    await slack.send_disconnect()
    await slack.wait_connected()
    await world.reaches(pr, "awaiting_confirmation", within=60)
    await slack.click(ALICE, "Done", message=await world.dm_with(ALICE, "Done", within=20))
    deploy = await world.reaches(pr, "completed", within=30)

    assert sandbox.github.writes["merges"] == 1
    for process in world.config.processes.values():
        assert set(sandbox.aws.running_images("production", process.service)) == {sandbox.image(deploy.merge_sha)}
    await world.card_showing(pr, "completed")
    assert slack.connection_count >= 3  # reconnected after the drop and after the disconnect
    for system in ("github", "jenkins", "aws", "slack"):
        assert getattr(sandbox, system).faults.injected > 0, f"no fault reached {system}"


async def test_github_failing_for_a_minute_during_a_rollback_holds_up_no_pea_and_no_answer(
        pea_sandbox: Sandbox, tmp_path: Path) -> None:
    """The rollback's revert is retried through the schedule: nothing waits for it but the deploy itself."""
    peas = {"cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"}
    bot, config = await start_world(pea_sandbox, tmp_path, peas=peas)
    world = BotWorld(bot, pea_sandbox, config)
    slack, github = world.slack, pea_sandbox.github
    try:
        pr = world.new_pr("Rolled back through an outage")
        pea_pr = world.new_pr("Preview meanwhile")
        await slack.command(ALICE, "/deploy", str(pr))
        deploy = await world.reaches(pr, "canary_check", within=30)
        await slack.wait_for(lambda: pea_sandbox.jenkins.build_count("app-pr", github.pr_head(pea_pr)),
                             what="the preview's build")
        outage = time.monotonic()
        github.faults.add(Fault(match="/git/", status=500))  # the revert's calls: refs, commits, trees
        await bot.train().deploys.act(deploy.id, "canary_check", Event.ROLL_BACK, ALICE)

        began = time.monotonic()
        answer = await (await slack.command(ALICE, "/pea", f"deploy sweet-pea {pea_pr}")).ephemeral(timeout=3)
        assert "Deploying" in answer.text, answer.text
        for command, text in (("/deploy", "queue"), ("/pea", "")):
            asked = time.monotonic()
            await (await slack.command(BOB, command, text)).ephemeral(timeout=3)
            assert time.monotonic() - asked < 3
        await slack.wait_for(lambda: any("is up at https://sweet-pea.dev.acme.com" in m.render()
                                         for m in slack.dms(ALICE)), 30, what="the pea up while GitHub fails")
        assert time.monotonic() - began < 30
        rolling = await world.deploy_of(pr)
        assert rolling.state == "rolling_back" and not rolling.needs_attention

        await eventually(lambda: _after(outage, 60), within=70, what="a minute of GitHub failing")
        github.faults.clear()
        done = await world.reaches(pr, "rolled_back", within=60)
        assert done.revert_sha
    finally:
        await bot.stop()


async def _after(since: float, seconds: float) -> bool:
    return time.monotonic() - since >= seconds
