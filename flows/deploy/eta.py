"""When each deploy of a train will start and finish (DESIGN §8), predicted from the train's own history per stage.

A stage is the time spent in one state of the flowchart until the next (merging, building, canaries
starting, the gate, the rollout, the confirmation); its typical length is the median of the train's
recent completed deploys. A deploy built ahead hides its build: its build began when its candidate
was made, so at its turn only what is left of that build is waited for. The queued deploys are
walked in train order, each starting when the one before is predicted to finish.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flows.deploy.machine import State
from storage.models import Deploy

# Each stage: the state it is spent in, and the state that ends it.
STAGES: dict[State, State] = {
    State.MERGING: State.BUILDING,
    State.BUILDING: State.CANARYING,
    State.CANARYING: State.CANARY_CHECK,
    State.CANARY_CHECK: State.ROLLING_OUT,
    State.ROLLING_OUT: State.AWAITING_CONFIRMATION,
    State.AWAITING_CONFIRMATION: State.COMPLETED,
}
# Until the train has history: ten minutes a deploy, the build the longest part of it.
DEFAULTS: dict[State, timedelta] = {
    State.MERGING: timedelta(seconds=10), State.BUILDING: timedelta(minutes=4),
    State.CANARYING: timedelta(minutes=1), State.CANARY_CHECK: timedelta(minutes=2),
    State.ROLLING_OUT: timedelta(minutes=2), State.AWAITING_CONFIRMATION: timedelta(seconds=50),
}
ROLLBACK = timedelta(minutes=2)  # what a rollback is assumed to take
SAMPLE = 20  # recent deploys per stage


@dataclass(frozen=True)
class StageTimes:
    """The typical length of each stage, and of a build (a build ahead's included, which no stage shows)."""

    stages: dict[State, timedelta]
    build: timedelta

    def of(self, state: State) -> timedelta:
        return self.stages.get(state, ROLLBACK if state is State.ROLLING_BACK else timedelta(0))

    def after(self, state: State) -> timedelta:
        """The stages that follow `state`'s, together."""
        order = list(STAGES)
        later = order[order.index(state) + 1:] if state in STAGES else []
        return sum((self.of(s) for s in later), timedelta(0))


def _median(values: list[float], default: timedelta) -> timedelta:
    return timedelta(seconds=statistics.median(values[:SAMPLE])) if values else default


async def stage_times(session: AsyncSession, train_id: str) -> StageTimes:
    """The train's typical stages, from its recent completed deploys (one read)."""
    rows = (await session.execute(
        sa.select(Deploy.state_times, Deploy.merge_sha, Deploy.candidate_sha, Deploy.candidate_at)
        .where(Deploy.train_id == train_id, Deploy.state == State.COMPLETED.value, Deploy.skip_build.is_(False))
        .order_by(Deploy.finished_at.desc()).limit(SAMPLE * 3)
    )).all()
    took: dict[State, list[float]] = {state: [] for state in STAGES}
    builds: list[float] = []
    known = {state.value for state in State}
    for row in rows:
        times: dict[str, str] = row.state_times or {}
        candidate_at: datetime | None = row.candidate_at
        at = {State(s): datetime.fromisoformat(v) for s, v in times.items() if s in known}
        for began, ended in STAGES.items():
            if began in at and ended in at and at[ended] >= at[began]:
                took[began].append((at[ended] - at[began]).total_seconds())
        built_ahead = row.candidate_sha is not None and row.candidate_sha == row.merge_sha
        build_began = candidate_at if built_ahead and candidate_at is not None else at.get(State.BUILDING)
        if build_began is not None and State.CANARYING in at and at[State.CANARYING] >= build_began:
            builds.append((at[State.CANARYING] - build_began).total_seconds())
    stages = {state: _median(values, DEFAULTS[state]) for state, values in took.items()}
    return StageTimes(stages, _median(builds, DEFAULTS[State.BUILDING]))


@dataclass(frozen=True)
class Predicted:
    """From now, when a deploy starts (0 once it has) and when it finishes."""

    start: timedelta
    finish: timedelta


def _left(times: StageTimes, deploy: Deploy, now: datetime) -> timedelta:
    """What is left of the stage a deploy past the queue is in, and of the ones after it."""
    state = State(deploy.state)
    spent = now - deploy.state_entered_at
    if state is State.BUILDING:
        landed = deploy.candidate_at is not None and deploy.candidate_sha == deploy.merge_sha
        # a build ahead began while it was queued; a merged one when it entered the state
        left = times.build - (now - deploy.candidate_at if landed and deploy.candidate_at else spent)
    elif state is State.BUILD_FAILED:
        left, state = times.build, State.BUILDING  # a person retries it, and it goes on
    else:
        left = times.of(state) - spent
    return max(left, timedelta(0)) + times.after(state)


def predict(times: StageTimes, now: datetime, window: int, in_flight: Deploy | None,
            queued: Sequence[Deploy]) -> tuple[timedelta, list[Predicted]]:
    """What is left of the deploy in flight, and when each queued deploy (in train order) starts and finishes,
    with up to `window` of them built ahead of their turn (`deploy.speculate`)."""
    left = _left(times, in_flight, now) if in_flight is not None else timedelta(0)
    merging_left = (times.of(State.MERGING) if in_flight is not None and in_flight.merge_sha is None
                    and in_flight.candidate_sha is None else timedelta(0))
    finish_before, commit_before = left, merging_left  # when the deploy ahead ends, and has its commit
    starts: list[timedelta] = [timedelta(0)]  # the deploy in flight started already
    predicted = []
    for position, deploy in enumerate(queued, start=1):
        start = finish_before
        starts.append(start)
        merged = start + times.of(State.MERGING)
        if window > 0:
            if deploy.candidate_at is not None and deploy.candidate_sha is not None:
                build_began = deploy.candidate_at - now  # in the past: negative
            else:
                # made once the deploy ahead has its commit and this one is within the window of the one in flight
                build_began = max(commit_before, starts[max(position - window, 0)])
            built = max(merged, build_began + times.build)
            commit_before = build_began
        else:
            built = merged + times.build
            commit_before = merged
        finish = built + times.after(State.BUILDING)
        predicted.append(Predicted(start, finish))
        finish_before = finish
    return left, predicted
