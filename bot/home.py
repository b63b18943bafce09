"""The App Home: the train (frozen?), the deploy in flight with your buttons, the queue, your peas, your history.

Published when someone opens the tab, and republished (debounced) when something they see
changes: for everyone who ever opened it (kept in the database, so any copy republishes it) when
the train changes, for the person concerned when only their deploy or pea did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deploy import cards
from bot.pea.cards import pea_blocks
from bot.store import MessageStore
from bot.text import context, escape, eta, human_duration, plain, section, user, when
from flows.deploy.flows import DeployFlows
from flows.pea.flows import PeaFlows
from flows.views import QueueView

log = logging.getLogger(__name__)

CONCURRENCY = 4  # Homes rendered and published at once (all viewers are republished together)
QUEUE_SHOWN = 20
OWN_BUTTONS_SHOWN = 5
RECENT_SHOWN = 5


class HomePublisher:
    def __init__(self, client: AsyncWebClient, deploys: DeployFlows, peas: PeaFlows, store: MessageStore, *,
                 debounce: float = 1.0) -> None:
        self.client = client
        self.deploys = deploys
        self.peas = peas
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

    async def _publish_dirty(self) -> None:
        try:
            while self._dirty or self._everyone:
                await asyncio.sleep(self.debounce)
                users, self._dirty = self._dirty, set()
                if self._everyone:
                    self._everyone = False
                    users |= await self.store.home_viewers()
                queue = await self.deploys.queue()  # what everyone sees, read once for all
                await asyncio.gather(*(self.publish(u, queue) for u in users))
        except Exception:
            log.exception("home: cannot read the train")
        finally:
            self._flush = None

    async def publish(self, user_id: str, queue: QueueView | None = None) -> None:
        """Render and publish one person's Home; failures are logged, never raised."""
        try:
            async with self._slots:
                blocks = await self.render(user_id, queue or await self.deploys.queue())
                if self._published.get(user_id) == blocks:
                    return
                await self.client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})
                self._published[user_id] = blocks
        except SlackApiError as exc:
            log.warning("home: views.publish for %s failed: %s", user_id, exc.response.get("error"))
        except Exception:
            log.exception("home: cannot publish for %s", user_id)

    async def render(self, user_id: str, queue: QueueView) -> list[dict[str, Any]]:
        train, commands = queue.train, self.deploys.config.slack.commands
        deploy_command, pea_command = commands.deploy, commands.pea
        blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("Deploy train", 150)}]
        if train.frozen:
            blocks.append(section(f":snowflake: *Frozen* by {user(train.frozen_by)} since {when(train.frozen_at)}: "
                                  f"{escape(train.frozen_reason)}\nQueued deploys wait until an admin runs "
                                  f"`{deploy_command} unfreeze`."))
        else:
            blocks.append(section(f":large_green_circle: *Running*. `{deploy_command} <pr>` joins the queue, "
                                  f"`{deploy_command}` opens the form, `{deploy_command} help` says the rest."))

        blocks += [{"type": "divider"}, section("*In flight*")]
        deploy = queue.in_flight
        if deploy is not None:
            blocks += cards.card_blocks(deploy, with_buttons=self.deploys.may_act(user_id, deploy))
        else:
            blocks.append(section("_Nothing is deploying right now._"))

        queued = queue.queued
        blocks += [{"type": "divider"}, section(f"*Queue* ({len(queued)})")]
        if queued:
            lines = [f"{':point_right: ' if e.deploy.requester == user_id else ''}{e.position}. "
                     f"{cards.title(e.deploy)} · {user(e.deploy.requester)} · starts {eta(e.eta)}"
                     for e in queued[:QUEUE_SHOWN]]
            if len(queued) > QUEUE_SHOWN:
                lines.append(f"…and {len(queued) - QUEUE_SHOWN} more: `{deploy_command} queue` lists them all.")
            blocks.append(section("\n".join(lines)))
            mine = [e for e in queued if self.deploys.may_act(user_id, e.deploy)][:OWN_BUTTONS_SHOWN]
            for entry in mine:
                buttons = cards.actions(entry.deploy, block_id=f"home_queued{entry.deploy.id}")
                if buttons:
                    blocks += [context(f"#{entry.deploy.pr_number} (position {entry.position})"), buttons]
        else:
            blocks.append(section("_The queue is empty._"))

        if self.peas.names:
            peas = await self.peas.peas_of(user_id)
            blocks += [{"type": "divider"}, section("*Your peas*")]
            blocks += [block for view in peas for block in pea_blocks(view)] or [
                context(f"You hold no pea. `{pea_command}` lists them; `{pea_command} deploy <pea> <pr>` claims one.")]

        recent = await self.deploys.history(limit=RECENT_SHOWN, requester=user_id)
        blocks += [{"type": "divider"}, section("*Your recent deploys*")]
        if recent:
            blocks.append(section("\n".join(
                f"{cards.summary(d)} · {human_duration(d.duration)} · "
                f"{when(d.finished_at, '{date_short_pretty} {time}')}"
                for d in recent)))
        else:
            blocks.append(section("_None yet._"))
        return blocks
