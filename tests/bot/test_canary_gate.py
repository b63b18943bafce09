"""The canary gate in Slack with canary analysis (DESIGN §9), against the real bot and the sandbox: the DM keeps
the canaries' health and the alarms' states current in place, linked to the AWS console, and an alarm in ALARM
rolls the deploy back saying so on the card and in a DM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.slack import Message
from sandbox.world import Sandbox
from tests.fixtures.bot import BotWorld, start_world

ALICE = "U0ALICE"
ALARM = "app-5xx-rate"
ALARM_PAGE = f"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/{ALARM}"
CANARY_PAGE = ("https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/production/services/app-web-canary/health"
               "?region=eu-west-1")


@pytest.fixture
async def watched(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The bot, its train watched by one alarm (OK to begin with)."""
    sandbox.aws.create_alarm(ALARM)
    bot, config = await start_world(sandbox, tmp_path, deploy={"alarms": [ALARM]})
    yield BotWorld(bot, sandbox, config)
    await bot.stop()


def _seen(message: Message) -> str:
    return message.render() + json.dumps(message.blocks)


async def _dm_saying(world: BotWorld, ts: str, text: str) -> Message:
    def probe() -> Message | None:
        return next((m for m in world.slack.dms(ALICE) if m.ts == ts and text in _seen(m)), None)
    return await world.slack.wait_for(probe, 15, what=f"the DM {ts} saying {text!r}")


async def test_the_gate_dm_keeps_the_alarms_current_in_place_with_links_to_the_console(watched: BotWorld) -> None:
    world = watched
    pr = world.new_pr("Watched by an alarm")
    await world.slack.command(ALICE, "/deploy", str(pr))
    gate = await world.dm_with(ALICE, "Proceed")
    shown = await _dm_saying(world, gate.ts, f"{ALARM}")
    assert "OK" in shown.render() and ALARM_PAGE in _seen(shown) and CANARY_PAGE in _seen(shown)
    assert "web canary" in shown.render() and "1/1 running" in shown.render()

    world.sandbox.aws.set_alarm(ALARM, "INSUFFICIENT_DATA", "no datapoints")
    edited = await _dm_saying(world, gate.ts, "INSUFFICIENT_DATA")
    assert edited.buttons == ["Proceed", "Roll back"]  # still the gate's DM, still to be pressed
    assert sum("Canaries are up" in m.text for m in world.slack.dms(ALICE)) == 1  # edited, not sent again
    await world.card_showing(pr, "INSUFFICIENT_DATA")

    await world.slack.click(ALICE, "Proceed", message=edited)
    await world.dm_with(ALICE, "Done", within=30)
    retired = await _dm_saying(world, gate.ts, "This step is over")
    assert retired.buttons == []


async def test_an_alarm_at_the_gate_rolls_back_saying_so_on_the_card_and_in_a_dm(watched: BotWorld) -> None:
    world = watched
    pr = world.new_pr("Serves errors")
    await world.slack.command(ALICE, "/deploy", str(pr))
    gate = await world.dm_with(ALICE, "Proceed")

    world.sandbox.aws.set_alarm(ALARM, "ALARM", "Threshold Crossed: 1 datapoint [12.0] > 5.0")
    card = await world.card_showing(pr, "rolled back", within=30)
    assert f"alarm {ALARM} is in ALARM" in card.render() and card.buttons == []
    told = await world.slack.wait_for(
        lambda: next((m for m in world.slack.dms(ALICE) if "rolled back by itself" in m.text), None), 15,
        what="the DM saying the deploy is rolled back by itself")
    assert f"alarm {ALARM} is in ALARM: Threshold Crossed" in told.text
    assert (await _dm_saying(world, gate.ts, "This step is over")).buttons == []
