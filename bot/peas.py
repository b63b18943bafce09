"""`/pea` in Slack: the list, deploy / release / extend / help, the pea form, the Extend / Release /
Redeploy buttons, the holder's direct messages and "Your peas" on the App Home.

Wiring (one call): `register(app, pea_flows, config, notifier=slack_notifier, home=home_publisher)`
adds the listeners and plugs `PeaMessenger` into `SlackNotifier.pea_notices` and `home_section` into
`HomePublisher.peas`. Every listener acks first; every answer to a person is ephemeral; bad input is
quoted back with what to type instead and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import picker
from bot.home import HomePublisher
from bot.notifier import SlackNotifier
from bot.surface import tell
from bot.text import commit_url, context, escape, has_control_characters, link, plain, quote, section, shorten, user
from bot.text import when as at
from flows.config import AppConfig
from flows.errors import Refused
from flows.notify import Kind, Notice
from flows.pea.flows import BUTTONS, PeaFlows
from flows.pea.service import PeaState, PeaView

log = logging.getLogger(__name__)

COMMAND = "/pea"
CALLBACK_ID = "pea_deploy"
PEA, PR = "pea", "pr"  # the form's input blocks
ACTIONS = {label: f"pea_{label.lower()}" for label in BUTTONS}  # Extend -> pea_extend, ...
SUBMIT_BUDGET = 2.0  # seconds to check the PR and its build before the form's ack (Slack allows 3)
MAX_TEXT = 200
_PR = re.compile(r"#?([0-9]{1,9})")  # ASCII digits: int() also reads "١٢"
EMOJI = {PeaState.FREE: ":white_circle:", PeaState.DEPLOYING: ":hourglass_flowing_sand:",
         PeaState.UP: ":large_green_circle:", PeaState.FAILED: ":x:", PeaState.RELEASING: ":arrow_down:"}
_HEADLINE = {Kind.PEA_UP: ":large_green_circle:", Kind.PEA_FAILED: ":x:", Kind.PEA_LEASE_ENDING: ":bell:",
             Kind.PEA_STALE: ":eyes:", Kind.PEA_RELEASED: ":arrow_down:", Kind.PEA_CHANGED: ":seedling:"}


class BadInput(Exception):
    """What was typed cannot be understood; the message quotes it and says what to type."""


@dataclass(frozen=True)
class PeaCommand:
    name: str  # list, deploy, release, extend, help or form
    pea: str | None = None
    pr: int | None = None


def usage(names: list[str]) -> str:
    return "\n".join([
        "*Peas: preview environments for pull requests*",
        "• `/pea`: every pea, free or held by whom, with its PR, commit, state, lease and URL.",
        "• `/pea deploy <pea> <pr>`: claim the pea and deploy the PR's build to it, e.g. "
        f"`/pea deploy {names[0] if names else 'sweet-pea'} 123`. `/pea deploy` alone opens a form.",
        "• `/pea extend <pea>`: keep it for another lease. `/pea release <pea>`: free it (scaled to zero).",
        f"Peas: {', '.join(f'`{n}`' for n in names) or 'none configured'}.",
    ])


def parse(text: str) -> PeaCommand:
    """What `/pea <text>` asks for. Raises BadInput."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise BadInput(f"That is {len(text)} characters: `/pea` takes a command, a pea and a PR number.")
    if has_control_characters(text):
        raise BadInput(f"{quote(text)} contains control characters: type it again as plain text.")
    try:
        words = shlex.split(text)
    except ValueError:
        raise BadInput(f"{quote(text)} has an unclosed quote: type e.g. `/pea deploy sweet-pea 123`.") from None
    if not words:
        return PeaCommand("list")
    name, args = words[0].lower(), words[1:]
    if name in ("list", "help") and not args:
        return PeaCommand(name)
    if name == "deploy":
        if not args:
            return PeaCommand("form")
        if len(args) != 2:
            raise BadInput(f"{quote(text)} is not `deploy <pea> <pr>`: type e.g. `/pea deploy sweet-pea 123`, "
                           "or `/pea deploy` for the form.")
        match = _PR.fullmatch(args[1])
        if match is None or int(match.group(1)) == 0:
            raise BadInput(f"{quote(args[1])} is not a pull request number: type e.g. `/pea deploy {args[0]} 123`.")
        return PeaCommand("deploy", args[0], int(match.group(1)))
    if name in ("release", "extend"):
        if len(args) != 1:
            raise BadInput(f"Name one pea: `/pea {name} sweet-pea`.")
        return PeaCommand(name, args[0])
    raise BadInput(f"{quote(text)} is not a `/pea` command: type `/pea` for the list, "
                   "`/pea deploy <pea> <pr>`, `/pea release <pea>`, `/pea extend <pea>` or `/pea help`.")


# -- rendering ----------------------------------------------------------------------------------------

def pea_line(view: PeaView) -> str:
    """One line about a pea: state, holder, PR, commit, since and until, URL, what is wrong."""
    state = PeaState(view.state)
    head = f"{EMOJI[state]} *{escape(view.name)}*"
    if state is PeaState.FREE:
        return f"{head} · free"
    if state is PeaState.RELEASING:
        return f"{head} · being scaled to zero" + (f" · {escape(shorten(view.failure_reason, 300))}"
                                                   if view.failure_reason else "")
    sha = view.head_sha or ""
    parts = [head, f"`{state.value}`", user(view.holder),
             link(view.pr_url, shorten(f"#{view.pr_number} {view.pr_title or ''}".strip(), 80)),
             link(commit_url(view.pr_url, sha), sha[:8]),
             f"since {at(view.claimed_at, '{date_short} {time}')}",
             f"until {at(view.lease_expires_at, '{date_short} {time}')}"]
    if view.url:
        parts.append(view.url if state is PeaState.UP else f"{view.url} (once up)")
    line = " · ".join(parts)
    if state is PeaState.FAILED and view.failure_reason:
        line += f"\n:x: {escape(shorten(view.failure_reason, 500))}"
    if view.stale_reason:
        line += f"\n:eyes: #{view.pr_number} " + (
            f"has a newer build ({(view.newer_sha or '')[:8]}): *Redeploy* to run it"
            if view.stale_reason == "newer build" else f"was {view.stale_reason}")
    return line


def list_text(views: list[PeaView]) -> str:
    free = sum(1 for v in views if not v.held)
    return "\n".join([f"*Peas* ({free} of {len(views)} free)", *(pea_line(v) for v in views)])


def button_value(view: PeaView) -> str:
    return json.dumps(view.button_value(), separators=(",", ":"))


def pea_actions(view: PeaView) -> dict[str, Any] | None:
    """The buttons valid for the pea as it is, or None."""
    elements = []
    for label in view.buttons:
        button: dict[str, Any] = {"type": "button", "action_id": ACTIONS[label], "text": plain(label, 75),
                                  "value": button_value(view)}
        if label == "Redeploy":
            button["style"] = "primary"
        if label == "Release":
            button["confirm"] = {"title": plain("Release?", 100),
                                 "text": plain(f"{view.name} is scaled to zero and freed for others.", 300),
                                 "confirm": plain("Release", 30), "deny": plain("Keep it", 30)}
        elements.append(button)
    return {"type": "actions", "block_id": f"pea_{view.name}_actions", "elements": elements} if elements else None


def pea_blocks(view: PeaView, headline: str | None = None) -> list[dict[str, Any]]:
    blocks = [section(headline), context(pea_line(view))] if headline else [section(pea_line(view))]
    actions = pea_actions(view)
    return [*blocks, actions] if actions else blocks


@dataclass(frozen=True)
class PeaMessage:
    """A direct message about a pea: to whom, its notification text and its blocks."""

    to: str
    text: str
    headline: str
    blocks: list[dict[str, Any]]


def render_pea_notice(notice: Notice) -> PeaMessage | None:
    """The DM a notice about a pea makes for the person it concerns (None when it concerns nobody)."""
    holder, view = notice.data.get("holder"), notice.data.get("pea")
    if not holder or not isinstance(view, PeaView):
        return None
    headline = f"{_HEADLINE.get(notice.kind, ':seedling:')} {escape(shorten(notice.text, 2500))}"
    if notice.kind is Kind.PEA_UP and view.url:
        headline += f"\n<{view.url}|Open {escape(view.name)}>"
    # a pea released from under someone shows them no buttons: it is not theirs any more
    blocks = pea_blocks(view, headline) if view.holder == holder else [section(headline), context(pea_line(view))]
    return PeaMessage(holder, shorten(notice.text.replace("`", ""), 300), headline, blocks)


# -- direct messages --------------------------------------------------------------------------------

@dataclass
class _Card:
    holder: str
    channel: str
    ts: str
    headline: str
    progress: bool  # a progress message (edited as the deploy moves) rather than one that needs the holder


class PeaMessenger:
    """Delivers notices about peas to the people they concern (`SlackNotifier.pea_notices`).

    Progress (`PEA_CHANGED`) edits the holder's latest DM about the pea in place; anything that
    needs them (up, failed, lease ending, newer build, PR closed, released) is a new DM, and the
    previous one loses its buttons. Notices about one pea are delivered in order; failures are logged.
    """

    def __init__(self, client: AsyncWebClient, home: HomePublisher | None = None) -> None:
        self.client = client
        self.home = home
        self._cards: dict[str, _Card] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def __call__(self, notice: Notice) -> None:
        message = render_pea_notice(notice)
        if message is None or notice.pea is None:
            return
        async with self._locks[notice.pea]:
            try:
                await self._deliver(notice.pea, notice.kind, message)
            except SlackApiError as exc:
                log.warning("cannot tell %s about pea %s: %s", message.to, notice.pea, exc.response.get("error"))
        if self.home is not None:
            self.home.changed({message.to})

    async def _deliver(self, pea: str, kind: Kind, message: PeaMessage) -> None:
        card = self._cards.get(pea)
        if card is not None and card.holder != message.to:
            card = None  # someone else's messages: they were told when they lost the pea
        if kind is Kind.PEA_CHANGED and card is not None:
            headline = message.headline if card.progress else card.headline
            blocks = message.blocks if card.progress else [section(headline), *message.blocks[1:]]
            await self.client.chat_update(channel=card.channel, ts=card.ts, text=message.text, blocks=blocks)
            card.headline = headline
            return
        if card is not None:  # its buttons belong to the new message now
            await self.client.chat_update(channel=card.channel, ts=card.ts, text=card.headline,
                                          blocks=[section(card.headline), context("See the newer message below.")])
        posted = await self.client.chat_postMessage(channel=message.to, text=message.text, blocks=message.blocks,
                                                    unfurl_links=False)
        if kind is Kind.PEA_RELEASED:
            self._cards.pop(pea, None)
        else:
            self._cards[pea] = _Card(message.to, posted["channel"], posted["ts"], message.headline,
                                     progress=kind is Kind.PEA_CHANGED)


def home_section(flows: PeaFlows) -> Callable[[str], Awaitable[list[dict[str, Any]]]]:
    """"Your peas" on the App Home: each pea the person holds, with its buttons."""

    async def blocks(user_id: str) -> list[dict[str, Any]]:
        mine = await flows.peas_of(user_id)
        if not mine:
            return [context("You hold no pea. `/pea` lists them; `/pea deploy <pea> <pr>` claims one.")]
        return [block for view in mine for block in pea_blocks(view)]

    return blocks


# -- the form ---------------------------------------------------------------------------------------

def _option(view: PeaView, user_id: str) -> dict[str, Any]:
    if not view.held:
        what = "free" if view.state == PeaState.FREE.value else "free (scaling down)"
    elif view.holder == user_id:
        what = f"yours, #{view.pr_number}"
    else:
        what = f"held, #{view.pr_number}"
    return {"text": plain(f"{view.name} ({what})", 75), "value": view.name}


def deploy_modal(views: list[PeaView], user_id: str, channel: str | None) -> dict[str, Any]:
    """Pick a pea (free ones first, then yours, then the others) and an open pull request."""
    ordered = sorted(views, key=lambda v: (v.held, v.holder != user_id))
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps({"channel": channel}),
        "title": plain("Deploy to a pea", 24),
        "submit": plain("Deploy", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": PEA, "label": plain("Pea", 2000),
             "element": {"type": "static_select", "action_id": PEA, "placeholder": plain("Pick a pea", 150),
                         "options": [_option(v, user_id) for v in ordered]}},
            {"type": "input", "block_id": PR, "label": plain("Pull request", 2000), "element": picker.element(),
             "hint": plain("Open pull requests: type a number, title or author.", 2000)},
        ],
    }


def _deployed(view: PeaView) -> str:
    return (f"Deploying #{view.pr_number} to `{view.name}`. You will get a direct message with "
            f"{view.url} when it is up; `/pea` shows how it is going.")


# -- listeners --------------------------------------------------------------------------------------

async def run_command(flows: PeaFlows, config: AppConfig, command: PeaCommand, user_id: str) -> str:
    """The answer to a typed `/pea` (a Refused propagates)."""
    if command.name == "help":
        return usage(config.peas.names if config.peas else [])
    if command.name == "list":
        return list_text(await flows.list())
    assert command.pea is not None
    if command.name == "deploy":
        assert command.pr is not None
        return _deployed(await flows.deploy(user_id, command.pea, command.pr))
    if command.name == "extend":
        view = await flows.extend(user_id, command.pea)
        return f"`{view.name}` is yours until {at(view.lease_expires_at, '{date_short} {time}')}."
    view = await flows.release(user_id, command.pea)
    return f"Released `{view.name}`: it is being scaled to zero."


def register(app: AsyncApp, flows: PeaFlows, config: AppConfig, *, notifier: SlackNotifier | None = None,
             home: HomePublisher | None = None) -> None:
    """Add `/pea`, its form and buttons to the app, and (when given) the DMs and the App Home section."""
    if notifier is not None:
        notifier.pea_notices = PeaMessenger(app.client, home)
    if home is not None:
        home.peas = home_section(flows)

    @app.command(COMMAND)
    async def handle_pea_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                                 client: AsyncWebClient) -> None:
        await ack()
        user_id = command["user_id"]
        try:
            parsed = parse(command.get("text") or "")
            if parsed.name == "form":
                modal = deploy_modal(await flows.list(), user_id, command.get("channel_id"))
                await client.views_open(trigger_id=command["trigger_id"], view=modal)
                return
            answer = await run_command(flows, config, parsed, user_id)
        except BadInput as exc:
            answer = f"{exc}\nNothing was changed. `/pea help` lists what you can type."
        except Refused as exc:
            answer = f"{exc}\nNothing was changed."
        await tell(client, user_id, answer, respond=respond)

    @app.view(CALLBACK_ID)
    async def handle_pea_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        values = view["state"]["values"]
        pea = ((values.get(PEA, {}).get(PEA) or {}).get("selected_option") or {}).get("value")
        pr = picker.picked(values, PR)
        errors = {**({PEA: "Pick a pea."} if not pea else {}), **({PR: "Pick a pull request."} if pr is None else {})}
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        assert pea is not None and pr is not None
        channel = json.loads(view.get("private_metadata") or "{}").get("channel")
        pending = asyncio.ensure_future(flows.deploy(user_id, pea, pr))
        try:
            deployed = await asyncio.wait_for(asyncio.shield(pending), SUBMIT_BUDGET)
        except Refused as exc:
            await ack(response_action="errors", errors={exc.field if exc.field in (PEA, PR) else PR:
                                                        shorten(str(exc), 250)})
            return
        except TimeoutError:  # the form closes now; the answer follows as an ephemeral message
            await ack()
            try:
                text = _deployed(await pending)
            except Refused as exc:
                text = f"Nothing was deployed: {exc}"
            await tell(app.client, user_id, text, channel=channel)
            return
        await ack()
        await tell(app.client, user_id, _deployed(deployed), channel=channel)

    def button_listener(label: str) -> Callable[..., Awaitable[None]]:
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
                await tell(client, user_id, "That button is not valid any more: `/pea` shows the peas.",
                           respond=respond)
                return
            try:
                pea = await flows.press(user_id, label, value)
            except Refused as exc:
                await tell(client, user_id, f"{exc}\nNothing was changed.", respond=respond)
                return
            if label == "Redeploy":
                await tell(client, user_id, _deployed(pea), respond=respond)
            elif label == "Extend":
                await tell(client, user_id, f"`{pea.name}` is yours until "
                                            f"{at(pea.lease_expires_at, '{date_short} {time}')}.", respond=respond)
            else:
                await tell(client, user_id, f"Released `{pea.name}`: it is being scaled to zero.", respond=respond)

        listener.__name__ = listener.__qualname__ = f"handle_{ACTIONS[label]}_action"
        return listener

    for label in BUTTONS:
        app.action(ACTIONS[label])(button_listener(label))
