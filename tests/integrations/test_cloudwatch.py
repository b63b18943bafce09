"""The CloudWatch facade: boto3 over HTTP against the AWS emulator, on each protocol botocore may pick."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.cloudwatch import AccessDenied, AlarmState, CloudWatch
from integrations.outside import CallPolicy, TransientError
from sandbox.aws import AwsEmulator
from tests.fixtures.cloudwatch import PROTOCOLS, force_protocol

FAST = CallPolicy(timeout=5.0)


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[AwsEmulator]:
    emulator = AwsEmulator(step_interval=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=PROTOCOLS)
def cloudwatch(request: pytest.FixtureRequest, emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> CloudWatch:
    """The facade on the emulator, its boto3 client made to speak the test's protocol."""
    force_protocol(monkeypatch, tmp_path, request.param)
    return CloudWatch(region="eu-west-1", endpoint_url=emulator.url, policy=FAST, timeout=5.0)


async def test_alarm_states_reads_every_named_alarm_with_one_call_per_hundred(emulator: AwsEmulator,
                                                                              cloudwatch: CloudWatch) -> None:
    names = [f"app-{n:03d}" for n in range(250)]
    for name in names:
        emulator.create_alarm(name)
    emulator.set_alarm("app-007", "ALARM", "Threshold Crossed: 3 datapoints were greater than the threshold")
    before = dt.datetime.now(dt.UTC)

    states = await cloudwatch.alarm_states([*names, "never-made", "app-007"])

    assert emulator.describe_alarms_calls == 3  # 100 + 100 + 51 names; MaxRecords=100 keeps each whole
    assert list(states) == names  # the missing one is absent, the repeated one asked once
    alarming = states["app-007"]
    assert alarming == AlarmState(
        name="app-007", state="ALARM", reason="Threshold Crossed: 3 datapoints were greater than the threshold",
        updated_at=alarming.updated_at, arn="arn:aws:cloudwatch:eu-west-1:123456789012:alarm:app-007")
    assert alarming.alarming and not states["app-008"].alarming
    assert alarming.updated_at.tzinfo is not None and alarming.updated_at <= before + dt.timedelta(seconds=1)
    assert states["app-008"].state == "OK"


async def test_nothing_asked_costs_no_call_and_a_missing_alarm_is_none(emulator: AwsEmulator,
                                                                      cloudwatch: CloudWatch) -> None:
    assert await cloudwatch.alarm_states([]) == {}
    assert emulator.describe_alarms_calls == 0
    assert await cloudwatch.alarm_state("never-made") is None


async def test_check_access_is_one_small_call(emulator: AwsEmulator, cloudwatch: CloudWatch) -> None:
    await cloudwatch.check_access()

    assert emulator.calls == ["cloudwatch:DescribeAlarms"]


async def test_a_refused_permission_is_named(emulator: AwsEmulator, cloudwatch: CloudWatch) -> None:
    denied = json.dumps({"__type": "AccessDenied", "message": "User: arn:aws:sts::123456789012:assumed-role/fc "
                                                             "is not authorized to perform: cloudwatch:DescribeAlarms"})
    emulator.faults.fail_next(2, match="cloudwatch:", status=403, body=denied)

    with pytest.raises(AccessDenied, match=r"cloudwatch:DescribeAlarms is not allowed \(DescribeAlarms: AccessDenied"):
        await cloudwatch.check_access()
    with pytest.raises(AccessDenied):
        await cloudwatch.alarm_states(["app-5xx"])
    assert len(emulator.calls) == 2  # not retried


async def test_throttling_and_server_errors_are_transient_after_one_attempt(emulator: AwsEmulator,
                                                                            cloudwatch: CloudWatch) -> None:
    emulator.create_alarm("app-5xx")
    emulator.throttle(1, match="cloudwatch:DescribeAlarms|cloudwatch:\\(query\\)")
    emulator.server_error(1, match="cloudwatch:")

    for _ in range(2):
        with pytest.raises(TransientError):
            await cloudwatch.alarm_states(["app-5xx"])
    assert len(emulator.calls) == 2  # boto3 does not retry on its own
    assert (await cloudwatch.alarm_states(["app-5xx"]))["app-5xx"].state == "OK"


async def test_missing_credentials_are_refused(emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    facade = CloudWatch(region="eu-west-1", endpoint_url=emulator.url, policy=FAST)

    with pytest.raises(AccessDenied, match="no AWS credentials"):
        await facade.check_access()


async def test_endpoint_from_the_environment_is_honoured(emulator: AwsEmulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.url)
    emulator.create_alarm("app-5xx", state="ALARM")

    states = await CloudWatch(region="eu-west-1", policy=FAST).alarm_states(["app-5xx"])

    assert states["app-5xx"].state == "ALARM"
