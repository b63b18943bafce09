"""Train rows: created on first use, and queue positions handed out without races between replicas."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent, Deploy, Train

# The id the single-train releases gave their one train; a database they made is adopted at start by the train of
# today's configuration on the same repository (`legacy_repository`, `adopt_legacy_train`).
LEGACY_TRAIN = "default"
_REPO_IN_PR_URL = re.compile(r"([^/]+/[^/]+)/pull/\d+/?$")


async def ensure_train(session: AsyncSession, train_id: str) -> Train:
    """The train's row, inserting it if it is missing (safe when two replicas start at once)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(insert(Train).values(id=train_id).on_conflict_do_nothing(index_elements=["id"]))
    return await session.get_one(Train, train_id)


async def take_queue_seq(session: AsyncSession, train_id: str) -> int:
    """The next queue position on the train (1, 2, 3, ...), never the same one twice."""
    statement = (
        sa.update(Train)
        .where(Train.id == train_id)
        .values(next_seq=Train.next_seq + 1)
        .returning(Train.next_seq - 1)
        .execution_options(synchronize_session="fetch")
    )
    seq = (await session.execute(statement)).scalar_one_or_none()
    if seq is None:
        raise LookupError(f"no train {train_id!r}: call ensure_train first")
    return seq


async def legacy_repository(session: AsyncSession) -> str | None:
    """The repository (`owner/name`) a single-train release's deploys came from, as their pull requests' URLs
    say; None when there is no such deploy."""
    urls = await session.scalars(sa.select(Deploy.pr_url).where(Deploy.train_id == LEGACY_TRAIN,
                                                                Deploy.pr_url.is_not(None)).limit(1))
    return next((m.group(1) for url in urls if (m := _REPO_IN_PR_URL.search(url or ""))), None)


async def adopt_legacy_train(session: AsyncSession, name: str) -> int:
    """Give the rows of a single-train release's train (`LEGACY_TRAIN`) to train `name`: its queue, frozen state
    and deploys. How many deploys moved (0 when there is nothing to adopt, or `name` has rows of its own)."""
    legacy = await session.get(Train, LEGACY_TRAIN)
    if legacy is None or name == LEGACY_TRAIN or await session.get(Train, name) is not None:
        return 0
    session.add(Train(id=name, frozen=legacy.frozen, frozen_reason=legacy.frozen_reason, frozen_by=legacy.frozen_by,
                      frozen_at=legacy.frozen_at, next_seq=legacy.next_seq, in_flight_id=legacy.in_flight_id))
    await session.flush()
    moved = (await session.execute(sa.update(Deploy).where(Deploy.train_id == LEGACY_TRAIN).values(train_id=name)
                                   .returning(Deploy.id).execution_options(synchronize_session=False))).scalars().all()
    await session.execute(sa.update(AuditEvent).where(AuditEvent.train_id == LEGACY_TRAIN).values(train_id=name)
                          .execution_options(synchronize_session=False))
    await session.delete(legacy)
    return len(moved)
