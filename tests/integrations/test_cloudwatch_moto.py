"""The CloudWatch facade against moto's server: its requests are well formed for an emulator we did not write.

moto ignores MaxRecords (it answers every matching alarm at once), so batching is checked against our
emulator in test_cloudwatch.py; here only what the facade reads back is.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from integrations.cloudwatch import CloudWatch
from integrations.outside import CallPolicy

METRIC = {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count", "Statistic": "Sum",
          "Period": 60, "EvaluationPeriods": 1, "Threshold": 5.0, "ComparisonOperator": "GreaterThanThreshold"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_url: str, aws_credentials: None) -> str:
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    return moto_url


def facade(url: str) -> CloudWatch:
    return CloudWatch(region="eu-west-1", endpoint_url=url,
                      policy=CallPolicy(timeout=10.0))


async def test_alarm_states_on_moto(moto: str) -> None:
    client = boto3.client("cloudwatch", endpoint_url=moto, region_name="eu-west-1")
    for name in ("app-5xx", "app-latency", "worker-queue"):
        client.put_metric_alarm(AlarmName=name, **METRIC)
    client.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 9 > 5")

    states = await facade(moto).alarm_states(["app-5xx", "app-latency", "never-made"])

    assert sorted(states) == ["app-5xx", "app-latency"]
    assert (states["app-5xx"].state, states["app-5xx"].reason) == ("ALARM", "Threshold Crossed: 9 > 5")
    assert states["app-5xx"].arn.endswith(":alarm:app-5xx")
    assert states["app-latency"].state in ("OK", "INSUFFICIENT_DATA")
    assert states["app-5xx"].updated_at.tzinfo is not None


async def test_check_access_on_moto(moto: str) -> None:
    await facade(moto).check_access()
