"""What every integration shares: typed errors and calling a blocking client off the event loop.

Each facade classifies its vendor's exceptions into `TransientError` (worth trying again later:
5xx, throttling, timeouts, refused connections) or `PermanentError` (trying again cannot help),
and runs every vendor call through `OutsideCaller.call`: one attempt, in a thread of that outside
system's own bounded pool (so one slow system cannot starve the others), within a timeout that
counts from when the call starts running. Nothing here retries or sleeps: the caller decides when
to try again (the engine, through its schedule).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


@dataclass(frozen=True)
class CallPolicy:
    """How long one vendor call may run, and how many may run at once for one outside system."""

    timeout: float = 30.0  # seconds from the call's start, enforced on top of the client's own timeout
    workers: int = 8


class OutsideCaller:
    """Runs blocking vendor calls of one outside system in its own threads, one attempt each, with a timeout."""

    def __init__(
        self,
        system: str,
        classify: Callable[[BaseException], OutsideError | None],
        policy: CallPolicy | None = None,
        on_error: Callable[[str, OutsideError], None] | None = None,
    ) -> None:
        self.system = system
        self.classify = classify
        self.policy = policy or CallPolicy()
        self.on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=self.policy.workers, thread_name_prefix=f"outside-{system}")

    def _as_outside(self, exc: BaseException) -> OutsideError:
        if isinstance(exc, OutsideError):
            return exc
        if isinstance(exc, TimeoutError):
            return TransientError(self.system, f"no answer within {self.policy.timeout:g}s")
        known = self.classify(exc)
        if known is not None:
            return known
        if isinstance(exc, (ConnectionError, OSError)):
            return TransientError(self.system, f"connection failed: {exc}")
        return PermanentError(self.system, f"{type(exc).__name__}: {exc}")

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)` in a thread; `what` names the call in errors and logs.

        The timeout runs from the moment a thread takes the call, not while it waits for one: a
        burst of calls to a slow system queues behind its pool instead of timing out unstarted.
        """
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def run() -> T:
            loop.call_soon_threadsafe(started.set)
            return fn(*args, **kwargs)

        future = loop.run_in_executor(self._pool, run)
        waiting = asyncio.ensure_future(started.wait())
        try:
            either: set[asyncio.Future[Any]] = {waiting, future}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            return await asyncio.wait_for(asyncio.shield(future), timeout=self.policy.timeout)
        except asyncio.CancelledError:
            future.cancel()  # not started yet: it never will be
            raise
        except BaseException as exc:
            error = self._as_outside(exc)
            if self.on_error is not None:
                self.on_error(what, error)
            log.debug("%s %s failed: %s", self.system, what, error.message)
            raise error from exc
        finally:
            waiting.cancel()

    def close(self) -> None:
        """Let the threads go once their calls end (a call left running ends by its client's own timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Facade:
    """What every facade of an outside system has: its caller, and a way to let its threads go."""

    _caller: OutsideCaller

    def close(self) -> None:
        self._caller.close()
