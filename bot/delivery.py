"""The Slack sink of the outbox: the domain's notices become a card per deploy, thread replies and DMs.

- A deploy's card is posted in its train's `slack.channel` with its first notice and edited in place as it
  moves, at most once per `card_interval` (a held-back edit is asked for again through the outbox,
  and then shows the deploy as it is by then). Queued cards show their position, and are edited
  when the queue moves.
- Details (merge commit, build, canaries, why it rolled back) go to the card's thread.
- The requester gets a DM when the deploy needs them, with the buttons valid then; the previous
  DM's buttons are retired once its step is over.
- A pea's holder gets DMs: progress edits their latest one in place, anything that needs them is
  a new one (and the previous one loses its buttons).
- Freezing and unfreezing a train post one message each in its channel.

Where the messages are is kept through `MessageStore` (any copy may deliver the next notice). A
Slack failure that may pass (HTTP 429 or 5xx, a network error) raises `DeliveryFailed`, and the
outbox tries again later, honouring `Retry-After`; one that cannot (a channel the app is not in)
is logged and counted, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deploy import cards
from bot.deploy.messages import DirectMessage, direct_message, gate_status, thread_reply
from bot.home import HomePublisher
from bot.metrics import Metrics
from bot.pea.messages import PeaMessage, pea_message
from bot.store import MessageStore
from bot.text import context, deploy_ref, escape, link, section, shorten, user
from bot.trains import TrainFlows
from flows.deploy.machine import State
from flows.notices import DeployNotice, Frozen, Moved, Notice, PeaNotice, QueueMoved, Unfrozen
from flows.outbox import Delivered, DeliveryFailed
from flows.views import DeployView, QueueView

log = logging.getLogger(__name__)

NAME = "slack"
CARD_INTERVAL = 1.0  # seconds between two edits of one card
QUEUE_VIEW_TTL = 0.5  # seconds the queue read for one card serves the other queued cards
CONCURRENCY = 4  # queued cards edited at once when the queue moves
# Slack's answers that say "try again later" rather than "this cannot work".
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})


class _Transient(Exception):
    """A Slack failure that may pass."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def after(self, done: int) -> DeliveryFailed:
        """The outbox's failure, once `done` notices went out."""
        return DeliveryFailed(str(self), done=done, retry_after=self.retry_after)


@dataclass
class _QueueRead:
    at: float
    view: QueueView


def _card_key(deploy_id: int) -> str:
    return f"deploy:{deploy_id}:card"


def _dm_key(deploy_id: int) -> str:
    return f"deploy:{deploy_id}:dm"


def _pea_key(pea: str) -> str:
    return f"pea:{pea}:dm"


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return next((b["text"]["text"] for b in blocks if b.get("type") == "section"), "")


def _page(train: TrainFlows, deploy: DeployView) -> str | None:
    """The deploy's page on the dashboard, when `web.url` is set."""
    return train.config.web.deploy_page(deploy.id) if train.config.web else None


def _with_live(blocks: list[dict[str, Any]], deploy_id: int, live: str | None) -> list[dict[str, Any]]:
    """A DM's blocks with its live status (what `gate_status` says now) right after its words, or without one."""
    block_id = f"deploy{deploy_id}_dm_live"
    kept = [b for b in blocks if b.get("block_id") != block_id]
    return kept if live is None else [kept[0], section(live, block_id=block_id), *kept[1:]]


def _plain(text: str) -> str:
    """A notification's text: the first line without emphasis."""
    return text.split("\n", 1)[0].replace("*", "")


class SlackSink:
    """Delivers the outbox's notices to Slack (the sink named `slack`)."""

    name = NAME

    def __init__(self, client: AsyncWebClient, trains: Sequence[TrainFlows], store: MessageStore, *,
                 home: HomePublisher | None = None, metrics: Metrics | None = None,
                 card_interval: float = CARD_INTERVAL) -> None:
        self.client = client
        self.trains = {t.name: t for t in trains}
        self.store = store
        self.home = home
        self.metrics = metrics
        self.card_interval = card_interval
        self._cards: dict[int, tuple[str, str]] = {}  # cards never move: remembered once found
        self._edited: dict[int, float] = {}  # when each card was last edited by this copy (monotonic)
        self._queue_lines: dict[int, str] = {}  # what each queued card says about its place
        self._queues: dict[str, _QueueRead] = {}  # by train

    async def deliver(self, stream: str, notices: Sequence[Notice]) -> Delivered:
        kind, _, key = stream.partition(":")
        if kind == "deploy":
            deploy = await next(iter(self.trains.values())).deploys.deploy(int(key))
            train = self.trains.get(deploy.train) if deploy is not None else None
            if train is None or deploy is None:
                return self._nowhere(stream, notices)
            return await self._deploy(train, deploy, [n for n in notices if isinstance(n, DeployNotice)])
        train = (next((t for t in self.trains.values() if key in t.peas.names), None) if kind == "pea"
                 else self.trains.get(key))
        if train is None:
            return self._nowhere(stream, notices)
        if kind == "pea":
            await self._pea(train, key, [n for n in notices if isinstance(n, PeaNotice)])
        elif kind == "train":
            await self._train(train, notices)
        return Delivered()

    @staticmethod
    def _nowhere(stream: str, notices: Sequence[Notice]) -> Delivered:
        """A stream of a train no longer configured (or a deploy that is gone): nobody to tell."""
        log.warning("slack: %d notices of %s belong to no configured train", len(notices), stream)
        return Delivered()

    # -- Slack ----------------------------------------------------------------------------------
    async def _slack(self, method: str, **args: Any) -> dict[str, Any] | None:
        """One Web API call. A failure that may pass raises _Transient; one that cannot is logged and gives None."""
        try:
            response = await self.client.api_call(method, json=args)
            return response.data if isinstance(response.data, dict) else None
        except SlackApiError as exc:
            self._count(method)
            status, error = exc.response.status_code, exc.response.get("error")
            if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
                retry_after = exc.response.headers.get("Retry-After") if exc.response.headers else None
                raise _Transient(f"slack {method}: {error or status}",
                                 float(retry_after) if retry_after else None) from None
            log.warning("slack %s failed: %s", method, error)
            return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count(method)
            raise _Transient(f"slack {method}: {type(exc).__name__}: {exc}") from None

    def _count(self, method: str) -> None:
        if self.metrics is not None:
            self.metrics.slack_errors.labels(method).inc()

    # -- a deploy's card, thread and DMs ---------------------------------------------------------
    async def _deploy(self, train: TrainFlows, deploy: DeployView, notices: list[DeployNotice]) -> Delivered:
        deploy_id = deploy.id
        card = await self._find_card(deploy_id)
        posted = False
        done = 0
        try:
            for notice in notices:
                if card is None:
                    card, posted = await self._post_card(train, deploy), True
                self._observe(notice, deploy)
                reply = thread_reply(notice, deploy, train.config)
                if reply and card is not None:
                    await self._slack("chat.postMessage", channel=card[0], thread_ts=card[1], text=reply,
                                      unfurl_links=False)
                dm = direct_message(notice, deploy, train.config)
                if dm is not None:
                    await self._send_dm(train, deploy, dm)
                done += 1
            if card is None:
                card, posted = await self._post_card(train, deploy), True
            elif not posted:
                wait = self._edited.get(deploy_id, float("-inf")) + self.card_interval - time.monotonic()
                if wait > 0:
                    return Delivered(again_in=wait)
                await self._edit_card(train, deploy, card)
            await self._settle_dm(train, deploy)
        except _Transient as exc:
            raise exc.after(done) from None
        if self.home is not None:
            self.home.changed({deploy.requester})
        return Delivered()

    async def _find_card(self, deploy_id: int) -> tuple[str, str] | None:
        if deploy_id not in self._cards:
            ref = await self.store.message(_card_key(deploy_id))
            if ref is not None:
                self._cards[deploy_id] = (ref.channel, ref.ts)
        return self._cards.get(deploy_id)

    async def _card(self, flows: TrainFlows, deploy: DeployView) -> tuple[list[dict[str, Any]], str]:
        entry = train = None
        if deploy.state is State.QUEUED:
            queue = await self._queue_view(flows)
            if queue.entry(deploy.id) is None:  # queued after that read: it has no place in it yet
                queue = await self._queue_view(flows, fresh=True)
            entry, train = queue.entry(deploy.id), queue.train
            self._queue_lines[deploy.id] = cards.queue_line(entry, train)
        return (cards.card_blocks(deploy, entry=entry, train=train, page=_page(flows, deploy), config=flows.config),
                cards.fallback_text(cards.shown(deploy, entry)))

    async def _post_card(self, train: TrainFlows, deploy: DeployView) -> tuple[str, str] | None:
        blocks, text = await self._card(train, deploy)
        posted = await self._slack("chat.postMessage", channel=train.config.slack.channel, text=text, blocks=blocks,
                                   unfurl_links=False)
        if posted is None:
            return None
        card = (posted["channel"], posted["ts"])
        await self.store.keep_message(_card_key(deploy.id), *card)
        self._cards[deploy.id] = card
        self._edited[deploy.id] = time.monotonic()
        return card

    async def _edit_card(self, train: TrainFlows, deploy: DeployView, card: tuple[str, str]) -> None:
        blocks, text = await self._card(train, deploy)
        self._edited[deploy.id] = time.monotonic()
        await self._slack("chat.update", channel=card[0], ts=card[1], text=text, blocks=blocks)
        if deploy.state.terminal:
            self._edited.pop(deploy.id, None)
            self._queue_lines.pop(deploy.id, None)

    async def _queue_view(self, train: TrainFlows, *, fresh: bool = False) -> QueueView:
        """The train's queue, read at most once per QUEUE_VIEW_TTL for all its queued cards."""
        read = self._queues.get(train.name)
        if fresh or read is None or time.monotonic() - read.at > QUEUE_VIEW_TTL:
            read = self._queues[train.name] = _QueueRead(time.monotonic(), await train.deploys.queue())
        return read.view

    def _observe(self, notice: DeployNotice, deploy: DeployView) -> None:
        if self.metrics is None or not isinstance(notice, Moved) or notice.source is notice.target:
            return
        entered, left = deploy.entered(notice.source), deploy.entered(notice.target)
        if entered and left:
            self.metrics.step_ended(notice.train, notice.source.value, entered, left)

    async def _send_dm(self, train: TrainFlows, deploy: DeployView, dm: DirectMessage) -> None:
        where = (f"{deploy_ref(deploy.id, deploy.pr_number).capitalize()} · its card is in "
                 f"<#{train.config.slack.channel}>")
        page = _page(train, deploy)
        if page:  # every DM links the deploy's whole story (DESIGN §10)
            where += f" · {link(page, 'its page on the dashboard')}"
        blocks = [section(dm.text), context(where)]
        buttons, live = None, None
        if dm.offered is not None:
            if deploy.state is dm.offered and deploy.needs_attention == dm.needs_attention:
                buttons = self._dm_buttons(deploy, dm.offered, dm.needs_attention)
                live = None if dm.needs_attention else gate_status(deploy, train.config)
            else:
                blocks.append(context(f"This has moved on: the deploy is now `{deploy.state.label}`."))
        blocks = _with_live(blocks, deploy.id, live)
        posted = await self._slack("chat.postMessage", channel=deploy.requester, text=_plain(_text_of(blocks)),
                                   blocks=[*blocks, buttons] if buttons else blocks, unfurl_links=False)
        if posted is None or buttons is None or dm.offered is None:
            return
        await self._settle_dm(train, deploy, always=True)
        await self.store.keep_message(_dm_key(deploy.id), posted["channel"], posted["ts"],
                                      {"blocks": blocks, "live": live, "state": dm.offered.value,
                                       "needs_attention": dm.needs_attention})

    @staticmethod
    def _dm_buttons(deploy: DeployView, state: State, needs_attention: bool) -> dict[str, Any] | None:
        return cards.actions(deploy, state, needs_attention=needs_attention, block_id=f"deploy{deploy.id}_dm_actions")

    async def _settle_dm(self, train: TrainFlows, deploy: DeployView, *, always: bool = False) -> None:
        """Take the buttons off the latest DM once its step is over (always: a newer DM has them now); while
        its step lasts, keep what it shows of the canaries and alarms current, edited in place."""
        ref = await self.store.message(_dm_key(deploy.id))
        if ref is None:
            return
        blocks = ref.data.get("blocks") or []
        if not always and deploy.state.value == ref.data.get("state") \
                and deploy.needs_attention == ref.data.get("needs_attention"):
            live = None if deploy.needs_attention else gate_status(deploy, train.config)
            if live == ref.data.get("live"):
                return
            blocks = _with_live(blocks, deploy.id, live)
            buttons = self._dm_buttons(deploy, deploy.state, deploy.needs_attention)
            await self._slack("chat.update", channel=ref.channel, ts=ref.ts, text=_plain(_text_of(blocks)),
                              blocks=[*blocks, buttons] if buttons else blocks)
            await self.store.keep_message(_dm_key(deploy.id), ref.channel, ref.ts,
                                          {**ref.data, "blocks": blocks, "live": live})
            return
        now = " see the latest message" if always else f" the deploy is now `{deploy.state.label}`"
        await self._slack("chat.update", channel=ref.channel, ts=ref.ts, text=_plain(_text_of(blocks)),
                          blocks=[*blocks, context(f"This step is over:{now}.")])
        await self.store.forget_message(_dm_key(deploy.id))

    # -- the train ------------------------------------------------------------------------------
    async def _train(self, train: TrainFlows, notices: Sequence[Notice]) -> None:
        done = 0
        channel = train.config.slack.channel
        try:
            for notice in notices:
                if isinstance(notice, Frozen):
                    await self._slack("chat.postMessage", channel=channel, text=(
                        f":snowflake: The train is *frozen* by {user(notice.by)}: "
                        f"{escape(shorten(notice.reason, 500))}\n"
                        "Queued deploys wait; the deploy in flight carries on."))
                elif isinstance(notice, Unfrozen):
                    await self._slack("chat.postMessage", channel=channel,
                                      text=f":arrow_forward: The train is *running again* (unfrozen by "
                                           f"{user(notice.by)}).")
                done += 1
            if any(isinstance(n, QueueMoved) for n in notices):
                await self._refresh_queued(train)
        except _Transient as exc:
            raise exc.after(done) from None
        if self.home is not None:
            self.home.changed()

    async def _refresh_queued(self, train: TrainFlows) -> None:
        """The train's queued cards show their position and ETA: edit those whose line changed."""
        queue = await self._queue_view(train, fresh=True)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def refresh(deploy: DeployView, line: str) -> None:
            async with slots:
                card = await self._find_card(deploy.id)
                if card is not None and self._queue_lines.get(deploy.id) != line:
                    await self._edit_card(train, deploy, card)

        await asyncio.gather(*(refresh(e.deploy, cards.queue_line(e, queue.train)) for e in queue.queued))

    # -- peas -----------------------------------------------------------------------------------
    async def _pea(self, train: TrainFlows, name: str, notices: list[PeaNotice]) -> None:
        view = await train.peas.get(name)
        if view is None:
            return
        for done, notice in enumerate(notices):
            message = pea_message(notice, view)
            try:
                if message is not None:
                    await self._pea_dm(name, message)
            except _Transient as exc:
                raise exc.after(done) from None
            if self.home is not None and notice.holder:
                self.home.changed({notice.holder}, everyone=False)

    async def _pea_dm(self, pea: str, message: PeaMessage) -> None:
        key = _pea_key(pea)
        ref = await self.store.message(key)
        if ref is not None and ref.data.get("holder") != message.to:
            ref = None  # someone else's messages: they were told when they lost the pea
        if message.progress and ref is not None:
            progress = bool(ref.data.get("progress"))
            headline = message.headline if progress else str(ref.data.get("headline"))
            blocks = message.blocks if progress else [section(headline), *message.blocks[1:]]
            await self._slack("chat.update", channel=ref.channel, ts=ref.ts, text=message.text, blocks=blocks)
            await self.store.keep_message(key, ref.channel, ref.ts, {**ref.data, "headline": headline})
            return
        if ref is not None:  # its buttons belong to the new message now
            headline = str(ref.data.get("headline"))
            await self._slack("chat.update", channel=ref.channel, ts=ref.ts, text=headline,
                              blocks=[section(headline), context("See the newer message below.")])
        posted = await self._slack("chat.postMessage", channel=message.to, text=message.text, blocks=message.blocks,
                                   unfurl_links=False)
        if posted is None:
            return
        if message.final:  # the pea is not theirs any more: nothing of it to edit later
            await self.store.forget_message(key)
        else:
            await self.store.keep_message(key, posted["channel"], posted["ts"],
                                          {"holder": message.to, "headline": message.headline,
                                           "progress": message.progress})
