"""The deploy buttons: one listener per kind (`deploy_proceed`, `deploy_roll_back`, ...), wherever the
button is (card, DM or App Home). Ack at once, then ask the train; a refused, stale or forged
click changes nothing and is answered ephemerally to the person who clicked."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import cards
from bot.surface import Surface, tell
from flows.deploy.machine import Event
from flows.errors import Refused

log = logging.getLogger(__name__)

UNKNOWN_FORM = "That form is not one this app knows: open it again with `/deploy` or `/pea`. Nothing was changed."
NOT_VALID = "That button is not valid any more: use the buttons on the deploy's latest message or card."

Listener = Callable[..., Awaitable[None]]


def button_listener(surface: Surface, event: Event) -> Listener:
    """The listener of one kind of button: it asks the train for `event` on the deploy the button names."""

    async def listener(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                       client: AsyncWebClient) -> None:
        await ack()
        user_id = body["user"]["id"]
        try:
            value = cards.parse_button_value(action.get("value"))
        except ValueError:
            log.warning("button %s from %s with a value we did not make: %r", action.get("action_id"), user_id,
                        action.get("value"))
            await tell(client, user_id, NOT_VALID, respond=respond)
            return
        try:
            await surface.flows.act(value.deploy_id, value.state.value, event, user_id)
        except Refused as exc:
            await tell(client, user_id, f"{exc}\nNothing was changed.", respond=respond)

    listener.__name__ = listener.__qualname__ = f"handle_{event.value}_action"
    return listener


def register(app: AsyncApp, surface: Surface) -> None:
    for event in cards.BUTTON_EVENTS:
        app.action(cards.action_id(event))(button_listener(surface, event))


def register_fallbacks(app: AsyncApp) -> None:
    """Ack and answer what no listener claims (a crafted action id or form), which Bolt would leave unacked.
    Registered last: Bolt hands each request to the first listener that matches."""

    @app.action(re.compile(".*"))
    async def handle_unknown_action(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                                    client: AsyncWebClient) -> None:
        await ack()
        log.warning("unknown action %r from %s", str((body.get("actions") or [{}])[0].get("action_id"))[:80],
                    body["user"]["id"])
        await tell(client, body["user"]["id"], NOT_VALID, respond=respond)

    @app.view(re.compile(".*"))
    async def handle_unknown_view(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        log.warning("unknown form %r from %s", str(body.get("view", {}).get("callback_id"))[:80], body["user"]["id"])
        await tell(client, body["user"]["id"], UNKNOWN_FORM)
