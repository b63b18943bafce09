"""The outbox: notices waiting for delivery, kept in streams that one copy at a time delivers in order.

A writer appends a notice for each sink inside the transaction of the change it reports, so a
change and what people must be told about it are committed together or not at all. Each
(sink, stream) pair has one `OutboxStream` row: it carries the work lease (`storage.leases`), the
time the stream wants delivering and a `seq` bumped by every append. A deliverer claims due
streams, reads their notices in `id` order, and either finishes (deleting what it delivered and,
when `seq` shows nothing new came meanwhile, clearing `due_at`) or fails (backing off).

The stream row is the mutex: the lease is taken by one conditional UPDATE, so on SQLite and
PostgreSQL alike two copies never deliver the same stream at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage import leases
from storage.clock import utcnow
from storage.models import OutboxNotice, OutboxStream

BATCH = 20  # notices of one stream handed to a sink at once


def stream_key(sink: str, stream: str) -> str:
    return f"{sink}|{stream}"


@dataclass(frozen=True)
class Pending:
    """What a deliverer read of one claimed stream: its notices in order and the `seq` it saw."""

    key: str
    sink: str
    stream: str
    seq: int
    attempts: int
    notices: tuple[tuple[int, str, dict[str, Any]], ...]  # (id, kind, payload)


async def append(session: AsyncSession, sinks: Sequence[str], stream: str, kind: str, payload: dict[str, Any],
                 *, now: datetime | None = None) -> None:
    """Queue one notice for each sink, in the caller's transaction; the stream becomes due at once
    (unless it is backing off after failures: then it keeps its retry time)."""
    now = now or utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for sink in sinks:
        key = stream_key(sink, stream)
        session.add(OutboxNotice(stream_id=key, kind=kind, payload=payload, created_at=now))
        statement = insert(OutboxStream).values(id=key, sink=sink, stream=stream, seq=1, attempts=0, due_at=now)
        await session.execute(statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"seq": OutboxStream.seq + 1,
                  "due_at": sa.case((OutboxStream.attempts > 0, OutboxStream.due_at), else_=now)},
        ))
    await session.flush()


async def claim_due(session: AsyncSession, sinks: Sequence[str], owner: str, ttl: Any, *, now: datetime,
                    limit: int) -> list[Pending]:
    """Lease up to `limit` due streams of `sinks` and read each one's first notices (a delivery stays short,
    well within the lease; the rest come next time)."""
    keys = await leases.claim_due(session, OutboxStream, owner, ttl, now=now, limit=limit,
                                  where=(OutboxStream.sink.in_(list(sinks)),))
    if not keys:
        return []
    streams = (await session.scalars(sa.select(OutboxStream).where(OutboxStream.id.in_(keys)))).all()
    rows = (await session.execute(
        sa.select(OutboxNotice.stream_id, OutboxNotice.id, OutboxNotice.kind, OutboxNotice.payload)
        .where(OutboxNotice.stream_id.in_(keys)).order_by(OutboxNotice.id)
    )).all()
    by_stream: dict[str, list[tuple[int, str, dict[str, Any]]]] = {key: [] for key in keys}
    for row in rows:
        if len(by_stream[row.stream_id]) < BATCH:
            by_stream[row.stream_id].append((row.id, row.kind, row.payload))
    return [Pending(s.id, s.sink, s.stream, s.seq, s.attempts, tuple(by_stream[s.id])) for s in streams]


async def finish(session: AsyncSession, pending: Pending, owner: str, delivered: Sequence[int], *,
                 again_at: datetime | None) -> None:
    """Forget the delivered notices and give the stream back: due again at `again_at` (or when notices
    came meanwhile, at once), else idle."""
    if delivered:
        await session.execute(sa.delete(OutboxNotice).where(OutboxNotice.id.in_(list(delivered))))
    mine = sa.and_(OutboxStream.id == pending.key, OutboxStream.work_owner == owner)
    untouched = sa.and_(mine, OutboxStream.seq == pending.seq)
    left = len(pending.notices) - len(delivered)
    # Bulk statements: the ORM must not try to match them against loaded rows.
    bulk = {"synchronize_session": False}
    if again_at is None and left == 0:
        # Nothing new came (same seq) and nothing is left: the stream row goes, the next notice makes it anew.
        gone = await session.scalar(sa.delete(OutboxStream).where(untouched).returning(OutboxStream.id)
                                    .execution_options(**bulk))
        if gone is not None:
            return
    else:
        await session.execute(sa.update(OutboxStream).where(untouched).values(due_at=again_at or utcnow())
                              .execution_options(**bulk))
    await session.execute(sa.update(OutboxStream).where(mine).values(
        attempts=0, last_error=None, work_owner=None, work_expires_at=None).execution_options(**bulk))


async def fail(session: AsyncSession, pending: Pending, owner: str, delivered: Sequence[int], *,
               retry_at: datetime, error: str) -> None:
    """Forget what was delivered before the failure; try the rest again at `retry_at`."""
    if delivered:
        await session.execute(sa.delete(OutboxNotice).where(OutboxNotice.id.in_(list(delivered))))
    await session.execute(
        sa.update(OutboxStream).where(OutboxStream.id == pending.key, OutboxStream.work_owner == owner)
        .values(attempts=OutboxStream.attempts + 1, last_error=error[:2000], due_at=retry_at, work_owner=None,
                work_expires_at=None).execution_options(synchronize_session=False)
    )


async def next_due(session: AsyncSession, sinks: Sequence[str]) -> datetime | None:
    """The earliest time a stream of `sinks` wants delivering, if any."""
    return await session.scalar(sa.select(sa.func.min(OutboxStream.due_at))
                                .where(OutboxStream.sink.in_(list(sinks)), OutboxStream.due_at.is_not(None)))


async def backlog(session: AsyncSession) -> dict[str, int]:
    """How many notices wait, per sink (for metrics)."""
    rows = (await session.execute(
        sa.select(OutboxStream.sink, sa.func.count(OutboxNotice.id))
        .join(OutboxNotice, OutboxNotice.stream_id == OutboxStream.id).group_by(OutboxStream.sink)
    )).all()
    return {sink: count for sink, count in rows}
