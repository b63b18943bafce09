"""The CloudWatch emulator as boto3 sees it, on each wire protocol botocore may pick (JSON 1.0, CBOR, query).

The protocol is forced the way tests/fixtures/cloudwatch.py explains (a copy of botocore's own model
naming only that protocol, on AWS_DATA_PATH), so requests and answers go through botocore's real
serializers and parsers; one test also sends a CBOR request by hand with the headers botocore sends.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import cbor2
import pytest
import requests
from botocore.exceptions import ClientError

from sandbox.aws import AwsEmulator
from sandbox.cloudwatch import alarm_arn
from tests.fixtures.cloudwatch import PROTOCOLS, cloudwatch_client, force_protocol, resolved_protocol

METRIC = {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count", "Statistic": "Sum",
          "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 5.0,
          "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
          "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/app-web/0123456789abcdef"}]}


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[AwsEmulator]:
    emulator = AwsEmulator(step_interval=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=PROTOCOLS)
def cloudwatch(request: pytest.FixtureRequest, emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> Any:
    """A boto3 CloudWatch client on the emulator that speaks the protocol of the test's parameter."""
    force_protocol(monkeypatch, tmp_path, request.param)
    client = cloudwatch_client(emulator.url)
    assert resolved_protocol(client) == request.param
    return client


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_an_alarm_is_created_described_and_set(emulator: AwsEmulator, cloudwatch: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    cloudwatch.put_metric_alarm(AlarmName="app-5xx", AlarmDescription="5xx from the web targets", **METRIC,
                                Tags=[{"Key": "team", "Value": "checkout"}])

    alarm = cloudwatch.describe_alarms(AlarmNames=["app-5xx", "never-made"])["MetricAlarms"]
    assert len(alarm) == 1
    alarm = alarm[0]
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:app-5xx"
    assert (alarm["StateValue"], alarm["StateReason"]) == ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")
    assert alarm["StateUpdatedTimestamp"] >= before - dt.timedelta(seconds=1)
    assert alarm["StateUpdatedTimestamp"].tzinfo is not None
    for key, value in METRIC.items():
        assert alarm[key] == value, key
    assert alarm["AlarmDescription"] == "5xx from the web targets" and alarm["ActionsEnabled"] is True

    cloudwatch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 9 > 5",
                               StateReasonData=json.dumps({"version": "1.0"}))

    alarm = cloudwatch.describe_alarms(AlarmNames=["app-5xx"])["MetricAlarms"][0]
    assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", "Threshold Crossed: 9 > 5")
    assert json.loads(alarm["StateReasonData"]) == {"version": "1.0"}
    transitioned = alarm["StateTransitionedTimestamp"]
    cloudwatch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="still")
    again = cloudwatch.describe_alarms(AlarmNames=["app-5xx"])["MetricAlarms"][0]
    assert again["StateTransitionedTimestamp"] == transitioned  # the state did not change
    assert again["StateUpdatedTimestamp"] >= alarm["StateUpdatedTimestamp"]

    # an update replaces the configuration and leaves the state alone
    cloudwatch.put_metric_alarm(AlarmName="app-5xx", **{**METRIC, "Threshold": 10.0})
    alarm = cloudwatch.describe_alarms(AlarmNames=["app-5xx"])["MetricAlarms"][0]
    assert (alarm["Threshold"], alarm["StateValue"]) == (10.0, "ALARM")
    assert "AlarmDescription" not in alarm
    assert emulator.describe_alarms_calls == 4
    assert emulator.calls == ["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:SetAlarmState",
                              "cloudwatch:DescribeAlarms", "cloudwatch:SetAlarmState", "cloudwatch:DescribeAlarms",
                              "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"]


def test_describe_alarms_by_prefix_and_state_in_pages(emulator: AwsEmulator, cloudwatch: Any) -> None:
    for number in range(60):
        emulator.create_alarm(f"web-{number:02d}", state="ALARM" if number % 20 == 0 else "OK")
    emulator.create_alarm("worker-queue-depth")

    first = cloudwatch.describe_alarms(AlarmNamePrefix="web-")
    second = cloudwatch.describe_alarms(AlarmNamePrefix="web-", NextToken=first["NextToken"])

    names = [a["AlarmName"] for a in first["MetricAlarms"] + second["MetricAlarms"]]
    assert len(first["MetricAlarms"]) == 50  # MaxRecords defaults to 50
    assert names == [f"web-{n:02d}" for n in range(60)] and "NextToken" not in second
    assert first["CompositeAlarms"] == []
    alarming = cloudwatch.describe_alarms(StateValue="ALARM", MaxRecords=100)["MetricAlarms"]
    assert [a["AlarmName"] for a in alarming] == ["web-00", "web-20", "web-40"]
    full = cloudwatch.describe_alarms(AlarmNames=[f"web-{n:02d}" for n in range(60, 160)], MaxRecords=100)
    assert full["MetricAlarms"] == []
    assert cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])["MetricAlarms"] == []

    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNames=[f"a{n}" for n in range(101)])
    assert error_of(raised) == ("ValidationError", 400)
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNames=["web-00"], AlarmNamePrefix="web-")
    assert error_of(raised) == ("InvalidParameterCombination", 400)
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(NextToken="not-a-token")
    assert error_of(raised) == ("InvalidNextToken", 400)


def test_errors_carry_the_codes_clients_know(emulator: AwsEmulator, cloudwatch: Any) -> None:
    emulator.create_alarm("app-5xx")

    for call, expected in [
        (lambda: cloudwatch.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="r"),
         ("ResourceNotFound", 404)),
        (lambda: cloudwatch.set_alarm_state(AlarmName="app-5xx", StateValue="OK", StateReason="r",
                                            StateReasonData="{not json"), ("InvalidFormat", 400)),
        (lambda: cloudwatch.set_alarm_state(AlarmName="app-5xx", StateValue="RED", StateReason="r"),
         ("ValidationError", 400)),
    ]:
        with pytest.raises(ClientError) as raised:
            call()
        assert error_of(raised) == expected
    with pytest.raises(cloudwatch.exceptions.ResourceNotFound):  # the modelled exception class, too
        cloudwatch.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="r")
    assert emulator.alarm("app-5xx")["StateValue"] == "OK"


def test_deleting_alarms_passes_over_unknown_names(emulator: AwsEmulator, cloudwatch: Any) -> None:
    for name in ("a", "b", "c"):
        emulator.create_alarm(name)

    cloudwatch.delete_alarms(AlarmNames=["a", "nope", "c"])

    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["b"]


def test_faults_reach_each_protocol_in_its_own_shape(emulator: AwsEmulator, cloudwatch: Any) -> None:
    emulator.create_alarm("app-5xx")
    emulator.throttle(1, match="cloudwatch:")
    emulator.server_error(1, match="cloudwatch:")

    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNames=["app-5xx"])
    assert error_of(raised) == ("ThrottlingException", 400)
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNames=["app-5xx"])
    assert error_of(raised) == ("ServerException", 500)
    assert cloudwatch.describe_alarms(AlarmNames=["app-5xx"])["MetricAlarms"][0]["StateValue"] == "OK"


def test_a_cbor_request_sent_by_hand_is_answered_in_cbor(emulator: AwsEmulator) -> None:
    """What botocore sends for smithy-rpc-v2-cbor: the operation in the path, the protocol in a header."""
    emulator.create_alarm("app-5xx", state="ALARM", reason="Threshold Crossed")
    headers = {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor", "Accept": "application/cbor",
               "x-amzn-query-mode": "true",
               "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/monitoring/aws4_request, "
                                "SignedHeaders=host, Signature=0"}
    url = f"{emulator.url}/service/GraniteServiceVersion20100801/operation/DescribeAlarms"

    answer = requests.post(url, data=cbor2.dumps({"AlarmNames": ["app-5xx"]}), headers=headers, timeout=5)

    assert answer.status_code == 200
    assert answer.headers["smithy-protocol"] == "rpc-v2-cbor"
    assert answer.headers["Content-Type"].startswith("application/cbor")
    alarm = cbor2.loads(answer.content)["MetricAlarms"][0]
    assert (alarm["AlarmName"], alarm["StateValue"], alarm["StateReason"]) == ("app-5xx", "ALARM",
                                                                                "Threshold Crossed")
    assert isinstance(alarm["StateUpdatedTimestamp"], dt.datetime)
    assert b"\xc1\xfb" in answer.content  # timestamps as tag 1 (epoch seconds) around a float64

    missing = requests.post(url.replace("DescribeAlarms", "SetAlarmState"), headers=headers, timeout=5,
                            data=cbor2.dumps({"AlarmName": "nope", "StateValue": "OK", "StateReason": "r"}))
    assert missing.status_code == 404
    assert missing.headers["x-amzn-query-error"] == "ResourceNotFound;Sender"
    assert cbor2.loads(missing.content)["__type"] == "com.amazonaws.cloudwatch#ResourceNotFound"
    assert emulator.calls == ["cloudwatch:DescribeAlarms", "cloudwatch:SetAlarmState"]


def test_the_protocol_botocore_picks_by_itself_works(emulator: AwsEmulator) -> None:
    client = boto3.client("cloudwatch", endpoint_url=emulator.url, region_name="eu-west-1")
    emulator.create_alarm("app-5xx")

    assert resolved_protocol(client) in ("json", "smithy-rpc-v2-cbor", "query")
    assert client.describe_alarms(AlarmNames=["app-5xx"])["MetricAlarms"][0]["StateValue"] == "OK"


def test_python_controls_create_set_and_read_alarms(emulator: AwsEmulator) -> None:
    arn = emulator.create_alarm("app-5xx", state="INSUFFICIENT_DATA", Threshold=3.0)

    emulator.set_alarm("app-5xx", "ALARM", "Threshold Crossed: 4 > 3")

    assert arn == alarm_arn("app-5xx")
    alarm = emulator.alarm("app-5xx")
    assert (alarm["StateValue"], alarm["StateReason"], alarm["Threshold"]) == ("ALARM", "Threshold Crossed: 4 > 3",
                                                                               3.0)
    with pytest.raises(KeyError, match="create it first"):
        emulator.set_alarm("nope", "ALARM")
    with pytest.raises(ValueError, match="stateValue"):
        emulator.set_alarm("app-5xx", "RED")
    assert emulator.describe_alarms_calls == 0  # controls are not API calls


def test_the_call_log_names_the_alarms_and_the_tags(emulator: AwsEmulator, cloudwatch: Any) -> None:
    cloudwatch.put_metric_alarm(AlarmName="app-5xx", **METRIC, Tags=[{"Key": "team", "Value": "checkout"}])
    cloudwatch.describe_alarms(AlarmNames=["app-5xx", "other"])
    cloudwatch.describe_alarms(AlarmNamePrefix="app-")

    put, by_name, by_prefix = emulator.call_log
    assert (put.action, put.resources, put.request_tags) == (
        "cloudwatch:PutMetricAlarm", (alarm_arn("app-5xx"),), {"team": "checkout"})
    assert by_name.resources == (alarm_arn("app-5xx"), alarm_arn("other"))
    assert (by_prefix.action, by_prefix.resources, by_prefix.status) == ("cloudwatch:DescribeAlarms", (), 200)
    assert put.protocol == {"json": "json", "smithy-rpc-v2-cbor": "cbor", "query": "query"}[
        resolved_protocol(cloudwatch)]
