"""The job loop: advances every train's deploys and peas that are due, under work leases, on each tick or
wake-up, and delivers the outbox.

One engine serves every train of the configuration, each in a `Lane` of its own: its tick (an
APScheduler `AsyncIOScheduler` job every `deploy.tick`, in the same event loop as the Slack app),
its lease batch, its look-at timer and its outside clients (each with its own thread pools). A
train whose GitHub, Jenkins or ECS is slow or failing holds up only its own lane: another train's
steps never wait for it. `wake()` makes a lane tick at once, so a click never waits for the next
tick. Each due deploy or pea is claimed with a lease (owner, expiry) renewed while its step runs,
so two running copies never act on the same row, and a copy that dies hands its work over when
the lease ends. The outbox's delivery loop (`flows.outbox`), shared by every train, runs beside
them, so a slow sink never holds a step up.

The engine is also where a process gets the domain's public API: `engine.lanes[train].deploys`
(the train) and `.peas` (its pool), all reporting through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import OperationalError
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


@dataclass(frozen=True)
class TrainSetup:
    """One train to run: its configuration and the clients of its outside systems."""

    config: TrainConfig
    outside: Outside


class Lane:
    """One train's part of the job loop: its deploys and peas, advanced on its own tick."""

    def __init__(self, setup: TrainSetup, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, *,
                 owner: str, lease_ttl: timedelta, backoff: Backoff) -> None:
        config = self.config = setup.config
        self.name = config.name
        self.outside = setup.outside
        self.sessions = sessions
        self.outbox = outbox
        self.lease_ttl = lease_ttl
        self.backoff = backoff
        self.deploys = DeployFlows(config, sessions, self.outside.github, outbox, self.wake)
        self.peas = PeaFlows(config, sessions, self.outside, outbox, self.wake)
        self.work = LeasedWork(Deploy, sessions, owner=owner, lease_ttl=lease_ttl, advance=self.advance,
                               where=(Deploy.train_id == config.name,))
        self.context = StepContext(config, self.outside, sessions, outbox)
        self.pea_worker = PeaWorker(config, sessions, self.outside, outbox, owner=owner, lease_ttl=lease_ttl,
                                    poll=config.deploy.poll, backoff=backoff, wake=self.wake)
        self._scheduled = False
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
    def started(self) -> None:
        self._stopped, self._scheduled = False, True
        self.started_at, self.last_tick = time.monotonic(), None

    def stopping(self) -> set[asyncio.Task[object]]:
        """Stop waking; the tasks still under way (to wait for)."""
        self._stopped, self._scheduled = True, False
        if self._timer is not None:
            self._timer.cancel()
        return {t for t in (self._tick_task, self._peas_task)
                if t is not None and not t.done() and t is not asyncio.current_task()}

    def wake(self) -> None:
        """Run a tick now (or right after the one under way) instead of waiting for the interval."""
        self._again = True
        if not self._scheduled or self._running or self._stopped:
            return
        # A task of our own, not the scheduler's job brought forward: APScheduler skips a run whose previous
        # instance it has not yet seen finish, and the wake would then wait a whole `deploy.tick`.
        self._woken = asyncio.get_running_loop().create_task(self._tick_woken())

    async def _tick_woken(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("train %s: a tick failed; the next one tries again", self.name)  # as APScheduler logs

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

    def alive(self, now: float) -> tuple[bool, str]:
        """Whether this lane's loop turns: a tick, or the start when no tick has finished yet, less than three
        ticks and one lease ago (a step may hold a tick up to its lease)."""
        if self.started_at is None:
            return False, "the job loop is not running"
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
        started = await service.start_next(self.sessions, self.outbox, self.name)
        self._start_peas()
        return await self.work.run_due() + (started is not None)

    def _start_peas(self) -> None:
        """Peas run beside the train, never holding it up: their pass is a task of its own."""
        if self._peas_task is None or self._peas_task.done():
            self._peas_task = asyncio.create_task(self.pea_worker.pass_once())

    def _peas_building_on(self, job: str) -> sa.ColumnElement[bool] | None:
        """Which peas the PR job `job` builds for (None: it is not a PR job): all of the pool, or with `{pr}` in
        `jenkins.pr_job`, the one pull request it is the job of."""
        jobs = self.config.jenkins
        pool = Pea.name.in_(self.peas.names)
        if not jobs.per_pr:
            return pool if job == jobs.pr_job else None
        pr = jobs.pr_of_job(job)
        return None if pr is None else sa.and_(pool, Pea.pr_number == pr)

    async def wake_job(self, job: str) -> int:
        """A build of Jenkins job `job` moved: what of this train waits on that job looks now; how many."""
        now = utcnow()
        woken = 0
        async with self.sessions() as session, session.begin():
            if job == self.config.jenkins.job:
                woken += len((await session.execute(
                    sa.update(Deploy).where(Deploy.train_id == self.name, Deploy.state == State.BUILDING.value,
                                            Deploy.needs_attention.is_(False))
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
        except OperationalError as exc:
            # The database was busy or away for a moment (SQLite's write lock, a PostgreSQL failover): steps are
            # resumable, so the schedule runs it again rather than leave the deploy to a person.
            gave_up = await self._failing(deploy, TransientError("the database", str(exc.orig)))
            if gave_up is None:
                return
            result = gave_up
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


class Engine:
    """Every train's lane, the outbox they report through, and the scheduler that ticks them."""

    def __init__(self, trains: Sequence[TrainSetup], sessions: async_sessionmaker[AsyncSession], *,
                 sinks: Sequence[str] = (SLACK,), owner: str | None = None, lease_ttl: timedelta = LEASE_TTL,
                 backoff: Backoff | None = None) -> None:
        if not trains:
            raise ValueError("an engine needs at least one train")
        self.sessions = sessions
        self.owner = owner or default_owner()
        self.lease_ttl = lease_ttl
        self.outbox = Outbox(sessions, sinks, owner=self.owner, lease_ttl=lease_ttl)
        self.lanes = {setup.config.name: Lane(setup, sessions, self.outbox, owner=self.owner, lease_ttl=lease_ttl,
                                              backoff=backoff or Backoff()) for setup in trains}
        self._scheduler: AsyncIOScheduler | None = None

    @property
    def steps_run(self) -> int:
        """Steps this copy ran since it started, on every train."""
        return sum(lane.steps_run for lane in self.lanes.values())

    def start(self, sinks: Sequence[Sink] = ()) -> None:
        """Start ticking every train in the running event loop, and delivering the outbox to `sinks`."""
        self._scheduler = AsyncIOScheduler()
        for name, lane in self.lanes.items():
            lane.started()
            self._scheduler.add_job(lane.tick, "interval", seconds=lane.config.deploy.tick.total_seconds(),
                                    id=f"tick:{name}", max_instances=1, coalesce=True, next_run_time=datetime.now())
        self._scheduler.start()
        self.outbox.start(sinks)

    async def stop(self, grace: float | None = None) -> None:
        """Stop ticking, letting steps under way finish for up to `grace` seconds (default: the lease), then
        deliver what the outbox holds for a few seconds more.

        Only a step that outlives the grace is cancelled: cancelling one in the middle of a database
        call would leave its connection half-closed. A cancelled step resumes on the next start.
        """
        # Paused, not shut down yet: APScheduler's shutdown cancels the ticks under way at once.
        if self._scheduler is not None:
            self._scheduler.pause()
        running = set().union(*(lane.stopping() for lane in self.lanes.values()))
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
        """Every train ticks now."""
        for lane in self.lanes.values():
            lane.wake()

    async def tick(self) -> int:
        """Every train's tick at once; how many steps ran."""
        return sum(await asyncio.gather(*(lane.tick() for lane in self.lanes.values())))

    def alive(self, now: float | None = None) -> tuple[bool, str]:
        """Whether the job loop turns (liveness): every train's lane ticks, and what says so (the first stuck
        lane, by name when there are several). `now` is a `time.monotonic()` reading."""
        if self._scheduler is None:
            return False, "the job loop is not running"
        now = time.monotonic() if now is None else now
        answers = [(lane.name, *lane.alive(now)) for lane in self.lanes.values()]
        if len(answers) == 1:
            return answers[0][1], answers[0][2]
        stuck = [f"train {name}: {why}" for name, ok, why in answers if not ok]
        if stuck:
            return False, "; ".join(stuck)
        return True, f"the job loops of all {len(answers)} trains tick"

    async def wake_job(self, job: str) -> int:
        """A build of Jenkins job `job` moved (its notification says so): what waits on that job, on any train,
        looks now; how many deploys and peas were woken. The build is read through the API as usual."""
        return sum([await lane.wake_job(job) for lane in self.lanes.values()])

    def close(self) -> None:
        """Let every train's outside clients go."""
        for lane in self.lanes.values():
            lane.outside.close()
