"""`SlackNotifier`: the domain's notices become a card per deploy, thread replies and direct messages.

- The card is posted in `slack.channel` when a deploy joins the train and edited in place as
  it moves, at most once per `card_interval` (edits are coalesced: when one fires it renders
  the deploy as it is then).
- Details (merge commit, build, canaries, why it rolled back) go to the card's thread.
- The requester gets a DM when the deploy needs them, with the buttons valid then; the
  previous DM's buttons are retired once its step is over.
- Freezing and unfreezing the train post one channel message each.

`notify` never blocks the engine and never raises: each deploy has one worker task that
delivers its notices in order, and every Slack failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import cards
from bot.home import HomePublisher
from bot.metrics import Metrics
from bot.text import commit_url, context, escape, human_duration, link, section, shorten, user
from flows.config import AppConfig
from flows.deploy import service
from flows.deploy.machine import TERMINAL, Event, State
from flows.deploy.service import QueueEntry
from flows.deploy.stats import duration, state_time
from flows.notify import Kind, Notice
from storage.clock import utcnow
from storage.models import Deploy, Train

log = logging.getLogger(__name__)

CARD_INTERVAL = 1.0  # seconds between two edits of one card
RESYNC_WINDOW = timedelta(hours=1)  # at start, cards of deploys that ended this recently are edited again
# A card edit waits this long after the latest notice: a step's notice and the transition that follows it
# are then shown by one edit, instead of the edit before the transition holding back the new state a second.
CARD_SETTLE = 0.1
QUEUE_VIEW_TTL = 0.5  # seconds the queue read for one card serves the other queued cards
# Deploys whose Slack work runs at once: when the queue moves, dozens of cards change together, and
# rendering them all in one go would keep acks waiting (and meet Slack's rate limits).
CONCURRENCY = 4
CLOSE_TIMEOUT = 5.0

# Notices after which the queue's order or ETAs changed: the queued cards show positions.
_QUEUE_MOVES = {Kind.QUEUED, Kind.YOUR_TURN, Kind.CANCELLED, Kind.COMPLETED, Kind.ROLLED_BACK, Kind.FAILED,
                Kind.FROZEN, Kind.UNFROZEN}
_PERSON_EVENTS = {Event.RETRY_BUILD: "Retry build", Event.RETRY: "Retry", Event.PROCEED: "Proceed"}


@dataclass
class _Dm:
    channel: str
    ts: str
    blocks: list[dict[str, Any]]  # without its buttons
    state: State  # the state its buttons were offered in
    needs_attention: bool


@dataclass(frozen=True)
class _QueueView:
    """The queue and the train as read at `at`: what the queued cards show."""

    at: float
    generation: int  # of queue moves, when it was read
    entries: dict[int, QueueEntry]
    train: Train


@dataclass
class _Outbox:
    """One deploy's pending Slack work and where its messages are."""

    notices: list[Notice] = field(default_factory=list)
    card_dirty: bool = False
    card: tuple[str, str] | None = None  # (channel, ts)
    last_edit: float = float("-inf")
    last_notice: float = float("-inf")
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a notice came: a DM must not wait for the card
    dm: _Dm | None = None  # the latest DM with buttons
    queue_line: str | None = None  # what the card says about the queue, while queued


class SlackNotifier:
    def __init__(self, client: AsyncWebClient, config: AppConfig, sessions: async_sessionmaker[AsyncSession], *,
                 home: HomePublisher | None = None, metrics: Metrics | None = None,
                 card_interval: float = CARD_INTERVAL) -> None:
        self.client = client
        self.config = config
        self.sessions = sessions
        self.home = home
        self.metrics = metrics
        self.card_interval = card_interval
        # The seam for the peas surface: notices about a pea go here when set.
        self.pea_notices: Callable[[Notice], Awaitable[None]] | None = None
        self._outboxes: dict[int, _Outbox] = {}
        self._workers: dict[int, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._queue_refresh: asyncio.Task | None = None
        self._queue_moves = 0  # counts queue moves: a view read before the latest one is stale
        self._queue_view: _QueueView | None = None
        self._queue_lock = asyncio.Lock()
        self._hurry = asyncio.Event()  # set when closing: pending card edits go out at once
        self._slots = asyncio.Semaphore(CONCURRENCY)

    # -- the Notifier protocol --------------------------------------------------------------------
    async def notify(self, notice: Notice) -> None:
        try:
            self._accept(notice)
        except Exception:
            log.exception("notifier: cannot take notice %s", notice)

    def _accept(self, notice: Notice) -> None:
        if notice.deploy_id is not None:
            outbox = self._outboxes.setdefault(notice.deploy_id, _Outbox())
            outbox.notices.append(notice)
            outbox.card_dirty = True
            outbox.last_notice = time.monotonic()
            outbox.arrived.set()
            self._start_worker(notice.deploy_id)
        elif notice.kind in (Kind.FROZEN, Kind.UNFROZEN):
            self._spawn(self._announce_train(notice))
        elif notice.pea is not None and self.pea_notices is not None:
            self._spawn(self.pea_notices(notice))
        if notice.kind in _QUEUE_MOVES:
            self._queue_moves += 1
            if self._queue_refresh is None:
                self._queue_refresh = self._spawn(self._refresh_queued())
        if self.home is not None:
            self.home.changed()

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:  # noqa: ASYNC109 - bounded by design
        """Deliver what is pending (card edits at once) for up to `timeout` seconds, then cancel the rest."""
        self.card_interval = 0
        self._hurry.set()
        for outbox in self._outboxes.values():
            outbox.arrived.set()
        pending = [*self._workers.values(), *self._tasks]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- plumbing ---------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(self._safely(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _safely(self, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except Exception:
            log.exception("notifier: delivery failed")
            return None

    async def _slack(self, method: str, **args: Any) -> dict[str, Any] | None:
        """One Web API call; a failure is logged and counted, and gives None."""
        try:
            response = await self.client.api_call(method, json=args)
            return response.data if isinstance(response.data, dict) else None
        except SlackApiError as exc:
            log.warning("slack %s failed: %s", method, exc.response.get("error"))
        except Exception as exc:
            log.warning("slack %s failed: %s: %s", method, type(exc).__name__, exc)
        if self.metrics is not None:
            self.metrics.slack_errors.labels(method).inc()
        return None

    async def resync_cards(self) -> None:
        """Edit the card of every deploy still going (or just ended) to show it as it is now: a copy that
        died may have moved it without editing its card, and notices die with their process."""
        async with self.sessions() as session:
            ids = (await session.scalars(sa.select(Deploy.id).where(
                Deploy.slack_ts.is_not(None),  # a card never posted is not ours to post twice beside another copy
                sa.or_(Deploy.state.not_in([s.value for s in TERMINAL]),
                       Deploy.finished_at >= utcnow() - RESYNC_WINDOW)))).all()
        for deploy_id in ids:
            self._outboxes.setdefault(deploy_id, _Outbox()).card_dirty = True
            self._start_worker(deploy_id)

    def _start_worker(self, deploy_id: int) -> None:
        if deploy_id not in self._workers:
            self._workers[deploy_id] = asyncio.create_task(self._work(deploy_id))

    async def _work(self, deploy_id: int) -> None:
        outbox = self._outboxes[deploy_id]
        deploy: Deploy | None = None
        try:
            while True:
                if outbox.notices:
                    notices, outbox.notices = outbox.notices, []
                    async with self._slots:
                        deploy = await service.get_deploy(self.sessions, deploy_id)
                        for notice in notices if deploy is not None else ():
                            await self._safely(self._deliver(outbox, deploy, notice))
                    if deploy is None:
                        continue
                    if self.home is not None:
                        self.home.changed({deploy.requester})
                elif outbox.card_dirty:
                    due = outbox.last_edit + self.card_interval
                    if not self._hurry.is_set():
                        due = max(due, outbox.last_notice + CARD_SETTLE)
                    wait = due - time.monotonic()
                    if wait > 0:
                        outbox.arrived.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(outbox.arrived.wait(), wait)
                        continue  # notices that came meanwhile go first
                    async with self._slots:
                        deploy = await self._safely(self._sync_card(outbox, deploy_id)) or deploy
                else:
                    break
        finally:
            self._workers.pop(deploy_id, None)
            if deploy is not None and State(deploy.state).terminal and not outbox.notices:
                self._outboxes.pop(deploy_id, None)

    # -- the card ---------------------------------------------------------------------------------
    async def _sync_card(self, outbox: _Outbox, deploy_id: int) -> Deploy | None:
        """Post the card if it is not there yet, else edit it to show the deploy as it is now."""
        outbox.card_dirty = False  # before reading: a change from now on asks for another edit
        outbox.last_edit = time.monotonic()
        deploy = await service.get_deploy(self.sessions, deploy_id)
        if deploy is None:
            return None
        entry = train = None
        if deploy.state == State.QUEUED.value:
            queue = await self._queued()
            entry, train = queue.entries.get(deploy_id), queue.train
            outbox.queue_line = cards.queue_line(entry, train)
        blocks = cards.card_blocks(deploy, entry=entry, train=train)
        text = cards.fallback_text(deploy)
        if outbox.card is None and deploy.slack_ts and deploy.slack_channel:
            outbox.card = (deploy.slack_channel, deploy.slack_ts)
        if outbox.card is None:
            posted = await self._slack("chat.postMessage", channel=self.config.slack.channel, text=text,
                                       blocks=blocks, unfurl_links=False)
            if posted is not None:
                outbox.card = (posted["channel"], posted["ts"])
                await service.set_slack_ids(self.sessions, deploy_id, slack_channel=posted["channel"],
                                            slack_ts=posted["ts"])
        else:
            await self._slack("chat.update", channel=outbox.card[0], ts=outbox.card[1], text=text, blocks=blocks)
        await self._retire_dm(outbox, deploy)
        return deploy

    async def _ensure_card(self, outbox: _Outbox, deploy: Deploy) -> tuple[str, str] | None:
        if outbox.card is None and deploy.slack_ts and deploy.slack_channel:
            outbox.card = (deploy.slack_channel, deploy.slack_ts)
        if outbox.card is None:
            await self._sync_card(outbox, deploy.id)
        return outbox.card

    async def _queued(self) -> _QueueView:
        """The queue, read at most once per QUEUE_VIEW_TTL for all the queued cards (and again when it moves)."""
        async with self._queue_lock:
            view = self._queue_view
            if (view is None or view.generation != self._queue_moves
                    or time.monotonic() - view.at > QUEUE_VIEW_TTL):
                generation = self._queue_moves
                entries = await service.queue(self.sessions)
                train = await service.train_status(self.sessions)
                view = self._queue_view = _QueueView(time.monotonic(), generation,
                                                     {e.deploy.id: e for e in entries}, train)
            return view

    async def _refresh_queued(self) -> None:
        """Queued cards show their position and ETA: edit those whose line changed when the queue moved
        (again if it moved once more meanwhile)."""
        try:
            seen = -1
            while seen != self._queue_moves:
                seen = self._queue_moves
                queue = await self._queued()
                for entry in queue.entries.values():
                    outbox = self._outboxes.setdefault(entry.deploy.id, _Outbox())
                    if entry.position > 0 and outbox.queue_line != cards.queue_line(entry, queue.train):
                        outbox.card_dirty = True
                        self._start_worker(entry.deploy.id)
        finally:
            self._queue_refresh = None

    # -- notices ------------------------------------------------------------------------------------
    async def _deliver(self, outbox: _Outbox, deploy: Deploy, notice: Notice) -> None:
        card = await self._ensure_card(outbox, deploy)
        self._observe_step(deploy, notice)
        reply = self._thread_reply(deploy, notice)
        if reply and card is not None:
            await self._slack("chat.postMessage", channel=card[0], thread_ts=card[1], text=reply,
                              unfurl_links=False)
        dm = self._direct_message(deploy, notice)
        if dm is not None:
            await self._send_dm(outbox, deploy, *dm)

    def _observe_step(self, deploy: Deploy, notice: Notice) -> None:
        source, target = notice.data.get("from"), notice.data.get("to")
        if self.metrics is None or not source or not target or source == target:
            return
        entered, left = state_time(deploy, State(source)), state_time(deploy, State(target))
        if entered and left:
            self.metrics.step_ended(source, entered, left)

    def _thread_reply(self, deploy: Deploy, notice: Notice) -> str | None:
        data, kind = notice.data, notice.kind
        actor = data.get("actor")
        by = f" by {user(actor)}" if actor and actor != service.SYSTEM else ""
        why = escape(shorten(deploy.outcome_reason or notice.text or "", 1500))
        if kind is Kind.YOUR_TURN:
            base = self.config.github.base_branch
            return f":arrow_forward: Now deploying: merging #{deploy.pr_number} into `{base}`."
        if kind is Kind.MERGED:
            sha = data.get("merge_sha") or deploy.merge_sha or ""
            return f"Merged as {link(commit_url(deploy.pr_url, sha), sha[:10])}."
        if kind is Kind.BUILD_STARTED:
            number = f"#{deploy.build_number}" if deploy.build_number else "log"
            return f":hammer_and_wrench: Build {link(data.get('build_url') or deploy.build_url, number)} started."
        if kind is Kind.BUILD_PASSED:
            return f":large_green_circle: {escape(notice.text)}."
        if kind is Kind.BUILD_FAILED:
            return (f":x: Build failed: {why}. {user(deploy.requester)} can *Retry build* or *Roll back*"
                    + (f" ({link(deploy.build_url, 'build log')})." if deploy.build_url else "."))
        if kind is Kind.CANARIES_UP:
            canaries = data.get("canaries") or {}
            names = ", ".join(f"`{escape(name)}`" for name in canaries.values())
            return f":hatching_chick: Canaries are up: {names}. Waiting for {user(deploy.requester)}."
        if kind is Kind.ROLLED_OUT:
            return (f":rocket: Rolled out to {', '.join(f'`{p}`' for p in deploy.processes)}; canaries removed. "
                    f"Completes by itself in {human_duration(self.config.deploy.confirm_timeout)} "
                    "unless someone rolls it back.")
        if kind is Kind.COMPLETED:
            how = " (nobody objected within the confirm timeout)" if data.get("event") == Event.CONFIRM_TIMEOUT else by
            return f":white_check_mark: Completed in {human_duration(duration(deploy))}{how}."
        if kind is Kind.ROLLING_BACK:
            return f":rewind: Rolling back{by or ' automatically'}" + (f": {why}" if why and not by else ".")
        if kind is Kind.ROLLED_BACK:
            return f":leftwards_arrow_with_hook: Rolled back in {human_duration(duration(deploy))}" + (
                f": {why}" if why else ".")
        if kind is Kind.FAILED:
            return f":x: Failed: {why}"
        if kind is Kind.CANCELLED:
            return f":no_entry_sign: Cancelled{by}."
        if kind is Kind.NEEDS_ATTENTION:
            where = f" {link(data['manual_url'], 'the merge commit')}" if data.get("manual_url") else ""
            return f":warning: Needs attention: {escape(shorten(notice.text, 1500))}{where}"
        if kind is Kind.CHANGED and by and data.get("event") in _PERSON_EVENTS:
            return f"{user(actor)} pressed *{_PERSON_EVENTS[data['event']]}*."
        return None

    def _direct_message(self, deploy: Deploy, notice: Notice) -> tuple[str, State | None, bool] | None:
        """(text, state whose buttons to offer or None, needs attention) for a DM to the requester, if any."""
        kind, target = notice.kind, notice.data.get("to")
        title = f"#{deploy.pr_number} {escape(shorten(deploy.pr_title or '', 150))}"
        card = f"<#{self.config.slack.channel}>"
        if kind is Kind.YOUR_TURN:
            return (f":arrow_forward: *Your turn*: {title} is being merged and deployed. Follow it in {card}.",
                    None, False)
        if kind is Kind.BUILD_FAILED:
            reason = escape(shorten(deploy.outcome_reason or notice.text, 1500))
            return (f":x: *The build failed* for {title}: {reason}.\n*Retry build* starts it again; *Roll back* "
                    "reverts the merge.", State.BUILD_FAILED, False)
        if target == State.CANARY_CHECK.value:
            canaries = ", ".join(f"`{t.get('canary')}`" for t in (deploy.targets or {}).values() if t.get("canary"))
            return (f":hatching_chick: *Canaries are up* for {title}: {canaries}, taking real traffic.\n"
                    "Check them, then *Proceed* to roll out everywhere or *Roll back*.", State.CANARY_CHECK, False)
        if kind is Kind.CANARY_REMINDER:
            return (f":bell: *Reminder*: the canaries of {title} are waiting for you. *Proceed* or *Roll back*?",
                    State.CANARY_CHECK, False)
        if target == State.AWAITING_CONFIRMATION.value:
            return (f":rocket: *Rolled out*: {title} runs on every process. Check production, then press *Done* "
                    f"(it completes by itself in {human_duration(self.config.deploy.confirm_timeout)}), "
                    "or *Roll back*.", State.AWAITING_CONFIRMATION, False)
        if kind is Kind.NEEDS_ATTENTION:
            text = escape(shorten(notice.text or deploy.attention or "", 1500))
            if notice.data.get("event") == Event.RETRIES_EXHAUSTED:
                return (f":warning: *{title} needs attention* in `{State(deploy.state).label}`: {text}\n"
                        "Press *Retry* once it is fixed, or *Roll back*.", State(deploy.state), True)
            manual = notice.data.get("manual_url")
            where = f" ({link(manual, 'merge commit')})" if manual else ""
            return f":warning: *{title} needs you*: {text}{where}", None, False
        if kind is Kind.ROLLED_BACK:
            reason = escape(shorten(deploy.outcome_reason or notice.text or "", 1500))
            return f":leftwards_arrow_with_hook: *{title} was rolled back*: {reason or 'on request'}.", None, False
        if kind is Kind.FAILED:
            reason = escape(shorten(deploy.outcome_reason or notice.text or "", 1500))
            return f":x: *{title} failed*: {reason}. Nothing was changed.", None, False
        return None

    async def _send_dm(self, outbox: _Outbox, deploy: Deploy, text: str, offered: State | None,
                       needs_attention: bool) -> None:
        blocks = [section(text), context(f"Deploy {deploy.id} · its card is in <#{self.config.slack.channel}>")]
        buttons = None
        if offered is not None:
            current = State(deploy.state) == offered and deploy.needs_attention == needs_attention
            if current:
                buttons = cards.actions(deploy, offered, needs_attention=needs_attention,
                                        block_id=f"deploy{deploy.id}_dm_actions")
            else:
                blocks.append(context(f"This has moved on: the deploy is now `{State(deploy.state).label}`."))
        posted = await self._slack("chat.postMessage", channel=deploy.requester, text=_plain(text),
                                   blocks=[*blocks, buttons] if buttons else blocks, unfurl_links=False)
        if posted is None or buttons is None or offered is None:
            return
        await self._retire_dm(outbox, None)
        outbox.dm = _Dm(posted["channel"], posted["ts"], blocks, offered, needs_attention)
        await service.set_slack_ids(self.sessions, deploy.id, dm_channel=posted["channel"], dm_ts=posted["ts"])

    async def _retire_dm(self, outbox: _Outbox, deploy: Deploy | None) -> None:
        """Take the buttons off the latest DM once its step is over (always, when `deploy` is None)."""
        dm = outbox.dm
        if dm is None:
            return
        if deploy is not None and State(deploy.state) == dm.state and deploy.needs_attention == dm.needs_attention:
            return
        outbox.dm = None
        now = f" the deploy is now `{State(deploy.state).label}`" if deploy is not None else " see the latest message"
        await self._slack("chat.update", channel=dm.channel, ts=dm.ts, text=_plain(_text_of(dm.blocks)),
                          blocks=[*dm.blocks, context(f"This step is over:{now}.")])

    # -- the train ------------------------------------------------------------------------------------
    async def _announce_train(self, notice: Notice) -> None:
        by = user(notice.data.get("by"))
        if notice.kind is Kind.FROZEN:
            text = (f":snowflake: The train is *frozen* by {by}: {escape(shorten(notice.text, 500))}\n"
                    "Queued deploys wait; the deploy in flight carries on.")
        else:
            text = f":arrow_forward: The train is *running again* (unfrozen by {by})."
        await self._slack("chat.postMessage", channel=self.config.slack.channel, text=text)


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return next((b["text"]["text"] for b in blocks if b.get("type") == "section"), "")


def _plain(text: str) -> str:
    """A notification's text: the first line without emphasis."""
    return text.split("\n", 1)[0].replace("*", "")

