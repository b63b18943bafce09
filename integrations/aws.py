"""What the AWS facades share: a boto3 client that never retries by itself, and how AWS's errors are read.

Every AWS facade (`integrations.ecs`, `integrations.cloudwatch`) makes one attempt per call: botocore's
`max_attempts: 1` would still retry once (it counts retries; `total_max_attempts` counts attempts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.loaders import Loader, create_loader

from integrations.outside import OutsideError, PermanentError, TransientError

DEFAULT_REGION = "eu-west-1"
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "InternalServiceError",
    "InternalServiceFault", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException", "ServerException",
})
DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
})


class AccessDenied(PermanentError):
    """The credentials are refused, or lack a permission the call needs."""


_MAKING = threading.Lock()  # botocore's session and loader are not thread-safe; the clients they make are


@cache
def _models() -> Loader:
    """Where every session reads AWS's service models from: loaded once per process, not once per train (about
    13 MB for the ECS facade's)."""
    return create_loader()


def _session() -> boto3.session.Session:
    """A session of its own (its credentials and region resolved afresh), sharing the service models."""
    core = botocore.session.Session()
    core.register_component("data_loader", _models())
    return boto3.session.Session(botocore_session=core)


def region_of_environment() -> str | None:
    """The region AWS's own configuration gives (AWS_DEFAULT_REGION, the profile's), if any."""
    with _MAKING:
        region: str | None = _session().region_name
    return region


def make_client(service: str, *, region: str, endpoint_url: str | None, config: Config) -> Any:
    """A boto3 client of `service`, in a session of its own."""
    with _MAKING:
        return _session().client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def client_config(timeout: float) -> Config:
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=timeout,
                  read_timeout=timeout)


# What a service makes of one of its own error codes: (code, message, text, status) -> an error, or None.
Reading = Callable[[str, str, str, int | None], OutsideError | None]


def classify(exc: BaseException, system: str, read: Reading) -> OutsideError | None:
    """An AWS client's exception as an outside error: credentials, connections, throttling and 5xx alike for
    every service, then what `read` makes of the service's own codes, else permanent."""
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(system, "no AWS credentials")
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return TransientError(system, f"connection failed: {exc}")
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message") or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"{exc.operation_name}: {code}: {message}"
    if code in TRANSIENT_CODES or (status or 0) >= 500:
        return TransientError(system, text, status=status)
    if code in DENIED_CODES or status == 403:
        return AccessDenied(system, text, status=status)
    return read(code, message, text, status) or PermanentError(system, text, status=status)
