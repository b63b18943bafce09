"""Advances every pea that is due, each under its work lease, independently of the deploy train.

The engine calls `pass_once()` on each tick. Each due pea is claimed with a work lease
(`Pea.work_owner` / `work_expires_at`) renewed while its step runs, so two running copies never
act on the same pea, and a copy that dies hands the pea over when its lease ends: the next
owner's step re-reads the outside world and carries on. Every transition a step asks for goes
through the table (`flows.pea.service.apply`), with the notice it causes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import AppConfig
from flows.deploy.service import TRAIN
from flows.errors import Superseded
from flows.leased import LeasedWork, save_held
from flows.notices import Notice, PeaFailed, PeaFree, PeaReleased, PeaReleaseRetrying, PeaUp
from flows.outbox import Outbox
from flows.outside import Outside
from flows.pea import service
from flows.pea.machine import PeaEvent, PeaState
from flows.pea.steps import CHECK_EVERY, POLL, STEPS, Next, PeaContext
from integrations.outside import OutsideError
from storage.clock import utcnow
from storage.models import Pea

log = logging.getLogger(__name__)

RELEASE_RETRY = timedelta(seconds=30)  # a release an outside system refused is tried again after this


def _told(event: PeaEvent, before: Pea, result: Next) -> Callable[[Pea], tuple[Notice, ...]]:
    """The notices a step's transition causes, made from the pea after the change."""

    def notices(pea: Pea) -> tuple[Notice, ...]:
        if event is PeaEvent.UP:
            return (PeaUp(pea.name, TRAIN, pea.holder, pea.url, pea.pr_number, pea.head_sha),)
        if event is PeaEvent.FAIL:
            return (PeaFailed(pea.name, TRAIN, pea.holder, result.reason or "", result.system),)
        if event is PeaEvent.LEASE_ENDED:
            return (PeaReleased(pea.name, TRAIN, before.holder, None),)
        return (PeaFree(pea.name, TRAIN, None),)

    return notices


class PeaWorker:
    def __init__(self, config: AppConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside,
                 outbox: Outbox, *, owner: str, lease_ttl: timedelta, poll: timedelta = POLL,
                 check_every: timedelta = CHECK_EVERY, retry_release: timedelta = RELEASE_RETRY,
                 wake: Callable[[], None] | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.outbox = outbox
        self.owner = owner
        self.retry_release = retry_release
        self.wake = wake or (lambda: None)
        self.context = PeaContext(config, outside, sessions, outbox, poll=poll, check_every=check_every)
        self.work = LeasedWork(Pea, sessions, owner=owner, lease_ttl=lease_ttl, advance=self.advance)

    async def pass_once(self) -> int:
        """Claim the peas that are due and run each one's step; how many steps ran."""
        if self.config.peas is None:
            return 0
        return await self.work.run_due()

    async def next_due(self) -> datetime | None:
        """The earliest future time a pea wants looking at (to bring the next tick forward), if any."""
        return await self.work.next_due()

    async def advance(self, name: str) -> None:
        """Run the step of the pea's state once and record what came of it."""
        pea = await service.get_pea(self.sessions, name)
        if pea is None:
            return
        state = PeaState(pea.state)
        step = STEPS.get(state)
        try:
            if step is None:
                await save_held(self.sessions, self.outbox, pea, {"due_at": None})
                return
            try:
                result = await step(self.context, pea)
            except OutsideError as exc:
                result = await self._outside_failed(pea, state, exc)
            await self._settle(pea, result)
        except Superseded:
            log.info("pea %s changed while its %s step ran; looking again", name, state.value)
            self.wake()

    async def _outside_failed(self, pea: Pea, state: PeaState, exc: OutsideError) -> Next:
        """A deploy fails naming the system and why; a release keeps trying (nobody holds the pea)."""
        log.warning("pea %s: %s in %s", pea.name, exc, state.value)
        if state is not PeaState.RELEASING:
            return Next(PeaEvent.FAIL, str(exc), system=exc.system)
        if pea.failure_reason != str(exc):
            await self.context.save(pea, {"failure_reason": str(exc)},
                                    notice=PeaReleaseRetrying(pea.name, TRAIN, None, str(exc),
                                                              self.retry_release.total_seconds()))
        return Next(wait=self.retry_release)

    async def _settle(self, pea: Pea, result: Next) -> None:
        if result.event is None:
            due = None if result.wait is None else utcnow() + result.wait
            if due != pea.due_at:
                await save_held(self.sessions, self.outbox, pea, {"due_at": due})
            return
        values = dict(result.values)
        if result.event is PeaEvent.FAIL:
            values["failure_reason"] = result.reason
        await service.apply(self.sessions, self.outbox, pea, result.event, reason=result.reason, values=values,
                            notices=_told(result.event, pea, result))
        self.wake()
