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

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from integrations.outside import NotFound, OutsideCaller, OutsideError, PermanentError, RetryPolicy, TransientError

T = TypeVar("T")

SYSTEM = "AWS CloudWatch"
DEFAULT_REGION = "eu-west-1"
OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
BATCH = 100  # names per DescribeAlarms
_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
                    "InternalServiceError", "InternalServiceFault", "InternalFailure", "ServiceUnavailable",
                    "ServiceUnavailableException", "ServerException"}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                 "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException"}


class AccessDenied(PermanentError):
    """The credentials are refused, or lack a permission the call needs."""


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


class CloudWatch:
    """Async facade over boto3's CloudWatch client; every call goes through `OutsideCaller`."""

    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None,
                 policy: RetryPolicy | None = None, timeout: float = 20.0) -> None:
        self._session = boto3.session.Session()
        self.region = region or self._session.region_name or DEFAULT_REGION
        # one attempt per call: OutsideCaller is the one retry loop (see integrations.ecs)
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=timeout,
                        read_timeout=timeout)
        self._client = self._session.client("cloudwatch", region_name=self.region, endpoint_url=endpoint_url,
                                            config=config)
        self._caller = OutsideCaller(SYSTEM, self._classify, policy)

    @staticmethod
    def _classify(exc: BaseException) -> OutsideError | None:
        if isinstance(exc, NoCredentialsError):
            return AccessDenied(SYSTEM, "no AWS credentials")
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return TransientError(SYSTEM, f"connection failed: {exc}")
        if not isinstance(exc, ClientError):
            return None
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{exc.operation_name}: {code}: {message}"
        if code in _TRANSIENT_CODES or (status or 0) >= 500:
            return TransientError(SYSTEM, text, status=status)
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(SYSTEM, text, status=status)
        if code in ("ResourceNotFound", "ResourceNotFoundException"):
            return NotFound(SYSTEM, text, status=status)
        return PermanentError(SYSTEM, text, status=status)

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
