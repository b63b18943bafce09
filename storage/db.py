"""Engines and sessions for SQLite (aiosqlite, one replica) and PostgreSQL (asyncpg, several replicas).

A database URL may carry a password: anything bound for a log or an error message shows the
URL through `masked_url`, and an unusable URL here, or a failure to connect in
`storage.migrate`, is raised as `DatabaseUnavailable` with the password scrubbed.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 10
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class StorageError(Exception):
    """A failure of the database layer that a person can act on."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or the URL is unusable."""


def masked_url(url: str | URL) -> str:
    """The URL with its password replaced by `***`, for logs and messages."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Unparseable: show at most the scheme rather than risk echoing a secret.
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def scrub(text: str, url: URL) -> str:
    """`text` with the URL's password, wherever it appears, replaced by `***`."""
    return text.replace(url.password, "***") if url.password else text


def parse_url(url: str | URL) -> URL:
    """The parsed URL, or `DatabaseUnavailable` naming it without its password."""
    try:
        return make_url(url)
    except Exception:
        # The parser's message may quote the URL: say what is expected instead.
        raise DatabaseUnavailable(
            f"the database URL {masked_url(url)} is not valid: expected e.g. sqlite+aiosqlite:///fatcontroller.db "
            "or postgresql+asyncpg://user:password@host/dbname"
        ) from None


def _wal(cursor: Any) -> None:
    """Switch to WAL (it persists in the file). Switching takes a lock that the busy timeout does not
    wait for, so several processes opening a new database at once retry for a while."""
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.1)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # busy_timeout first: the other pragmas may need a lock that another connection holds.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def make_engine(url: str | URL, *, connect_args: dict[str, Any] | None = None, **options: Any) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite:// or postgresql+asyncpg://), tuned for its backend.

    `connect_args` are passed to the driver (e.g. asyncpg `server_settings`); `options` to
    `create_async_engine`, overriding the defaults below.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    # A plain sqlite:// or postgresql:// URL means the async driver we ship.
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    args: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    if backend == "postgresql":
        args["timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        # pre_ping drops connections the server closed (restarts, idle timeouts) before use.
        defaults.update(pool_pre_ping=True, pool_recycle=1800)
        if "poolclass" not in options:
            defaults.update(pool_size=5, max_overflow=10)
    elif backend == "sqlite":
        # Claims are UPDATE ... RETURNING (storage.leases), which SQLite has since 3.35.
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise StorageError(f"SQLite {sqlite3.sqlite_version} is too old: Fat Controller needs 3.35 or later")
    else:
        raise DatabaseUnavailable(
            f"unsupported database {masked_url(parsed)}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    args.update(connect_args or {})
    defaults.update(options)
    try:
        engine = create_async_engine(parsed, connect_args=args, **defaults)
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot use the database {masked_url(parsed)}: {scrub(str(exc), parsed)}") from None
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    log.debug("database engine for %s", masked_url(parsed))
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (no implicit reload on attribute access)."""
    return async_sessionmaker(engine, expire_on_commit=False)
