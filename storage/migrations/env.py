"""Alembic environment: run on the connection `storage.migrate` hands over, or on DATABASE_URL.

`storage.migrate` passes a live connection in `config.attributes["connection"]` (the CLI and
`run` go through it). Without one, as when a developer generates a revision with
`storage.migrate.alembic_config()`, the database is `sqlalchemy.url` or `DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import make_engine
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations are frozen history: they spell out plain types rather than import the models.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def run_on(connection: Connection) -> None:
    # Batch mode lets later migrations alter SQLite tables (it recreates them); PostgreSQL alters in place.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")

connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "DATABASE_URL", "sqlite+aiosqlite:///fatcontroller.db"
    )
    asyncio.run(run_on_url(url))
