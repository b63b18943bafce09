"""The job loop: advances every deploy and pea that is due, under a work lease, on each tick or wake-up,
and delivers the outbox.

APScheduler's `AsyncIOScheduler` runs `tick` every `deploy.tick` in the same event loop as the
Slack app; `wake()` makes it run at once, so a click never waits for the next tick. Each due
deploy is claimed with a lease (owner, expiry) renewed while its step runs, so two running
copies never act on the same deploy, and a copy that dies hands its work over when the lease ends.
The outbox's delivery loop (`flows.outbox`) runs beside it, so a slow sink never holds a step up.

The engine is also where a process gets the domain's public API: `engine.deploys` (the train) and
`engine.peas` (the pool), both reporting through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import TrainConfig
from flows.deploy import service
from flows.deploy.flows import DeployFlows
from flows.deploy.machine import Event, State
from flows.deploy.steps import STEPS, RollbackStuck, StepContext, StepResult
from flows.errors import Superseded
from flows.leased import NOT_FAILING, Backoff, LeasedWork, failing, save_held
from flows.outbox import Outbox, Sink
from flows.outside import Outside
from flows.pea.flows import PeaFlows
from flows.pea.machine import PeaState
from flows.pea.worker import PeaWorker
from integrations.outside import OutsideError, TransientError
from storage.clock import utcnow
from storage.models import Deploy, Pea

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=30)  # how long a copy holds work it is doing (FATCONTROLLER_LEASE_SECONDS)
SLACK = "slack"


def default_owner() -> str:
    """A name for this copy in work leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Engine:
    def __init__(self, config: TrainConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside, *,
                 sinks: Sequence[str] = (SLACK,), owner: str | None = None, lease_ttl: timedelta = LEASE_TTL,
                 backoff: Backoff | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.outside = outside
        self.owner = owner or default_owner()
        self.lease_ttl = lease_ttl
        self.backoff = backoff or Backoff()
        self.outbox = Outbox(sessions, sinks, owner=self.owner, lease_ttl=lease_ttl)
        self.deploys = DeployFlows(config, sessions, outside.github, self.outbox, self.wake)
        self.peas = PeaFlows(config, sessions, outside, self.outbox, self.wake)
        self.work = LeasedWork(Deploy, sessions, owner=self.owner, lease_ttl=lease_ttl, advance=self.advance)
        self.context = StepContext(config, outside, sessions, self.outbox)
        self.pea_worker = PeaWorker(config, sessions, outside, self.outbox, owner=self.owner, lease_ttl=lease_ttl,
                                    poll=config.deploy.poll, backoff=self.backoff, wake=self.wake)
        self._scheduler: AsyncIOScheduler | None = None
        self._running = False
        self._again = False
        self._tick_task: asyncio.Task[object] | None = None
        self._woken: asyncio.Task[None] | None = None  # the tick a wake started (kept so it is not collected)
        self._timer: asyncio.TimerHandle | None = None  # the wake at the next look-at time
        self.steps_run = 0  # by this copy, since it started
        self._stopped = False
        self._peas_task: asyncio.Task[int] | None = None
        # time.monotonic() when the loop started and when a tick last finished: what liveness reads (`alive`)
        self.started_at: float | None = None
        self.last_tick: float | None = None

    # -- the loop -------------------------------------------------------------------------------
    def start(self, sinks: Sequence[Sink] = ()) -> None:
        """Start ticking in the running event loop, and delivering the outbox to `sinks`."""
        self._stopped = False
        self.started_at, self.last_tick = time.monotonic(), None
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(self.tick, "interval", seconds=self.config.deploy.tick.total_seconds(),
                                id="tick", max_instances=1, coalesce=True, next_run_time=datetime.now())
        self._scheduler.start()
        self.outbox.start(sinks)

    async def stop(self, grace: float | None = None) -> None:
        """Stop ticking, letting a step under way finish for up to `grace` seconds (default: the lease), then
        deliver what the outbox holds for a few seconds more.

        Only a step that outlives the grace is cancelled: cancelling one in the middle of a database
        call would leave its connection half-closed. A cancelled step resumes on the next start.
        """
        # Paused, not shut down yet: APScheduler's shutdown cancels the tick under way at once.
        if self._scheduler is not None:
            self._scheduler.pause()
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        running = {t for t in (self._tick_task, self._peas_task)
                   if t is not None and not t.done() and t is not asyncio.current_task()}
        if running:
            _, late = await asyncio.wait(running, timeout=self.lease_ttl.total_seconds() if grace is None else grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self.outbox.stop()

    def wake(self) -> None:
        """Run a tick now (or right after the one under way) instead of waiting for the interval."""
        self._again = True
        if self._scheduler is None or self._running or self._stopped:
            return
        # A task of our own, not the scheduler's job brought forward: APScheduler skips a run whose previous
        # instance it has not yet seen finish, and the wake would then wait a whole `deploy.tick`.
        self._woken = asyncio.get_running_loop().create_task(self._tick_woken())

    async def _tick_woken(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("a tick failed; the next one tries again")  # as APScheduler logs a failed run

    async def tick(self) -> int:
        """Advance everything due; returns how many steps ran. Runs again at once if woken meanwhile."""
        if self._running:
            self._again = True
            return 0
        self._running = True
        self._tick_task = asyncio.current_task()
        ran = 0
        try:
            self._again = True
            while self._again and not self._stopped:
                self._again = False
                ran += await self._pass()
                self.last_tick = time.monotonic()  # a loop woken again and again still shows it turns
                if not self._again:  # a wake while this looks for the next due time goes round again
                    await self._run_again_when_due()
        finally:
            self._running = False
            self._tick_task = None
            # Even a tick whose pass failed counts: the loop turns. A database that fails every pass is
            # readiness's to report; restarting the process would not cure it.
            self.last_tick = time.monotonic()
        return ran

    def alive(self, now: float | None = None) -> tuple[bool, str]:
        """Whether the job loop turns (liveness), and what says so: a tick, or the start when no tick has
        finished yet, less than three ticks and one lease ago (a step may hold a tick up to its lease).
        `now` is a `time.monotonic()` reading."""
        if self._scheduler is None or self.started_at is None:
            return False, "the job loop is not running"
        now = time.monotonic() if now is None else now
        limit = 3 * self.config.deploy.tick.total_seconds() + self.lease_ttl.total_seconds()
        if self.last_tick is None:
            since = now - self.started_at
            if since < limit:
                return True, f"the job loop started {since:.1f}s ago; its first tick is under way"
            return False, f"the job loop has finished no tick since it started {since:.0f}s ago (limit {limit:.0f}s)"
        since = now - self.last_tick
        if since < limit:
            return True, f"the job loop's last tick finished {since:.1f}s ago"
        return False, f"the job loop's last tick finished {since:.0f}s ago (limit {limit:.0f}s): it is stuck"

    async def _run_again_when_due(self) -> None:
        """Wake at the earliest look-at time (at once for a row that fell due during this pass), so a step that
        waits a second is not kept waiting for a long `deploy.tick`."""
        due = min((d for d in (await self.work.next_due(), await self.pea_worker.next_due()) if d), default=None)
        if due is None or self._stopped:
            return
        # A timer of our own, not the scheduler's job brought forward: APScheduler skips a run that falls due
        # while its previous instance still runs and then waits a whole interval.
        delay = max(0.0, (due.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def _pass(self) -> int:
        started = await service.start_next(self.sessions, self.outbox, self.config.name)
        self._start_peas()
        return await self.work.run_due() + (started is not None)

    def _start_peas(self) -> None:
        """Peas run beside the train, never holding it up: their pass is a task of its own."""
        if self._peas_task is None or self._peas_task.done():
            self._peas_task = asyncio.create_task(self.pea_worker.pass_once())

    def _peas_building_on(self, job: str) -> sa.ColumnElement[bool] | None:
        """Which peas the PR job `job` builds for (None: it is not a PR job): all of them, or with `{pr}` in
        `jenkins.pr_job`, the one pull request it is the job of."""
        jobs = self.config.jenkins
        if not jobs.per_pr:
            return sa.true() if job == jobs.pr_job else None
        pr = jobs.pr_of_job(job)
        return None if pr is None else Pea.pr_number == pr

    async def wake_job(self, job: str) -> int:
        """A build of Jenkins job `job` moved (its notification says so): what waits on that job looks now.
        How many deploys and peas were woken; the build is read through the API as usual."""
        now = utcnow()
        woken = 0
        async with self.sessions() as session, session.begin():
            if job == self.config.jenkins.job:
                woken += len((await session.execute(
                    sa.update(Deploy).where(Deploy.state == State.BUILDING.value, Deploy.needs_attention.is_(False))
                    .values(due_at=now).returning(Deploy.id))).scalars().all())
            if self.config.peas is not None and (peas := self._peas_building_on(job)) is not None:
                woken += len((await session.execute(
                    sa.update(Pea).where(Pea.state == PeaState.DEPLOYING.value, Pea.rollout_started_at.is_(None),
                                         peas).values(due_at=now).returning(Pea.name))).scalars().all())
        if woken:
            self.wake()
        return woken

    # -- one deploy -----------------------------------------------------------------------------
    async def advance(self, deploy_id: int) -> None:
        """Run the step of the deploy's state once and record what came of it."""
        deploy = await service.get_deploy(self.sessions, deploy_id)
        if deploy is None:
            return
        state = State(deploy.state)
        step = STEPS.get(state)
        if step is None or deploy.needs_attention:
            await self._settle(deploy, StepResult())
            return
        self.steps_run += 1
        try:
            result = await step(self.context, deploy)
        except Superseded:
            log.info("deploy %s changed while its %s step ran; looking again", deploy_id, state.value)
            self.wake()
            return
        except TransientError as exc:
            gave_up = await self._failing(deploy, exc)
            if gave_up is None:
                return
            result = gave_up
        except RollbackStuck as exc:
            log.warning("deploy %s needs people in %s: %s", deploy_id, state.value, exc)
            result = StepResult(Event.UNDO_STUCK, str(exc), notices=exc.notices)
        except OutsideError as exc:
            log.warning("deploy %s needs attention in %s: %s", deploy_id, state.value, exc)
            result = StepResult(Event.RETRIES_EXHAUSTED, str(exc))
        except Exception as exc:
            # Logged once, with its traceback: the deploy waits for a person, so the step does not run again.
            log.exception("deploy %s: its %s step failed unexpectedly", deploy_id, state.value)
            result = StepResult(Event.STEP_FAILED, f"the {state.label} step failed unexpectedly: "
                                                   f"{type(exc).__name__}: {exc}")
        await self._settle(deploy, result)

    async def _failing(self, deploy: Deploy, exc: TransientError) -> StepResult | None:
        """Try the step again later through the schedule, or give up after the backoff's deadline."""
        now = utcnow()
        failed = failing(deploy.retry_since, deploy.retry_attempts, exc, self.backoff, now)
        if failed.exhausted:
            log.warning("deploy %s needs attention in %s: %s", deploy.id, deploy.state, failed.reason)
            return StepResult(Event.RETRIES_EXHAUSTED, failed.reason)
        log_at = logging.WARNING if deploy.retry_since is None else logging.INFO
        log.log(log_at, "deploy %s: %s in %s; trying again in %.0fs", deploy.id, exc, deploy.state,
                (failed.values["due_at"] - now).total_seconds())
        try:
            await save_held(self.sessions, self.outbox, deploy, failed.values)
        except Superseded:
            self.wake()
        return None

    async def _settle(self, deploy: Deploy, result: StepResult) -> None:
        try:
            if result.event is None:
                due = None if result.wait is None else utcnow() + result.wait
                if due != deploy.due_at or deploy.retry_since is not None:
                    await save_held(self.sessions, self.outbox, deploy, {"due_at": due, **NOT_FAILING})
                return
            await service.apply_event(self.sessions, self.outbox, deploy.id, result.event,
                                      expected_version=deploy.version, reason=result.reason,
                                      notices=result.notices)
        except Superseded:
            self.wake()
            return
        self.wake()
