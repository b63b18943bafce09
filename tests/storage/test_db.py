"""Engines are tuned for their backend and never reveal the database password."""

from __future__ import annotations

import os
import traceback

import pytest
import sqlalchemy as sa

from storage.db import DatabaseUnavailable, make_engine, masked_url
from storage.migrate import ensure_schema, schema_status
from tests.fixtures.storage import POSTGRES_ENV

PASSWORD = "hunter2-s3cret"


def error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_sqlite_connections_use_wal_a_busy_timeout_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fc.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 10_000, "foreign_keys": 1, "synchronous": 1}


async def test_plain_urls_get_the_async_driver(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fc.db'}")
    try:
        assert engine.url.drivername == "sqlite+aiosqlite"
        assert await schema_status(engine) == "empty"
    finally:
        await engine.dispose()


def test_masked_url_hides_the_password() -> None:
    assert masked_url(f"postgresql+asyncpg://fc:{PASSWORD}@db.internal/fc") == (
        "postgresql+asyncpg://fc:***@db.internal/fc"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://fc:{PASSWORD}@127.0.0.1:1/fc",  # nothing listens on port 1
        f"postgresql+asyncpg://fc:{PASSWORD}@127.0.0.1:notaport/fc",
        f"mysql://fc:{PASSWORD}@127.0.0.1/fc",
        f"not a url fc:{PASSWORD}@",
    ],
    ids=["unreachable", "bad-port", "unsupported", "garbage"],
)
async def test_database_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=r"\*\*\*") as raised:
        await ensure_schema(url)
    assert PASSWORD not in error_text(raised.value)


async def test_an_error_from_the_server_is_reported_without_the_password() -> None:
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    url = sa.make_url(server).set(password=PASSWORD, database="no_such_database")

    with pytest.raises(DatabaseUnavailable) as raised:
        await ensure_schema(url.render_as_string(hide_password=False))

    assert "no_such_database" in str(raised.value)
    assert PASSWORD not in error_text(raised.value)
