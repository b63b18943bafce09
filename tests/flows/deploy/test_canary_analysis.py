"""Canary analysis (DESIGN §9), through the emulators: the watched CloudWatch alarms roll a bad deploy back by
themselves, a missing alarm needs people, and a healthy canary proceeds by itself after its bake."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flows.deploy.machine import Event, State
from flows.notices import AlarmsRead, Moved
from flows.views import DeployView
from tests.fixtures.cloudwatch import cloudwatch_client
from tests.fixtures.flowchart import takes, took_what_it_declares  # noqa: F401
from tests.fixtures.world import Train, eventually

S, E = State, Event

WATCHED = {"alarms": ["app-5xx-rate"]}
WEB_ALARM = {"web": {"service": "app-web", "container": "app", "alarms": ["web-canary-5xx"]},
             "worker": {"service": "app-worker", "container": "app"}}


def _watched(train: Train, *names: str) -> None:
    for name in names:
        train.sandbox.aws.create_alarm(name)


@takes((S.CANARY_CHECK, E.ALARM), (S.ROLLING_BACK, E.UNDONE))
async def test_an_alarm_in_alarm_at_the_gate_rolls_the_deploy_back_by_itself_saying_why(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=WATCHED, processes=WEB_ALARM)
    _watched(train, "app-5xx-rate", "web-canary-5xx")
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Serves errors"))
    await train.reaches(deploy.id, "canary_check", within=30)
    read = await train.notifier.told(AlarmsRead, deploy_id=deploy.id)
    assert dict(read.states) == {"app-5xx-rate": "OK", "web-canary-5xx": "OK"}  # the train's, then web's own
    gate = await train.deploy(deploy.id)
    assert {p: t["canary_health"][:2] for p, t in gate.targets.items()} == {"web": [1, 1], "worker": [1, 1]}

    train.sandbox.aws.set_alarm("web-canary-5xx", "ALARM", "Threshold Crossed: 1 datapoint [12.0] > 5.0")
    rolled = await train.reaches(deploy.id, "rolled_back", within=30)
    assert rolled.outcome_reason == "alarm web-canary-5xx is in ALARM: Threshold Crossed: 1 datapoint [12.0] > 5.0"
    assert rolled.rollback_from == "canary_check" and rolled.revert_sha
    await train.notifier.told(Moved, deploy_id=deploy.id, event=Event.ALARM)
    await train.assert_restored(before)


async def _rolling_out_watched(make_train: Callable[..., Train], title: str) -> tuple[Train, DeployView, dict]:
    """A train watched by `app-5xx-rate` (OK), and a deploy of a new PR rolling out, ECS watching the alarm too
    and baking the rollout (it stays in progress); the snapshot of before the deploy."""
    train = make_train(deploy=WATCHED)
    _watched(train, "app-5xx-rate")
    before = train.snapshot()
    train.sandbox.aws.alarm_bake_steps = 10_000
    deploy = await train.request(train.new_pr(title))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "rolling_out", within=30)

    async def watched_by_ecs() -> dict | None:
        configured = train.sandbox.aws.service("production", "app-web")["deploymentConfiguration"]
        return configured.get("alarms")
    assert await eventually(watched_by_ecs, what="the rolling update") == {
        "alarmNames": ["app-5xx-rate"], "enable": True, "rollback": True}
    return train, deploy, before


@takes((S.ROLLING_OUT, E.ALARM))
async def test_an_alarm_during_the_rollout_rolls_it_back_and_ecs_watches_the_same_alarms(
        make_train: Callable[..., Train]) -> None:
    train, deploy, before = await _rolling_out_watched(make_train, "Breaks under load")

    train.sandbox.aws.step_interval = None  # ECS's clock stops: the train sees the alarm before ECS does
    train.sandbox.aws.set_alarm("app-5xx-rate", "ALARM", "Threshold Crossed")
    await train.reaches(deploy.id, "rolling_back")
    train.sandbox.aws.step_interval = train.sandbox.spec.step_interval
    rolled = await train.reaches(deploy.id, "rolled_back", within=30)
    assert rolled.rollback_from == "rolling_out"
    assert "app-5xx-rate" in (rolled.outcome_reason or "") and "ALARM" in (rolled.outcome_reason or "")
    train.assert_configured_as(before)  # ECS's own alarm rollback and ours agree: the alarms are off again


@takes((S.AWAITING_CONFIRMATION, E.ALARM))
async def test_an_alarm_after_the_rollout_rolls_back_until_the_deploy_is_done(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=WATCHED)
    _watched(train, "app-5xx-rate")
    deploy = await train.request(train.new_pr("Fails later"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)
    train.sandbox.aws.set_alarm("app-5xx-rate", "ALARM", "Threshold Crossed")
    rolled = await train.reaches(deploy.id, "rolled_back", within=30)
    assert rolled.rollback_from == "awaiting_confirmation"
    assert rolled.outcome_reason == "alarm app-5xx-rate is in ALARM: Threshold Crossed"


async def test_insufficient_data_is_shown_but_does_not_stop_a_deploy(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy=WATCHED)
    train.sandbox.aws.create_alarm("app-5xx-rate", state="INSUFFICIENT_DATA", reason="no datapoints yet")
    deploy = await train.request(train.new_pr("Quiet canary"))
    await train.reaches(deploy.id, "canary_check", within=30)
    read = await train.notifier.told(AlarmsRead, deploy_id=deploy.id)
    assert dict(read.states) == {"app-5xx-rate": "INSUFFICIENT_DATA"}
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)
    await train.press(deploy.id, "Done")
    await train.reaches(deploy.id, "completed")


@takes((S.CANARY_CHECK, E.ALARM_MISSING), (S.CANARY_CHECK, E.RETRY))
async def test_an_alarm_that_does_not_exist_makes_the_deploy_need_attention_naming_it(
        make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"alarms": ["app-5xx-rate", "app-typo"]})
    _watched(train, "app-5xx-rate")
    deploy = await train.request(train.new_pr("Watched by a typo"))
    stuck = await train.needing_attention(deploy.id, within=30)
    assert stuck.state == "canary_check" and "alarm app-typo does not exist" in (stuck.attention or "")

    _watched(train, "app-typo")  # created: Retry looks again
    await train.press(deploy.id, "Retry")

    async def watched_again() -> bool:
        found = await train.deploy(deploy.id)
        return not found.needs_attention and (found.alarm_states or {}).get("app-typo") == "OK"
    await eventually(watched_again, what="the alarms read again")


@pytest.mark.parametrize("state", [
    pytest.param("rolling_out", marks=takes((S.ROLLING_OUT, E.ALARM_MISSING), (S.ROLLING_OUT, E.RETRY))),
    pytest.param("awaiting_confirmation",
                 marks=takes((S.AWAITING_CONFIRMATION, E.ALARM_MISSING), (S.AWAITING_CONFIRMATION, E.RETRY))),
])
async def test_an_alarm_deleted_later_makes_the_deploy_need_attention_until_it_is_back(
        make_train: Callable[..., Train], state: str) -> None:
    train = make_train(deploy=WATCHED)
    _watched(train, "app-5xx-rate")
    if state == "rolling_out":
        train.sandbox.aws.alarm_bake_steps = 10_000  # the rollout stays in progress while ECS bakes it
    deploy = await train.request(train.new_pr("Loses its alarm"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.press(deploy.id, "Proceed")
    await train.reaches(deploy.id, state, within=30)
    cloudwatch_client(train.sandbox.env()["AWS_ENDPOINT_URL"]).delete_alarms(AlarmNames=["app-5xx-rate"])

    stuck = await train.needing_attention(deploy.id, within=30)
    assert stuck.state == state and "alarm app-5xx-rate does not exist" in (stuck.attention or "")
    train.sandbox.aws.alarm_bake_steps = 0
    _watched(train, "app-5xx-rate")
    await train.press(deploy.id, "Retry")
    if state == "awaiting_confirmation":
        await train.press(deploy.id, "Done")
    else:
        await train.reaches(deploy.id, "awaiting_confirmation", within=30)
        await train.press(deploy.id, "Done")
    await train.reaches(deploy.id, "completed")


@takes((S.CANARY_CHECK, E.BAKED))
async def test_a_healthy_canary_proceeds_by_itself_after_its_bake(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={**WATCHED, "canary_bake": "1s"})
    _watched(train, "app-5xx-rate")
    deploy = await train.request(train.new_pr("Healthy"))
    baked = await train.reaches(deploy.id, "rolling_out", "awaiting_confirmation", within=30)
    assert baked.outcome_reason is None
    told = await train.notifier.told(Moved, deploy_id=deploy.id, event=Event.BAKED)
    assert told.reason == "proceeded after 1s healthy" and not told.by_person


async def test_the_bake_waits_while_an_alarm_has_no_data(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={**WATCHED, "canary_bake": "1s"})
    train.sandbox.aws.create_alarm("app-5xx-rate", state="INSUFFICIENT_DATA")
    deploy = await train.request(train.new_pr("Not proven healthy"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.notifier.told(AlarmsRead, deploy_id=deploy.id)
    train.sandbox.aws.set_alarm("app-5xx-rate", "OK")  # healthy from now: the bake starts here
    await train.reaches(deploy.id, "rolling_out", "awaiting_confirmation", within=30)


async def test_an_alarm_during_the_bake_rolls_back_instead_of_proceeding(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={**WATCHED, "canary_bake": "30s"})
    _watched(train, "app-5xx-rate")
    deploy = await train.request(train.new_pr("Bad while baking"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.notifier.told(AlarmsRead, deploy_id=deploy.id)
    train.sandbox.aws.set_alarm("app-5xx-rate", "ALARM", "Threshold Crossed")
    rolled = await train.reaches(deploy.id, "rolled_back", within=30)
    assert rolled.rollback_from == "canary_check" and "app-5xx-rate is in ALARM" in (rolled.outcome_reason or "")


async def test_a_deploy_watched_by_a_missing_alarm_can_still_be_rolled_back(make_train: Callable[..., Train]) -> None:
    train = make_train(deploy={"alarms": ["app-typo"]})
    before = train.snapshot()
    deploy = await train.request(train.new_pr("Watched by nothing"))
    await train.needing_attention(deploy.id, within=30)
    await train.press(deploy.id, "Roll back")
    await train.reaches(deploy.id, "rolled_back", within=30)
    await train.assert_restored(before)


async def test_the_alarms_of_a_two_process_deploy_cost_one_describe_alarms_a_look(
        make_train: Callable[..., Train]) -> None:
    processes = {"web": {"service": "app-web", "container": "app", "alarms": ["web-canary-5xx"]},
                 "worker": {"service": "app-worker", "container": "app", "alarms": ["worker-errors"]}}
    train = make_train(deploy=WATCHED, processes=processes)
    _watched(train, "app-5xx-rate", "web-canary-5xx", "worker-errors")
    deploy = await train.request(train.new_pr("Watched three times over"))
    await train.reaches(deploy.id, "canary_check", within=30)
    await train.notifier.told(AlarmsRead, deploy_id=deploy.id)
    calls, looks = train.sandbox.aws.describe_alarms_calls, train.engine.steps_run

    async def looked_ten_times() -> bool:
        return train.engine.steps_run - looks >= 10
    await eventually(looked_ten_times, what="ten looks at the gate")
    # one batched call per look (not one per alarm: that would be three); a look may be under way as we read
    assert train.sandbox.aws.describe_alarms_calls - calls <= train.engine.steps_run - looks + 1


async def test_a_rollout_ecs_stops_for_its_own_alarm_is_rolled_back_like_a_circuit_breaker_failure(
        make_train: Callable[..., Train]) -> None:
    train, deploy, before = await _rolling_out_watched(make_train, "Breaks while nobody looks")
    # The train is down while the alarm fires and clears again: only ECS saw it, and stopped the rollout.
    await train.engine.stop()
    train.sandbox.aws.set_alarm("app-5xx-rate", "ALARM", "Threshold Crossed")

    async def stopped_by_ecs() -> bool:
        deployments = train.sandbox.aws.service("production", "app-web")["deployments"]
        return any(d.get("rolloutState") == "FAILED" for d in deployments)
    await eventually(stopped_by_ecs, what="ECS's deployment alarm")
    train.sandbox.aws.set_alarm("app-5xx-rate", "OK", "Threshold no longer crossed")

    back = make_train(database=train.database, deploy=WATCHED)
    rolled = await back.reaches(deploy.id, "rolled_back", within=30)
    assert rolled.rollback_from == "rolling_out"
    assert "alarm app-5xx-rate" in (rolled.outcome_reason or "") and "ECS" in (rolled.outcome_reason or "")
    await back.notifier.told(Moved, deploy_id=deploy.id, event=Event.ROLLOUT_FAILED)
    await back.assert_restored(before)
