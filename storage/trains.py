"""Train rows: created on first use, and queue positions handed out without races between replicas."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Train

DEFAULT_TRAIN = "default"


async def ensure_train(session: AsyncSession, train_id: str = DEFAULT_TRAIN) -> Train:
    """The train's row, inserting it if it is missing (safe when two replicas start at once)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(insert(Train).values(id=train_id).on_conflict_do_nothing(index_elements=["id"]))
    return await session.get_one(Train, train_id)


async def take_queue_seq(session: AsyncSession, train_id: str = DEFAULT_TRAIN) -> int:
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
