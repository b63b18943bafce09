"""The Slack emulator drives the real slack-bolt app (AsyncApp over Socket Mode with aiohttp) as Slack does."""

from collections.abc import AsyncIterator

import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackEmulator, render

ALICE = "U0ALICE"
CHANNEL = "C0DEPLOYS"

FORM = {
    "type": "modal",
    "callback_id": "deploy_form",
    "private_metadata": "train=app",
    "title": {"type": "plain_text", "text": "Deploy"},
    "submit": {"type": "plain_text", "text": "Queue"},
    "blocks": [
        {"type": "input", "block_id": "pr", "label": {"type": "plain_text", "text": "Pull request"},
         "element": {"type": "external_select", "action_id": "pr", "min_query_length": 0}},
        {"type": "input", "block_id": "processes", "label": {"type": "plain_text", "text": "Processes"},
         "element": {"type": "checkboxes", "action_id": "processes",
                     "options": [{"text": {"type": "plain_text", "text": p}, "value": p} for p in ("web", "worker")],
                     "initial_options": [{"text": {"type": "plain_text", "text": "web"}, "value": "web"}]}},
        {"type": "input", "block_id": "reason", "optional": True, "label": {"type": "plain_text", "text": "Reason"},
         "element": {"type": "plain_text_input", "action_id": "reason"}},
    ],
}


def wave_card(text: str) -> list[dict]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "wave", "value": "hi", "text": {"type": "plain_text", "text": "Wave"}},
                {"type": "button", "action_id": "shrug", "text": {"type": "plain_text", "text": "Shrug"}}]}]


def build_app(client: AsyncWebClient) -> AsyncApp:
    """A tiny Bolt app: one listener per kind of request the emulator sends."""
    app = AsyncApp(client=client)

    @app.command("/hello")
    async def hello(ack, command, respond) -> None:
        await ack(f"hello {command['user_name']}: {command['text']}")
        await respond("and again, by response_url")

    @app.command("/form")
    async def form(ack, body, client) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=FORM)

    @app.options("pr")
    async def prs(ack, payload) -> None:
        matching = [n for n in ("101", "123", "250") if payload["value"] in n]
        await ack(options=[{"text": {"type": "plain_text", "text": f"#{n}"}, "value": n} for n in matching])

    @app.view("deploy_form")
    async def submitted(ack, view, body, client) -> None:
        values = view["state"]["values"]
        if not values["reason"]["reason"]["value"]:
            await ack(response_action="errors", errors={"reason": "Say why"})
            return
        await ack()
        processes = [o["value"] for o in values["processes"]["processes"]["selected_options"]]
        await client.chat_postMessage(
            channel=body["user"]["id"],
            text=f"queued #{values['pr']['pr']['selected_option']['value']} {' '.join(processes)} "
                 f"because {values['reason']['reason']['value']} ({view['private_metadata']})")

    @app.action("wave")
    async def wave(ack, body, client) -> None:
        await ack()
        await client.chat_postMessage(channel=body["channel"]["id"], thread_ts=body["container"]["message_ts"],
                                      text=f"{body['user']['name']} waved ({body['actions'][0]['value']})")

    @app.event("app_home_opened")
    async def home(event, client) -> None:
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"Hello <@{event['user']}>"}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "shrug", "text": {"type": "plain_text", "text": "Shrug"}}]}]})

    return app


@pytest.fixture
def client(slack_emulator: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack_emulator.api_url)


@pytest.fixture
async def bolt(slack_emulator: SlackEmulator, client: AsyncWebClient) -> AsyncIterator[AsyncSocketModeHandler]:
    """The Bolt app connected over Socket Mode; a short ping interval so a dropped socket is noticed in ~1 s."""
    handler = AsyncSocketModeHandler(build_app(client), "xapp-test", ping_interval=1)
    await handler.connect_async()
    await slack_emulator.wait_connected()
    yield handler
    await handler.close_async()


async def test_a_command_is_acked_and_its_replies_reach_the_user_as_ephemeral_messages(slack_emulator, bolt):
    interaction = await slack_emulator.command(ALICE, "/hello", 'world --reason "hotfix"')

    assert interaction.ack == {"text": 'hello alice: world --reason "hotfix"'}
    assert 0 < interaction.latency_ms < 3000
    assert [a.type for a in slack_emulator.acks] == ["slash_commands"]
    # Bolt's ack and the listener's respond() race, as they do against Slack: either may come first
    replies = {(m.via, m.text, m.channel) for m in [await interaction.ephemeral(), await interaction.ephemeral()]}
    assert replies == {("ack", 'hello alice: world --reason "hotfix"', CHANNEL),
                       ("response_url", "and again, by response_url", CHANNEL)}
    assert slack_emulator.messages(CHANNEL) == []


async def test_a_modal_opened_by_the_app_can_be_filled_in_with_suggestions_and_submitted(slack_emulator, bolt):
    await slack_emulator.command(ALICE, "/form")
    view = await slack_emulator.wait_for(lambda: slack_emulator.current_view(ALICE), what="the form")
    assert view["callback_id"] == "deploy_form"

    options = await slack_emulator.suggest(ALICE, "pr", "pr", "12")
    assert [o["value"] for o in options] == ["123"]

    refused = await slack_emulator.submit_view(ALICE, {"pr": {"pr": options[0]}})
    assert refused.errors == {"reason": "Say why"}
    assert slack_emulator.current_view(ALICE)["id"] == view["id"]  # still open, showing the error

    accepted = await slack_emulator.submit_view(
        ALICE, {"pr": {"pr": options[0]}, "processes": {"processes": ["web", "worker"]},
                "reason": {"reason": "hotfix"}})
    assert accepted.errors is None
    assert slack_emulator.current_view(ALICE) is None
    dm = await slack_emulator.wait_for(lambda: slack_emulator.dms(ALICE), what="the confirmation DM")
    assert dm[0].text == "queued #123 web worker because hotfix (train=app)"


async def test_submitting_a_value_the_view_has_no_input_for_fails_clearly(slack_emulator, bolt):
    await slack_emulator.command(ALICE, "/form")
    await slack_emulator.wait_for(lambda: slack_emulator.current_view(ALICE), what="the form")

    with pytest.raises(AssertionError, match="no input"):
        await slack_emulator.submit_view(ALICE, {"notes": {"notes": "x"}})


async def test_views_open_with_a_trigger_the_emulator_did_not_issue_is_refused(slack_emulator, client):
    with pytest.raises(SlackApiError) as refused:
        await client.views_open(trigger_id="12345.98765.abcdef", view=FORM)
    assert refused.value.response["error"] == "expired_trigger_id"


async def test_a_click_by_label_sends_block_actions_for_the_latest_message_with_that_button(
        slack_emulator, bolt, client):
    await client.chat_postMessage(channel=CHANNEL, text="old", blocks=wave_card("old"))
    latest = await client.chat_postMessage(channel=CHANNEL, text="new", blocks=wave_card("new"))

    interaction = await slack_emulator.click(ALICE, "Wave")

    assert interaction.latency_ms < 3000
    reply = await slack_emulator.wait_for(lambda: slack_emulator.thread(CHANNEL, latest["ts"]), what="the reply")
    assert reply[0].text == "alice waved (hi)"
    with pytest.raises(AssertionError, match=r"no button 'Proceed'.*\['Wave', 'Shrug'\]"):
        await slack_emulator.click(ALICE, "Proceed")


async def test_opening_the_app_home_lets_the_app_publish_it(slack_emulator, bolt):
    interaction = await slack_emulator.open_home(ALICE)

    home = await slack_emulator.wait_for(lambda: slack_emulator.home(ALICE), what="the App Home")
    assert render(home) == "Hello <@U0ALICE>\n[Shrug]"
    assert interaction.type == "app_home_opened"
    assert slack_emulator.acks[-1].type == "events_api"


async def test_chat_update_edits_in_place_and_keeps_the_edit_history(slack_emulator, client):
    posted = await client.chat_postMessage(channel=ALICE, text="queued")
    assert posted["channel"] == slack_emulator.dm_channel(ALICE)

    for text in ("building", "canary check"):
        await client.chat_update(channel=posted["channel"], ts=posted["ts"], text=text)

    [message] = slack_emulator.dms(ALICE)
    assert message.text == "canary check"
    assert [e.text for e in message.edits] == ["building", "canary check"]
    assert message.posted_at <= message.edits[0].at <= message.edits[1].at
    assert [c.method for c in slack_emulator.api_calls()] == ["chat.postMessage", "chat.update", "chat.update"]


async def test_a_bad_bot_token_and_a_bad_app_token_are_refused_with_invalid_auth(slack_emulator):
    with pytest.raises(SlackApiError) as bad_bot:
        await AsyncWebClient(token="xoxb-wrong", base_url=slack_emulator.api_url).auth_test()
    with pytest.raises(SlackApiError) as bad_app:
        await AsyncWebClient(base_url=slack_emulator.api_url).apps_connections_open(app_token="xapp-wrong")

    assert bad_bot.value.response["error"] == bad_app.value.response["error"] == "invalid_auth"


async def test_an_unknown_method_is_answered_as_slack_does(client):
    with pytest.raises(SlackApiError) as unknown:
        await client.api_call("chat.teleport")
    assert unknown.value.response["error"] == "unknown_method"


async def test_an_injected_rate_limit_returns_429_with_retry_after_once(slack_emulator, client):
    posted = await client.chat_postMessage(channel=CHANNEL, text="card")
    slack_emulator.ratelimit("chat.update", retry_after=1)

    with pytest.raises(SlackApiError) as throttled:
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="edited")
    assert throttled.value.response.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "1"
    assert throttled.value.response["error"] == "ratelimited"

    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="edited")
    assert slack_emulator.messages(CHANNEL)[0].text == "edited"


async def test_blocks_slack_would_refuse_are_refused(client):
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "x" * 80}}]}])
    assert refused.value.response["error"] == "invalid_blocks"


@pytest.mark.parametrize("cut", ["send_disconnect", "drop_socket"])
async def test_the_app_reconnects_after_the_socket_goes_and_is_acked_again(slack_emulator, bolt, cut):
    connections = slack_emulator.connection_count

    await getattr(slack_emulator, cut)()
    await slack_emulator.wait_connected(timeout=10)

    assert slack_emulator.connection_count == connections + 1
    interaction = await slack_emulator.command(ALICE, "/hello", "again")
    assert interaction.ack == {"text": "hello alice: again"}
