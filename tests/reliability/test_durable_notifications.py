"""What people must be told survives a crash and a Slack outage (DESIGN §7 "Durable notifications").

The notices are written to the outbox with the change that causes them, so a bot killed before it
told anyone tells them after its restart, and a Slack Web API that answers 500 for half a minute
delays the cards, thread replies and DMs of a deploy but loses none, and keeps their order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from flows.deploy.machine import Event
from sandbox.server import Fault
from sandbox.world import Sandbox
from tests.fixtures.bot import BotWorld
from tests.fixtures.bot_process import ProcessWorld
from tests.fixtures.world import eventually

ALICE = "U0ALICE"
SLACK_WEB_API = r"^(chat|views|conversations)[.]"
OUTAGE = 30.0  # seconds


def _replies(world: BotWorld, pr: int) -> list[str]:
    card = world.card(pr)
    assert card is not None, f"no card of #{pr}"
    return [m.render() for m in world.slack.thread(world.channel, card.ts)]


async def test_a_dm_the_bot_died_before_sending_is_sent_after_its_restart(
        sandbox: Sandbox, bot_process: Callable[..., Any]) -> None:
    world: ProcessWorld = await bot_process(sandbox)
    pr = world.new_pr("Told after all")
    await world.slack.command(ALICE, "/deploy", str(pr))
    await world.reaches(pr, "canarying", within=30)
    # From here on nothing reaches Slack: the canaries come up and their DM cannot be sent.
    sandbox.slack.faults.add(Fault(match=SLACK_WEB_API, status=500))
    await world.reaches(pr, "canary_check", within=30)
    doomed = world.processes[-1]
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    assert not any("Canaries are up" in m.render() for m in world.slack.dms(ALICE))
    sandbox.slack.faults.clear()  # Slack is back

    await bot_process(sandbox, world)

    dm = await world.dm_with(ALICE, "Proceed", within=30)
    assert f"#{pr}" in dm.render() and "Canaries are up" in dm.render()
    await world.slack.click(ALICE, "Proceed", message=dm)
    await world.reaches(pr, "awaiting_confirmation", within=30)
    assert sum("Canaries are up" in m.render() for m in world.slack.dms(ALICE)) == 1


THREAD = ["Now deploying", "Merged as", "started", "passed", "Canaries are up", "pressed *Proceed*", "Rolled out"]
DMS = ["Your turn", "Canaries are up", "Rolled out"]


def _in_order(messages: list[str], markers: list[str]) -> bool:
    """Each message says the next marker: all of them, in that order, none twice."""
    return len(messages) == len(markers) and all(m in text for m, text in zip(markers, messages, strict=True))


async def test_a_slack_outage_across_the_canary_and_rollout_loses_no_message_and_keeps_their_order(
        world: BotWorld) -> None:
    pr = world.new_pr("Through the outage")
    await world.slack.command(ALICE, "/deploy", str(pr))
    await world.reaches(pr, "canarying")
    world.slack.faults.add(Fault(match=SLACK_WEB_API, status=500))
    started = time.monotonic()

    deploy = await world.reaches(pr, "canary_check")
    await world.bot.train().deploys.act(deploy.id, "canary_check", Event.PROCEED, ALICE)  # the click comes by socket
    await world.reaches(pr, "awaiting_confirmation", within=OUTAGE)
    assert not any("Rolled out" in m.render() for m in world.slack.dms(ALICE)), "Slack was down"
    await eventually(lambda: _after(started, OUTAGE), within=OUTAGE + 5, what="the end of the outage")
    world.slack.faults.clear()

    await world.card_showing(pr, "awaiting confirmation", within=15)

    async def everything_told() -> bool:
        return (_in_order(_replies(world, pr), THREAD)
                and _in_order([m.render() for m in world.slack.dms(ALICE)], DMS))

    await eventually(everything_told, within=15, what="every thread reply and DM, in order, none twice")
    done = await world.dm_with(ALICE, "Done")
    await world.slack.click(ALICE, "Done", message=done)
    await world.reaches(pr, "completed")
    await world.card_showing(pr, "completed")
    assert _in_order(_replies(world, pr), [*THREAD, "Completed"])


async def _after(started: float, seconds: float) -> bool:
    return time.monotonic() - started >= seconds
