"""`manifest.yaml` and the code agree: every command, button and event the app can receive has a listener
that acknowledges it, and the app is set up for Socket Mode, interactivity and the Home tab."""

from __future__ import annotations

from pathlib import Path

from bot.deploy import cards
from bot.listeners import NOT_VALID
from flows.config import CommandsConfig
from flows.deploy.machine import BUTTON_EVENTS
from sandbox.world import Sandbox
from tests.fixtures.bot import BotWorld, manifest, start_world
from tests.fixtures.peas import PEAS

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


def test_the_manifest_declares_the_commands_app_yaml_names_by_default() -> None:
    declared = {command["command"] for command in manifest()["features"]["slash_commands"]}
    assert declared == {CommandsConfig().deploy, CommandsConfig().pea}


async def test_renamed_commands_are_the_ones_answered_and_every_answer_quotes_them(pea_sandbox: Sandbox,
                                                                                  tmp_path: Path) -> None:
    """A workspace that already has a `/deploy` renames the app's commands in its manifest and in app.yaml."""
    slack = pea_sandbox.slack
    slack.commands = {"/ship", "/sprout"}  # the manifest, renamed: Slack sends the app only these
    bot, _config = await start_world(pea_sandbox, tmp_path, slack={"commands": {"deploy": "/ship", "pea": "/sprout"}},
                                     peas={"cluster": "peas", "names": list(PEAS)})
    try:
        said = {}
        for command, text in [("/ship", "help"), ("/ship", "frobnicate"), ("/ship", "cancel"),
                              ("/ship", "42 nosuchprocess"), ("/ship", "freeze"), ("/sprout", "help"),
                              ("/sprout", "release green-pea"), ("/sprout", "frobnicate")]:
            said[f"{command} {text}"] = (await (await slack.command(ALICE, command, text)).ephemeral()).text
        assert "`/ship 123`" in said["/ship help"] and "`/ship freeze &lt;reason&gt;`" in said["/ship help"]
        assert "`/ship help`" in said["/ship frobnicate"]
        assert "`/ship queue`" in said["/ship cancel"]
        assert "`/sprout deploy &lt;pea&gt; &lt;pr&gt;`" in said["/sprout help"]
        assert "(`/sprout` lists them)" in said["/sprout release green-pea"]
        assert "`/sprout help`" in said["/sprout frobnicate"]
        for typed, answer in said.items():
            assert "/deploy" not in answer and "/pea" not in answer, (typed, answer)

        await slack.open_home(ALICE)
        home = await slack.wait_for(lambda: slack.home(ALICE), what="the App Home")
        assert "`/ship &lt;pr&gt;`" in slack.render(home) and "/deploy" not in slack.render(home)
        assert (await slack.command(ALICE, "/deploy", "help")).answered_by_slack  # the app has no /deploy now
    finally:
        await bot.stop()
