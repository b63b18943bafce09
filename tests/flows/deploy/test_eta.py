"""ETAs (DESIGN §8): each queued deploy's start and finish, from the train's typical stages, with the builds that
speculation hides counted as hidden."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flows.deploy.eta import DEFAULTS, STAGES, StageTimes, predict
from flows.deploy.machine import State
from flows.notices import YoureNext
from storage.clock import utcnow
from storage.models import Deploy
from tests.fixtures.world import Train

MIN = timedelta(minutes=1)
# A build as long as canary, gate and rollout together (the benchmark's workload): 1 + 6 + 1 + 1 + 1 + 0.
TIMES = StageTimes({State.MERGING: timedelta(0), State.BUILDING: 6 * MIN, State.CANARYING: MIN,
                    State.CANARY_CHECK: MIN, State.ROLLING_OUT: MIN, State.AWAITING_CONFIRMATION: timedelta(0)},
                   build=3 * MIN)
NOW = utcnow()


def _deploy(state: State, *, entered: timedelta = timedelta(0), **values: object) -> Deploy:
    return Deploy(state=state.value, state_entered_at=NOW - entered, **values)


def _finishes(window: int, queued: int, in_flight: Deploy | None = None) -> list[float]:
    _, predicted = predict(TIMES, NOW, window, in_flight, [_deploy(State.QUEUED) for _ in range(queued)])
    return [p.finish / MIN for p in predicted]


def test_with_no_history_a_deploy_takes_the_default_ten_minutes() -> None:
    times = StageTimes(dict(DEFAULTS), DEFAULTS[State.BUILDING])
    _, [only] = predict(times, NOW, 0, None, [_deploy(State.QUEUED)])
    assert only.start == timedelta(0) and only.finish == sum(DEFAULTS.values(), timedelta(0)) == 10 * MIN
    assert list(DEFAULTS) == list(STAGES)


def test_without_speculation_each_deploy_waits_for_its_own_build() -> None:
    assert _finishes(0, 3) == [6, 12, 18]  # build 3 + canary, gate, rollout 3


def test_built_ahead_every_build_but_the_first_is_hidden() -> None:
    # the second's build runs while the first canaries and rolls out: it adds nothing
    assert _finishes(1, 3) == [6, 9, 12]


def test_a_deploy_in_flight_counts_what_is_left_of_its_stage_and_the_ones_after() -> None:
    canarying = _deploy(State.CANARY_CHECK, entered=timedelta(seconds=30), merge_sha="m" * 40)
    left, [next_one] = predict(TIMES, NOW, 1, canarying, [_deploy(State.QUEUED)])
    assert left == timedelta(seconds=30) + MIN  # half the gate left, then the rollout
    # its build begins now (it has no candidate yet) and ends after its turn has come: 3 minutes, then 3 more
    assert next_one.start == left and next_one.finish == 6 * MIN


def test_a_candidate_already_building_is_counted_from_when_it_began() -> None:
    rolling_out = _deploy(State.ROLLING_OUT, merge_sha="m" * 40)
    began = _deploy(State.QUEUED, candidate_sha="c" * 40, candidate_at=NOW - 2 * MIN)
    _, [built] = predict(TIMES, NOW, 1, rolling_out, [began])
    assert built.start == MIN and built.finish == MIN + 3 * MIN  # one build minute left, hidden by the rollout


async def test_the_next_requester_hears_they_are_next_when_the_deploy_ahead_starts_its_rollout(
        make_train: Callable[..., Train]) -> None:
    train = make_train()
    first, second = [await train.request(train.new_pr(f"Change {n}")) for n in range(2)]
    await train.reaches(first.id, "canary_check", within=30)
    assert not [n for n in train.notifier.of(second.id) if isinstance(n, YoureNext)]
    await train.press(first.id, "Proceed")
    told = await train.notifier.told(YoureNext, deploy_id=second.id)
    assert told.starts_in > timedelta(0)
