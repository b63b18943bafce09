"""AWS CloudWatch alarms: the state of the alarms a deploy watches (boto3, off the loop).

`alarm_states` reads alarms by name with DescribeAlarms, 100 names per call (the API's limit, and
`MaxRecords` set to match: its default of 50 would cut a full batch short), following `NextToken`
all the same. An alarm that does not exist is absent from the answer: the caller decides what a
missing alarm means. `check_access` is the cheap call a start-up check makes to prove that
`cloudwatch:DescribeAlarms` is allowed.

botocore picks the wire protocol (JSON 1.0 or CBOR in current releases, query in older ones); the
facade does not depend on which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from integrations.aws import DEFAULT_REGION, AccessDenied, classify, client_config, make_client, region_of_environment
from integrations.outside import CallPolicy, Facade, NotFound, OutsideCaller, OutsideError

T = TypeVar("T")

SYSTEM = "AWS CloudWatch"
OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
BATCH = 100  # names per DescribeAlarms
__all__ = ["ALARM", "INSUFFICIENT_DATA", "OK", "AccessDenied", "AlarmState", "CloudWatch"]


@dataclass(frozen=True)
class AlarmState:
    """One metric alarm as DescribeAlarms reports it."""

    name: str
    state: str  # OK, ALARM or INSUFFICIENT_DATA
    reason: str
    updated_at: dt.datetime  # StateUpdatedTimestamp, timezone-aware
    arn: str

    @property
    def alarming(self) -> bool:
        return self.state == ALARM


def _alarm(data: dict[str, Any]) -> AlarmState:
    updated = data.get("StateUpdatedTimestamp")
    if not isinstance(updated, dt.datetime):
        updated = dt.datetime.fromtimestamp(float(updated or 0), dt.UTC)
    elif updated.tzinfo is None:
        updated = updated.replace(tzinfo=dt.UTC)
    return AlarmState(name=data["AlarmName"], state=data.get("StateValue", INSUFFICIENT_DATA),
                      reason=data.get("StateReason") or "", updated_at=updated, arn=data.get("AlarmArn", ""))


class CloudWatch(Facade):
    """Async facade over boto3's CloudWatch client; every call goes through `OutsideCaller`."""

    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None,
                 policy: CallPolicy | None = None, timeout: float = 20.0) -> None:
        self.region = region or region_of_environment() or DEFAULT_REGION
        self._client = make_client("cloudwatch", region=self.region, endpoint_url=endpoint_url,
                                   config=client_config(timeout))
        self._caller = OutsideCaller(SYSTEM, self._classify, policy)

    @staticmethod
    def _classify(exc: BaseException) -> OutsideError | None:
        def read(code: str, message: str, text: str, status: int | None) -> OutsideError | None:
            if code in ("ResourceNotFound", "ResourceNotFoundException"):
                return NotFound(SYSTEM, text, status=status)
            return None

        return classify(exc, SYSTEM, read)

    async def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        return await self._caller.call(what, fn, **kwargs)

    async def alarm_states(self, names: Iterable[str]) -> dict[str, AlarmState]:
        """The named metric alarms by name; names of alarms that do not exist are absent."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, AlarmState] = {}
        for start in range(0, len(wanted), BATCH):
            batch = wanted[start:start + BATCH]
            token: str | None = None
            while True:
                extra = {"NextToken": token} if token else {}
                answer = await self._call(f"describe alarms {', '.join(batch[:3])}{'...' if len(batch) > 3 else ''}",
                                          self._client.describe_alarms, AlarmNames=batch, MaxRecords=BATCH, **extra)
                for data in answer.get("MetricAlarms") or []:
                    found[data["AlarmName"]] = _alarm(data)
                token = answer.get("NextToken")
                if not token:
                    break
        return {name: found[name] for name in wanted if name in found}

    async def alarm_state(self, name: str) -> AlarmState | None:
        return (await self.alarm_states([name])).get(name)

    async def check_access(self) -> None:
        """One DescribeAlarms of at most one alarm: raises AccessDenied when `cloudwatch:DescribeAlarms`
        is not allowed (or the credentials are refused), with the permission named."""
        try:
            await self._call("check cloudwatch:DescribeAlarms", self._client.describe_alarms, MaxRecords=1)
        except AccessDenied as error:
            raise AccessDenied(SYSTEM, f"cloudwatch:DescribeAlarms is not allowed ({error.message})",
                               status=error.status) from error
