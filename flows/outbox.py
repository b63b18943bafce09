"""Durable notifications: notices are written with the change that causes them, and delivered at least once.

`Outbox.write(session, *notices)` queues notices for every sink inside the caller's transaction.
`Outbox.start()` runs one delivery loop per sink, shared by deploys, peas and trains (so a slow sink, GitHub
hanging say, never delays another's messages): it leases due streams (any copy may deliver what a dead copy
left), hands each stream's notices in order to its sink, and records how far the sink got. A sink that fails is
retried with backoff through the stream's `due_at`, never by sleeping; a crash between a sink's
send and the record of it may repeat one message, and loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.notices import Notice, decode, encode
from storage import outbox as store
from storage.clock import utcnow

log = logging.getLogger(__name__)

SETTLE = 0.1  # seconds a wake-up waits, so the notices of one step and its transition go out together
POLL = 1.0  # seconds between looks for streams other copies wrote or left behind
CONCURRENCY = 4  # streams of one sink delivered at once: Slack's rate limits are per method and workspace
BACKOFF_BASE = 0.5
BACKOFF_CAP = 5.0  # a sink that failed is tried again at least this often, so it resumes soon after an outage
CLOSE_GRACE = 5.0


class DeliveryFailed(Exception):
    """A sink could not deliver: the first `done` notices went out; the rest are tried again later."""

    def __init__(self, message: str, *, done: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.done = done
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivered:
    """What a sink did with a stream's notices: all of them went out; `again_in` asks to be called again
    (with whatever is new by then, perhaps nothing) after that many seconds, e.g. for a held-back card edit."""

    again_in: float | None = None


class Sink(Protocol):
    """A surface that tells people: it delivers the notices of one stream, in order."""

    @property
    def name(self) -> str: ...

    async def deliver(self, stream: str, notices: Sequence[Notice]) -> Delivered:
        """Deliver `notices` (perhaps none: a follow-up asked for with `again_in`); DeliveryFailed if it cannot."""
        ...


def backoff(attempts: int, *, retry_after: float | None = None) -> float:
    """Seconds before the next try after `attempts` failures in a row (full jitter), or what the sink asked."""
    if retry_after is not None:
        return retry_after
    return random.uniform(BACKOFF_BASE / 2, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempts))


class Outbox:
    """The outbox of one process: where flows write notices, and the loop that delivers them to the sinks."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sinks: Sequence[str], *, owner: str,
                 lease_ttl: timedelta, poll: float = POLL, settle: float = SETTLE,
                 on_failure: Callable[[str, str], None] | None = None) -> None:
        self.sessions = sessions
        self.sinks = tuple(sinks)  # the names notices are written for; each must have a delivering Sink
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.settle = settle
        self.on_failure = on_failure  # (sink, error): count it
        self._delivering: dict[str, Sink] = {}
        self._woken: dict[str, asyncio.Event] = {}  # by sink: each loop's wake-up
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def write(self, session: AsyncSession, *notices: Notice) -> None:
        """Queue `notices` for every sink, in the caller's transaction (the loop is woken by `wake`)."""
        now = utcnow()
        for notice in notices:
            kind, payload = encode(notice)
            await store.append(session, self.sinks, notice.stream, kind, payload, now=now)

    def wake(self) -> None:
        """Something was written: deliver it soon (after `settle`)."""
        for woken in self._woken.values():
            woken.set()

    # -- the loop -------------------------------------------------------------------------------
    def start(self, sinks: Sequence[Sink]) -> None:
        """Deliver to `sinks` from now on, in the running event loop."""
        self._delivering = {sink.name: sink for sink in sinks}
        missing = set(self.sinks) - set(self._delivering)
        if missing:
            log.warning("outbox: notices for %s wait: no sink delivers them in this process", sorted(missing))
        self._stopping = False
        self._woken = {name: asyncio.Event() for name in self._delivering}
        self._slots = {name: asyncio.Semaphore(CONCURRENCY) for name in self._delivering}
        self._tasks = [asyncio.create_task(self._loop(name)) for name in self._delivering]

    async def stop(self, grace: float = CLOSE_GRACE) -> None:
        """Deliver what is due for up to `grace` seconds, then stop; what is left waits in the database."""
        if not self._tasks:
            return
        self._stopping = True
        self.wake()
        _, late = await asyncio.wait(self._tasks, timeout=grace)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, sink: str) -> None:
        woken = self._woken[sink]
        while True:
            try:
                ran = await self.run_due((sink,))
                if self._stopping and not ran:
                    return
                wait = 0.0 if ran else await self._idle_for((sink,))
            except Exception:
                log.exception("outbox: delivery pass of %s failed", sink)
                wait = self.poll
                if self._stopping:
                    return
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), wait)
                if woken.is_set() and not self._stopping:
                    await asyncio.sleep(self.settle)
            woken.clear()

    async def _idle_for(self, sinks: Sequence[str]) -> float:
        """Until the next due stream, at most `poll` (other copies write too, and may die)."""
        async with self.sessions() as session:
            due = await store.next_due(session, list(sinks))
        if due is None:
            return self.poll
        return max(0.0, min(self.poll, (due - utcnow()).total_seconds()))

    async def run_due(self, sinks: Sequence[str] | None = None) -> int:
        """Deliver every stream of `sinks` (default: every sink this process delivers) that is due, each once;
        how many were delivered or tried."""
        names = [name for name in (self._delivering if sinks is None else sinks) if name in self._delivering]
        if not names:
            return 0
        now = utcnow()
        async with self.sessions() as session, session.begin():
            claimed = await store.claim_due(session, names, self.owner, self.lease_ttl, now=now,
                                            limit=CONCURRENCY * 4)
        await asyncio.gather(*(self._deliver(pending) for pending in claimed))
        return len(claimed)

    async def _deliver(self, pending: store.Pending) -> None:
        sink = self._delivering[pending.sink]
        notices: list[Notice] = []
        ids: list[int] = []
        for notice_id, kind, payload in pending.notices:
            try:
                notices.append(decode(kind, payload))
                ids.append(notice_id)
            except Exception:  # written by a newer release, or a shape this one cannot read: never block the stream
                log.exception("outbox: cannot read %s notice %s of %s; dropping it", kind, notice_id, pending.stream)
                async with self.sessions() as session, session.begin():
                    await store.finish(session, pending, self.owner, [notice_id], again_at=utcnow())
                return
        try:
            async with self._slots[pending.sink]:
                done = await sink.deliver(pending.stream, notices)
        except DeliveryFailed as exc:
            await self._failed(pending, ids[: exc.done], str(exc), exc.retry_after)
            return
        except Exception as exc:
            log.exception("outbox: %s failed unexpectedly on %s", sink.name, pending.stream)
            await self._failed(pending, [], f"{type(exc).__name__}: {exc}", None)
            return
        again = None if done.again_in is None else utcnow() + timedelta(seconds=done.again_in)
        async with self.sessions() as session, session.begin():
            await store.finish(session, pending, self.owner, ids, again_at=again)

    async def _failed(self, pending: store.Pending, delivered: list[int], error: str,
                      retry_after: float | None) -> None:
        delay = backoff(pending.attempts, retry_after=retry_after)
        if pending.attempts == 0:
            log.warning("outbox: %s cannot deliver %s now (%s); trying again", pending.sink, pending.stream, error)
        if self.on_failure is not None:
            self.on_failure(pending.sink, error)
        async with self.sessions() as session, session.begin():
            await store.fail(session, pending, self.owner, delivered,
                             retry_at=utcnow() + timedelta(seconds=delay), error=error)

    async def next_due(self) -> datetime | None:
        async with self.sessions() as session:
            return await store.next_due(session, self.sinks)
