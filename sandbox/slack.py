"""A Slack emulator: the Web API over HTTP, Socket Mode over a websocket, and people to drive the app.

The real slack-bolt app runs against it unmodified: `AsyncWebClient(token=..., base_url=emulator.api_url)`
and `AsyncSocketModeHandler(app, app_token)`; `apps.connections.open` hands out this server's websocket.
People act through coroutines (`command`, `click`, `submit_view`, `close_view`, `suggest`, `open_home`) that
deliver an envelope and wait for the app's ack; everything the app does is recorded and inspectable
(`messages`, `dms`, `ephemerals`, `home`, `current_view`, `acks`, `late_acks`, `api_calls`). With `commands`
set (the app's manifest), Slack itself answers any other slash command at once, as Slackbot, and the app never
hears of it. `sandbox.browser` serves all of this as a web page.

Calling style: every method that talks to the app or waits (`command`, `click`, `submit_view`, `close_view`,
`suggest`, `open_home`, `send_disconnect`, `drop_socket`, `wait_connected`, `wait_for`, `Interaction.ephemeral`) is a
coroutine whose work runs in the emulator's own loop, so awaiting it never blocks the caller's loop; sync
code (the demo) runs them with `asyncio.run(...)`. Inspection methods are plain, thread-safe functions.

Faults: `operation()` is the Web API method (`chat.update`), `response_url` or `socket`, so
`emulator.faults.fail_next(match=r"^chat\\.update$", status=429, ...)` (or `ratelimit("chat.update")`)
throttles one method. `send_disconnect()` and `drop_socket()` exercise the client's reconnection.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from aiohttp import WSMsgType, web

from sandbox.server import Fault, ThreadedServer

T = TypeVar("T")

SLASH_COMMANDS, INTERACTIVE, EVENTS_API = "slash_commands", "interactive", "events_api"

# Slack's own limits (https://api.slack.com/reference/block-kit): real Slack refuses what breaks them,
# so the emulator does too, or the product would pass here and fail in a real workspace.
_MAX_MESSAGE_BLOCKS, _MAX_VIEW_BLOCKS = 50, 100
_MAX_TITLE, _MAX_BUTTON_TEXT, _MAX_BUTTON_VALUE = 24, 75, 2000
_MAX_SECTION_TEXT, _MAX_HEADER_TEXT, _MAX_METADATA = 3000, 150, 3000
_MAX_VIEW_STACK = 3
ACK_DEADLINE_MS = 3000.0  # Slack gives up on an envelope not acknowledged within 3 s and tells the person
SLACKBOT = "USLACKBOT"  # who Slack's own answers (an unknown command) appear from


class Edit(NamedTuple):
    """One chat.update (or replace_original) of a message: when (time.time()) and what it became."""

    at: float
    text: str
    blocks: list[dict]


class Ack(NamedTuple):
    """One envelope the app acknowledged: its envelope type and how long the ack took."""

    type: str
    latency_ms: float


@dataclass
class ApiCall:
    """One Web API call as the emulator received it (the token is not kept, only its kind)."""

    method: str
    args: dict[str, Any]
    token_type: str | None  # "bot", "app" or None (missing or unknown)
    ok: bool
    error: str | None
    at: float


@dataclass
class Message:
    """A message in a channel or DM, or an ephemeral one (`ephemeral_to` set)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict]
    user: str  # who it appears from: the bot user
    thread_ts: str | None = None
    ephemeral_to: str | None = None
    via: str = "chat.postMessage"  # or chat.postEphemeral, ack, response_url
    posted_at: float = field(default_factory=time.time)
    edits: list[Edit] = field(default_factory=list)
    deleted: bool = False
    seq: int = 0  # emulator-wide order of the last change, to find "the latest message"

    def render(self) -> str:
        return render(self)

    @property
    def buttons(self) -> list[str]:
        return button_labels(self)


class _SlackError(Exception):
    """A Web API failure: `{"ok": false, "error": <code>, ...extra}`."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code, self.extra = code, extra


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    request: web.Request
    retired: bool = False  # asked to disconnect or dropped: no new envelopes go to it
    delivered: int = 0  # envelopes sent on it


@dataclass
class _ResponseTarget:
    """What a response_url answers: the person, the channel, and the message clicked (if any)."""

    user: str
    channel: str
    original: Message | None


# -- rendering -----------------------------------------------------------------------------------

def _text(obj: Any) -> str:
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    return str(obj.get("text", ""))


def _rich_text(node: Any) -> str:
    if isinstance(node, list):
        return "".join(_rich_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "link":
        return str(node.get("text") or node.get("url", ""))
    if kind == "user":
        return f"<@{node.get('user_id')}>"
    if kind == "channel":
        return f"<#{node.get('channel_id')}>"
    if kind == "emoji":
        return f":{node.get('name')}:"
    return _rich_text(node.get("elements", []))


def _element(el: dict) -> str:
    kind = el.get("type")
    if kind == "button":
        return f"[{_text(el.get('text'))}]"
    if kind == "image":
        return f"[image: {el.get('alt_text', '')}]"
    if kind in ("mrkdwn", "plain_text"):
        return _text(el)
    if kind == "overflow":
        return "[...]"
    shown = el.get("initial_value") or _text(el.get("initial_option", {}).get("text")) or _text(
        el.get("placeholder"))
    return f"<{kind}: {shown}>" if shown else f"<{kind}>"


def _render_block(block: dict) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"# {_text(block.get('text'))}"]
    if kind == "divider":
        return ["---"]
    if kind == "section":
        lines = _text(block.get("text")).splitlines() if block.get("text") else []
        lines += [_text(f) for f in block.get("fields", [])]
        if block.get("accessory"):
            lines.append(_element(block["accessory"]))
        return lines
    if kind == "context":
        return ["  ".join(_element(e) for e in block.get("elements", []))]
    if kind == "actions":
        return [" ".join(_element(e) for e in block.get("elements", []))]
    if kind == "input":
        return [f"{_text(block.get('label'))}: {_element(block.get('element', {}))}"]
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if kind == "rich_text":
        return _rich_text(block.get("elements", [])).splitlines()
    return [f"<{kind}>"]


def _blocks_of(target: Message | dict | list[dict]) -> list[dict]:
    if isinstance(target, Message):
        return target.blocks
    if isinstance(target, dict):
        return target.get("blocks", [])
    return target


def render(target: Message | dict | list[dict]) -> str:
    """Plain text for a message, a view or a list of blocks: readable in assertions and on a terminal."""
    lines: list[str] = []
    if isinstance(target, dict) and target.get("title"):
        lines.append(f"== {_text(target['title'])} ==")
    blocks = _blocks_of(target)
    for block in blocks:
        lines += _render_block(block)
    if isinstance(target, Message) and not blocks:
        lines.append(target.text)
    return "\n".join(lines)


def _buttons(blocks: list[dict]) -> list[tuple[dict, dict]]:
    """Every (block, button element) pair, in display order."""
    found = []
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory")]
        found += [(block, el) for el in elements if el and el.get("type") == "button"]
    return found


def _selects(blocks: list[dict]) -> list[tuple[dict, dict]]:
    """Every (block, static_select element) pair that sends its choice at once (actions blocks, accessories)."""
    found = []
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory")]
        found += [(block, el) for el in elements if el and el.get("type") == "static_select"]
    return found


def button_labels(target: Message | dict | list[dict]) -> list[str]:
    """The text of every button on a message, a view or a list of blocks."""
    return [_text(el.get("text")) for _, el in _buttons(_blocks_of(target))]


# -- Block Kit checks ----------------------------------------------------------------------------

def _check_blocks(blocks: Any, max_blocks: int) -> list[str]:
    """Slack's refusals for a list of blocks, as its error messages read; empty when valid."""
    if not isinstance(blocks, list):
        return ["blocks must be a list"]
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"no more than {max_blocks} items allowed [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}]"
        if not isinstance(block, dict) or "type" not in block:
            problems.append(f"missing required field: type {where}")
            continue
        if block.get("block_id"):
            if block["block_id"] in block_ids:
                problems.append(f"duplicate block_id {block['block_id']!r} {where}")
            block_ids.add(block["block_id"])
        kind = block["type"]
        if kind == "section":
            if not block.get("text") and not block.get("fields"):
                problems.append(f"must provide text or fields {where}")
            if len(_text(block.get("text"))) > _MAX_SECTION_TEXT:
                problems.append(f"must be less than {_MAX_SECTION_TEXT + 1} characters {where}/text")
        if kind == "header" and len(_text(block.get("text"))) > _MAX_HEADER_TEXT:
            problems.append(f"must be less than {_MAX_HEADER_TEXT + 1} characters {where}/text")
        if kind == "input" and (not block.get("label") or not block.get("element")):
            problems.append(f"missing required field: label/element {where}")
        action_ids: set[str] = set()
        for _, button in _buttons([block]):
            if len(_text(button.get("text"))) > _MAX_BUTTON_TEXT:
                problems.append(f"button text must be less than {_MAX_BUTTON_TEXT + 1} characters {where}")
            if len(str(button.get("value", ""))) > _MAX_BUTTON_VALUE:
                problems.append(f"button value must be less than {_MAX_BUTTON_VALUE + 1} characters {where}")
            if button.get("action_id") in action_ids:
                problems.append(f"duplicate action_id {button['action_id']!r} {where}")
            action_ids.add(button.get("action_id"))
    return problems


def _check_view(view: Any, kind: str) -> list[str]:
    if not isinstance(view, dict):
        return ["view must be an object"]
    if view.get("type") != kind:
        return [f"view type must be {kind!r}, got {view.get('type')!r}"]
    problems = _check_blocks(view.get("blocks", []), _MAX_VIEW_BLOCKS)
    if kind == "modal":
        if not _text(view.get("title")):
            problems.append("missing required field: title")
        for key in ("title", "submit", "close"):
            if len(_text(view.get(key))) > _MAX_TITLE:
                problems.append(f"must be less than {_MAX_TITLE + 1} characters [json-pointer:/view/{key}/text]")
        if any(b.get("type") == "input" for b in view.get("blocks", [])) and not view.get("submit"):
            problems.append("a view with input blocks requires submit [json-pointer:/view/submit]")
    if len(view.get("private_metadata", "")) > _MAX_METADATA:
        problems.append(f"private_metadata must be less than {_MAX_METADATA + 1} characters")
    return problems


def _invalid(code: str, problems: list[str]) -> _SlackError:
    return _SlackError(code, errors=problems,
                       response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})


# -- view state (Slack's exact shape per element type) --------------------------------------------

# element type -> (key in state.values, key of its initial value, how a test's value is turned into it)
_STATEFUL: dict[str, tuple[str, str, str]] = {
    "plain_text_input": ("value", "initial_value", "raw"),
    "number_input": ("value", "initial_value", "raw"),
    "email_text_input": ("value", "initial_value", "raw"),
    "url_text_input": ("value", "initial_value", "raw"),
    "checkboxes": ("selected_options", "initial_options", "options"),
    "multi_static_select": ("selected_options", "initial_options", "options"),
    "multi_external_select": ("selected_options", "initial_options", "external_options"),
    "radio_buttons": ("selected_option", "initial_option", "option"),
    "static_select": ("selected_option", "initial_option", "option"),
    "external_select": ("selected_option", "initial_option", "external_option"),
    "users_select": ("selected_user", "initial_user", "raw"),
    "multi_users_select": ("selected_users", "initial_users", "raw"),
    "conversations_select": ("selected_conversation", "initial_conversation", "raw"),
    "multi_conversations_select": ("selected_conversations", "initial_conversations", "raw"),
    "channels_select": ("selected_channel", "initial_channel", "raw"),
    "multi_channels_select": ("selected_channels", "initial_channels", "raw"),
    "datepicker": ("selected_date", "initial_date", "raw"),
    "timepicker": ("selected_time", "initial_time", "raw"),
}


def _stateful_elements(view: dict) -> list[tuple[str, dict]]:
    """(block_id, element) for every element whose value Slack reports in `view.state.values`."""
    found = []
    for block in view.get("blocks", []):
        elements = {"input": [block.get("element")], "actions": block.get("elements", []),
                    "section": [block.get("accessory")]}.get(block.get("type"), [])
        found += [(block["block_id"], el) for el in elements if el and el.get("type") in _STATEFUL]
    return found


def _option(element: dict, value: Any) -> dict:
    if isinstance(value, dict):
        return value
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options += group.get("options", [])
    for option in options:
        if option.get("value") == value:
            return option
    raise AssertionError(f"{element.get('action_id')!r} has no option {value!r}; "
                         f"options: {[o.get('value') for o in options]}")


def _external_option(value: Any) -> dict:
    return value if isinstance(value, dict) else {"text": {"type": "plain_text", "text": str(value)},
                                                  "value": str(value)}


def _element_state(element: dict, value: Any, given: bool) -> dict:
    key, initial, how = _STATEFUL[element["type"]]
    state: dict[str, Any] = {"type": element["type"]}
    if not given:
        default = [] if key.endswith("s") and key != "value" else None
        state[key] = copy.deepcopy(element.get(initial, default))
    elif how == "raw":
        state[key] = value
    elif how == "option":
        state[key] = None if value is None else _option(element, value)
    elif how == "options":
        state[key] = [_option(element, v) for v in value]
    elif how == "external_option":
        state[key] = None if value is None else _external_option(value)
    else:
        state[key] = [_external_option(v) for v in value]
    return state


def _state_values(view: dict, values: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict]]:
    elements = _stateful_elements(view)
    known = {(block_id, el.get("action_id")) for block_id, el in elements}
    unknown = [(b, a) for b, actions in values.items() for a in actions if (b, a) not in known]
    if unknown:
        raise AssertionError(f"the view has no input {unknown}; its inputs (block_id, action_id): {sorted(known)}")
    state: dict[str, dict[str, dict]] = {}
    for block_id, el in elements:
        given = el["action_id"] in values.get(block_id, {})
        state.setdefault(block_id, {})[el["action_id"]] = _element_state(
            el, values.get(block_id, {}).get(el["action_id"]), given)
    return state


# -- the emulator --------------------------------------------------------------------------------

class SlackEmulator(ThreadedServer):
    """Slack's Web API and Socket Mode for one workspace with one app installed."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        users: dict[str, str] | None = None,
        channels: dict[str, str] | None = None,
        team_id: str = "T0FATCTRL",
        team_domain: str = "fatcontroller",
        app_id: str = "A0FATCTRL",
        bot_user_id: str = "U0FATBOT",
        bot_id: str = "B0FATBOT",
        bot_name: str = "fatcontroller",
        trigger_ttl: float = 3.0,
        ack_timeout: float = 10.0,
        commands: Iterable[str] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__("slack", port)
        self.bot_token, self.app_token = bot_token, app_token
        self.users = dict(users if users is not None else {
            "U0ALICE": "alice", "U0BOB": "bob", "U0ADMIN": "admin", "U0EMERGENCY": "emergency"})
        self.channels = dict(channels if channels is not None else {"C0DEPLOYS": "deploys"})
        self.team_id, self.team_domain, self.app_id = team_id, team_domain, app_id
        self.bot_user_id, self.bot_id, self.bot_name = bot_user_id, bot_id, bot_name
        self.trigger_ttl = trigger_ttl  # Slack's trigger_ids expire after 3 s
        self.ack_timeout = ack_timeout  # how long a person waits for an ack before the helper fails
        self.verification_token = "sandbox-verification-token"
        # the app's slash commands (its manifest's): Slack itself answers any other one at once, and the app
        # never hears of it; None: every command reaches the app
        self.commands: set[str] | None = set(commands) if commands is not None else None

        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._last_ts = 0.0
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: dict[str, list[Message]] = {}
        self._modals: dict[str, list[dict]] = {}  # user -> stack of open views, top last
        self._homes: dict[str, dict] = {}
        self._view_seq: dict[str, int] = {}
        self._triggers: dict[str, tuple[str, float]] = {}  # trigger_id -> (user, issued at)
        self._used_triggers: set[str] = set()
        self._response_urls: dict[str, _ResponseTarget] = {}
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._connection_count = 0
        self._deliveries = 0  # envelopes sent so far, to take the live connections in turn
        # envelope_id -> (the ack's future, what an ack body does, applied as the ack arrives)
        self._pending: dict[str, tuple[asyncio.Future, Callable[[dict], None] | None]] = {}
        self._acks: list[Ack] = []
        self._calls: list[ApiCall] = []
        self._methods: dict[str, Callable[[dict], dict]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    # -- server plumbing -----------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """The Web API base for `AsyncWebClient(base_url=...)` (ends with `/api/`, as slack_sdk expects)."""
        return f"{self.url}/api/"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/respond/{id}", self._handle_response_url)
        app.router.add_get("/socket/{ticket}", self._handle_socket)
        app.on_shutdown.append(self._close_sockets)
        return app

    def operation(self, request: web.Request) -> str:
        """`chat.update`-style method names for the Web API; `response_url` and `socket` otherwise."""
        path = request.path
        if path.startswith("/api/"):
            return path[len("/api/"):]
        return "response_url" if path.startswith("/respond/") else "socket"

    def ratelimit(self, method: str, *, retry_after: int = 1, count: int = 1) -> Fault:
        """Answer the next `count` calls of `method` as Slack throttles: HTTP 429 with Retry-After."""
        return self.faults.fail_next(count, match=f"^{method.replace('.', '[.]')}$", status=429,
                                     headers={"Retry-After": str(retry_after)},
                                     body='{"ok": false, "error": "ratelimited"}')

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` in the emulator's loop and await it from the caller's loop without blocking it."""
        assert self.loop is not None, "start() the emulator first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # -- ids and lookups -----------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def _next_ts(self) -> str:
        # Slack's ts is the post time in microseconds and unique per channel: keep it increasing
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def dm_channel(self, user: str) -> str:
        """The id of the bot's DM with a user (`D` + the user id without its `U`)."""
        return "D" + self.user_id(user)[1:]

    def user_id(self, user: str) -> str:
        """A user id, given an id or a name from the directory."""
        if user in self.users:
            return user
        for uid, name in self.users.items():
            if name == user:
                return uid
        raise AssertionError(f"unknown user {user!r}; the directory has {self.users}")

    def _dm_user(self, channel: str) -> str | None:
        return next((uid for uid in self.users if "D" + uid[1:] == channel), None)

    def _resolve_channel(self, channel: Any) -> str:
        if channel in self.channels or self._dm_user(str(channel)):
            return str(channel)
        if channel in self.users:
            return self.dm_channel(channel)
        raise _SlackError("channel_not_found")

    def _channel_name(self, channel: str) -> str:
        return self.channels.get(channel, "directmessage")

    def _person(self, user: str) -> dict:
        return {"id": user, "username": self.users[user], "name": self.users[user], "team_id": self.team_id}

    def _team(self) -> dict:
        return {"id": self.team_id, "domain": self.team_domain}

    def _issue_trigger(self, user: str) -> str:
        trigger = f"{next(self._ids)}.{int(time.time())}.{uuid.uuid4().hex}"
        self._triggers[trigger] = (user, time.monotonic())
        return trigger

    def _use_trigger(self, trigger_id: Any) -> str:
        """The user a trigger was issued to; Slack's errors when it is unknown, stale or already used."""
        if trigger_id in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        issued = self._triggers.get(trigger_id)
        if issued is None or time.monotonic() - issued[1] > self.trigger_ttl:
            raise _SlackError("expired_trigger_id")
        self._used_triggers.add(trigger_id)
        return issued[0]

    def _issue_response_url(self, user: str, channel: str, original: Message | None) -> str:
        key = uuid.uuid4().hex
        self._response_urls[key] = _ResponseTarget(user, channel, original)
        return f"{self.url}/respond/{key}"

    # -- messages ------------------------------------------------------------------------------
    def _normalize(self, blocks: list[dict]) -> list[dict]:
        """Fill in the block_id and action_id Slack assigns when an app leaves them out."""
        blocks = copy.deepcopy(blocks)
        for block in blocks:
            block.setdefault("block_id", self._new_id("b"))
            elements = block.get("elements", []) if block.get("type") == "actions" else [
                block.get("element"), block.get("accessory")]
            for el in elements:
                if isinstance(el, dict) and el.get("type") not in (None, "image", "mrkdwn", "plain_text"):
                    el.setdefault("action_id", self._new_id("a"))
        return blocks

    def _post(self, channel: str, text: str, blocks: list[dict], *, via: str, thread_ts: str | None = None,
              ephemeral_to: str | None = None, sender: str | None = None) -> Message:
        message = Message(channel=channel, ts=self._next_ts(), text=text, blocks=self._normalize(blocks),
                          user=sender or self.bot_user_id, thread_ts=thread_ts, ephemeral_to=ephemeral_to, via=via,
                          seq=next(self._seq))
        if ephemeral_to:
            self._ephemerals.setdefault(ephemeral_to, []).append(message)
        else:
            self._messages.setdefault(channel, []).append(message)
        return message

    def _edit(self, message: Message, text: str | None, blocks: list[dict] | None) -> None:
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = self._normalize(blocks)
        message.seq = next(self._seq)
        message.edits.append(Edit(time.time(), message.text, copy.deepcopy(message.blocks)))

    def _find_message(self, channel: str, ts: Any) -> Message:
        for message in self._messages.get(channel, []):
            if message.ts == ts and not message.deleted:
                return message
        raise _SlackError("message_not_found")

    def _message_json(self, message: Message) -> dict:
        body = {"type": "message", "user": message.user, "bot_id": self.bot_id, "app_id": self.app_id,
                "text": message.text, "ts": message.ts, "team": self.team_id, "blocks": message.blocks}
        if message.thread_ts:
            body["thread_ts"] = message.thread_ts
        if message.edits:
            body["edited"] = {"user": self.bot_user_id, "ts": f"{message.edits[-1].at:.6f}"}
        return body

    @staticmethod
    def _content(args: dict) -> tuple[str, list[dict]]:
        text, blocks = args.get("text") or "", args.get("blocks") or []
        if not text and not blocks:
            raise _SlackError("no_text")
        problems = _check_blocks(blocks, _MAX_MESSAGE_BLOCKS)
        if problems:
            raise _invalid("invalid_blocks", problems)
        return text, blocks

    # -- Web API -------------------------------------------------------------------------------
    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(await request.post())
        for key in ("blocks", "view", "attachments", "metadata"):
            if isinstance(args.get(key), str):  # form-encoded callers send these as JSON text
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    pass
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else args.pop("token", None)
        args.pop("token", None)
        token_type = {self.bot_token: "bot", self.app_token: "app"}.get(token or "")
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise _SlackError("unknown_method")
            if not token:
                raise _SlackError("not_authed")
            if token_type is None:
                raise _SlackError("invalid_auth")
            if token_type != ("app" if method == "apps.connections.open" else "bot"):
                raise _SlackError("not_allowed_token_type")
            with self._lock:
                result = {"ok": True, **handler(args)}
        except _SlackError as exc:
            result = {"ok": False, "error": exc.code, **exc.extra}
        with self._lock:
            self._calls.append(ApiCall(method, args, token_type, result["ok"], result.get("error"), time.time()))
        return web.json_response(result)

    def _auth_test(self, args: dict) -> dict:
        return {"url": f"https://{self.team_domain}.slack.com/", "team": "Fat Controller", "user": self.bot_name,
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _apps_connections_open(self, args: dict) -> dict:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/socket/{ticket}"}

    def _chat_post_message(self, args: dict) -> dict:
        channel = self._resolve_channel(args.get("channel"))
        text, blocks = self._content(args)
        message = self._post(channel, text, blocks, via="chat.postMessage", thread_ts=args.get("thread_ts"))
        return {"channel": channel, "ts": message.ts, "message": self._message_json(message)}

    def _chat_update(self, args: dict) -> dict:
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("ts"))
        if args.get("blocks") is not None:
            problems = _check_blocks(args["blocks"], _MAX_MESSAGE_BLOCKS)
            if problems:
                raise _invalid("invalid_blocks", problems)
        # Slack keeps the blocks when an update leaves them out, and the text likewise
        self._edit(message, args.get("text"), args.get("blocks"))
        return {"channel": channel, "ts": message.ts, "text": message.text,
                "message": self._message_json(message)}

    def _chat_post_ephemeral(self, args: dict) -> dict:
        channel = self._resolve_channel(args.get("channel"))
        user = args.get("user")
        if user not in self.users:
            raise _SlackError("user_not_found")
        text, blocks = self._content(args)
        message = self._post(channel, text, blocks, via="chat.postEphemeral", thread_ts=args.get("thread_ts"),
                             ephemeral_to=user)
        return {"message_ts": message.ts}

    def _chat_delete(self, args: dict) -> dict:
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("ts"))
        message.deleted = True
        return {"channel": channel, "ts": message.ts}

    def _chat_get_permalink(self, args: dict) -> dict:
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("message_ts"))
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _conversations_open(self, args: dict) -> dict:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1:
            raise _SlackError("invalid_arguments")  # group DMs are not emulated
        if users[0] not in self.users:
            raise _SlackError("user_not_found")
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _users_info(self, args: dict) -> dict:
        user = args.get("user")
        if user not in self.users:
            raise _SlackError("user_not_found")
        name = self.users[user]
        return {"user": {"id": user, "team_id": self.team_id, "name": name, "real_name": name.title(),
                         "is_bot": False, "deleted": False, "tz": "Europe/London",
                         "profile": {"display_name": name, "real_name": name.title()}}}

    # -- views ---------------------------------------------------------------------------------
    def _make_view(self, spec: dict, view_id: str | None = None, previous_view_id: str | None = None,
                   root_view_id: str | None = None) -> dict:
        view_id = view_id or self._new_id("V")
        view = {
            "id": view_id, "team_id": self.team_id, "type": spec["type"],
            "blocks": self._normalize(spec.get("blocks", [])),
            "private_metadata": spec.get("private_metadata", ""), "callback_id": spec.get("callback_id", ""),
            "state": {"values": {}}, "hash": uuid.uuid4().hex[:16], "title": spec.get("title"),
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "close": spec.get("close"), "submit": spec.get("submit"), "previous_view_id": previous_view_id,
            "root_view_id": root_view_id or view_id, "app_id": self.app_id,
            "external_id": spec.get("external_id", ""), "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self._view_seq[view_id] = next(self._seq)
        return view

    def _update_view(self, old: dict, spec: dict) -> dict:
        """Replace a view's content in place: same id and position, a new hash."""
        new = self._make_view(spec, old["id"], old["previous_view_id"], old["root_view_id"])
        for stack in self._modals.values():
            stack[:] = [new if view is old else view for view in stack]
        for user, view in list(self._homes.items()):
            if view is old:
                self._homes[user] = new
        return new

    def _valid_view(self, args: dict, kind: str) -> dict:
        problems = _check_view(args.get("view"), kind)
        if problems:
            raise _invalid("invalid_arguments", problems)
        return args["view"]

    def _views_open(self, args: dict) -> dict:
        spec = self._valid_view(args, "modal")
        user = self._use_trigger(args.get("trigger_id"))
        view = self._make_view(spec)
        self._modals[user] = [view]
        return {"view": view}

    def _views_push(self, args: dict) -> dict:
        spec = self._valid_view(args, "modal")
        user = self._use_trigger(args.get("trigger_id"))
        stack = self._modals.get(user, [])
        if not stack:
            raise _SlackError("not_found")  # nothing to push onto
        if len(stack) >= _MAX_VIEW_STACK:
            raise _SlackError("push_limit_reached")
        view = self._make_view(spec, previous_view_id=stack[-1]["id"], root_view_id=stack[0]["id"])
        stack.append(view)
        return {"view": view}

    def _views_update(self, args: dict) -> dict:
        view_id, external_id = args.get("view_id"), args.get("external_id")
        views = [*itertools.chain.from_iterable(self._modals.values()), *self._homes.values()]
        old = next((v for v in views if (view_id and v["id"] == view_id)
                    or (external_id and v["external_id"] == external_id)), None)
        if old is None:
            raise _SlackError("not_found")
        if args.get("hash") and args["hash"] != old["hash"]:
            raise _SlackError("hash_conflict")
        return {"view": self._update_view(old, self._valid_view(args, old["type"]))}

    def _views_publish(self, args: dict) -> dict:
        user = args.get("user_id")
        if user not in self.users:
            raise _SlackError("user_not_found")
        old = self._homes.get(user)
        if old and args.get("hash") and args["hash"] != old["hash"]:
            raise _SlackError("hash_conflict")
        view = self._make_view(self._valid_view(args, "home"), old["id"] if old else None)
        self._homes[user] = view
        return {"view": view}

    # -- response_url --------------------------------------------------------------------------
    async def _handle_response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            target = self._response_urls.get(request.match_info["id"])
            if target is None:
                return web.json_response({"ok": False, "error": "expired_url"}, status=404)
            self._calls.append(ApiCall("response_url", body, None, True, None, time.time()))
            self._respond(target, body)
        return web.json_response({"ok": True})

    def _respond(self, target: _ResponseTarget, body: dict, via: str = "response_url") -> None:
        original = target.original
        if body.get("delete_original") and original is not None:
            original.deleted = True
            return
        text, blocks = body.get("text") or "", body.get("blocks") or []
        if body.get("replace_original") and original is not None:
            self._edit(original, text, blocks)
        elif body.get("response_type") == "in_channel":
            self._post(target.channel, text, blocks, via=via, thread_ts=body.get("thread_ts"))
        else:
            self._post(target.channel, text, blocks, via=via, ephemeral_to=target.user)

    # -- Socket Mode ---------------------------------------------------------------------------
    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["ticket"] not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
        ws = web.WebSocketResponse(timeout=2.0)  # autoping answers the client's pings
        await ws.prepare(request)
        with self._lock:
            live = 1 + sum(1 for c in self._connections if not c.retired)
        await ws.send_json({
            "type": "hello", "num_connections": live,
            "debug_info": {"host": "applink-sandbox", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        })
        with self._lock:  # only now may envelopes go to it: Slack says hello first
            self._connection_count += 1
            conn = _Connection(self._connection_count, ws, request)
            self._connections.append(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            with self._lock:
                self._connections.remove(conn)
        return ws

    def _on_socket_text(self, data: str) -> None:
        received = time.perf_counter()
        try:
            reply = json.loads(data)
        except ValueError:
            return
        pending = self._pending.get(reply.get("envelope_id", "")) if isinstance(reply, dict) else None
        if pending is None or pending[0].done():
            return
        future, on_body = pending
        if on_body is not None and reply.get("payload"):
            with self._lock:
                on_body(reply["payload"])
        future.set_result((reply.get("payload"), received))

    async def _close_sockets(self, app: web.Application) -> None:
        for conn in list(self._connections):
            await conn.ws.close()

    def _live_connection(self) -> _Connection | None:
        with self._lock:
            live = [c for c in self._connections if not c.retired and not c.ws.closed]
            return live[-1] if live else None

    def _delivery_connection(self) -> _Connection | None:
        """Where the next envelope goes: like Slack, spread over the app's live connections in turn."""
        with self._lock:
            live = [c for c in self._connections if not c.retired and not c.ws.closed]
            if not live:
                return None
            self._deliveries += 1
            conn = live[self._deliveries % len(live)]
            conn.delivered += 1
            return conn

    @property
    def connected(self) -> bool:
        """Whether the app holds a websocket the emulator would deliver envelopes on."""
        return self._live_connection() is not None

    def deliveries(self) -> dict[int, int]:
        """Envelopes sent so far on each connection still open, by connection number (1 = the first opened)."""
        with self._lock:
            return {c.number: c.delivered for c in self._connections}

    @property
    def connection_count(self) -> int:
        """How many websockets the app has opened so far (a reconnection adds one)."""
        with self._lock:
            return self._connection_count

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - fails with a clear message
        """Wait until the app is connected over Socket Mode (again, after a disconnect or drop)."""
        await self.wait_for(lambda: self.connected, timeout, what="the app to connect over Socket Mode")

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's `disconnect` message on the current websocket; the app should reconnect."""
        await self._call(self._retire(lambda conn: conn.ws.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}})))

    async def drop_socket(self) -> None:
        """Cut the current websocket's TCP connection without a close frame, as a network failure does."""
        async def cut(conn: _Connection) -> None:
            if conn.request.transport is not None:
                conn.request.transport.abort()
        await self._call(self._retire(cut))

    async def _retire(self, act: Callable[[_Connection], Awaitable[None]]) -> None:
        conn = self._live_connection()
        if conn is None:
            raise AssertionError("the app is not connected over Socket Mode")
        with self._lock:
            conn.retired = True
        await act(conn)

    async def _deliver(self, kind: str, payload: dict, accepts_response_payload: bool,
                       on_body: Callable[[dict], None] | None = None) -> tuple[dict | None, float]:
        """Send one envelope on a live websocket (in turn); the ack's payload and latency in ms."""
        timeout = self.ack_timeout
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = (future, on_body)
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                                    "accepts_response_payload": accepts_response_payload}
        if kind == EVENTS_API:
            envelope.update(retry_attempt=0, retry_reason="")
        try:
            while True:
                await self.wait_connected(timeout)
                conn = self._delivery_connection()
                if conn is None:
                    continue
                try:
                    sent = time.perf_counter()
                    await conn.ws.send_json(envelope)
                    break
                except ConnectionResetError:  # closing under us: Slack delivers on another connection
                    with self._lock:
                        conn.retired = True
            ack, received = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            what = payload.get("event", {}).get("type") or payload.get("type") or payload.get("command")
            raise AssertionError(f"the app did not acknowledge the {kind} envelope ({what}) "
                                 f"within {timeout}s") from None
        finally:
            self._pending.pop(envelope_id, None)
        latency_ms = (received - sent) * 1000
        with self._lock:
            self._acks.append(Ack(kind, latency_ms))
        return (ack if accepts_response_payload else None), latency_ms

    def _interaction(self, kind: str, user: str, seen: int, trigger_id: str | None,
                     result: tuple[dict | None, float]) -> Interaction:
        return Interaction(kind, user, result[0], result[1], trigger_id, self, seen)

    def _ephemeral_count(self, user: str) -> int:
        with self._lock:
            return len(self._ephemerals.get(user, []))

    def _ephemeral_at(self, user: str, index: int) -> Message | None:
        """The index-th ephemeral ever shown to the user (deleted ones still count, so indexes stay put)."""
        with self._lock:
            shown = self._ephemerals.get(user, [])
            return shown[index] if index < len(shown) else None

    # -- people --------------------------------------------------------------------------------
    async def command(self, user: str, command: str, text: str = "", *, channel: str | None = None) -> Interaction:
        """Type `/command text` in a channel (the first configured one by default) and wait for the ack."""
        return await self._call(self._command(self.user_id(user), command, text, channel))

    async def _command(self, user: str, command: str, text: str, channel: str | None) -> Interaction:
        with self._lock:
            channel = channel or next(iter(self.channels))
            if channel not in self.channels and not self._dm_user(channel):
                raise AssertionError(f"unknown channel {channel!r}; channels: {self.channels}")
            if self.commands is not None and command not in self.commands:
                return self._not_a_command(user, command, channel)
            trigger_id = self._issue_trigger(user)
            payload = {
                "token": self.verification_token, "team_id": self.team_id, "team_domain": self.team_domain,
                "channel_id": channel, "channel_name": self._channel_name(channel), "user_id": user,
                "user_name": self.users[user], "command": command, "text": text, "api_app_id": self.app_id,
                "is_enterprise_install": "false", "response_url": self._issue_response_url(user, channel, None),
                "trigger_id": trigger_id,
            }

        def reply(body: dict) -> None:  # an ack with a body is Slack's immediate reply to the command
            if body.get("text") or body.get("blocks"):
                self._respond(_ResponseTarget(user, channel, None), body, via="ack")

        seen = self._ephemeral_count(user)
        result = await self._deliver(SLASH_COMMANDS, payload, True, reply)
        return self._interaction("slash_commands", user, seen, trigger_id, result)

    def _not_a_command(self, user: str, command: str, channel: str) -> Interaction:
        """What Slack answers, without asking the app, when a person types a command the app does not have."""
        seen = len(self._ephemerals.get(user, []))
        self._post(channel, f"{command} is not a valid command. In Slack, all messages that start with the "
                            "\"/\" character are interpreted as commands.\n\nIf you are trying to send a message "
                            "and not run a command, try preceding the \"/\" with an empty space.",
                   [], via="slack", ephemeral_to=user, sender=SLACKBOT)
        return Interaction("slash_commands", user, None, 0.0, None, self, seen, answered_by_slack=True)

    async def submit_view(self, user: str, values: dict[str, dict[str, Any]] | None = None, *,
                          view: dict | None = None) -> Interaction:
        """Press Submit on the user's open modal (or `view`) with `values[block_id][action_id]`.

        Values are what a person picks: text for text inputs, an option value (or option dict) for
        selects and radio buttons, a list of them for checkboxes and multi-selects, an id for user or
        conversation pickers. Inputs left out keep their initial values, as in Slack.
        """
        return await self._call(self._submit_view(self.user_id(user), values or {}, view))

    async def _submit_view(self, user: str, values: dict, view: dict | None) -> Interaction:
        with self._lock:
            view = copy.deepcopy(view or self._open_modal(user))
            view["state"] = {"values": _state_values(view, values)}
            trigger_id = self._issue_trigger(user)
            payload = {
                "type": "view_submission", "team": self._team(), "user": self._person(user),
                "api_app_id": self.app_id, "token": self.verification_token, "trigger_id": trigger_id,
                "view": view, "response_urls": [], "is_enterprise_install": False, "enterprise": None,
            }
        seen = self._ephemeral_count(user)
        result = await self._deliver(INTERACTIVE, payload, True)
        with self._lock:
            self._apply_response_action(user, view, result[0] or {})
        return self._interaction("view_submission", user, seen, trigger_id, result)

    def _open_modal(self, user: str) -> dict:
        stack = self._modals.get(user)
        if not stack:
            raise AssertionError(f"{self.users[user]} has no modal open")
        return stack[-1]

    def _apply_response_action(self, user: str, submitted: dict, ack: dict) -> None:
        """What Slack does with a view_submission's ack: close, show errors, update, push or clear."""
        stack = self._modals.get(user, [])
        index = next((i for i, v in enumerate(stack) if v["id"] == submitted["id"]), None)
        action = ack.get("response_action")
        if action == "errors":
            input_blocks = {b["block_id"] for b in submitted["blocks"] if b.get("type") == "input"}
            stray = set(ack.get("errors", {})) - input_blocks
            if stray:
                # Slack rejects the whole response: the person sees a generic error instead
                raise AssertionError(f"errors name blocks {sorted(stray)} that are not input blocks of the view; "
                                     f"input blocks: {sorted(input_blocks)}")
        elif action == "clear":
            self._modals[user] = []
        elif action in ("update", "push"):
            problems = _check_view(ack.get("view"), "modal")
            if problems:
                raise AssertionError(f"response_action {action} with an invalid view: {problems}")
            if action == "update" and index is not None:
                self._update_view(stack[index], ack["view"])
            else:
                stack.append(self._make_view(ack["view"], previous_view_id=submitted["id"],
                                             root_view_id=submitted["root_view_id"]))
        elif index is not None:
            del stack[index:]

    async def suggest(self, user: str, action_id: str, block_id: str, value: str, *,
                      view: dict | None = None) -> list[dict]:
        """Type `value` into an external select; the options the app offers (option groups flattened)."""
        return await self._call(self._suggest(self.user_id(user), action_id, block_id, value, view))

    async def _suggest(self, user: str, action_id: str, block_id: str, value: str, view: dict | None) -> list[dict]:
        with self._lock:
            view = copy.deepcopy(view or self._open_modal(user))
            view["state"] = {"values": _state_values(view, {})}
            payload = {
                "type": "block_suggestion", "user": self._person(user),
                "container": {"type": "view", "view_id": view["id"]}, "api_app_id": self.app_id,
                "token": self.verification_token, "action_id": action_id, "block_id": block_id, "value": value,
                "team": self._team(), "enterprise": None, "is_enterprise_install": False, "view": view,
            }
        ack, _ = await self._deliver(INTERACTIVE, payload, True)
        ack = ack or {}
        options = list(ack.get("options", []))
        for group in ack.get("option_groups", []):
            options += group.get("options", [])
        return options

    async def click(self, user: str, label: str, *, message: Message | None = None, channel: str | None = None,
                    ts: str | None = None, in_dm: bool = False, in_home: bool = False,
                    forge: dict[str, Any] | None = None, in_modal: bool = False, block_id: str | None = None,
                    action_id: str | None = None, values: dict[str, dict[str, Any]] | None = None) -> Interaction:
        """Press the button labelled `label` on the latest message or view the user can see that has one.

        Narrow the search with `message`, `channel` (and `ts`), `in_dm`, `in_home` or `in_modal`; the
        candidates are the channels, the user's DM, ephemeral messages to the user, the App Home and the open
        modal. `block_id` and `action_id` pick one button among several with the same label. `values`
        (as for `submit_view`) are what the person has filled in the view so far, sent as its state.
        `forge` overrides keys of the action sent (`value`, `action_id`): a crafted or replayed payload.
        """
        return await self._call(self._click(self.user_id(user), label, message, channel, ts, in_dm, in_home,
                                            forge or {}, in_modal=in_modal, block_id=block_id,
                                            action_id=action_id, values=values or {}))

    def _surfaces(self, user: str, message: Message | None, channel: str | None, ts: str | None,
                  in_dm: bool, in_home: bool, in_modal: bool = False) -> list[tuple[int, Message | dict]]:
        """(seq, message or view) the user can see, within the asked-for scope."""
        if message is not None:
            return [(message.seq, message)]
        if in_modal:
            top = self._modals.get(user, [])[-1:]
            return [(self._view_seq[v["id"]], v) for v in top]
        if in_home:
            home = self._homes.get(user)
            return [(self._view_seq[home["id"]], home)] if home else []
        if in_dm:
            channel = self.dm_channel(user)
        channels = [channel] if channel else [*self.channels, self.dm_channel(user)]
        found: list[tuple[int, Message | dict]] = [
            (m.seq, m) for c in channels for m in self._messages.get(c, [])
            if not m.deleted and (ts is None or m.ts == ts)]
        found += [(m.seq, m) for m in self._ephemerals.get(user, [])
                  if not m.deleted and (channel is None or m.channel == channel) and (ts is None or m.ts == ts)]
        if channel is None:
            views = [self._homes.get(user), *self._modals.get(user, [])[-1:]]
            found += [(self._view_seq[v["id"]], v) for v in views if v]
        return found

    async def _click(self, user: str, label: str, message: Message | None, channel: str | None, ts: str | None,
                     in_dm: bool, in_home: bool, forge: dict[str, Any], *, in_modal: bool = False,
                     block_id: str | None = None, action_id: str | None = None,
                     values: dict[str, dict[str, Any]] | None = None) -> Interaction:
        def matching(surface: Message | dict) -> list[tuple[dict, dict]]:
            return [(b, el) for b, el in _buttons(_blocks_of(surface)) if _text(el.get("text")) == label
                    and block_id in (None, b.get("block_id")) and action_id in (None, el.get("action_id"))]

        with self._lock:
            surfaces = sorted(self._surfaces(user, message, channel, ts, in_dm, in_home, in_modal),
                              key=lambda s: s[0])
            target = next((s for _, s in reversed(surfaces) if matching(s)), None)
            if target is None:
                present = [(render(s).partition("\n")[0], button_labels(s)) for _, s in surfaces if button_labels(s)]
                raise AssertionError(f"no button {label!r} for {self.users[user]}; buttons present "
                                     f"(first line: labels): {present or 'none'}")
            block, button = matching(target)[0]
            action = {"action_id": button["action_id"], "block_id": block["block_id"], "text": button["text"],
                      "type": "button", "action_ts": f"{time.time():.6f}"}
            for key in ("value", "style"):
                if key in button:
                    action[key] = button[key]
            action.update(forge)
            trigger_id, payload = self._action_payload(user, target, action, values)
        seen = self._ephemeral_count(user)
        result = await self._deliver(INTERACTIVE, payload, False)
        return self._interaction("block_actions", user, seen, trigger_id, result)

    async def choose(self, user: str, option: str, *, in_modal: bool = False, in_home: bool = False,
                     channel: str | None = None, block_id: str | None = None, action_id: str | None = None,
                     values: dict[str, dict[str, Any]] | None = None) -> Interaction:
        """Pick the option whose text is `option` in a `static_select` of an actions block (or a section's
        accessory) on the latest message or view the user can see that has one: Slack sends the choice at once.
        Narrow the search as for `click`; `values` are what the person has filled in the view so far."""
        return await self._call(self._choose(self.user_id(user), option, in_modal, in_home, channel, block_id,
                                             action_id, values or {}))

    async def _choose(self, user: str, option: str, in_modal: bool, in_home: bool, channel: str | None,
                      block_id: str | None, action_id: str | None,
                      values: dict[str, dict[str, Any]]) -> Interaction:
        def matching(surface: Message | dict) -> list[tuple[dict, dict, dict]]:
            return [(b, el, o) for b, el in _selects(_blocks_of(surface)) for o in el.get("options", [])
                    if _text(o.get("text")) == option and block_id in (None, b.get("block_id"))
                    and action_id in (None, el.get("action_id"))]

        with self._lock:
            surfaces = sorted(self._surfaces(user, None, channel, None, False, in_home, in_modal), key=lambda s: s[0])
            target = next((s for _, s in reversed(surfaces) if matching(s)), None)
            if target is None:
                raise AssertionError(f"no select with the option {option!r} for {self.users[user]}")
            block, select, picked = matching(target)[0]
            action = {"action_id": select["action_id"], "block_id": block["block_id"], "type": "static_select",
                      "selected_option": copy.deepcopy(picked), "action_ts": f"{time.time():.6f}"}
            trigger_id, payload = self._action_payload(user, target, action, values)
        seen = self._ephemeral_count(user)
        result = await self._deliver(INTERACTIVE, payload, False)
        return self._interaction("block_actions", user, seen, trigger_id, result)

    def _action_payload(self, user: str, target: Message | dict, action: dict,
                        values: dict[str, dict[str, Any]] | None) -> tuple[str, dict[str, Any]]:
        """The block_actions payload of `action` on a message or a view, and the trigger id it carries."""
        trigger_id = self._issue_trigger(user)
        payload: dict[str, Any] = {
            "type": "block_actions", "user": self._person(user), "api_app_id": self.app_id,
            "token": self.verification_token, "trigger_id": trigger_id, "team": self._team(),
            "enterprise": None, "is_enterprise_install": False, "state": {"values": {}}, "actions": [action],
        }
        if isinstance(target, Message):
            payload["container"] = {"type": "message", "message_ts": target.ts, "channel_id": target.channel,
                                    "is_ephemeral": target.ephemeral_to is not None}
            if target.thread_ts:
                payload["container"]["thread_ts"] = target.thread_ts
            payload["channel"] = {"id": target.channel, "name": self._channel_name(target.channel)}
            if target.ephemeral_to is None:  # Slack does not send an ephemeral message's content back
                payload["message"] = self._message_json(target)
            payload["response_url"] = self._issue_response_url(user, target.channel, target)
        else:
            view = copy.deepcopy(target)
            view["state"] = {"values": _state_values(view, values or {})}
            payload["state"] = view["state"]
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
        return trigger_id, payload

    async def close_view(self, user: str, *, all_views: bool = False) -> Interaction | None:
        """Press Close on the user's modal (or its X, `all_views`): a pushed view goes back to the one under
        it, the X (or a view with `clear_on_close`) closes the whole stack. The app hears of it, as a
        `view_closed`, only when the view closed asked for `notify_on_close`; None when it did not."""
        return await self._call(self._close_view(self.user_id(user), all_views))

    async def _close_view(self, user: str, all_views: bool) -> Interaction | None:
        with self._lock:
            view = copy.deepcopy(self._open_modal(user))
            stack = self._modals[user]
            cleared = all_views or view["clear_on_close"] or len(stack) == 1
            if cleared:
                self._modals[user] = []
            else:
                stack.pop()
            if not view["notify_on_close"]:
                return None
            view["state"] = {"values": _state_values(view, {})}
            payload = {
                "type": "view_closed", "team": self._team(), "user": self._person(user), "api_app_id": self.app_id,
                "token": self.verification_token, "view": view, "is_cleared": cleared,
                "is_enterprise_install": False, "enterprise": None,
            }
        seen = self._ephemeral_count(user)
        result = await self._deliver(INTERACTIVE, payload, False)
        return self._interaction("view_closed", user, seen, None, result)

    async def open_home(self, user: str) -> Interaction:
        """Open the app's Home tab: an `app_home_opened` event."""
        return await self._call(self._open_home(self.user_id(user)))

    async def _open_home(self, user: str) -> Interaction:
        with self._lock:
            event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": self.dm_channel(user),
                                     "tab": "home", "event_ts": f"{time.time():.6f}"}
            if user in self._homes:
                event["view"] = copy.deepcopy(self._homes[user])
            payload = {
                "token": self.verification_token, "team_id": self.team_id, "api_app_id": self.app_id,
                "event": event, "type": "event_callback", "event_id": self._new_id("Ev"),
                "event_time": int(time.time()), "is_ext_shared_channel": False,
                "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
                                    "is_bot": True, "is_enterprise_install": False}],
            }
        seen = self._ephemeral_count(user)
        result = await self._deliver(EVENTS_API, payload, False)
        return self._interaction("app_home_opened", user, seen, None, result)

    # -- inspection (thread-safe, sync) --------------------------------------------------------
    def messages(self, channel: str) -> list[Message]:
        """The messages in a channel or DM (thread replies included, deleted ones not), oldest first."""
        with self._lock:
            return [m for m in self._messages.get(channel, []) if not m.deleted]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies in the thread under message `ts`."""
        return [m for m in self.messages(channel) if m.thread_ts == ts and m.ts != ts]

    def dms(self, user: str) -> list[Message]:
        """The bot's direct messages to a user."""
        return self.messages(self.dm_channel(user))

    def ephemerals(self, user: str) -> list[Message]:
        """Ephemeral messages the user has seen (ack bodies, response_url replies, chat.postEphemeral)."""
        with self._lock:
            return [m for m in self._ephemerals.get(self.user_id(user), []) if not m.deleted]

    def home(self, user: str) -> dict | None:
        """The App Home view last published for the user."""
        with self._lock:
            return self._homes.get(self.user_id(user))

    def views(self, user: str) -> list[dict]:
        """The user's stack of open modals, the one on top last."""
        with self._lock:
            return list(self._modals.get(self.user_id(user), []))

    def current_view(self, user: str) -> dict | None:
        """The modal on top of the user's screen, if any."""
        with self._lock:
            stack = self._modals.get(self.user_id(user))
            return stack[-1] if stack else None

    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def late_acks(self) -> list[Ack]:
        """Acks that came after Slack's 3 s: a real person would have seen an error instead."""
        return [a for a in self.acks if a.latency_ms > ACK_DEADLINE_MS]

    def api_calls(self, method: str | None = None) -> list[ApiCall]:
        """Every Web API call received (faulted ones are answered before they are recorded)."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    render = staticmethod(render)
    button_labels = staticmethod(button_labels)

    async def wait_for(self, predicate: Callable[[], T | Literal[False] | None],
                       timeout: float = 10.0,  # noqa: ASYNC109 - see wait_connected
                       *, what: str | None = None) -> T:
        """Poll `predicate` until it returns something truthy (and return that) or fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(0.02)


@dataclass
class Interaction:
    """One thing a person did (an envelope), the app's ack, and a way to wait for what follows."""

    type: str  # slash_commands, view_submission, view_closed, block_actions or app_home_opened
    user: str
    ack: dict | None  # the ack's payload, where Slack reads one
    latency_ms: float
    trigger_id: str | None
    emulator: SlackEmulator = field(repr=False)
    _next_ephemeral: int = field(repr=False)
    answered_by_slack: bool = False  # an unknown command: Slack answered it, the app never heard of it

    @property
    def late(self) -> bool:
        """Whether the ack broke Slack's 3-second rule."""
        return self.latency_ms > ACK_DEADLINE_MS

    @property
    def errors(self) -> dict[str, str] | None:
        """A view submission's field errors (`response_action: errors`), by block id."""
        if self.ack and self.ack.get("response_action") == "errors":
            return self.ack.get("errors")
        return None

    async def ephemeral(self, timeout: float = 5.0) -> Message:  # noqa: ASYNC109 - see wait_connected
        """The next ephemeral message to this user since the interaction, however it was sent."""
        index = self._next_ephemeral
        found = await self.emulator.wait_for(lambda: self.emulator._ephemeral_at(self.user, index), timeout,
                                             what=f"an ephemeral message to {self.user} after {self.type}")
        self._next_ephemeral += 1
        return found
