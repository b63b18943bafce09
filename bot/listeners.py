"""Every Slack listener of the app, registered in one place: slash commands, forms, buttons, options, events.

Each listener acks first (a form's ack carries its errors, so it validates within Slack's 3 s
before acking), then asks the train the request is for (named, implied by the channel, or the
deploy's or pea's own: `Surface`) and answers the person ephemerally.
Handlers stay thin: what to say lives in `bot.deploy` and `bot.pea`, the words of a refusal in
`bot.refusals`. A refused, stale or forged request changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import picker
from bot.deploy import answers as deploy_answers
from bot.deploy import cards, form
from bot.grammar import BadInput, Form, Subcommand, parse_deploy, parse_pea
from bot.pea import answers as pea_answers
from bot.pea import form as pea_form
from bot.pea.cards import ACTIONS as PEA_ACTIONS
from bot.refusals import word
from bot.surface import Surface, WhichTrain, tell
from bot.text import shorten
from bot.trains import TrainFlows
from flows.config import CommandsConfig
from flows.deploy.machine import BUTTON_EVENTS, Event
from flows.errors import Refused, Why
from flows.pea.machine import BUTTONS as PEA_BUTTONS
from flows.views import PeaView, Placed

log = logging.getLogger(__name__)

NOT_VALID = "That button is not valid any more: use the buttons on the deploy's latest message or card."
SUBMIT_BUDGET = 2.0  # seconds to check against GitHub and Jenkins before a form's ack (Slack allows 3)
_ERROR_LENGTH = 250

Listener = Callable[..., Awaitable[None]]


def refused(exc: Refused, commands: CommandsConfig) -> str:
    return f"{word(exc, commands)}\nNothing was changed."


def register(app: AsyncApp, surface: Surface) -> None:
    """Add every listener; the fallbacks last, as Bolt hands each request to the first listener that matches."""
    _deploy_command(app, surface)
    _deploy_form(app, surface)
    for event in BUTTON_EVENTS:
        app.action(cards.action_id(event))(_deploy_button(surface, event))
    _pea_command(app, surface)
    _pea_form(app, surface)
    for label in PEA_BUTTONS:
        app.action(PEA_ACTIONS[label])(_pea_button(surface, label))
    _picker(app, surface)
    _home(app, surface)
    _fallbacks(app, surface.commands)


def _nothing_changed(exc: WhichTrain) -> str:
    return f"{exc}\nNothing was changed."


# -- the train ------------------------------------------------------------------------------------

def _deploy_command(app: AsyncApp, surface: Surface) -> None:
    @app.command(surface.commands.deploy)
    async def handle_deploy_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                                    client: AsyncWebClient) -> None:
        await ack()
        user_id, channel, slash = command["user_id"], command.get("channel_id"), surface.commands.deploy
        try:
            parsed = parse_deploy(command.get("text") or "", slash, surface.names)
            if isinstance(parsed, Form):
                train = surface.implied(parsed.train, channel)
                modal = form.deploy_modal([t.config for t in surface.trains.values()],
                                          train.config if train else None, channel)
                await client.views_open(trigger_id=command["trigger_id"], view=modal)
                return
            if isinstance(parsed, Subcommand):
                answer = await deploy_answers.run_subcommand(surface, parsed, user_id, channel)
            else:
                train = surface.train_for(parsed.train, channel, f"{slash} {{train}} {parsed.pr}")
                placed = await train.deploys.request(deploy_answers.deploy_request(parsed, user_id))
                answer = deploy_answers.queued_text(placed, train.config.slack.channel)
        except BadInput as exc:
            answer = f"{exc}\nNothing was changed. `{slash} help` lists what you can type."
        except Refused as exc:
            answer = refused(exc, surface.commands)
        except WhichTrain as exc:
            answer = _nothing_changed(exc)
        await tell(client, user_id, answer, respond=respond)


def _deploy_form(app: AsyncApp, surface: Surface) -> None:
    async def answer_later(user_id: str, channel: str | None, where: str, request: asyncio.Future[Placed]) -> None:
        """The form closed before GitHub answered: say how the request went, ephemerally."""
        try:
            text = deploy_answers.queued_text(await request, where)
        except Refused as exc:
            text = f"Your deploy request was not queued: {word(exc, surface.commands)}"
        await tell(app.client, user_id, text, channel=channel)

    @app.action(form.TRAIN)
    async def handle_deploy_train_pick(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                       client: AsyncWebClient) -> None:
        await ack()
        view = body.get("view") or {}
        train = surface.trains.get(str((action.get("selected_option") or {}).get("value")))
        if train is None or not view.get("id"):
            return
        modal = form.deploy_modal([t.config for t in surface.trains.values()], train.config,
                                  picker.form_metadata(view).get("channel"))
        await client.views_update(view_id=view["id"], hash=view.get("hash"), view=modal)

    @app.view(form.CALLBACK_ID)
    async def handle_deploy_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        kept = picker.form_metadata(view)
        train = surface.trains.get(str(kept.get("train"))) or surface.of_channel(None)
        if train is None:  # submitted before a train was picked (the form has no submit button then)
            await ack(response_action="errors", errors=form.error(None, "Pick a train first."))
            return
        request, errors = form.read_submission(view, user_id)
        if request is None:
            await ack(response_action="errors", errors=errors)
            return
        channel, where = kept.get("channel"), train.config.slack.channel
        # The train checks the pull request on GitHub; the answer belongs beside the field if it comes in time.
        pending = asyncio.ensure_future(train.deploys.request(request))
        try:
            placed = await asyncio.wait_for(asyncio.shield(pending), SUBMIT_BUDGET)
        except Refused as exc:
            await ack(response_action="errors",
                      errors=form.error(exc.field, shorten(word(exc, surface.commands), _ERROR_LENGTH)))
            return
        except TimeoutError:
            await ack()
            await answer_later(user_id, channel, where, pending)
            return
        await ack()
        await tell(app.client, user_id, deploy_answers.queued_text(placed, where), channel=channel)


def _deploy_button(surface: Surface, event: Event) -> Listener:
    """The listener of one kind of button: it asks the deploy's train for `event` on the deploy the button names."""

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
        train = await surface.of_deploy(value.deploy_id)
        try:
            if train is None:
                raise Refused(Why.NO_SUCH_DEPLOY, deploy_id=value.deploy_id)
            await train.deploys.act(value.deploy_id, value.state.value, event, user_id)
        except Refused as exc:
            await tell(client, user_id, refused(exc, surface.commands), respond=respond)

    listener.__name__ = listener.__qualname__ = f"handle_{event.value}_action"
    return listener


# -- peas -----------------------------------------------------------------------------------------

def _pea_train(surface: Surface, pea: str) -> TrainFlows:
    """The train of pea `pea`; Refused naming every pea when there is none of that name (or no pea at all)."""
    train = surface.of_pea(pea)
    if train is not None:
        return train
    names = [name for t in surface.trains.values() for name in t.peas.names]
    raise Refused(Why.NO_SUCH_PEA, field="pea", pea=pea, choices=names) if names else Refused(Why.PEAS_NOT_SET_UP)


def _pea_command(app: AsyncApp, surface: Surface) -> None:
    @app.command(surface.commands.pea)
    async def handle_pea_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                                 client: AsyncWebClient) -> None:
        await ack()
        user_id, channel, slash = command["user_id"], command.get("channel_id"), surface.commands.pea
        try:
            parsed = parse_pea(command.get("text") or "", slash)
            if parsed.name == "form":
                train = surface.implied(None, channel)
                pools = [train] if train is not None else list(surface.trains.values())
                views = [view for t in pools for view in await t.peas.all()]
                modal = pea_form.deploy_modal(views, user_id, channel, train.name if train else None)
                await client.views_open(trigger_id=command["trigger_id"], view=modal)
                return
            if parsed.name in ("list", "help"):
                answer = await pea_answers.run_listing(list(surface.trains.values()), parsed, slash)
            else:
                pea = _pea_train(surface, parsed.pea or "")
                answer = await pea_answers.run_command(pea.peas, parsed, user_id, slash)
        except BadInput as exc:
            answer = f"{exc}\nNothing was changed. `{slash} help` lists what you can type."
        except Refused as exc:
            answer = refused(exc, surface.commands)
        await tell(client, user_id, answer, respond=respond)


def _pea_form(app: AsyncApp, surface: Surface) -> None:
    @app.view(pea_form.CALLBACK_ID)
    async def handle_pea_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        pea, pr, errors = pea_form.read_submission(view)
        if errors or pea is None or pr is None:
            await ack(response_action="errors", errors=errors)
            return
        channel = picker.form_metadata(view).get("channel")
        try:
            train = _pea_train(surface, pea)
        except Refused as exc:
            await ack(response_action="errors", errors={pea_form.PEA: shorten(word(exc, surface.commands),
                                                                              _ERROR_LENGTH)})
            return
        pending = asyncio.ensure_future(train.peas.deploy(user_id, pea, pr))
        try:
            deployed = await asyncio.wait_for(asyncio.shield(pending), SUBMIT_BUDGET)
        except Refused as exc:
            block = exc.field if exc.field in (pea_form.PEA, pea_form.PR) else pea_form.PR
            await ack(response_action="errors", errors={block: shorten(word(exc, surface.commands), _ERROR_LENGTH)})
            return
        except TimeoutError:  # the form closes now; the answer follows as an ephemeral message
            await ack()
            try:
                text = pea_answers.deployed(await pending, surface.commands.pea)
            except Refused as exc:
                text = f"Nothing was deployed: {word(exc, surface.commands)}"
            await tell(app.client, user_id, text, channel=channel)
            return
        await ack()
        await tell(app.client, user_id, pea_answers.deployed(deployed, surface.commands.pea), channel=channel)


def _pea_button(surface: Surface, label: str) -> Listener:
    answers: dict[str, Callable[[PeaView], str]] = {
        "Redeploy": lambda view: pea_answers.deployed(view, surface.commands.pea), "Extend": pea_answers.extended,
        "Release": pea_answers.released}
    not_valid = f"That button is not valid any more: `{surface.commands.pea}` shows the peas."

    async def listener(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
                       client: AsyncWebClient) -> None:
        await ack()
        user_id = body["user"]["id"]
        try:
            value = json.loads(action.get("value") or "")
            if not isinstance(value, dict) or not isinstance(value.get("pea"), str):
                raise ValueError(value)
        except ValueError:
            log.warning("pea button %s from %s with a value we did not make: %r", label, user_id,
                        action.get("value"))
            await tell(client, user_id, not_valid, respond=respond)
            return
        try:
            pea = await _pea_train(surface, value["pea"]).peas.press(user_id, label, value)
        except Refused as exc:
            await tell(client, user_id, refused(exc, surface.commands), respond=respond)
            return
        await tell(client, user_id, answers[label](pea), respond=respond)

    listener.__name__ = listener.__qualname__ = f"handle_{PEA_ACTIONS[label]}_action"
    return listener


# -- shared ---------------------------------------------------------------------------------------

def _picker(app: AsyncApp, surface: Surface) -> None:
    def train_of(payload: dict[str, Any]) -> TrainFlows:
        """Whose pull requests the form offers: its pea's train, else the train it was opened for."""
        view = payload.get("view") or {}
        pea = pea_form.chosen_pea((view.get("state") or {}).get("values") or {})
        return (surface.of_pea(pea) if pea else None) or surface.trains.get(
            str(picker.form_metadata(view).get("train"))) or next(iter(surface.trains.values()))

    @app.options(picker.ACTION_ID)
    async def handle_pr_suggestion(ack: AsyncAck, payload: dict[str, Any]) -> None:
        # Options are the ack itself, so the search runs first, within its budget.
        await ack(options=await picker.suggestions(train_of(payload).deploys, str(payload.get("value") or "")))


def _home(app: AsyncApp, surface: Surface) -> None:
    @app.event("app_home_opened")
    async def handle_app_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            await surface.home.opened(event["user"])


def _fallbacks(app: AsyncApp, commands: CommandsConfig) -> None:
    """Ack and answer what no listener claims (a crafted action id or form), which Bolt would leave unacked."""
    unknown_form = (f"That form is not one this app knows: open it again with `{commands.deploy}` or "
                    f"`{commands.pea}`. Nothing was changed.")

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
        await tell(client, body["user"]["id"], unknown_form)
