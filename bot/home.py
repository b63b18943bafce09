"""The App Home: the train (frozen?), the deploy in flight with your buttons, the queue, your peas, your history.

Published when someone opens the tab, and republished (debounced) for everyone who has looked
at it, and for the requester of a deploy that changed, whenever the notifier says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import cards
from bot.text import context, escape, eta, human_duration, plain, section, user, when
from flows.config import AppConfig
from flows.deploy import service
from flows.deploy.service import QueueEntry
from flows.deploy.stats import duration, recent_deploys
from storage.models import Deploy, Train

log = logging.getLogger(__name__)

# What the peas surface adds to a person's Home: blocks for `user` (see `HomePublisher.peas`).
SectionSource = Callable[[str], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class TrainView:
    """What every Home shows alike: the train and its queue."""

    train: Train
    entries: list[QueueEntry]


CONCURRENCY = 4  # Homes rendered and published at once (all viewers are republished together)
QUEUE_SHOWN = 20
OWN_BUTTONS_SHOWN = 5
RECENT_SHOWN = 5


class HomePublisher:
    def __init__(self, client: AsyncWebClient, config: AppConfig, sessions: async_sessionmaker[AsyncSession], *,
                 debounce: float = 1.0) -> None:
        self.client = client
        self.config = config
        self.sessions = sessions
        self.debounce = debounce
        self.viewers: set[str] = set()  # who opened the Home tab since this process started
        # The seam for the peas surface: set to a SectionSource and "Your peas" shows what it returns.
        self.peas: SectionSource | None = None
        self._dirty: set[str] = set()
        self._flush: asyncio.Task | None = None
        self._published: dict[str, list[dict[str, Any]]] = {}  # what each person's Home shows now
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def changed(self, users: Iterable[str] = ()) -> None:
        """Something people see changed: republish for the viewers and `users`, at most once per `debounce`."""
        self._dirty |= self.viewers | set(users)
        if self._dirty and self._flush is None:
            self._flush = asyncio.create_task(self._publish_dirty())

    async def opened(self, user_id: str) -> None:
        self.viewers.add(user_id)
        self._published.pop(user_id, None)  # publish even if unchanged: the tab may be new to them
        await self.publish(user_id)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)

    async def _publish_dirty(self) -> None:
        try:
            while self._dirty:
                await asyncio.sleep(self.debounce)
                users, self._dirty = self._dirty, set()
                train = await self.train()  # what everyone sees, read once for all
                await asyncio.gather(*(self.publish(u, train) for u in users))
        except Exception:
            log.exception("home: cannot read the train")
        finally:
            self._flush = None

    async def train(self) -> TrainView:
        return TrainView(await service.train_status(self.sessions), await service.queue(self.sessions))

    async def publish(self, user_id: str, train: TrainView | None = None) -> None:
        """Render and publish one person's Home; failures are logged, never raised."""
        try:
            async with self._slots:
                blocks = await self.render(user_id, train or await self.train())
                if self._published.get(user_id) == blocks:
                    return
                await self.client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})
                self._published[user_id] = blocks
        except SlackApiError as exc:
            log.warning("home: views.publish for %s failed: %s", user_id, exc.response.get("error"))
        except Exception:
            log.exception("home: cannot publish for %s", user_id)

    def _may_act(self, user_id: str, deploy: Deploy) -> bool:
        return user_id == deploy.requester or self.config.permissions.is_admin(user_id)

    async def render(self, user_id: str, view: TrainView) -> list[dict[str, Any]]:
        train, entries = view.train, view.entries
        blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("Deploy train", 150)}]
        if train.frozen:
            blocks.append(section(f":snowflake: *Frozen* by {user(train.frozen_by)} since {when(train.frozen_at)}: "
                                  f"{escape(train.frozen_reason)}\nQueued deploys wait until an admin runs "
                                  "`/deploy unfreeze`."))
        else:
            blocks.append(section(":large_green_circle: *Running*. `/deploy <pr>` joins the queue, "
                                  "`/deploy` opens the form, `/deploy help` says the rest."))

        blocks += [{"type": "divider"}, section("*In flight*")]
        in_flight = [e.deploy for e in entries if e.position == 0]
        if in_flight:
            deploy = in_flight[0]
            blocks += cards.card_blocks(deploy, with_buttons=self._may_act(user_id, deploy))
        else:
            blocks.append(section("_Nothing is deploying right now._"))

        queued = [e for e in entries if e.position > 0]
        blocks += [{"type": "divider"}, section(f"*Queue* ({len(queued)})")]
        if queued:
            lines = [f"{':point_right: ' if e.deploy.requester == user_id else ''}{e.position}. "
                     f"{cards.title(e.deploy)} · {user(e.deploy.requester)} · starts {eta(e.eta)}"
                     for e in queued[:QUEUE_SHOWN]]
            if len(queued) > QUEUE_SHOWN:
                lines.append(f"…and {len(queued) - QUEUE_SHOWN} more: `/deploy queue` lists them all.")
            blocks.append(section("\n".join(lines)))
            mine = [e.deploy for e in queued if self._may_act(user_id, e.deploy)][:OWN_BUTTONS_SHOWN]
            for deploy in mine:
                buttons = cards.actions(deploy, block_id=f"home_queued{deploy.id}")
                if buttons:
                    blocks += [context(f"#{deploy.pr_number} (position "
                                       f"{next(e.position for e in queued if e.deploy.id == deploy.id)})"), buttons]
        else:
            blocks.append(section("_The queue is empty._"))

        if self.peas is not None:
            blocks += [{"type": "divider"}, section("*Your peas*"), *await self.peas(user_id)]

        recent = await recent_deploys(self.sessions, limit=RECENT_SHOWN, requester=user_id)
        blocks += [{"type": "divider"}, section("*Your recent deploys*")]
        if recent:
            blocks.append(section("\n".join(
                f"{cards.summary(d)} · {human_duration(duration(d))} · "
                f"{when(d.finished_at, '{date_short_pretty} {time}')}"
                for d in recent)))
        else:
            blocks.append(section("_None yet._"))
        return blocks


def register(app: AsyncApp, home: HomePublisher) -> None:
    @app.event("app_home_opened")
    async def handle_app_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            await home.opened(event["user"])
