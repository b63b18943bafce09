"""The step each state of the flowchart runs: look at the outside world, act once, report an event.

A step is called by the engine whenever its deploy is due, under the deploy's work lease. It
first re-reads the outside world (so a step interrupted by a crash carries on where it was),
writes the undo record before each forward action, persists what it learnt before acting again,
and returns either an event of the transition table or how long to wait before looking again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import TrainConfig, format_duration
from flows.deploy import service
from flows.deploy.machine import Event, State
from flows.leased import Record, save_held
from flows.notices import (
    AlarmsRead,
    BranchUpdating,
    BuildPassed,
    BuildRetried,
    BuildStarted,
    CanaryReminder,
    CandidateBuildFailed,
    CandidateBuilding,
    CandidateDropped,
    HeadFollowed,
    Merged,
    Notice,
    RevertByHand,
    RevertPullRequest,
    RolloutProgress,
)
from flows.outbox import Outbox
from flows.outside import Outside
from flows.waiting import next_look, settling_look
from integrations.cloudwatch import OK, AlarmState
from integrations.ecs import Progress
from integrations.github import NotMergeable
from integrations.jenkins import Build
from integrations.outside import PermanentError
from storage.clock import utcnow
from storage.models import Deploy

# How long the typical build found in the train's history is trusted before it is read again.
TYPICAL_TTL = 60.0
REVISION_TAG = "fatcontroller:deploy"  # on each task definition revision a deploy registers


@dataclass
class StepResult:
    event: Event | None = None
    reason: str | None = None
    wait: timedelta | None = None  # with no event: look again after this (None: wait for a person)
    notices: tuple[Notice, ...] = ()  # told with the transition, before it


@dataclass
class StepContext:
    config: TrainConfig
    outside: Outside
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    # (read at, median) of the train's recent builds and rollouts
    _typical: dict[tuple[State, State], tuple[float, timedelta | None]] = field(default_factory=dict)

    @property
    def poll(self) -> timedelta:
        """How often a waiting step looks (a rollout batch by batch; a build near its usual end)."""
        return self.config.deploy.poll

    async def typical(self, began: State, ended: State) -> timedelta | None:
        """How long the train's recent deploys took from `began` to `ended` (None without history), read at most
        once a minute."""
        now = time.monotonic()
        known = self._typical.get((began, ended))
        if known is None or now - known[0] > TYPICAL_TTL:
            known = self._typical[(began, ended)] = (now, await service.typical_stage(self.sessions, began, ended,
                                                                                     self.config.name))
        return known[1]

    async def save(self, deploy: Deploy, values: dict[str, Any] | None = None, *, record: Record | None = None,
                   notice: Notice | None = None) -> None:
        """Persist what the step learnt, with its audit record and notice, in one transaction."""
        await save_held(self.sessions, self.outbox, deploy, values or {},
                        records=(record,) if record else (), notices=(notice,) if notice else ())


def _elapsed(deploy: Deploy) -> timedelta:
    return utcnow() - deploy.state_entered_at


def _targets(deploy: Deploy) -> dict[str, dict[str, Any]]:
    """Per-process bookkeeping kept on the deploy: service, old and new task definitions, progress."""
    return {process: dict(values) for process, values in (deploy.targets or {}).items()}


# -- built ahead (DESIGN §8) --------------------------------------------------------------------------

# The states in which the deploy in flight has a merge commit the next deploys can be built on.
_BUILT_ON = frozenset({State.BUILDING, State.BUILD_FAILED, State.CANARYING, State.CANARY_CHECK, State.ROLLING_OUT,
                       State.AWAITING_CONFIRMATION})
BUILT_AHEAD_LOOKS = 6  # a deploy built ahead looks at its PR and build every this many polls (30 s at the default 5 s)
_NOT_A_CANDIDATE: dict[str, Any] = {"candidate_sha": None, "candidate_base": None, "candidate_head": None,
                                    "candidate_queue_id": None, "candidate_on": None, "candidate_build_number": None,
                                    "candidate_build_url": None, "candidate_result": None, "candidate_retries": 0,
                                    "candidate_build_previous": None, "candidate_at": None}


def candidate_branch(deploy: Deploy) -> str:
    return f"fatcontroller/{deploy.train_id}/{deploy.id}"


async def _base_of(ctx: StepContext, in_flight: Deploy | None,
                   before: Deploy | None) -> tuple[str, int | None] | None:
    """The commit the base branch will point at when a queued deploy's turn comes, and the PR of the deploy that
    commit is of (None: of nobody's, a push to the base branch); None while that cannot be known."""
    if before is not None:  # right behind another queued deploy: on its candidate, if it has one
        return (before.candidate_sha, before.pr_number) if before.candidate_sha else None
    if in_flight is None:
        return None
    state = State(in_flight.state)
    if state is State.MERGING:  # landing its own candidate, or merging the normal way (its commit not known yet)
        return (in_flight.candidate_sha, in_flight.pr_number) if in_flight.candidate_sha else None
    if state not in _BUILT_ON or in_flight.merge_sha is None:
        return None  # rolling back: the revert is not made yet
    head = await ctx.outside.github.branch_head()
    # Someone pushed on top of the deploy in flight: the next one lands on what is there.
    return head, in_flight.pr_number if head == in_flight.merge_sha else None


async def speculate(ctx: StepContext, deploy: Deploy) -> StepResult:
    """A queued deploy within `deploy.speculate` of the one in flight gets a candidate: its PR head merged on the
    commit the base branch will have at its turn, and that candidate's build. A candidate whose base or head is
    not that any more is dropped (build stopped, branch deleted) and made again where it can be; one that
    conflicts is not made again for the same base and head."""
    window = ctx.config.deploy.speculate
    place, in_flight, before = await service.standing(ctx.sessions, deploy)
    github = ctx.outside.github
    if place == 1 and in_flight is None:
        # Next to start (now, or when the train is unfrozen): it keeps a candidate the base branch still points
        # under (the merge step lands it) and makes none.
        if deploy.candidate_base is not None and await github.branch_head() != deploy.candidate_base:
            await _drop(ctx, deploy, f"{ctx.config.github.base_branch} moved")
        return StepResult()
    within = 1 <= place <= window
    on = await _base_of(ctx, in_flight, before) if within else None
    if on is None:
        if deploy.candidate_base is not None:
            await _drop(ctx, deploy, "what it was built on is not what the base branch will be at its turn")
        # Woken when the queue moves or the deploy ahead merges; within the window, also looked at now and then.
        return StepResult(wait=ctx.poll * BUILT_AHEAD_LOOKS if within else None)
    base, on_pr = on
    pr = await github.get_pr(deploy.pr_number)
    if pr.merged or pr.state != "open":
        if deploy.candidate_base is not None:
            await _drop(ctx, deploy, f"#{deploy.pr_number} is {'merged' if pr.merged else 'closed'}")
        return StepResult()  # the merge step says what is wrong at its turn
    if (deploy.candidate_base, deploy.candidate_head) != (base, pr.head_sha):
        if deploy.candidate_base is not None:
            moved = "a new head" if deploy.candidate_base == base else "a new base"
            await _drop(ctx, deploy, f"built again on {moved}")
        owner = ctx.config.github.repo.split("/", 1)[0]
        sha = await github.make_candidate(candidate_branch(deploy), base, deploy.pr_number, pr.head_sha,
                                          f"{owner}/{pr.head_ref}")
        detail = f"#{deploy.pr_number} at {pr.head_sha[:12]} on {base[:12]}"
        await ctx.save(deploy, {**_NOT_A_CANDIDATE, "candidate_sha": sha, "candidate_base": base,
                                "candidate_head": pr.head_sha, "candidate_on": on_pr},
                       record=Record("candidate_made" if sha else "candidate_conflicts",
                                     f"{detail}: {sha[:12]}" if sha else detail, {"candidate_sha": sha}))
        # the deploy behind is built on this candidate
        await service.wake_queued(ctx.sessions, deploy.train_id, window)
    if deploy.candidate_sha is not None:
        await _follow_candidate_build(ctx, deploy)
    # What is left to notice is a push to the PR or to the base branch, and the build ending: each look reads them.
    return StepResult(wait=ctx.poll * (BUILT_AHEAD_LOOKS if deploy.candidate_build_number is not None else 1))


async def _follow_candidate_build(ctx: StepContext, deploy: Deploy) -> None:
    """Start the candidate's build once, follow it to its end, and start it again while `jenkins.build_retries`
    allow; a red end that stays red is told to the requester at once."""
    jenkins, job, sha = ctx.outside.jenkins, ctx.config.jenkins.job, deploy.candidate_sha or ""
    if deploy.candidate_build_number is None:
        started: tuple[str, int] | None = None
        if deploy.candidate_queue_id is None:
            # A build this step started before a crash lost its queue item is found, not started twice.
            found = await jenkins.find_build(job, sha)
            if found is None or found.number <= (deploy.candidate_build_previous or 0):
                queue_id = await jenkins.start_build(job, sha)
                await ctx.save(deploy, {"candidate_queue_id": queue_id, "candidate_at": utcnow()},
                               record=Record("candidate_build_requested", f"{job} for {sha[:12]}",
                                             {"queue_id": queue_id}))
                return
            started = found.url, found.number
        else:
            started = await jenkins.build_from_queue(deploy.candidate_queue_id)
            if started is None:
                return
        url, number = started
        await ctx.save(deploy, {"candidate_build_number": number, "candidate_build_url": url,
                                "candidate_at": deploy.candidate_at or utcnow()},
                       record=Record("candidate_build_found", f"build {number}", {"build_url": url}),
                       notice=CandidateBuilding(deploy.id, deploy.train_id, number, url, deploy.candidate_on))
    number, url = deploy.candidate_build_number or 0, deploy.candidate_build_url or ""
    if deploy.candidate_result is not None:
        return
    build = await jenkins.get_build(job, number)
    if not build.finished:
        return
    if not build.green and deploy.candidate_retries < ctx.config.jenkins.build_retries:
        await ctx.save(deploy, {"candidate_build_previous": number, "candidate_build_number": None,
                                "candidate_build_url": None, "candidate_queue_id": None,
                                "candidate_retries": deploy.candidate_retries + 1},
                       record=Record("candidate_build_retried", f"build {number} ended {build.result}"),
                       notice=BuildRetried(deploy.id, deploy.train_id, number, url, True))
        await _follow_candidate_build(ctx, deploy)
        return
    result = build.result or "FAILURE"
    await ctx.save(deploy, {"candidate_result": result},
                   record=Record("candidate_build_ended", f"build {number} ended {result}"),
                   notice=BuildPassed(deploy.id, deploy.train_id, number, url) if build.green else
                   CandidateBuildFailed(deploy.id, deploy.train_id, number, url, result))


async def _drop(ctx: StepContext, deploy: Deploy, why: str) -> None:
    """Stop a candidate's build (or take it out of Jenkins' queue), delete its branch, and forget it."""
    jenkins, job = ctx.outside.jenkins, ctx.config.jenkins.job
    number = deploy.candidate_build_number
    if number is None and deploy.candidate_queue_id is not None:
        try:
            started = await jenkins.build_from_queue(deploy.candidate_queue_id)
            if started is None:
                await jenkins.cancel_queued(deploy.candidate_queue_id)
                started = await jenkins.build_from_queue(deploy.candidate_queue_id)  # it may have started meanwhile
        except PermanentError:
            started = None  # cancelled already (before a crash), or gone from Jenkins' queue: found by its commit
        number = started[1] if started is not None else None
    if number is None and deploy.candidate_sha is not None:
        found = await jenkins.find_build(job, deploy.candidate_sha)
        number = found.number if found is not None and found.number > (deploy.candidate_build_previous or 0) else None
    if number is not None and deploy.candidate_result is None:
        await jenkins.stop_build(job, number)  # Jenkins ignores a stop of a build that has ended
    if deploy.candidate_sha is not None:
        await ctx.outside.github.drop_candidate(candidate_branch(deploy))
    await ctx.save(deploy, dict(_NOT_A_CANDIDATE),
                   record=Record("candidate_dropped", f"{(deploy.candidate_sha or 'no commit')[:12]}: {why}"),
                   notice=CandidateDropped(deploy.id, deploy.train_id, why) if deploy.candidate_sha else None)


async def drop_candidate(ctx: StepContext, deploy: Deploy) -> StepResult:
    """A deploy that left the queue with a candidate (cancelled): its build is stopped and its branch deleted."""
    if deploy.candidate_base is not None:
        await _drop(ctx, deploy, "it left the queue")
    return StepResult()


async def _land(ctx: StepContext, deploy: Deploy) -> dict[str, Any] | None:
    """At its turn, a deploy whose candidate merged its PR's head lands it, if the base branch still points at
    the candidate's base: the base branch is fast-forwarded to it. The values to save with its merge then
    (the candidate's build followed), or None: merge the normal way."""
    github, sha, base = ctx.outside.github, deploy.candidate_sha, deploy.candidate_base
    if sha is None or base is None:
        return None
    if not await github.land_candidate(sha, base):
        await _drop(ctx, deploy, f"{ctx.config.github.base_branch} moved")
        return None
    values: dict[str, Any] = {"build_queue_id": deploy.candidate_queue_id, "build_attempts": deploy.candidate_retries,
                              "build_previous": deploy.candidate_build_previous}
    if deploy.candidate_build_number is not None:
        values |= {"build_url": deploy.candidate_build_url, "build_number": deploy.candidate_build_number,
                   "build_job": ctx.config.jenkins.job}
    return values


def _built_red_ahead(ctx: StepContext, deploy: Deploy) -> str | None:
    """Why a deploy whose candidate's build ended red, its retries spent, does not land: nothing lands whose build
    was not green (DESIGN §8)."""
    result = deploy.candidate_result
    if result is None or result == "SUCCESS" or deploy.skip_build:
        return None
    return (f"its build ahead, #{deploy.candidate_build_number}, ended {result}: push a fix to "
            f"#{deploy.pr_number} and ask to deploy it again")


# -- merging ------------------------------------------------------------------------------------

async def merge(ctx: StepContext, deploy: Deploy) -> StepResult:
    github, number = ctx.outside.github, deploy.pr_number
    if deploy.merge_sha is None:
        pending = await service.pending_undo(ctx.sessions, deploy.id)
        attempted = any(record.kind == "merge" for record in pending)
        pr = await github.get_pr(number)
        landing: dict[str, Any] = {}
        if pr.merged:
            # Only a merge we asked for is ours to deploy (and to revert); one made by hand is refused.
            if not attempted or pr.merge_sha is None:
                return StepResult(Event.MERGE_REFUSED, f"#{number} was merged outside the train")
            sha = pr.merge_sha
        elif deploy.candidate_sha is not None and pr.head_sha == deploy.candidate_head:
            refused = _built_red_ahead(ctx, deploy)
            if refused is not None:
                await _drop(ctx, deploy, "its build was red")
                return StepResult(Event.MERGE_REFUSED, refused)
            await service.record_undo(ctx.sessions, deploy.id, "merge",
                                      {"pr": number, "method": ctx.config.github.merge_method}, key="merge")
            landed = await _land(ctx, deploy)
            if landed is None:
                return StepResult(wait=timedelta(0))  # stale: the next look merges the normal way
            sha, landing = deploy.candidate_sha, landed
        else:
            if pr.head_sha != deploy.pr_head_sha:
                # Whatever was pushed before its turn is what is deployed; the requester is told which commit.
                updated = deploy.branch_updated_from == deploy.pr_head_sha
                await ctx.save(deploy, {"pr_head_sha": pr.head_sha},
                               record=Record("head_followed", f"#{number} is at {pr.head_sha[:12]} now",
                                             {"head_sha": pr.head_sha}),
                               notice=HeadFollowed(deploy.id, deploy.train_id, deploy.pr_head_sha or "", pr.head_sha,
                                                   updated))
            await service.record_undo(ctx.sessions, deploy.id, "merge",
                                      {"pr": number, "method": ctx.config.github.merge_method}, key="merge")
            try:
                sha = (await github.merge(number, pr.head_sha)).sha
            except NotMergeable as exc:
                return await _not_merged(ctx, deploy, pr.head_sha, exc)
        if deploy.candidate_base is not None and not landing:
            await _drop(ctx, deploy, "it merged the normal way")  # a candidate of an older head
        elif ctx.config.deploy.speculate:
            # Its candidate's branch goes, whichever way it merged: also one a step that died made without saving
            # it, and one left by a landing that died before it could delete it.
            await github.drop_candidate(candidate_branch(deploy))
        await ctx.save(deploy, {"merge_sha": sha, "image": ctx.config.image_for(sha), **landing},
                       record=Record("merged", f"#{number} {'landed as' if landing else 'merged as'} {sha[:12]}",
                                     {"merge_sha": sha}),
                       notice=Merged(deploy.id, deploy.train_id, sha))
        await service.wake_queued(ctx.sessions, deploy.train_id, ctx.config.deploy.speculate)
    return StepResult(Event.MERGED)


async def _not_merged(ctx: StepContext, deploy: Deploy, head: str, refused: NotMergeable) -> StepResult:
    """What a refused merge comes to: bring the branch up to date, wait for its checks or a new head, or fail."""
    number = deploy.pr_number
    if refused.reason == "behind":
        if deploy.branch_updated_from != head:
            # Asked before it is saved: asking twice for one head is harmless, never asking would wait forever.
            await ctx.outside.github.update_branch(number, head)
            await ctx.save(deploy, {"branch_updated_from": head},
                           record=Record("branch_update_requested", f"#{number} at {head[:12]}", {"head_sha": head}),
                           notice=BranchUpdating(deploy.id, deploy.train_id, head))
        return StepResult(wait=ctx.poll)
    if refused.reason == "head moved":
        return StepResult(wait=ctx.poll)  # the next look follows the new head
    if refused.reason == "checks pending":
        limit = ctx.config.jenkins.build_timeout
        if _elapsed(deploy) > limit:
            return StepResult(Event.MERGE_REFUSED, f"#{number}'s required checks did not pass within "
                                                   f"{format_duration(limit)}: {refused.detail}")
        return StepResult(wait=next_look(_elapsed(deploy), None, ctx.poll))
    return StepResult(Event.MERGE_REFUSED, f"#{number} could not be merged: {refused.detail}")


# -- building -----------------------------------------------------------------------------------

async def _current_build(ctx: StepContext, deploy: Deploy) -> Build | None:
    """The build of the merge commit this attempt waits for, starting it through the API if ours to start."""
    jenkins, job = ctx.outside.jenkins, ctx.config.jenkins.job
    sha = deploy.merge_sha or ""
    if deploy.build_number is not None:
        return await jenkins.get_build(job, deploy.build_number)
    # `Retry build` always goes through the API; the first attempt when the train is set to, or when GitHub's
    # webhook started none within `build_start_wait` (Jenkins may coalesce webhook builds).
    jenkins_config = ctx.config.jenkins
    by_api = (jenkins_config.trigger == "api" or deploy.build_attempts > 0
              or _elapsed(deploy) > jenkins_config.build_start_wait)
    build = await jenkins.find_build(job, sha)
    if build is not None and build.number > (deploy.build_previous or 0):
        return build  # also finds a build this step started before a crash lost its queue id
    if not by_api:
        return None  # GitHub's webhook has not started it yet
    if deploy.build_queue_id is None:
        queue_id = await jenkins.start_build(job, sha)
        await ctx.save(deploy, {"build_queue_id": queue_id},
                       record=Record("build_requested", f"{job} for {sha[:12]}", {"queue_id": queue_id}))
    started = await jenkins.build_from_queue(deploy.build_queue_id or 0)
    if started is None:
        return None
    return await jenkins.get_build(job, started[1])


async def build(ctx: StepContext, deploy: Deploy) -> StepResult:
    if deploy.skip_build and deploy.image and await ctx.outside.ecs.image_exists(deploy.image):
        await ctx.save(deploy, record=Record("build_skipped", f"image present: {deploy.image}",
                                             {"image": deploy.image}))
        return StepResult(Event.IMAGE_PRESENT, "skip build check: the image is in the registry")
    timeout = ctx.config.jenkins.build_timeout
    current = await _current_build(ctx, deploy)
    if current is not None and current.number != deploy.build_number:
        await ctx.save(deploy, {"build_number": current.number, "build_url": current.url,
                                "build_job": ctx.config.jenkins.job},
                       record=Record("build_found", f"build {current.number}", {"build_url": current.url}),
                       notice=BuildStarted(deploy.id, deploy.train_id, current.number, current.url))
    if current is not None and current.finished:
        if current.green:
            return StepResult(Event.BUILD_GREEN,
                              notices=(BuildPassed(deploy.id, deploy.train_id, current.number, current.url),))
        ended = f"build #{current.number} ended {current.result or 'FAILURE'}"
        if deploy.build_attempts < ctx.config.jenkins.build_retries:
            return StepResult(Event.BUILD_FLAKED, ended,
                              notices=(BuildRetried(deploy.id, deploy.train_id, current.number, current.url, False),))
        return StepResult(Event.BUILD_RED, ended)
    if _elapsed(deploy) > timeout:
        if current is None:
            return StepResult(Event.BUILD_TIMEOUT, f"no build of the merge commit started within "
                                                   f"{format_duration(timeout)}")
        return StepResult(Event.BUILD_TIMEOUT, f"build #{current.number} did not finish within "
                                               f"{format_duration(timeout)}")
    typical = await ctx.typical(State.BUILDING, State.CANARYING)
    return StepResult(wait=next_look(_elapsed(deploy), typical, ctx.poll))


# -- canaries -----------------------------------------------------------------------------------

def revision_tag(deploy: Deploy) -> str:
    """The tag value that names the task definition revisions one deploy registers (with its image, so that
    two installations sharing an AWS account never take each other's)."""
    return f"{deploy.id}@{(deploy.image or '').rsplit(':', 1)[-1][:40]}"


async def start_canaries(ctx: StepContext, deploy: Deploy) -> StepResult:
    ecs, cluster = ctx.outside.ecs, ctx.config.ecs.cluster
    targets = _targets(deploy)
    for process in deploy.processes:
        spec = ctx.config.processes[process]
        targets.setdefault(process, {"service": spec.service, "canary": f"{spec.service}-canary"})
    unread = [targets[p]["service"] for p in deploy.processes if "old_td" not in targets[p]]
    states = await ecs.describe_services(cluster, unread) if unread else {}
    for process in deploy.processes:
        spec, target = ctx.config.processes[process], targets[process]
        if "old_td" not in target:
            state = states[spec.service]
            if state is None:
                return StepResult(Event.CANARY_FAILED, f"service {spec.service} is not in cluster {cluster}")
            target["old_td"] = state.task_definition
        if "new_td" not in target:
            # A rollback deregisters what is tagged so, whether or not a crash kept it from being saved.
            await service.record_undo(ctx.sessions, deploy.id, "task_definition",
                                      {"service": spec.service, "copied_from": target["old_td"],
                                       "tag": revision_tag(deploy)}, key=spec.service)
            # Found again rather than registered twice when a crash came between registering and saving.
            target["new_td"] = await ecs.register_once(target["old_td"], spec.container, deploy.image or "",
                                                       key=REVISION_TAG, value=revision_tag(deploy))
            await ctx.save(deploy, {"targets": targets},
                           record=Record("task_definition_registered", f"{process}: {target['new_td']}",
                                         {"task_definition": target["new_td"]}))
    for process in deploy.processes:
        target = targets[process]
        if target.get("canary_created"):
            continue
        await service.record_undo(ctx.sessions, deploy.id, "canary",
                                  {"cluster": cluster, "service": target["canary"]}, key=target["canary"])
        target["canary_client_only"] = await ecs.create_canary(cluster, target["service"], target["canary"],
                                                               target["new_td"], ctx.config.deploy.canary_tasks)
        target["canary_created"] = True
        await ctx.save(deploy, {"targets": targets},
                       record=Record("canary_created", target["canary"], {"task_definition": target["new_td"]}))
    progress = await _canary_health(ctx, deploy, targets)
    failed = {p: pr for p, pr in progress.items() if pr.failed}
    if failed:
        process, why = next(iter(failed.items()))
        return StepResult(Event.CANARY_FAILED, f"the {process} canary failed to start: {why.reason}")
    if all(pr.done for pr in progress.values()):
        await _read_alarms(ctx, deploy)  # for the requester's DM; the gate decides on them
        return StepResult(Event.CANARIES_UP)
    if _elapsed(deploy) > ctx.config.deploy.rollout_timeout:
        return StepResult(Event.CANARY_FAILED,
                          f"the canaries did not start within {format_duration(ctx.config.deploy.rollout_timeout)}")
    return StepResult(wait=ctx.poll)


# -- watching the canaries (DESIGN §9) -------------------------------------------------------------

async def _read_alarms(ctx: StepContext, deploy: Deploy) -> tuple[list[str], dict[str, AlarmState]]:
    """The deploy's watched alarms and those CloudWatch has; what changed is kept (the card and the canary DM
    show it), with since when every alarm has been OK."""
    names = ctx.config.alarms_of(deploy.processes)
    if not names:
        return names, {}
    found = await ctx.outside.cloudwatch.alarm_states(names)
    states = {name: found[name].state for name in names if name in found}
    healthy = len(states) == len(names) and all(state == OK for state in states.values())
    since = (deploy.healthy_since or utcnow()) if healthy else None
    if states != (deploy.alarm_states or {}) or since != deploy.healthy_since:
        await ctx.save(deploy, {"alarm_states": states, "healthy_since": since},
                       notice=AlarmsRead(deploy.id, deploy.train_id, tuple(states.items()))
                       if states != (deploy.alarm_states or {}) else None)
    return names, found


async def _watch(ctx: StepContext, deploy: Deploy) -> StepResult | None:
    """One watched alarm in ALARM rolls the deploy back; one that does not exist needs people."""
    names, found = await _read_alarms(ctx, deploy)
    missing = [name for name in names if name not in found]
    if missing:
        return StepResult(Event.ALARM_MISSING, f"alarm {missing[0]} does not exist in CloudWatch "
                                               f"({ctx.config.region or 'the default region'}): a canary nobody "
                                               "watches is not trusted. Create it or take it out of the alarms "
                                               "in app.yaml, then Retry")
    firing = next((found[name] for name in names if found[name].alarming), None)
    if firing is not None:
        return StepResult(Event.ALARM, f"alarm {firing.name} is in ALARM: {firing.reason}")
    return None


HEALTH_EVERY = 6  # polls between two reads of the canaries' health while they wait at the gate


async def _canary_health(ctx: StepContext, deploy: Deploy, targets: dict[str, dict[str, Any]]) -> dict[str, Progress]:
    """Each process's canary: its running and desired tasks and healthy targets, kept on the deploy with when
    they were read (the card shows them)."""
    by_canary = await ctx.outside.ecs.canaries_ready(
        ctx.config.ecs.cluster, {targets[p]["canary"]: targets[p]["new_td"] for p in deploy.processes},
        ctx.config.deploy.canary_tasks)
    progress = {p: by_canary[targets[p]["canary"]] for p in deploy.processes}
    health = {p: [pr.running, pr.desired, pr.healthy if pr.load_balanced else None] for p, pr in progress.items()}
    if any(targets[p].get("canary_health") != h for p, h in health.items()) or _health_due(ctx, deploy):
        now = utcnow().isoformat()
        for process, counts in health.items():
            targets[process]["canary_health"], targets[process]["canary_health_at"] = counts, now
        await ctx.save(deploy, {"targets": targets})
    return progress


def _health_due(ctx: StepContext, deploy: Deploy) -> bool:
    read = [t.get("canary_health_at") for t in _targets(deploy).values()]
    last = min((datetime.fromisoformat(at) for at in read if at), default=None)
    return last is None or utcnow() - last >= ctx.poll * HEALTH_EVERY


def _watching(ctx: StepContext, deploy: Deploy, wait: timedelta) -> timedelta:
    """How long a waiting step may wait: no longer than a poll while it has alarms to read."""
    return min(wait, ctx.poll) if ctx.config.alarms_of(deploy.processes) else wait


async def gate(ctx: StepContext, deploy: Deploy) -> StepResult:
    """The canaries wait for the requester: watched, remembered to them every `canary_reminder`, and with
    `canary_bake`, proceeding by themselves once healthy that long."""
    watched = await _watch(ctx, deploy)
    if watched is not None:
        return watched
    if _health_due(ctx, deploy):
        await _canary_health(ctx, deploy, _targets(deploy))  # kept current while the canaries wait
    now, bake = utcnow(), ctx.config.deploy.canary_bake
    baked_at = None
    if bake is not None:
        since = deploy.healthy_since if ctx.config.alarms_of(deploy.processes) else deploy.state_entered_at
        baked_at = since + bake if since is not None else None
        if baked_at is not None and now >= baked_at:
            return StepResult(Event.BAKED, f"proceeded after {format_duration(bake)} healthy")
    every = ctx.config.deploy.canary_reminder
    due = (deploy.canary_reminded_at or deploy.state_entered_at) + every
    if now >= due:
        left = baked_at - now if baked_at is not None else None
        await ctx.save(deploy, {"canary_reminded_at": now},
                       notice=CanaryReminder(deploy.id, deploy.train_id, left))
        due = now + every
    wait = min(due, baked_at) - now if baked_at is not None else due - now
    return StepResult(wait=min(_watching(ctx, deploy, wait), ctx.poll * HEALTH_EVERY))


# -- rolling out --------------------------------------------------------------------------------

async def roll_out(ctx: StepContext, deploy: Deploy) -> StepResult:
    watched = await _watch(ctx, deploy)
    if watched is not None:
        return watched
    ecs, cluster = ctx.outside.ecs, ctx.config.ecs.cluster
    alarms = ctx.config.alarms_of(deploy.processes)
    targets = _targets(deploy)
    for process in deploy.processes:
        target = targets[process]
        if target.get("rollout_started"):
            continue
        # Read before the rolling update changes it; a step resumed after the update reads ours, but the
        # record written first is the one kept.
        own = await ecs.deployment_configuration(cluster, target["service"])
        await service.record_undo(ctx.sessions, deploy.id, "service_update",
                                  {"cluster": cluster, "service": target["service"],
                                   "task_definition": target["old_td"], "deployment_configuration": own},
                                  key=target["service"])
        # ECS watches the same alarms, and stops the rollout by itself when one goes off (DESIGN §9).
        await ecs.rolling_update(cluster, target["service"], target["new_td"], ctx.config.deploy.batch_percent,
                                 alarms=alarms)
        target["rollout_started"] = True
        await ctx.save(deploy, {"targets": targets},
                       record=Record("rollout_started", target["service"], {"task_definition": target["new_td"]}))
    by_service = await ecs.rollouts_progress(cluster, {targets[p]["service"]: targets[p]["new_td"]
                                                       for p in deploy.processes})
    progress = {p: by_service[targets[p]["service"]] for p in deploy.processes}
    counts = {p: [pr.running, pr.desired] for p, pr in progress.items()}
    if any(targets[p].get("counts") != c for p, c in counts.items()):
        for process, count in counts.items():
            targets[process]["counts"] = count
            targets[process]["counts_at"] = utcnow().isoformat()
        await ctx.save(deploy, {"targets": targets},
                       notice=RolloutProgress(deploy.id, deploy.train_id,
                                              tuple((p, c[0], c[1]) for p, c in counts.items())))
    failed = {p: pr for p, pr in progress.items() if pr.failed}
    if failed:
        process, why = next(iter(failed.items()))
        return StepResult(Event.ROLLOUT_FAILED, f"the {process} rollout failed: {why.reason}")
    if not all(pr.done for pr in progress.values()):
        if _elapsed(deploy) > ctx.config.deploy.rollout_timeout:
            return StepResult(Event.ROLLOUT_FAILED,
                              f"the rollout did not finish within {format_duration(ctx.config.deploy.rollout_timeout)}")
        if all(pr.running >= pr.desired for pr in progress.values()):
            # Every new task runs: ECS says COMPLETED as soon as the old ones have drained.
            now = utcnow()
            settled = max(datetime.fromisoformat(targets[p].get("counts_at") or now.isoformat())
                          for p in deploy.processes)
            return StepResult(wait=_watching(ctx, deploy, settling_look(now - settled, ctx.poll)))
        typical = await ctx.typical(State.ROLLING_OUT, State.AWAITING_CONFIRMATION)
        # a long rollout is looked at less often, but its alarms are still read every poll
        return StepResult(wait=_watching(ctx, deploy, next_look(_elapsed(deploy), typical, ctx.poll)))
    await _tidy_after_rollout(ctx, deploy)
    return StepResult(Event.ROLLOUT_DONE)


async def _tidy_after_rollout(ctx: StepContext, deploy: Deploy) -> None:
    """Every service runs the new revision: their own deploymentConfiguration back and the canaries gone, all
    at once, since "Rolled out" waits for it. Each call re-reads the service first, so a resumed step repeats none."""
    ecs = ctx.outside.ecs
    pending = await service.pending_undo(ctx.sessions, deploy.id)
    restores = [r.data for r in pending if r.kind == "service_update" and r.data.get("deployment_configuration")]
    canaries = [r for r in pending if r.kind == "canary"]
    restored = await asyncio.gather(
        *(ecs.restore_deployment_configuration(d["cluster"], d["service"], d["deployment_configuration"])
          for d in restores),
        *(ecs.delete_service(r.data["cluster"], r.data["service"]) for r in canaries))
    for data, sent in zip(restores, restored, strict=False):
        if sent:
            await ctx.save(deploy, record=Record("deployment_configuration_restored", data["service"],
                                                 {"service": data["service"]}))
    for record in canaries:
        await service.mark_undone(ctx.sessions, record.id, "removed after the rollout")
        await ctx.save(deploy, record=Record("canary_removed", record.data["service"],
                                             {"service": record.data["service"]}))


async def await_confirmation(ctx: StepContext, deploy: Deploy) -> StepResult:
    watched = await _watch(ctx, deploy)
    if watched is not None:
        return watched
    left = ctx.config.deploy.confirm_timeout - _elapsed(deploy)
    if left <= timedelta(0):
        return StepResult(Event.CONFIRM_TIMEOUT, "nobody objected within the confirm timeout")
    return StepResult(wait=_watching(ctx, deploy, left))


# -- rolling back (the saga) ----------------------------------------------------------------------

async def _restore_configuration(ctx: StepContext, deploy: Deploy, data: dict[str, Any]) -> None:
    """Give a stable service back the deploymentConfiguration it had before the rolling update changed it."""
    config = data.get("deployment_configuration")
    if config is None:
        return  # recorded before the configuration was kept
    if await ctx.outside.ecs.restore_deployment_configuration(data["cluster"], data["service"], config):
        await ctx.save(deploy, record=Record("deployment_configuration_restored", data["service"],
                                             {"service": data["service"]}))


async def _undo_service_update(ctx: StepContext, deploy: Deploy, data: dict[str, Any]) -> str | None:
    """Put a service back on its old task definition, then its own deploymentConfiguration; done once it is stable
    on the old one (not before: the service's own rollbacks would take it to its last completed deployment)."""
    ecs = ctx.outside.ecs
    await ecs.restore(data["cluster"], data["service"], data["task_definition"])
    progress = await ecs.rollout_progress(data["cluster"], data["service"], data["task_definition"])
    if progress.failed:
        raise RollbackStuck(f"{data['service']} does not come back on its old task definition: {progress.reason}")
    if not progress.done:
        return None
    await _restore_configuration(ctx, deploy, data)
    return f"restored {data['task_definition']}"


async def _undo_task_definition(ctx: StepContext, deploy: Deploy, data: dict[str, Any]) -> str | None:
    """Deregister the revisions the deploy registered for a service (found by their tag), so that the family's newest
    revision is again one that ran; the service is back on its old one and the canary deleted by now."""
    gone = await ctx.outside.ecs.deregister_copies(data["copied_from"], REVISION_TAG, data["tag"])
    return f"deregistered {', '.join(gone)}" if gone else "no revision left to deregister"


async def _undo_canary(ctx: StepContext, deploy: Deploy, data: dict[str, Any]) -> str | None:
    await ctx.outside.ecs.delete_service(data["cluster"], data["service"])
    return "canary deleted"


async def _undo_merge(ctx: StepContext, deploy: Deploy, data: dict[str, Any]) -> str | None:
    github = ctx.outside.github
    sha = deploy.merge_sha or await github.find_merge(deploy.pr_number)
    if sha is None:
        return "never merged"
    result = await github.revert_merge(sha, deploy.pr_number, data.get("method", "merge"))
    notice: Notice | None = None
    if result.status == "manual":
        notice = RevertByHand(deploy.id, deploy.train_id, result.detail, result.manual_url, tuple(result.paths))
    elif result.pull_request is not None and result.status == "reverted":
        notice = RevertPullRequest(deploy.id, deploy.train_id, result.pull_request, True, result.detail)
    await ctx.save(deploy, {"revert_sha": result.sha, "revert_status": result.status,
                            "revert_pull_request": result.pull_request or deploy.revert_pull_request},
                   record=Record(f"revert_{result.status}", result.detail,
                                 {"revert_sha": result.sha, "manual_url": result.manual_url,
                                  "pull_request": result.pull_request}),
                   notice=notice)
    if result.status == "pull_request":
        raise RollbackStuck(result.detail, RevertPullRequest(deploy.id, deploy.train_id, result.pull_request or "",
                                                             False, result.detail))
    return f"revert {result.status}" + (f" {result.sha[:12]}" if result.sha else "")


class RollbackStuck(Exception):
    """An undo cannot complete without people; `notices` tell them what to do."""

    def __init__(self, reason: str, *notices: Notice) -> None:
        super().__init__(reason)
        self.notices = notices


_UNDO: dict[str, Callable[[StepContext, Deploy, dict[str, Any]], Awaitable[str | None]]] = {
    "service_update": _undo_service_update,
    "canary": _undo_canary,
    "task_definition": _undo_task_definition,
    "merge": _undo_merge,
}


def _outside_ids(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in ("service", "task_definition") if key in data}


async def roll_back(ctx: StepContext, deploy: Deploy) -> StepResult:
    """Undo every recorded step newest first; consecutive undos of one kind run in parallel."""
    pending = await service.pending_undo(ctx.sessions, deploy.id)
    while pending:
        kind = pending[0].kind
        batch = pending[: next((i for i, r in enumerate(pending) if r.kind != kind), len(pending))]
        results = await asyncio.gather(*(_UNDO[r.kind](ctx, deploy, r.data) for r in batch))
        for record, result in zip(batch, results, strict=True):
            if result is not None:
                await service.mark_undone(ctx.sessions, record.id, result)
                await ctx.save(deploy, record=Record(f"undone:{record.kind}", result, _outside_ids(record.data)))
        if any(result is None for result in results):
            return StepResult(wait=ctx.poll)
        pending = pending[len(batch):]
    return StepResult(Event.UNDONE, deploy.outcome_reason)


STEPS: dict[State, Callable[[StepContext, Deploy], Awaitable[StepResult]]] = {
    State.QUEUED: speculate,
    State.CANCELLED: drop_candidate,
    State.MERGING: merge,
    State.BUILDING: build,
    State.CANARYING: start_canaries,
    State.CANARY_CHECK: gate,
    State.ROLLING_OUT: roll_out,
    State.AWAITING_CONFIRMATION: await_confirmation,
    State.ROLLING_BACK: roll_back,
}
