"""The App Home: every train (frozen?) with its deploy in flight (your buttons on it) and its queue, then your peas
and your history across the trains.

Published when someone opens the tab, and republished (debounced) when something they see
changes: for everyone who ever opened it (kept in the database, so any copy republishes it) when
the train changes, for the person concerned when only their deploy or pea did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deploy import cards
from bot.pea.cards import pea_blocks
from bot.store import MessageStore
from bot.text import context, escape, human_duration, plain, schedule, section, user, when
from bot.trains import TrainFlows
from flows.config import CommandsConfig
from flows.deploy.flows import queues_of
from flows.views import QueueView

log = logging.getLogger(__name__)

CONCURRENCY = 4  # Homes rendered and published at once (all viewers are republished together)
QUEUE_SHOWN = 20
OWN_BUTTONS_SHOWN = 5
RECENT_SHOWN = 5
MAX_BLOCKS = 100  # what Slack's views.publish takes


class HomePublisher:
    def __init__(self, client: AsyncWebClient, trains: Sequence[TrainFlows], commands: CommandsConfig,
                 store: MessageStore, *, debounce: float = 1.0) -> None:
        self.client = client
        self.trains = tuple(trains)
        self.commands = commands
        self.store = store
        self.debounce = debounce
        self._dirty: set[str] = set()
        self._everyone = False
        self._flush: asyncio.Task[None] | None = None
        self._published: dict[str, list[dict[str, Any]]] = {}  # what each person's Home shows now
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def changed(self, users: Iterable[str] = (), *, everyone: bool = True) -> None:
        """Something people see changed: republish for `users` (and every viewer unless `everyone` is False),
        at most once per `debounce`."""
        self._dirty |= set(users)
        self._everyone = self._everyone or everyone
        if (self._dirty or self._everyone) and self._flush is None:
            self._flush = asyncio.create_task(self._publish_dirty())

    async def opened(self, user_id: str) -> None:
        await self.store.add_home_viewer(user_id)
        self._published.pop(user_id, None)  # publish even if unchanged: the tab may be new to them
        await self.publish(user_id)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)

    async def queues(self) -> list[QueueView]:
        """Every train's queue, in the order of `trains` (what `render` shows)."""
        return await queues_of([t.deploys for t in self.trains])

    async def _publish_dirty(self) -> None:
        try:
            while self._dirty or self._everyone:
                await asyncio.sleep(self.debounce)
                users, self._dirty = self._dirty, set()
                if self._everyone:
                    self._everyone = False
                    users |= await self.store.home_viewers()
                queues = await self.queues()  # what everyone sees, read once for all
                await asyncio.gather(*(self.publish(u, queues) for u in users))
        except Exception:
            log.exception("home: cannot read the trains")
        finally:
            self._flush = None

    async def publish(self, user_id: str, queues: list[QueueView] | None = None) -> None:
        """Render and publish one person's Home; failures are logged, never raised."""
        try:
            async with self._slots:
                blocks = await self.render(user_id, queues or await self.queues())
                if self._published.get(user_id) == blocks:
                    return
                await self.client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})
                self._published[user_id] = blocks
        except SlackApiError as exc:
            log.warning("home: views.publish for %s failed: %s", user_id, exc.response.get("error"))
        except Exception:
            log.exception("home: cannot publish for %s", user_id)

    async def render(self, user_id: str, queues: list[QueueView]) -> list[dict[str, Any]]:
        """`queues`: each train's, in the order of `trains`."""
        several = len(self.trains) > 1
        blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("Deploy trains" if several
                                                                         else "Deploy train", 150)}]
        for train, queue in zip(self.trains, queues, strict=True):
            # with several trains, a few lines each (Slack's Home holds 100 blocks), the buttons only on yours
            blocks += self._one_of_many(train, queue, user_id) if several else self._the_train(train, queue, user_id)
        tail = await self._yours(user_id, several)
        if len(blocks) + len(tail) > MAX_BLOCKS:  # many trains: the last ones are in `/deploy queue`
            blocks = [*blocks[:MAX_BLOCKS - len(tail) - 1],
                      context(f"…more trains: `{self.commands.deploy} queue` shows them all.")]
        return blocks + tail

    async def _yours(self, user_id: str, several: bool) -> list[dict[str, Any]]:
        """Your peas and your recent deploys, across the trains."""
        blocks: list[dict[str, Any]] = []
        pea_command = self.commands.pea
        if any(t.peas.names for t in self.trains):
            peas = [view for t in self.trains if t.peas.names for view in await t.peas.peas_of(user_id)]
            blocks += [{"type": "divider"}, section("*Your peas*")]
            blocks += [block for view in peas for block in pea_blocks(view)] or [
                context(f"You hold no pea. `{pea_command}` lists them; "
                        f"`{pea_command} deploy &lt;pea&gt; &lt;pr&gt;` claims one.")]

        histories = [await t.deploys.history(limit=RECENT_SHOWN, requester=user_id) for t in self.trains]
        recent = sorted((d for h in histories for d in h), key=lambda d: (d.finished_at, d.id),
                        reverse=True)[:RECENT_SHOWN]
        blocks += [{"type": "divider"}, section("*Your recent deploys*")]
        if recent:
            blocks.append(section("\n".join(
                f"{f'`{d.train}` ' if several else ''}{cards.summary(d)} · {human_duration(d.duration)} · "
                f"{when(d.finished_at, '{date_short_pretty} {time}')}"
                for d in recent)))
        else:
            blocks.append(section("_None yet._"))
        return blocks

    def _the_train(self, flows: TrainFlows, queue: QueueView, user_id: str) -> list[dict[str, Any]]:
        train, deploy_command = queue.train, self.commands.deploy
        blocks: list[dict[str, Any]] = []
        if train.frozen:
            blocks.append(section(f":snowflake: *Frozen* by {user(train.frozen_by)} since {when(train.frozen_at)}: "
                                  f"{escape(train.frozen_reason)}\nQueued deploys wait until an admin runs "
                                  f"`{deploy_command} unfreeze`."))
        else:
            blocks.append(section(f":large_green_circle: *Running*. `{deploy_command} &lt;pr&gt;` joins the queue, "
                                  f"`{deploy_command}` opens the form, `{deploy_command} help` says the rest."))

        blocks += [{"type": "divider"}, section("*In flight*")]
        deploy = queue.in_flight
        if deploy is not None:
            page = flows.config.web.deploy_page(deploy.id) if flows.config.web else None
            blocks += cards.card_blocks(deploy, with_buttons=flows.deploys.may_act(user_id, deploy), page=page,
                                       config=flows.config)
        else:
            blocks.append(section("_Nothing is deploying right now._"))

        queued = queue.queued
        blocks += [{"type": "divider"}, section(f"*Queue* ({len(queued)})")]
        if queued:
            lines = [f"{':point_right: ' if e.deploy.requester == user_id else ''}{e.position}. "
                     f"{cards.title(e.deploy)} · {user(e.deploy.requester)} · {schedule(e.eta, e.finish)}"
                     for e in queued[:QUEUE_SHOWN]]
            if len(queued) > QUEUE_SHOWN:
                lines.append(f"…and {len(queued) - QUEUE_SHOWN} more: `{deploy_command} queue` lists them all.")
            blocks.append(section("\n".join(lines)))
            blocks += self._own_queued(flows, queue, user_id)
        else:
            blocks.append(section("_The queue is empty._"))
        return blocks

    def _one_of_many(self, flows: TrainFlows, queue: QueueView, user_id: str) -> list[dict[str, Any]]:
        train, name = queue.train, flows.name
        state = (f":snowflake: frozen by {user(train.frozen_by)}: {escape(train.frozen_reason)}" if train.frozen
                 else ":large_green_circle: running")
        lines = [f"*{escape(name)}* · <#{flows.config.slack.channel}> · {state}"]
        deploy = queue.in_flight
        lines.append(f"In flight: {cards.title(deploy)} · {user(deploy.requester)} · `{deploy.state.label}`"
                     if deploy is not None else "In flight: _nothing_")
        queued = queue.queued
        mine = [str(e.position) for e in queued if e.deploy.requester == user_id]
        lines.append(f"Queue: {len(queued)}" + (f" (yours: {', '.join(mine)})" if mine else "")
                     + f" · `{self.commands.deploy} queue {name}`")
        blocks: list[dict[str, Any]] = [{"type": "divider"}, section("\n".join(lines))]
        if deploy is not None and deploy.requester == user_id:
            buttons = cards.actions(deploy, block_id=f"home_flight{deploy.id}")
            if buttons:
                blocks.append(buttons)
        return blocks + self._own_queued(flows, queue, user_id)

    def _own_queued(self, flows: TrainFlows, queue: QueueView, user_id: str) -> list[dict[str, Any]]:
        """The buttons of the queued deploys `user_id` may act on (a few)."""
        blocks: list[dict[str, Any]] = []
        for entry in [e for e in queue.queued if flows.deploys.may_act(user_id, e.deploy)][:OWN_BUTTONS_SHOWN]:
            buttons = cards.actions(entry.deploy, block_id=f"home_queued{entry.deploy.id}")
            if buttons:
                blocks += [context(f"#{entry.deploy.pr_number} (position {entry.position})"), buttons]
        return blocks
