"""Due work under a lease: the part of the job loop that deploys and peas share.

Rows with a `due_at` in the past are claimed with a work lease (see `storage.leases`) and each is
advanced by its own step; the lease is renewed while the step runs and given back afterwards.
If another copy takes the lease meanwhile (this one stalled past it), the step is stopped.

A worker persists what it learnt with `save_held`: the row's fields, the audit records and the
notices of that change, in one transaction. A step whose outside system fails transiently is
tried again through the schedule (`Backoff`), never by sleeping: the row's `retry_since` and
`retry_attempts` say for how long it has been failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from flows.errors import Superseded
from flows.notices import SYSTEM, Notice
from flows.outbox import Outbox
from storage import leases
from storage.clock import utcnow
from storage.models import AuditEvent, Deploy, Pea

log = logging.getLogger(__name__)

CLAIM_LIMIT = 20


@dataclass(frozen=True)
class Backoff:
    """How a step whose outside system fails transiently is tried again: later, through the schedule, with
    exponential full-jitter delays, until `deadline` after the first failure."""

    deadline: timedelta = timedelta(minutes=2)
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(seconds=20)

    def delay(self, attempts: int) -> timedelta:
        """The wait before try number `attempts + 1`."""
        top = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return timedelta(seconds=random.uniform(self.base.total_seconds() / 2, top.total_seconds()))


@dataclass(frozen=True)
class Failing:
    """Where a transiently failing step stands: the values to save to try again later, or that it gave up."""

    values: dict[str, Any]
    exhausted: bool
    reason: str  # the error, and for how long it has failed


def failing(since: datetime | None, attempts: int, error: Exception, backoff: Backoff, now: datetime) -> Failing:
    """The step failed again with `error` (after `attempts` earlier failures in a row, since `since`)."""
    first = since or now
    tries = attempts + 1
    reason = f"{error} (still failing after {tries} attempt{'s' if tries > 1 else ''} over " \
             f"{(now - first).total_seconds():.0f}s)"
    if now - first >= backoff.deadline:
        return Failing({}, True, reason)
    return Failing({"retry_since": first, "retry_attempts": tries, "due_at": now + backoff.delay(tries)}, False,
                   reason)


NOT_FAILING: dict[str, Any] = {"retry_since": None, "retry_attempts": 0}
Held = TypeVar("Held", Deploy, Pea)  # the rows a worker holds under a work lease


@dataclass(frozen=True)
class Record:
    """An audit record a worker writes with a change: what it did, and the outside ids involved."""

    action: str
    detail: str | None = None
    ids: Mapping[str, Any] = field(default_factory=dict)


def audit_row(row: Deploy | Pea, record: Record, actor: str = SYSTEM) -> AuditEvent:
    """The audit event of `record`, about a deploy or a pea."""
    about: dict[str, Any] = ({"deploy_id": row.id, "train_id": row.train_id} if isinstance(row, Deploy)
                             else {"pea": row.name})
    return AuditEvent(actor=actor, action=record.action, detail=record.detail,
                      outside_ids={k: v for k, v in record.ids.items() if v is not None}, **about)


async def save_held(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, row: Held,
                    values: Mapping[str, Any], *, records: tuple[Record, ...] = (),
                    notices: tuple[Notice, ...] = ()) -> None:
    """Persist fields of a row a worker holds, with their audit records and notices, unless someone changed
    the row since it was read (its version)."""
    model = type(row)
    key = row.id if isinstance(row, Deploy) else row.name
    try:
        async with sessions() as session, session.begin():
            current = await session.get(model, key)
            if current is None or current.version != row.version:
                raise Superseded(f"{model.__tablename__.rstrip('s')} {key} changed")
            for name, value in values.items():
                setattr(current, name, value)
            session.add_all([audit_row(current, record) for record in records])
            await outbox.write(session, *notices)
            await session.flush()
            version = current.version
    except StaleDataError as exc:
        raise Superseded(f"{model.__tablename__.rstrip('s')} {key} changed") from exc
    for name, value in values.items():
        setattr(row, name, value)
    row.version = version
    if notices:
        outbox.wake()


class LeasedWork(Generic[Held]):
    """The rows of `model` that `where` selects (one train's), advanced by `advance` under work leases."""

    def __init__(self, model: type[Held], sessions: async_sessionmaker[AsyncSession], *,
                 owner: str, lease_ttl: timedelta, advance: Callable[[Any], Awaitable[None]],
                 where: tuple[sa.ColumnElement[bool], ...] = ()) -> None:
        self.model: type[Held] = model
        self.sessions = sessions
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.advance = advance
        self.where = where
        self.what = model.__tablename__.rstrip("s")

    async def run_due(self, limit: int = CLAIM_LIMIT) -> int:
        """Claim what is due and advance each row once, in parallel; how many ran."""
        async with self.sessions() as session, session.begin():
            due = await leases.claim_due(session, self.model, self.owner, self.lease_ttl, now=utcnow(), limit=limit,
                                         where=self.where)
        if due:
            await asyncio.gather(*(self._advance_leased(key) for key in due))
        return len(due)

    async def next_due(self) -> datetime | None:
        """The earliest time a row nobody is working on wants looking at, if any (in the past: it fell due
        while the pass ran). Rows under a live lease are left out: their worker looks at them."""
        owner, expires = leases.lease_columns(self.model)
        now = utcnow()
        async with self.sessions() as session:
            return await session.scalar(sa.select(sa.func.min(self.model.due_at)).where(
                self.model.due_at.is_not(None), sa.or_(owner.is_(None), expires < now), *self.where))

    async def _advance_leased(self, key: Any) -> None:
        keeper = asyncio.create_task(self._keep_lease(key, asyncio.current_task()))
        try:
            await self.advance(key)
        except Exception:
            log.exception("%s %s: step failed unexpectedly", self.what, key)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                async with self.sessions() as session, session.begin():
                    await leases.release(session, self.model, key, self.owner)

    async def _keep_lease(self, key: Any, step: asyncio.Task[Any] | None) -> None:
        """Renew the lease while the step runs; if another copy took it, stop the step."""
        while True:
            await asyncio.sleep(self.lease_ttl.total_seconds() / 3)
            async with self.sessions() as session, session.begin():
                kept = await leases.claim(session, self.model, key, self.owner, self.lease_ttl)
            if not kept and step is not None:
                log.warning("%s %s: work lease lost, stopping its step", self.what, key)
                step.cancel()
                return
