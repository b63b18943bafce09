"""The browser sandbox: the emulated Slack and the outside world as a web page, driven in headless Chromium.

A small fake app (slack_sdk's Socket Mode client, not the product's bot) answers the envelopes the page's
actions become, through the emulator's Web API; the tests act in the page and check both what it shows
and what reached the app.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from demo.scenario import demo_sandbox
from sandbox.browser import BrowserView
from sandbox.world import Sandbox, SandboxSpec
from tests.fixtures.browser import make_candidate

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

# Each test has its own sandbox; the module runs in one worker (make test) so that one Chromium, not three,
# shares the cores with the other workers' bots.
pytestmark = pytest.mark.xdist_group("browser")

CHANNEL = "C0DEPLOYS"
ALARM = "app-web-5xx"
COMMANDS = {"/hello", "/form", "/thread", "/slow", "/blocks", "/ask", "/dm"}
DOT = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAA"
       "AABJRU5ErkJggg==")


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def option(text: str, value: str | None = None) -> dict:
    return {"text": plain(text), "value": value or text}


MRKDWN = ("*bold* _italic_ ~struck~ `a < b` <https://example.org/x|a link> <@U0ALICE> <#C0DEPLOYS> <!here> "
          ":rocket: :no_such_emoji: &lt;b&gt; &amp; <!date^1700000000^{date_num} {time_secs}|2023-11-14 22:13:20 UTC>"
          "\n```line one\nline *two*```\n>quoted")

# every block type the page renders, each with the elements it can hold
EVERY_BLOCK = [
    {"type": "header", "text": plain("Every block :rocket:")},
    {"type": "section", "text": mrkdwn(MRKDWN), "fields": [mrkdwn("*Field one*\nvalue"), plain("Field two")],
     "accessory": {"type": "button", "text": plain("Accessory"), "action_id": "accessory"}},
    {"type": "section", "text": mrkdwn("with an image"),
     "accessory": {"type": "image", "image_url": DOT, "alt_text": "a dot"}},
    {"type": "section", "text": mrkdwn("with an overflow"),
     "accessory": {"type": "overflow", "action_id": "more", "options": [option("One"), option("Two")]}},
    {"type": "section", "text": mrkdwn("with a select"),
     "accessory": {"type": "static_select", "action_id": "pick", "placeholder": plain("Pick"),
                   "options": [option("a"), option("b")]}},
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "image", "image_url": DOT, "alt_text": "dot"}, mrkdwn("context _text_"),
                                     plain("plain context")]},
    {"type": "actions", "elements": [
        {"type": "button", "text": plain("Go"), "style": "primary", "action_id": "go", "value": "1"},
        {"type": "button", "text": plain("Stop"), "style": "danger", "action_id": "stop",
         "confirm": {"title": plain("Sure?"), "text": mrkdwn("Really *stop*?"), "confirm": plain("Stop it"),
                     "deny": plain("Keep going"), "style": "danger"}},
        {"type": "datepicker", "action_id": "day", "initial_date": "2024-05-01"},
        {"type": "users_select", "action_id": "who"},
    ]},
    {"type": "image", "image_url": DOT, "alt_text": "a picture", "title": plain("A picture")},
    {"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "rich ", "style": {"bold": True}},
            {"type": "text", "text": "code", "style": {"code": True}},
            {"type": "link", "url": "https://example.org/rich", "text": "rich link"},
            {"type": "user", "user_id": "U0BOB"},
            {"type": "channel", "channel_id": CHANNEL}, {"type": "emoji", "name": "tada"},
            {"type": "broadcast", "range": "channel"}]},
        {"type": "rich_text_list", "style": "bullet", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "first item"}]},
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "second item"}]}]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "preformatted"}]},
        {"type": "rich_text_quote", "elements": [{"type": "text", "text": "a rich quote"}]},
    ]},
]

# a modal's worth of input elements (only views hold them)
EVERY_INPUT = [
    {"type": "input", "block_id": f"in-{i}", "label": plain(element["type"]), "element": {"action_id": "x", **element}}
    for i, element in enumerate([
        {"type": "plain_text_input", "multiline": True}, {"type": "number_input", "is_decimal_allowed": False},
        {"type": "email_text_input"}, {"type": "url_text_input"},
        {"type": "checkboxes", "options": [option("a")]}, {"type": "radio_buttons", "options": [option("a")]},
        {"type": "static_select", "option_groups": [{"label": plain("G"), "options": [option("a")]}]},
        {"type": "multi_static_select", "options": [option("a")]}, {"type": "external_select"},
        {"type": "multi_external_select"}, {"type": "users_select"}, {"type": "multi_users_select"},
        {"type": "conversations_select"}, {"type": "channels_select"}, {"type": "datepicker"},
        {"type": "timepicker"}, {"type": "datetimepicker"},
    ])
]


def deploy_form(*, extra: bool = False) -> dict:
    blocks = [
        {"type": "input", "block_id": "pr", "label": plain("Pull request"),
         "element": {"type": "external_select", "action_id": "pr", "min_query_length": 1,
                     "placeholder": plain("Search pull requests")}},
        {"type": "input", "block_id": "processes", "label": plain("Processes"),
         "element": {"type": "checkboxes", "action_id": "processes", "options": [option("web"), option("worker")],
                     "initial_options": [option("web")]}},
        {"type": "input", "block_id": "when", "label": plain("When"),
         "element": {"type": "static_select", "action_id": "when", "options": [option("Now", "now"),
                                                                              option("Tonight", "tonight")]}},
        {"type": "input", "block_id": "reason", "optional": True, "label": plain("Reason"),
         "element": {"type": "plain_text_input", "action_id": "reason"}},
        {"type": "actions", "block_id": "form-actions",
         "elements": [{"type": "button", "action_id": "more", "text": plain("More options")}]},
    ]
    if extra:
        blocks.insert(4, {"type": "input", "block_id": "extra", "optional": True, "label": plain("Extra option"),
                          "element": {"type": "plain_text_input", "action_id": "extra"}})
    return {"type": "modal", "callback_id": "deploy", "title": plain("Deploy"), "submit": plain("Queue"),
            "close": plain("Cancel"), "blocks": blocks}


class FakeApp:
    """A tiny Slack app over Socket Mode: acks every envelope and answers the way each test needs."""

    def __init__(self, sandbox: Sandbox) -> None:
        slack = sandbox.slack
        self.web = WebClient(token=slack.bot_token, base_url=slack.api_url)
        self.socket = SocketModeClient(app_token=slack.app_token, web_client=self.web, auto_reconnect_enabled=False)
        self.socket.socket_mode_request_listeners.append(self._on_request)
        self.received: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def start(self) -> FakeApp:
        self.socket.connect()
        return self

    def stop(self) -> None:
        self.socket.close()

    def payloads(self, kind: str, match: Callable[[dict], bool] = lambda p: True) -> list[dict]:
        with self._lock:
            return [p for k, p in self.received if k == kind and match(p)]

    def _on_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        with self._lock:
            self.received.append((request.payload.get("type") or request.type, request.payload))
        ack, then = self._answer(request.type, request.payload)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=ack))
        if then is not None:
            then()

    def _answer(self, kind: str, p: dict) -> tuple[dict | None, Callable[[], Any] | None]:
        web = self.web
        if kind == "slash_commands":
            command, text, user, channel = p["command"], p["text"], p["user_id"], p["channel_id"]
            if command == "/hello":
                blocks = [{"type": "section", "text": mrkdwn(f"Hello <@{user}>: *{text}*")},
                          {"type": "actions", "block_id": "card", "elements": [
                              {"type": "button", "action_id": "wave", "value": f"wave:{text}", "style": "primary",
                               "text": plain("Wave")},
                              {"type": "button", "action_id": "leave", "style": "danger", "text": plain("Leave"),
                               "confirm": {"title": plain("Leave?"), "text": mrkdwn("You will *leave*."),
                                           "confirm": plain("Yes, leave"), "deny": plain("Stay")}}]}]
                return None, lambda: web.chat_postMessage(channel=channel, text=f"Hello {text}", blocks=blocks)
            if command == "/form":
                return None, lambda: web.views_open(trigger_id=p["trigger_id"], view=deploy_form())
            if command == "/thread":
                def thread() -> None:
                    parent = web.chat_postMessage(channel=channel, text=f"Parent {text}")
                    web.chat_postMessage(channel=channel, thread_ts=parent["ts"], text=f"Reply to {text}")
                return None, thread
            if command == "/slow":
                time.sleep(3.2)  # the app breaks Slack's 3 s rule on purpose
                return None, None
            if command == "/blocks":
                blocks = [{"type": "section", "text": mrkdwn(f"Blocks {text}")}, *EVERY_BLOCK]
                if text == "mystery":
                    blocks.append({"type": "mystery_block"})
                return None, lambda: web.chat_postMessage(channel=channel, text="blocks", blocks=blocks)
            if command == "/ask":
                return {"text": f"Just for you: {text}"}, None
            if command == "/dm":
                return None, lambda: web.chat_postMessage(channel=user, text=f"A DM about {text}")
            return None, None
        if kind == "events_api":
            event = p["event"]
            if event["type"] == "app_home_opened":
                home = {"type": "home", "blocks": [
                    {"type": "header", "text": plain(f"Welcome home #{len(self.payloads('event_callback'))}")},
                    {"type": "section", "text": mrkdwn(f"Hi <@{event['user']}>")},
                    {"type": "actions", "elements": [{"type": "button", "action_id": "home-refresh",
                                                      "text": plain("Refresh home")}]}]}
                return None, lambda: web.views_publish(user_id=event["user"], view=home)
            return None, None
        if p["type"] == "block_suggestion":
            found = [n for n in ("101", "123", "250") if p["value"] in n]
            return {"options": [option(f"#{n} change {n}", n) for n in found]}, None
        if p["type"] == "block_actions":
            action = p["actions"][0]
            if action["action_id"] == "wave":
                container = p["container"]
                blocks = [{"type": "section", "text": mrkdwn(f"Waved by <@{p['user']['id']}> ({action['value']})")}]
                return None, lambda: web.chat_update(channel=container["channel_id"], ts=container["message_ts"],
                                                     text="waved", blocks=blocks)
            if action["action_id"] == "more":
                view = p["view"]
                return None, lambda: web.views_update(view_id=view["id"], hash=view["hash"],
                                                      view=deploy_form(extra=True))
            return None, None
        if p["type"] == "view_submission":
            values = p["view"]["state"]["values"]
            reason = values["reason"]["reason"]["value"]
            if reason == "no":
                return {"response_action": "errors", "errors": {"reason": "Give a better reason"}}, None
            picked = values["pr"]["pr"]["selected_option"]["value"]
            processes = ", ".join(o["value"] for o in values["processes"]["processes"]["selected_options"])
            when = values["when"]["when"]["selected_option"]["value"]
            return None, lambda: web.chat_postMessage(channel=CHANNEL, text=f"Queued #{picked} ({processes}) {when}: "
                                                                               f"{reason}")
        return None, None


@pytest.fixture
def world() -> Iterator[tuple[Sandbox, BrowserView, FakeApp]]:
    """A sandbox of this test's own (an alarm, a pea service), its browser view, and the fake app connected to it."""
    sandbox = Sandbox(SandboxSpec(alarms=(ALARM,), pea_services=("pea-chick-pea-web",))).start()
    sandbox.slack.commands = set(COMMANDS)
    view = BrowserView(sandbox)
    view.start()
    app = FakeApp(sandbox).start()
    try:
        yield sandbox, view, app
    finally:
        app.stop()
        view.stop()
        sandbox.stop()


@pytest.fixture
def page(world: tuple[Sandbox, BrowserView, FakeApp], browser_page: Any) -> Any:
    """The page open for alice on #deploys."""
    browser_page.goto(f"{world[1].url}/?user=alice#channel/{CHANNEL}")
    expect(browser_page.locator("#connection")).to_have_text("live")
    return browser_page


def message(page: Any, text: str) -> Any:
    return page.locator("#messages > .message", has_text=text)


def send(page: Any, line: str) -> None:
    page.locator("#composer-text").fill(line)
    page.locator("#composer-text").press("Enter")


def test_a_command_posts_a_card_whose_button_reaches_the_app_and_the_edit_shows(world, page) -> None:
    _, _, app = world
    expect(page.locator("#app-connection")).to_have_text("the app is connected")
    send(page, "/hello card one")
    card = message(page, "Hello @alice: card one")
    expect(card.locator(".bk-b")).to_have_text("card one")
    expect(card.locator(".app-badge")).to_have_text("APP")
    wave = card.get_by_role("button", name="Wave")
    expect(wave).to_have_class(re.compile("bk-primary"))
    expect(card.get_by_role("button", name="Leave")).to_have_class(re.compile("bk-danger"))
    ts = card.get_attribute("data-ts")

    wave.click()
    edited = page.locator(f'#messages > .message[data-ts="{ts}"]')
    expect(edited).to_contain_text("Waved by @alice (wave:card one)")
    expect(edited.locator(".edited")).to_have_text("(edited)")
    expect(edited.get_by_role("button", name="Wave")).to_have_count(0)
    [clicked] = app.payloads("block_actions", lambda p: p["container"].get("message_ts") == ts)
    assert clicked["user"]["id"] == "U0ALICE"
    assert clicked["actions"][0]["action_id"] == "wave" and clicked["actions"][0]["value"] == "wave:card one"
    assert clicked["container"]["channel_id"] == CHANNEL and clicked["channel"]["id"] == CHANNEL
    [command] = app.payloads("slash_commands", lambda p: p["text"] == "card one")
    assert command["command"] == "/hello" and command["user_id"] == "U0ALICE" and command["channel_id"] == CHANNEL


def test_a_confirm_dialog_guards_a_button(world, page) -> None:
    _, _, app = world
    send(page, "/hello card two")
    card = message(page, "Hello @alice: card two")
    ts = card.get_attribute("data-ts")

    def left() -> list[dict]:
        return app.payloads("block_actions", lambda p: p["container"].get("message_ts") == ts)

    card.get_by_role("button", name="Leave").click()
    dialog = page.locator(".bk-confirm")
    expect(dialog.locator(".bk-confirm-title")).to_have_text("Leave?")
    expect(dialog.locator(".bk-b")).to_have_text("leave")
    dialog.get_by_role("button", name="Stay").click()
    expect(dialog).to_have_count(0)
    card.get_by_role("button", name="Leave").click()
    page.locator(".bk-confirm").get_by_role("button", name="Yes, leave").click()
    expect(page.locator("#activity li", has_text="[Leave]")).to_contain_text("acked in")
    assert [p["actions"][0]["action_id"] for p in left()] == ["leave"]  # "Stay" sent nothing


def test_a_modal_is_filled_with_suggestions_shows_field_errors_and_is_submitted(world, page) -> None:
    _, _, app = world
    page.locator("#person").select_option(label="bob")
    expect(page.locator("#person")).to_have_value("U0BOB")
    send(page, "/form")
    modal = page.locator("#modal-layer .modal")
    expect(modal.locator(".modal-header h3")).to_have_text("Deploy")
    modal.locator(".bk-external-input").fill("12")
    suggestion = modal.locator(".bk-external-option", has_text="#123 change 123")
    suggestion.click()
    expect(modal.locator(".bk-external-chosen")).to_have_text(re.compile("#123 change 123"))
    modal.get_by_label("worker").check()
    modal.locator('[data-block-id="when"] select').select_option("tonight")
    modal.locator('[data-block-id="reason"] input').fill("no")

    # views.update from a button in the modal: the new field appears, what was typed stays
    modal.get_by_role("button", name="More options").click()
    expect(modal.locator('[data-block-id="extra"] .bk-input-label')).to_contain_text("Extra option")
    expect(modal.locator('[data-block-id="reason"] input')).to_have_value("no")
    [more] = app.payloads("block_actions", lambda p: p["actions"][0]["action_id"] == "more")
    assert more["view"]["state"]["values"]["when"]["when"]["selected_option"]["value"] == "tonight"

    modal.get_by_role("button", name="Queue").click()
    expect(modal.locator('[data-block-id="reason"] .bk-error')).to_have_text("Give a better reason")
    modal.locator('[data-block-id="reason"] input').fill("ship it")
    modal.get_by_role("button", name="Queue").click()
    expect(page.locator("#modal-layer")).to_be_hidden()
    expect(message(page, "Queued #123 (web, worker) tonight: ship it")).to_have_count(1)
    submitted = app.payloads("view_submission")[-1]
    assert submitted["user"]["id"] == "U0BOB"
    assert submitted["view"]["state"]["values"]["extra"]["extra"]["value"] is None
    suggested = app.payloads("block_suggestion")
    assert suggested and suggested[-1]["value"] == "12" and suggested[-1]["action_id"] == "pr"


def test_a_modal_closes_without_telling_the_app(world, page) -> None:
    sandbox, _, app = world
    page.locator("#person").select_option(label="carol")
    send(page, "/form")
    modal = page.locator("#modal-layer .modal")
    expect(modal).to_be_visible()
    modal.get_by_role("button", name="Cancel").click()
    expect(page.locator("#modal-layer")).to_be_hidden()
    assert sandbox.slack.current_view("carol") is None
    assert not app.payloads("view_closed")  # the form did not ask for notify_on_close


def test_the_app_home_is_published_when_opened(world, page) -> None:
    _, _, app = world
    page.locator("#nav-home").click()
    home = page.locator("#home")
    expect(home.locator(".bk-header")).to_contain_text("Welcome home")
    expect(home).to_contain_text("Hi @alice")
    home.get_by_role("button", name="Refresh home").click()
    expect(page.locator("#activity li", has_text="[Refresh home] in the App Home")).to_contain_text("acked in")
    [opened, *_] = app.payloads("event_callback", lambda p: p["event"]["user"] == "U0ALICE")
    assert opened["event"]["type"] == "app_home_opened"
    [refreshed] = app.payloads("block_actions", lambda p: p["actions"][0]["action_id"] == "home-refresh")
    assert refreshed["container"] == {"type": "view", "view_id": refreshed["view"]["id"]}
    assert refreshed["view"]["type"] == "home" and refreshed["user"]["id"] == "U0ALICE"


def test_a_thread_reply_shows_under_its_parent(world, page) -> None:
    send(page, "/thread tea")
    parent = message(page, "Parent tea")
    toggle = parent.locator(".thread-toggle")
    expect(toggle).to_have_text("1 reply")
    expect(page.locator(".thread")).to_have_count(0)
    toggle.click()
    expect(parent.locator(".thread .message")).to_contain_text("Reply to tea")
    top_level = page.locator("#messages > .message > .message-body > .message-content", has_text="Reply to tea")
    expect(top_level).to_have_count(0)


def test_ephemeral_messages_and_dms_are_the_current_persons(world, page) -> None:
    send(page, "/ask secret")
    mine = page.locator("#messages .message.ephemeral", has_text="Just for you: secret")
    expect(mine.locator(".only-you")).to_contain_text("Only visible to you")
    send(page, "/dm lunch")
    expect(page.locator("#dm-count")).not_to_have_text("")
    page.locator("#nav-dm").click()
    expect(message(page, "A DM about lunch")).to_have_count(1)

    # another person sees neither alice's DM nor her ephemeral message
    page.locator("#person").select_option(label="admin")
    expect(page.locator("#conversation-title")).to_contain_text("direct messages")
    expect(page.locator("#messages .empty")).to_have_text("No messages yet.")
    page.locator(f'#sidebar a[data-view="channel/{CHANNEL}"]').click()
    expect(page.locator("#conversation-title")).to_have_text("# deploys")
    expect(page.locator("#messages .message.ephemeral", has_text="Just for you: secret")).to_have_count(0)


def test_an_unknown_command_is_answered_by_slack_at_once(world, page) -> None:
    _, _, app = world
    send(page, "/deply now")
    answer = page.locator("#messages .message.ephemeral", has_text="/deply is not a valid command")
    expect(answer.locator(".sender")).to_have_text("Slackbot")
    expect(page.locator("#activity li", has_text="/deply now")).to_contain_text("answered by Slack")
    assert not app.payloads("slash_commands", lambda p: p["command"] == "/deply")


def test_an_ack_over_three_seconds_is_shown(world, page) -> None:
    send(page, "/slow")
    entry = page.locator("#activity li", has_text="/slow")
    expect(entry).to_contain_text("waiting for the app's ack")
    expect(entry).to_contain_text("late ack", timeout=8000)
    expect(entry).to_contain_text('/slow failed with the error "operation_timeout"')
    expect(page.locator(".toast.bad")).to_contain_text("operation_timeout")
    expect(page.locator("#ack-stats")).to_have_class(re.compile("late"))


def test_every_block_type_renders_and_mrkdwn_reads_as_in_slack(world, page) -> None:
    send(page, "/blocks all")
    card = message(page, "Blocks all")
    expect(card.locator(".bk-header")).to_contain_text("Every block")
    expect(card.locator(".bk-unsupported")).to_have_count(0)
    text = card.locator(".bk-section", has=page.locator(".bk-fields")).locator(".bk-section-main > .bk-mrkdwn")
    expect(text.locator("b.bk-b").first).to_have_text("bold")
    expect(text.locator("i.bk-i").first).to_have_text("italic")
    expect(text.locator("s.bk-s")).to_have_text("struck")
    expect(text.locator("code.bk-code")).to_have_text("a < b")
    expect(text.locator("a.bk-link", has_text="a link")).to_have_attribute("href", "https://example.org/x")
    expect(text.locator(".bk-mention")).to_have_text("@alice")
    expect(text.locator(".bk-channel")).to_have_text("#deploys")
    expect(text.locator(".bk-broadcast")).to_have_text("@here")
    expect(text.locator('.bk-emoji[title=":rocket:"]')).to_have_text("🚀")
    expect(text).to_contain_text(":no_such_emoji: <b> &")
    expect(text.locator(".bk-date")).to_have_text("2023-11-14 5:13:20 PM")  # New York time, the viewer's
    expect(text.locator("pre.bk-pre")).to_have_text("line one\nline *two*")
    expect(text.locator("blockquote.bk-quote")).to_have_text("quoted")
    expect(card.locator(".bk-fields .bk-field")).to_have_count(2)
    expect(card.locator(".bk-accessory").get_by_role("button", name="Accessory")).to_be_visible()
    expect(card.locator(".bk-context")).to_contain_text("context text")
    expect(card.locator(".bk-divider")).to_have_count(1)
    expect(card.locator("figure.bk-image figcaption")).to_have_text("A picture")
    expect(card.locator(".bk-rich .bk-mention")).to_have_text("@bob")
    expect(card.locator(".bk-rich li")).to_have_count(2)

    unsupported = page.evaluate("([a, b]) => BlockKit.unsupportedIn(a).concat(BlockKit.unsupportedIn(b))",
                                [EVERY_BLOCK, EVERY_INPUT])
    assert unsupported == []


MRKDWN_CASES = [
    ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
    ("*bold _both_*", "<b class=\"bk-b\">bold <i class=\"bk-i\">both</i></b>"),
    ("`*not bold*`", "<code class=\"bk-code\">*not bold*</code>"),
    ("<https://a.example/c?x=1&amp;y=2|Q&amp;A>",
     "<a class=\"bk-link\" href=\"https://a.example/c?x=1&amp;y=2\" target=\"_blank\" rel=\"noopener\">Q&amp;A</a>"),
    ("<javascript:alert(1)|click>", "<span class=\"bk-link\">click</span>"),
    ("<@U0NOBODY|someone> <!channel> <!subteam^S1|@oncall>",
     "<span class=\"bk-mention\">@someone</span> <span class=\"bk-broadcast\">@channel</span> "
     "<span class=\"bk-mention\">@oncall</span>"),
    ("a &amp;lt; b &lt;script&gt;", "a &amp;lt; b &lt;script&gt;"),
    ("see https://example.org/page.", "see <a class=\"bk-link\" href=\"https://example.org/page\" "
                                      "target=\"_blank\" rel=\"noopener\">https://example.org/page</a>."),
]


def test_mrkdwn_edge_cases_render_as_slack_does(page) -> None:
    html = page.evaluate("cases => cases.map(t => BlockKit.renderMrkdwn(t, {}).firstChild.innerHTML)",
                         [text for text, _ in MRKDWN_CASES])
    assert html == [expected for _, expected in MRKDWN_CASES]


def test_an_unknown_block_or_element_type_is_marked_unsupported(world, page) -> None:
    send(page, "/blocks mystery")
    card = message(page, "Blocks mystery")
    expect(card.locator(".bk-unsupported")).to_have_text("unsupported: mystery_block")
    found = page.evaluate("""() => BlockKit.unsupportedIn([
        {type: "section", text: {type: "mrkdwn", text: "x"}, accessory: {type: "mystery_element"}},
        {type: "actions", elements: [{type: "button", text: {type: "plain_text", text: "ok"}}, {type: "odd_one"}]},
        {type: "rich_text", elements: [{type: "rich_text_mystery"}]}])""")
    assert found == ["mystery_element", "odd_one", "rich_text_mystery"]


def test_setting_an_alarm_from_the_page_changes_the_emulator(world, page) -> None:
    sandbox, _, _ = world
    row = page.locator(f'#w-alarms tr[data-alarm="{ALARM}"]')
    expect(row).to_have_attribute("data-state", "OK")
    row.get_by_role("button", name="ALARM", exact=True).click()
    expect(row).to_have_attribute("data-state", "ALARM")
    assert sandbox.aws.alarm(ALARM)["StateValue"] == "ALARM"
    row.get_by_role("button", name="OK", exact=True).click()
    expect(row).to_have_attribute("data-state", "OK")
    assert sandbox.aws.alarm(ALARM)["StateValue"] == "OK"


def test_the_world_shows_history_builds_services_and_peas(world, page) -> None:
    sandbox, _, _ = world
    number = sandbox.github.create_pr("Purple buttons", {"app/buttons.py": "PURPLE = True\n"}, author="alice")
    pr = page.locator(f'#w-github tr[data-pr="{number}"]')
    expect(pr).to_contain_text("Purple buttons")
    expect(page.locator(f'#w-github details[data-branch="alice/change-{number}"]')).to_contain_text("1 ahead of master")
    expect(page.locator('#w-jenkins table[data-job="app-pr"]')).to_contain_text(f"PR #{number}")

    pr.get_by_role("button", name="fail its next build").click()
    expect(page.locator("#w-jenkins")).to_contain_text(f"the next build of PR #{number} of acme/app fails")
    sandbox.github.push_pr(number, {"app/buttons.py": "PURPLE = False\n"})
    head = sandbox.github.pr_head(number)[:10]
    build = page.locator('#w-jenkins table[data-job="app-pr"] tr', has_text=head)
    expect(build.locator(".badge")).to_have_text("FAILURE")

    sandbox.github.push({"README.md": "# app, again\n"}, message="Tidy the readme")
    expect(page.locator("#w-github table.commits").first.locator("tr").first).to_contain_text("Tidy the readme")

    web = page.locator('#w-ecs tr[data-service="app-web"]')
    expect(web).to_contain_text("app-web:1")
    expect(web).to_contain_text("4/4")
    task_definition = sandbox.aws.service(sandbox.spec.cluster, "app-web")["taskDefinition"]
    sandbox.aws.create_service(sandbox.spec.cluster, "app-web-canary", task_definition, desired=1)
    canary = page.locator('#w-ecs tr[data-service="app-web-canary"]')
    expect(canary.locator(".badge.canary")).to_have_text("canary")
    expect(page.locator('#w-peas tr[data-service="pea-chick-pea-web"]')).to_contain_text("0/0")


@pytest.fixture
def two_repositories() -> Iterator[tuple[Sandbox, BrowserView]]:
    """The demo's sandbox (acme/app and acme/billing, a train each) and its browser view; no app."""
    sandbox = demo_sandbox()
    view = BrowserView(sandbox)
    view.start()
    try:
        yield sandbox, view
    finally:
        view.stop()
        sandbox.stop()


def test_the_world_shows_every_repository_with_its_candidate_branches_and_builds(two_repositories,
                                                                                browser_page) -> None:
    sandbox, view = two_repositories
    app, billing = sandbox.repos["acme/app"], sandbox.repos["acme/billing"]
    pr = app.github.create_pr("Blue banner", {"app/banner.py": "BLUE = True\n"})
    candidate = make_candidate(app.github, "fatcontroller/app/7", pr, sandbox.spec.github_token)
    ledger = billing.github.create_pr("Round invoices", {"billing/round.py": "CENTS = 2\n"}, author="bob")
    billing.github.push({"billing/tax.py": "RATE = 0.2\n"}, message="Tax at 20%")
    page = browser_page
    page.goto(f"{view.url}/?user=alice")

    github = page.locator("#w-github .repo-world")
    expect(github).to_have_count(2)
    expect(github.locator(".repo")).to_have_text(["acme/app", "acme/billing"])
    on_app, on_billing = github.nth(0), github.nth(1)
    branch = on_app.locator('details.candidate[data-branch="fatcontroller/app/7"]')
    expect(branch).to_contain_text(candidate[:10])  # its head
    expect(branch).to_contain_text("deploy 7 of train app")
    branch.locator("summary").click()
    expect(branch.locator("table.commits")).to_contain_text(f"Merge #{pr} into fatcontroller/app/7")
    expect(on_app.locator('table.commits[data-branch="master"]')).to_be_visible()
    expect(on_billing.locator('table.commits[data-branch="master"] tr').first).to_contain_text("Tax at 20%")
    expect(on_billing.locator(f'tr[data-pr="{ledger}"]')).to_contain_text("Round invoices")
    expect(on_billing.locator("details.candidate")).to_have_count(0)

    jenkins = page.locator("#w-jenkins .repo-world")
    expect(jenkins.locator(".repo")).to_have_text(["acme/app", "acme/billing"])
    expect(jenkins.nth(0).locator('table[data-job="app-pr"]')).to_contain_text(f"PR #{pr}")
    expect(jenkins.nth(1).locator('table[data-job="billing-pr"]')).to_contain_text(f"PR #{ledger}")
    expect(jenkins.nth(1).locator('table[data-job="billing-master"] tr')).to_have_count(1)  # the push, built

    on_billing.locator(f'tr[data-pr="{ledger}"]').get_by_role("button", name="fail its next build").click()
    expect(page.locator("#w-jenkins")).to_contain_text(f"the next build of PR #{ledger} of acme/billing fails")
