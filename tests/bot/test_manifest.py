"""`manifest.yaml` and the code agree: every command, button and event the app can receive has a listener
that acknowledges it, and the app is set up for Socket Mode, interactivity and the Home tab."""

from __future__ import annotations

from bot.deploy import cards
from bot.listeners import NOT_VALID
from flows.deploy.machine import BUTTON_EVENTS
from tests.fixtures.bot import BotWorld, manifest

ALICE = "U0ALICE"


def test_the_manifest_enables_socket_mode_interactivity_and_the_home_tab() -> None:
    app = manifest()
    assert app["settings"]["socket_mode_enabled"] is True
    assert app["settings"]["interactivity"]["is_enabled"] is True
    assert app["features"]["app_home"]["home_tab_enabled"] is True
    assert app["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    for command in app["features"]["slash_commands"]:
        assert command["usage_hint"] and command["description"]


async def test_every_command_of_the_manifest_is_answered(world: BotWorld) -> None:
    world.slack.ack_timeout = 3.0  # an unanswered command fails at once
    for command in manifest()["features"]["slash_commands"]:
        typed = await world.slack.command(ALICE, command["command"], "help")
        assert (await typed.ephemeral()).text, f"{command['command']} help gave an empty answer"


async def test_every_kind_of_button_is_acknowledged_and_a_forged_one_changes_nothing(world: BotWorld) -> None:
    world.slack.ack_timeout = 3.0
    forged = [{"type": "button", "action_id": cards.action_id(event), "text": {"type": "plain_text", "text": event},
               "value": '{"deploy": 1, "state": "nonsense"}'} for event in BUTTON_EVENTS]
    message = await world.bot.client.chat_postMessage(channel=world.channel, text="forged",
                                                      blocks=[{"type": "actions", "elements": forged}])
    posted = next(m for m in world.slack.messages(world.channel) if m.ts == message["ts"])

    for event in BUTTON_EVENTS:
        clicked = await world.slack.click(ALICE, event.value, message=posted)
        assert (await clicked.ephemeral()).text == NOT_VALID

    assert await world.deploy_count() == 0


async def test_opening_the_home_tab_is_acknowledged_and_publishes_it(world: BotWorld) -> None:
    await world.slack.open_home(ALICE)

    home = await world.slack.wait_for(lambda: world.slack.home(ALICE), what="the App Home")
    assert "Deploy train" in world.slack.render(home) and "The queue is empty" in world.slack.render(home)
