"""What the AWS facades share: a boto3 client that never retries by itself, and how AWS's errors are read.

Every AWS facade (`integrations.ecs`, `integrations.cloudwatch`) makes one attempt per call: botocore's
`max_attempts: 1` would still retry once (it counts retries; `total_max_attempts` counts attempts).
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

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
