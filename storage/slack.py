"""What the Slack surface keeps: where its messages are (to edit them later) and who looks at the App Home.

The Slack surface owns this data; it reaches it only through `SlackStore`, which its composition
root hands it (the surface itself never opens a session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.clock import utcnow
from storage.models import HomeViewer, SlackMessage


@dataclass(frozen=True)
class MessageRef:
    """A posted message: where it is, and what editing it again needs."""

    channel: str
    ts: str
    data: dict[str, Any]


class SlackStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    def _insert(self, session: AsyncSession) -> Any:
        return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert

    async def message(self, key: str) -> MessageRef | None:
        async with self.sessions() as session:
            row = await session.get(SlackMessage, key)
            return None if row is None else MessageRef(row.channel, row.ts, dict(row.data or {}))

    async def keep_message(self, key: str, channel: str, ts: str, data: dict[str, Any] | None = None) -> None:
        async with self.sessions() as session, session.begin():
            values = {"key": key, "channel": channel, "ts": ts, "data": data or {}, "updated_at": utcnow()}
            statement = self._insert(session)(SlackMessage).values(**values)
            await session.execute(statement.on_conflict_do_update(
                index_elements=["key"], set_={k: v for k, v in values.items() if k != "key"}))

    async def forget_message(self, key: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(sa.delete(SlackMessage).where(SlackMessage.key == key))

    async def home_viewers(self) -> set[str]:
        async with self.sessions() as session:
            return set((await session.scalars(sa.select(HomeViewer.user_id))).all())

    async def add_home_viewer(self, user_id: str) -> None:
        async with self.sessions() as session, session.begin():
            statement = self._insert(session)(HomeViewer).values(user_id=user_id, opened_at=utcnow())
            await session.execute(statement.on_conflict_do_update(index_elements=["user_id"],
                                                                  set_={"opened_at": utcnow()}))
