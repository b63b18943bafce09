"""What every integration shares: typed errors and calling a blocking client off the event loop.

Each facade classifies its vendor's exceptions into `TransientError` (worth retrying: 5xx,
throttling, timeouts, refused connections) or `PermanentError` (retrying cannot help), and
runs every vendor call through `OutsideCaller.call`, which retries transient failures with
exponential backoff until a deadline and then raises `RetriesExhausted`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_SECRETS = [
    (re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]+"), "***"),
    (re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]+"), "***"),
    (re.compile(r"(?i)\b(authorization|token|password|secret)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1\2***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"), "***"),
]


def redact(text: str) -> str:
    """Strip anything that looks like a credential from text bound for logs or people."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class OutsideError(Exception):
    """A failure of an outside system, named so that a person can act on it."""

    def __init__(self, system: str, message: str, *, status: int | None = None) -> None:
        self.system = system
        self.message = redact(message)
        self.status = status
        super().__init__(f"{system}: {self.message}")


class TransientError(OutsideError):
    """Worth retrying: 5xx, throttling, timeouts, connection errors."""


class PermanentError(OutsideError):
    """Retrying cannot help: bad credentials, missing objects, invalid requests."""


class NotFound(PermanentError):
    """The named object does not exist."""


class Conflict(PermanentError):
    """The request disagrees with the current state of the outside system."""


class RetriesExhausted(OutsideError):
    """A transient failure outlasted the retry deadline."""

    def __init__(self, last: TransientError, attempts: int, elapsed: float) -> None:
        self.last = last
        self.attempts = attempts
        self.elapsed = elapsed
        super().__init__(
            last.system,
            f"{last.message} (still failing after {attempts} attempts over {elapsed:.0f}s)",
            status=last.status,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often transient failures are retried."""

    deadline: float = 120.0  # seconds from the first attempt
    base_delay: float = 0.5
    max_delay: float = 15.0
    call_timeout: float = 30.0  # one vendor call, enforced on top of the client's own timeout

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff (AWS architecture blog), attempt counted from 1."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))


class OutsideCaller:
    """Runs blocking vendor calls in threads with a timeout, retrying transient failures."""

    def __init__(
        self,
        system: str,
        classify: Callable[[BaseException], OutsideError | None],
        policy: RetryPolicy | None = None,
        on_error: Callable[[str, OutsideError], None] | None = None,
    ) -> None:
        self.system = system
        self.classify = classify
        self.policy = policy or RetryPolicy()
        self.on_error = on_error

    def _as_outside(self, exc: BaseException) -> OutsideError:
        if isinstance(exc, OutsideError):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return TransientError(self.system, "timed out")
        known = self.classify(exc)
        if known is not None:
            return known
        if isinstance(exc, (ConnectionError, OSError)):
            return TransientError(self.system, f"connection failed: {exc}")
        return PermanentError(self.system, f"{type(exc).__name__}: {exc}")

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)` in a thread; `what` names the call in errors and logs."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(fn, *args, **kwargs), timeout=self.policy.call_timeout
                )
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                error = self._as_outside(exc)
                if self.on_error is not None:
                    self.on_error(what, error)
                if not isinstance(error, TransientError):
                    raise error from exc
                elapsed = time.monotonic() - started
                pause = self.policy.delay(attempt)
                if elapsed + pause > self.policy.deadline:
                    raise RetriesExhausted(error, attempt, elapsed) from exc
                log.warning("%s %s failed (attempt %d), retrying in %.1fs: %s",
                            self.system, what, attempt, pause, error.message)
                await asyncio.sleep(pause)
