"""Advances every pea that is due, each under its work lease, independently of the deploy train.

The engine calls `pass_once()` on each tick (or runs it as a job of its own). Each due pea is
claimed with a work lease (`Pea.work_owner` / `work_expires_at`) renewed while its step runs, so
two running copies never act on the same pea, and a copy that dies hands the pea over when its
lease ends: the next owner's step re-reads the outside world and carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import AppConfig
from flows.deploy.steps import Outside
from flows.errors import Superseded
from flows.leased import LeasedWork
from flows.notify import Kind, Notifier
from flows.pea import service
from flows.pea.service import LEASE_ENDED, PeaState
from flows.pea.steps import CHECK_EVERY, POLL, STEPS, Next, PeaContext
from integrations.outside import OutsideError
from storage.clock import utcnow
from storage.models import Pea

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=30)
RELEASE_RETRY = timedelta(seconds=30)  # a release an outside system refused is tried again after this


class PeaWorker:
    def __init__(self, config: AppConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside,
                 notifier: Notifier, *, owner: str, lease_ttl: timedelta = LEASE_TTL, poll: timedelta = POLL,
                 check_every: timedelta = CHECK_EVERY, retry_release: timedelta = RELEASE_RETRY,
                 wake: Callable[[], None] | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.retry_release = retry_release
        self.wake = wake or (lambda: None)
        self.context = PeaContext(config, outside, sessions, notifier.notify, poll=poll, check_every=check_every)
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
                await service.save(self.sessions, pea, due_at=None)
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
            return Next(PeaState.FAILED, str(exc), system=exc.system)
        if pea.failure_reason != str(exc):
            await self.context.save(pea, failure_reason=str(exc))
            await self.context.tell(Kind.PEA_CHANGED, pea, f"Scaling `{pea.name}` to zero keeps failing, "
                                                           f"trying again in {self.retry_release}: {exc}")
        return Next(wait=self.retry_release)

    async def _settle(self, pea: Pea, result: Next) -> None:
        ctx = self.context
        now = utcnow()
        if result.state is None:
            due = None if result.wait is None else now + result.wait
            if due != pea.due_at:
                await ctx.save(pea, due_at=due)
            return
        holder, source = pea.holder, pea.state
        values = {"state": result.state.value, "state_entered_at": now, "due_at": now, **result.values}
        if result.state is PeaState.FAILED:
            values["failure_reason"] = result.reason
        await ctx.save(pea, **values)
        await ctx.record(pea, f"pea_{result.state.value}", f"{source} → {result.state.value}"
                         + (f": {result.reason}" if result.reason else ""), image=pea.image)
        if result.state is PeaState.UP:
            await ctx.tell(Kind.PEA_UP, pea, f"`{pea.name}` is up at {pea.url}: #{pea.pr_number} "
                                             f"{pea.pr_title or ''} ({(pea.head_sha or '')[:12]})", url=pea.url)
        elif result.state is PeaState.FAILED:
            await ctx.tell(Kind.PEA_FAILED, pea, f"Deploying #{pea.pr_number} to `{pea.name}` failed: "
                                                 f"{result.reason}", reason=result.reason, system=result.system)
        elif result.state is PeaState.RELEASING:
            await ctx.tell(Kind.PEA_RELEASED, pea, f"Your claim on `{pea.name}` ended: it is being scaled to zero",
                           holder=holder, actor=LEASE_ENDED)
        else:
            await ctx.tell(Kind.PEA_CHANGED, pea, f"`{pea.name}` is scaled to zero and free")
        self.wake()
