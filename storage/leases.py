"""Work leases and optimistic updates that hold on SQLite and PostgreSQL alike.

SQLite ignores `SELECT ... FOR UPDATE`, so reading a row and then writing it races. Every
claim here is therefore one conditional `UPDATE ... WHERE <lease is free, expired or ours>
RETURNING <key>`: the database decides, atomically, who wins (SQLite serialises writers; on
PostgreSQL a concurrent claimer waits for the row lock and re-checks the condition).

Each function runs in the session's current transaction and does not commit: a claim is
visible to other workers, and protects the row, once the caller commits. Keep those
transactions short: on SQLite an open write transaction blocks every other writer.

Claims and releases leave `version` alone: a lease is coordination, not content, so renewing
it never invalidates the copy its holder has loaded.

Models opt in by naming their lease columns in a `work_lease` class attribute
(`work_owner` / `work_expires_at` on deploys, peas and outbox streams).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.clock import as_naive_utc, utcnow
from storage.models import Base, Deploy, OutboxStream, Pea

Leased = TypeVar("Leased", Deploy, Pea, OutboxStream)
Key = Any  # a Deploy's id (int), a Pea's name (str), an outbox stream's key (str)


def _key(model: type[Base]) -> InstrumentedAttribute[Any]:
    (column,) = sa.inspect(model).primary_key
    key: InstrumentedAttribute[Any] = getattr(model, str(column.key))
    return key


def lease_columns(model: type[Base]) -> tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]]:
    """The (owner, expires) columns of a model's work lease."""
    return _lease(model)


def _lease(model: type[Base]) -> tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]]:
    owner, expires = model.work_lease  # type: ignore[attr-defined]
    return getattr(model, owner), getattr(model, expires)


def _claimable(model: type[Base], owner: str, now: datetime) -> sa.ColumnElement[bool]:
    lease_owner, lease_expires = _lease(model)
    return sa.or_(lease_owner.is_(None), lease_owner == owner, lease_expires < now)


def _take(model: type[Base], owner: str, ttl: timedelta, now: datetime) -> dict[str, Any]:
    lease_owner, lease_expires = _lease(model)
    return {lease_owner.key: owner, lease_expires.key: now + ttl}


async def claim(
    session: AsyncSession,
    model: type[Leased],
    key: Key,
    owner: str,
    ttl: timedelta,
    *,
    where: Iterable[sa.ColumnElement[bool]] = (),
    now: datetime | None = None,
) -> bool:
    """Take or renew the work lease on one row for `ttl`; False if another owner holds it or `where` fails."""
    now = utcnow() if now is None else as_naive_utc(now)
    pk = _key(model)
    statement = (
        sa.update(model)
        .where(pk == key, _claimable(model, owner, now), *where)
        .values(_take(model, owner, ttl, now))
        .returning(pk)
        .execution_options(synchronize_session="fetch")
    )
    return (await session.execute(statement)).first() is not None


async def claim_due(
    session: AsyncSession,
    model: type[Leased],
    owner: str,
    ttl: timedelta,
    *,
    now: datetime,
    limit: int,
    where: Iterable[sa.ColumnElement[bool]] = (),
) -> list[Key]:
    """Claim up to `limit` rows due by `now` whose lease is free, expired or ours, most overdue first.

    Finished rows have `due_at` NULL, so the `due_at` index keeps this from scanning history.
    The keys come back in no particular order.
    """
    now = as_naive_utc(now)
    pk = _key(model)
    conditions = (model.due_at <= now, _claimable(model, owner, now), *where)
    # Most looks find nothing due: a read says so without taking SQLite's one write lock (every train's lane
    # looks on each of its ticks).
    if await session.scalar(sa.select(pk).where(*conditions).limit(1)) is None:
        return []
    # SKIP LOCKED lets concurrent PostgreSQL claimers take disjoint rows instead of queueing on
    # the same ones; SQLite drops the clause and serialises the whole UPDATE instead.
    candidates = (
        sa.select(pk)
        .where(*conditions)
        .order_by(model.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        sa.update(model)
        .where(pk.in_(candidates), *conditions)
        .values(_take(model, owner, ttl, now))
        .returning(pk)
        .execution_options(synchronize_session="fetch")
    )
    return list((await session.execute(statement)).scalars())


async def release(session: AsyncSession, model: type[Leased], key: Key, owner: str) -> None:
    """Give up the work lease on one row, if `owner` holds it."""
    lease_owner, lease_expires = _lease(model)
    await session.execute(
        sa.update(model)
        .where(_key(model) == key, lease_owner == owner)
        .values({lease_owner.key: None, lease_expires.key: None})
        .execution_options(synchronize_session="fetch")
    )
