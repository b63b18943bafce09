"""What the worker does for a pea in each state: look at the outside world, act once, say what comes next.

A step runs under the pea's work lease whenever the pea is due. It first re-reads the outside
world (so a deploy interrupted by a crash carries on where it was: a build already found, task
definitions already registered, services already pointed), persists what it learnt before the
next outside action, and returns either a transition (`Next(state=...)`) or how long to wait.

- deploying: find (or, with `trigger: api`, start) the PR job's build of the head, wait for it
  within `build_timeout` (a multibranch project's job of the PR may not exist yet: the wait is the
  same); register one task definition per process with the image of what the green build built
  (the head, or the head merged with the PR's base);
  point each pea service at it (desired 1, or more if it already ran more); wait until every
  service is stable within `deploy.rollout_timeout` → up; else → failed with the reason.
- up / failed: remind the holder shortly before the claim ends, release it when it has ended;
  on an up pea, look at the PR at most every `check_every` for a newer green build, or a close
  or merge, and say so once.
- releasing: scale every service of the pea to zero and wait until no task runs → free.

A revision a pea deploy registered (tagged `fatcontroller:pea`) is deregistered once replaced by
the next deploy's, and on release: the pea services' families keep no ACTIVE pile of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import PeasConfig, TrainConfig, format_duration
from flows.leased import Record, save_held
from flows.notices import Notice, PeaBuildFound, PeaBuildRequested, PeaLeaseEnding, PeaReopened, PeaStale, PeaStarting
from flows.outbox import Outbox
from flows.outside import Outside
from flows.pea import service
from flows.pea.machine import PeaEvent, PeaState, Stale
from flows.pea.service import remind_before
from integrations.ecs import Progress, failure_threshold
from integrations.jenkins import Build
from integrations.outside import NotFound, OutsideError
from storage.clock import utcnow
from storage.models import Pea

log = logging.getLogger(__name__)

POLL = timedelta(seconds=5)  # how often a waiting step looks again (the engine passes `deploy.poll`)
REVISION_TAG = "fatcontroller:pea"  # on each task definition revision a pea deploy registers
CHECK_EVERY = timedelta(seconds=30)  # how often an up pea's pull request is looked at


@dataclass(frozen=True)
class Next:
    """What a step found: a transition of the table with the values it writes, or how long to wait
    (None: until asked)."""

    event: PeaEvent | None = None
    reason: str | None = None
    wait: timedelta | None = None
    values: dict[str, Any] = field(default_factory=dict)
    system: str | None = None  # the outside system that failed, for a failure


@dataclass
class PeaContext:
    config: TrainConfig
    outside: Outside
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    poll: timedelta = POLL
    check_every: timedelta = CHECK_EVERY

    @property
    def peas(self) -> PeasConfig:
        return service.peas_config(self.config)

    def pr_job(self, pea: Pea) -> str:
        """The Jenkins job that builds the pea's pull request."""
        return self.config.jenkins.pr_job_of(pea.pr_number or 0)

    def services(self, pea: Pea) -> dict[str, str]:
        """Process -> the pea's ECS service for it."""
        return {process: self.peas.service_name(pea.name, process) for process in self.config.processes}

    async def save(self, pea: Pea, values: dict[str, Any] | None = None, *, record: Record | None = None,
                   notice: Notice | None = None) -> None:
        """Persist what the step learnt, with its audit record and notice, in one transaction."""
        await save_held(self.sessions, self.outbox, pea, values or {}, records=(record,) if record else (),
                        notices=(notice,) if notice else ())


def _short(sha: str | None) -> str:
    return (sha or "")[:12]


def _claim_ended(pea: Pea, now: datetime) -> Next | None:
    if pea.claim_expires_at is not None and now >= pea.claim_expires_at:
        return Next(PeaEvent.LEASE_ENDED, "the claim ended")
    return None


# -- deploying ------------------------------------------------------------------------------------

async def _build(ctx: PeaContext, pea: Pea) -> Build | None:
    """The PR job's build of the pea's head, starting it through the API when that is ours to do."""
    jenkins, job = ctx.outside.jenkins, ctx.pr_job(pea)
    sha = pea.head_sha or ""
    if pea.build_number is not None:
        return await jenkins.get_build(job, pea.build_number, sha=sha)
    try:
        build = await jenkins.find_build(job, sha)  # also finds one started before a crash lost its queue id
    except NotFound:
        if not ctx.config.jenkins.per_pr:
            raise
        return None  # the multibranch project has not made the PR's job yet: no build to find, nor to start
    # Ours to start when the train starts builds itself, or when none started within `build_start_wait`
    # (GitHub's webhook may be late, or Jenkins may have coalesced it away).
    waited = utcnow() - (pea.state_entered_at or utcnow())
    if build is None and (ctx.config.jenkins.trigger == "api" or waited > ctx.config.jenkins.build_start_wait):
        if pea.build_queue_id is None:
            # whatever waits in a per-PR job's queue is a build of the PR: the project's own, on its way
            if ctx.config.jenkins.per_pr and await jenkins.in_queue(job):
                return None
            queue_id = await jenkins.start_build(job, sha)
            await ctx.save(pea, {"build_queue_id": queue_id},
                           record=Record("pea_build_requested", f"{job} for {_short(sha)}", {"queue_id": queue_id}),
                           notice=PeaBuildRequested(pea.name, ctx.config.name, pea.holder, job, sha))
        started = await jenkins.build_from_queue(pea.build_queue_id or 0)
        build = None if started is None else await jenkins.get_build(job, started[1], sha=sha)
    if build is not None:
        await ctx.save(pea, {"build_number": build.number, "build_url": build.url},
                       record=Record("pea_build_found", f"build {build.number}", {"build_url": build.url}),
                       notice=PeaBuildFound(pea.name, ctx.config.name, pea.holder, build.number, build.url, sha))
    return build


async def _register(ctx: PeaContext, pea: Pea) -> Next | None:
    """One task definition per process: the pea service's own, with the image of what the build built."""
    ecs, cluster = ctx.outside.ecs, ctx.peas.cluster
    for process, name in ctx.services(pea).items():
        if process in pea.task_definitions:
            continue
        state = await ecs.describe_service(cluster, name)
        if state is None:
            return Next(PeaEvent.FAIL, f"service {name} is not in cluster {cluster}: create it (desired 0), "
                                       "then Redeploy")
        # Found again rather than registered twice when a crash came between registering and saving.
        arn = await ecs.register_once(state.task_definition, ctx.config.processes[process].container,
                                      pea.image or "", key=REVISION_TAG, value=f"{pea.name}@{pea.built_sha or ''}")
        # The revision it replaces, when a pea deploy registered it: none is left ACTIVE for a deploy by family
        # name to pick up. Before saving the new one, which a resumed step would not look past.
        await _deregister(ctx, pea, name, state.task_definition)
        await ctx.save(pea, {"task_definitions": {**pea.task_definitions, process: arn}},
                       record=Record("pea_task_definition_registered", f"{process}: {arn}", {"task_definition": arn}))
    return None


async def _deregister(ctx: PeaContext, pea: Pea, name: str, task_definition: str) -> None:
    """Deregister a revision of one of the pea's services if a pea deploy registered it (it carries our tag)."""
    if await ctx.outside.ecs.deregister_task_definition(task_definition, tagged=REVISION_TAG):
        await ctx.save(pea, record=Record("pea_task_definition_deregistered", f"{name}: {task_definition}",
                                          {"task_definition": task_definition}))


async def _point(ctx: PeaContext, pea: Pea) -> Next | dict[str, Progress]:
    """Point every service at its task definition (once), then read how far each has come."""
    ecs, cluster = ctx.outside.ecs, ctx.peas.cluster
    names = ctx.services(pea)
    states = await ecs.describe_services(cluster, list(names.values()))
    for process, name in names.items():
        state, arn = states[name], pea.task_definitions[process]
        if state is None:
            return Next(PeaEvent.FAIL, f"service {name} is no longer in cluster {cluster}")
        if not state.on(arn) or state.desired == 0:
            desired = max(state.desired, 1)
            await ecs.point_service(cluster, name, arn, desired)
            await ctx.save(pea, record=Record("pea_service_pointed", f"{name}: {desired} x {arn}",
                                              {"task_definition": arn}))
            continue
        primary = state.primary
        # The pea services have no circuit breaker of ours: stop at the threshold ECS's own would use.
        if primary is not None and primary.failed >= failure_threshold(state.desired):
            return Next(PeaEvent.FAIL, f"{primary.failed} tasks of {name} failed to start: its stopped tasks "
                                       "in ECS say why")
    progress = await asyncio.gather(*(ecs.rollout_progress(cluster, names[p], arn)
                                      for p, arn in pea.task_definitions.items()))
    return dict(zip(pea.task_definitions, progress, strict=True))


async def deploy(ctx: PeaContext, pea: Pea) -> Next:
    now = utcnow()
    if ended := _claim_ended(pea, now):
        return ended
    if len(pea.task_definitions) < len(ctx.config.processes):
        build = await _build(ctx, pea)
        if build is None or not build.finished:
            timeout = ctx.config.jenkins.build_timeout
            if now - (pea.state_entered_at or now) > timeout:
                what = (f"build #{build.number} on {ctx.pr_job(pea)} did not finish" if build
                        else f"no build of {_short(pea.head_sha)} on {ctx.pr_job(pea)} finished")
                return Next(PeaEvent.FAIL, f"{what} within {format_duration(timeout)}: Redeploy to wait again")
            return Next(wait=ctx.poll)
        if not build.green:
            return Next(PeaEvent.FAIL, f"build {build.number} of {_short(pea.head_sha)} ended "
                                       f"{(build.result or 'failed').lower()}: push a fix, then Redeploy")
        if pea.built_sha is None:
            built = build.built or pea.head_sha or ""
            image = ctx.config.image_for(built)
            await ctx.save(pea, {"built_sha": built, "image": image},
                           record=Record("pea_build_passed", f"build {build.number} built {_short(built)}",
                                         {"build_url": build.url, "image": image}))
        if unregistered := await _register(ctx, pea):
            return unregistered
    if pea.rollout_started_at is None:
        await ctx.save(pea, {"rollout_started_at": now},
                       notice=PeaStarting(pea.name, ctx.config.name, pea.holder, pea.head_sha or "", pr=pea.pr_number,
                                          built=pea.built_sha, base=pea.pr_base))
    pointed = await _point(ctx, pea)
    if isinstance(pointed, Next):
        return pointed
    progress = pointed
    failed = {p: pr for p, pr in progress.items() if pr.failed}
    if failed:
        process, why = next(iter(failed.items()))
        return Next(PeaEvent.FAIL, f"the {process} service failed: {why.reason}")
    if all(pr.done for pr in progress.values()):
        return Next(PeaEvent.UP, values={"checked_at": now})  # the first look at the PR is one check_every on
    timeout = ctx.config.deploy.rollout_timeout
    if now - (pea.rollout_started_at or now) > timeout:
        waiting = ", ".join(f"{p} {pr.running}/{pr.desired}" for p, pr in progress.items() if not pr.done)
        return Next(PeaEvent.FAIL, f"the services did not become stable within {format_duration(timeout)} ({waiting})")
    return Next(wait=ctx.poll)


# -- held -----------------------------------------------------------------------------------------

async def _freshness(ctx: PeaContext, pea: Pea, now: datetime) -> timedelta:
    """Look at the PR (at most every `check_every`); say once when it has a newer green build or ended."""
    due = (pea.checked_at or datetime.min) + ctx.check_every
    if now < due:
        return due - now
    stale: Stale | None = None
    sha: str | None = None
    try:
        pr = await ctx.outside.github.get_pr(pea.pr_number or 0)
        if pr.merged:
            stale = Stale.MERGED
        elif pr.state != "open":
            stale = Stale.CLOSED
        elif pr.head_sha != pea.head_sha:
            build = await ctx.outside.jenkins.find_build(ctx.pr_job(pea), pr.head_sha)
            # until the newest head's build is green, the last newer build we offered stays on offer
            if build is not None and build.green:
                stale, sha = Stale.NEWER_BUILD, pr.head_sha
            else:
                stale = Stale(pea.stale_reason) if pea.stale_reason else None
                sha = pea.newer_sha
    except OutsideError as exc:
        log.warning("pea %s: cannot look at #%s now: %s", pea.name, pea.pr_number, exc)
        await ctx.save(pea, {"checked_at": now})
        return ctx.check_every
    changed = (stale, sha) != (pea.stale_reason, pea.newer_sha)
    notice: Notice | None = None
    if changed and stale is not None:
        notice = PeaStale(pea.name, ctx.config.name, pea.holder, Stale(stale), pr.number,
                          sha if stale == Stale.NEWER_BUILD else pr.head_sha)
    elif changed:
        notice = PeaReopened(pea.name, ctx.config.name, pea.holder, pr.number)
    await ctx.save(pea, {"checked_at": now, "stale_reason": stale, "newer_sha": sha, "pr_title": pr.title},
                   notice=notice)
    return ctx.check_every


async def hold(ctx: PeaContext, pea: Pea) -> Next:
    """An up or failed pea: the claim's reminder and end, and (when up) the PR's freshness."""
    now = utcnow()
    if ended := _claim_ended(pea, now):
        return ended
    waits: list[timedelta] = []
    if pea.claim_expires_at is not None:
        waits.append(pea.claim_expires_at - now)
        remind_at = pea.claim_expires_at - remind_before(ctx.peas.lease)
        if pea.reminded_at is None and now >= remind_at:
            await ctx.save(pea, {"reminded_at": now},
                           notice=PeaLeaseEnding(pea.name, ctx.config.name, pea.holder, pea.claim_expires_at))
        elif pea.reminded_at is None:
            waits.append(remind_at - now)
    if pea.state == PeaState.UP and pea.pr_number is not None:
        waits.append(await _freshness(ctx, pea, now))
    return Next(wait=min(waits) if waits else None)


# -- releasing ------------------------------------------------------------------------------------

async def release(ctx: PeaContext, pea: Pea) -> Next:
    ecs, cluster = ctx.outside.ecs, ctx.peas.cluster
    busy = False
    states = await ecs.describe_services(cluster, list(ctx.services(pea).values()))
    for name, state in states.items():
        if state is None:
            continue
        if state.desired > 0:
            await ecs.scale(cluster, name, 0)
            await ctx.save(pea, record=Record("pea_scaled_to_zero", name))
            busy = True
        busy = busy or state.running > 0 or state.pending > 0
    if busy:
        return Next(wait=ctx.poll)
    for name, state in states.items():
        if state is not None:
            await _deregister(ctx, pea, name, state.task_definition)
    return Next(PeaEvent.SCALED_TO_ZERO)


STEPS: dict[PeaState, Callable[[PeaContext, Pea], Awaitable[Next]]] = {
    PeaState.DEPLOYING: deploy,
    PeaState.UP: hold,
    PeaState.FAILED: hold,
    PeaState.RELEASING: release,
}
