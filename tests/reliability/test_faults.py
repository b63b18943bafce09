"""Every kind of outside misbehaviour at once, through the real bot: GitHub and Jenkins failing (at random)
and slow, Jenkins unreachable for a while, ECS throttling and failing, Slack answering 429 with
Retry-After, the Socket Mode connection dropped and a `disconnect` request. The deploy still completes,
with one merge and every service on the new image, and people are still answered."""

from __future__ import annotations

from sandbox.server import Fault
from tests.fixtures.bot import BotWorld

ALICE = "U0ALICE"
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
