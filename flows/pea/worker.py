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

from flows.config import TrainConfig
from flows.errors import Superseded
from flows.leased import NOT_FAILING, Backoff, LeasedWork, failing, save_held
from flows.notices import Notice, PeaFailed, PeaFree, PeaReleased, PeaReleaseRetrying, PeaUp
from flows.outbox import Outbox
from flows.outside import Outside
from flows.pea import service
from flows.pea.machine import PeaEvent, PeaState
from flows.pea.steps import CHECK_EVERY, POLL, STEPS, Next, PeaContext
from integrations.outside import OutsideError, TransientError
from storage.clock import utcnow
from storage.models import Pea

log = logging.getLogger(__name__)

RELEASE_RETRY = timedelta(seconds=30)  # a release an outside system refused is tried again after this


def _told(train: str, event: PeaEvent, before: Pea, result: Next) -> Callable[[Pea], tuple[Notice, ...]]:
    """The notices a step's transition causes, made from the pea after the change."""

    def notices(pea: Pea) -> tuple[Notice, ...]:
        if event is PeaEvent.UP:
            return (PeaUp(pea.name, train, pea.holder, pea.url, pea.pr_number, pea.head_sha, built=pea.built_sha,
                          base=pea.pr_base),)
        if event is PeaEvent.FAIL:
            return (PeaFailed(pea.name, train, pea.holder, result.reason or "", result.system),)
        if event is PeaEvent.LEASE_ENDED:
            return (PeaReleased(pea.name, train, before.holder, None),)
        return (PeaFree(pea.name, train, None),)

    return notices


class PeaWorker:
    def __init__(self, config: TrainConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside,
                 outbox: Outbox, *, owner: str, lease_ttl: timedelta, poll: timedelta = POLL,
                 check_every: timedelta = CHECK_EVERY, retry_release: timedelta = RELEASE_RETRY,
                 backoff: Backoff | None = None, wake: Callable[[], None] | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.outbox = outbox
        self.owner = owner
        self.retry_release = retry_release
        self.backoff = backoff or Backoff()
        self.wake = wake or (lambda: None)
        self.context = PeaContext(config, outside, sessions, outbox, poll=poll, check_every=check_every)
        names = list(config.peas.names) if config.peas else []
        self.work = LeasedWork(Pea, sessions, owner=owner, lease_ttl=lease_ttl, advance=self.advance,
                               where=(Pea.name.in_(names),))

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
            except Superseded:
                raise
            except Exception as exc:
                # Logged once, with its traceback: a failed pea waits for its holder, so nothing runs it again.
                log.exception("pea %s: its %s step failed unexpectedly", name, state.value)
                reason = f"the {state.value} step failed unexpectedly: {type(exc).__name__}: {exc}"
                result = Next(PeaEvent.FAIL, reason) if state.held else Next(wait=self.retry_release)
            await self._settle(pea, result)
        except Superseded:
            log.info("pea %s changed while its %s step ran; looking again", name, state.value)
            self.wake()

    async def _outside_failed(self, pea: Pea, state: PeaState, exc: OutsideError) -> Next:
        """A transient failure is tried again later through the schedule, for a while; then (or at once for
        one that cannot pass) a deploy fails naming the system and why, and a release keeps trying (nobody
        holds the pea)."""
        now = utcnow()
        if isinstance(exc, TransientError) and state is not PeaState.RELEASING:
            failed = failing(pea.retry_since, pea.retry_attempts, exc, self.backoff, now)
            if not failed.exhausted:
                log.log(logging.WARNING if pea.retry_since is None else logging.INFO,
                        "pea %s: %s in %s; trying again", pea.name, exc, state.value)
                return Next(values=failed.values)
            return Next(PeaEvent.FAIL, failed.reason, system=exc.system)
        log.warning("pea %s: %s in %s", pea.name, exc, state.value)
        if state is not PeaState.RELEASING:
            return Next(PeaEvent.FAIL, str(exc), system=exc.system)
        if pea.failure_reason != str(exc):
            await self.context.save(pea, {"failure_reason": str(exc)},
                                    notice=PeaReleaseRetrying(pea.name, self.config.name, None, str(exc),
                                                              self.retry_release.total_seconds()))
        return Next(wait=self.retry_release)

    async def _settle(self, pea: Pea, result: Next) -> None:
        if result.event is None:
            if result.values:  # trying again later: the values say when
                await save_held(self.sessions, self.outbox, pea, result.values)
                return
            due = None if result.wait is None else utcnow() + result.wait
            if due != pea.due_at or pea.retry_since is not None:
                await save_held(self.sessions, self.outbox, pea, {"due_at": due, **NOT_FAILING})
            return
        values = {**NOT_FAILING, **result.values}
        if result.event is PeaEvent.FAIL:
            values["failure_reason"] = result.reason
        await service.apply(self.sessions, self.outbox, pea, result.event, reason=result.reason, values=values,
                            notices=_told(self.config.name, result.event, pea, result))
        self.wake()
