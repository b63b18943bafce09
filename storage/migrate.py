"""Schema migrations (alembic, scripts in `storage/migrations`), configured in code: no alembic.ini.

`run` calls `ensure_schema` on start: an empty database gets the schema (by running the
migrations, so it is stamped), an out-of-date one stops the bot with advice to run
`fatcontroller db upgrade` (which calls `upgrade`).

Each function takes a database URL or an engine (whose pool it leaves open), and optionally
another migrations directory. To write a new migration, autogenerate it against a database
at the newest revision (a scratch one made with `upgrade`):

    from alembic import command
    from storage.migrate import alembic_config
    command.revision(alembic_config(url="sqlite+aiosqlite:///scratch.db"), "add x", autogenerate=True)

then review the script (and run `ruff format` on it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import DatabaseUnavailable, StorageError, make_engine, masked_url, scrub

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# The PostgreSQL advisory lock taken while migrating.
_MIGRATION_LOCK = 0x0FA7_C0DE

SchemaStatus = Literal["empty", "current", "outdated", "unknown"]
T = TypeVar("T")


class SchemaOutdated(StorageError):
    """The database is at an older revision than this version of Fat Controller."""

    def __init__(self, message: str = "the database schema is out of date: run `fatcontroller db upgrade`"):
        super().__init__(message)


class SchemaUnknown(StorageError):
    """The database holds tables, or a revision, that this version of Fat Controller does not know."""


def alembic_config(*, migrations: Path = MIGRATIONS, url: str | None = None) -> Config:
    """An alembic configuration for the migrations in `migrations` (and `url`, for alembic commands)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    if url is not None:
        # Config values go through ConfigParser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _run(target: str | AsyncEngine, fn: Callable[[Connection], T]) -> T:
    """Run `fn` on a connection, committing if it returns; connection failures become DatabaseUnavailable."""
    engine = make_engine(target, poolclass=sa.NullPool) if isinstance(target, str) else target
    try:
        try:
            connection = await engine.connect()
        except (sa.exc.DBAPIError, OSError, TimeoutError) as exc:
            # The first line is the driver's reason; SQLAlchemy appends a link to its docs.
            reason = (str(exc) or type(exc).__name__).splitlines()[0]
            raise DatabaseUnavailable(
                f"cannot connect to the database {masked_url(engine.url)}: {scrub(reason, engine.url)}"
            ) from None
        try:
            result = await connection.run_sync(fn)
            await connection.commit()
            return result
        finally:
            await connection.close()
    finally:
        if engine is not target:
            await engine.dispose()


def _revisions(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()


def _status(connection: Connection, migrations: Path) -> SchemaStatus:
    revisions = set(_revisions(connection))
    if not revisions:
        tables = set(sa.inspect(connection).get_table_names()) - {VERSION_TABLE}
        return "unknown" if tables else "empty"
    script = ScriptDirectory.from_config(alembic_config(migrations=migrations))
    if revisions == set(script.get_heads()):
        return "current"
    known = {revision.revision for revision in script.walk_revisions()}
    return "outdated" if revisions <= known else "unknown"


def _upgrade(connection: Connection, migrations: Path, revision: str = "head") -> None:
    # Replicas that start together on an empty database queue here: the first migrates, the rest
    # then find it current. Both backends keep the DDL in this transaction, so it is all or nothing.
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    before = set(_revisions(connection))
    config = alembic_config(migrations=migrations)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    after = set(_revisions(connection))
    # Alembic's own lines are silenced below WARNING (the CLI's logging set-up): this one says what changed.
    if after != before:
        log.info("upgraded the database schema from %s to revision %s",
                 f"revision {', '.join(sorted(before))}" if before else "nothing", ", ".join(sorted(after)))


async def upgrade(target: str | AsyncEngine, *, migrations: Path = MIGRATIONS, revision: str = "head") -> None:
    """Migrate the database to the newest revision, or to `revision` (creating the schema on an empty one)."""
    await _run(target, lambda connection: _upgrade(connection, migrations, revision))


async def current_revision(target: str | AsyncEngine) -> str | None:
    """The database's revision, or None when it was never migrated."""
    revisions = await _run(target, _revisions)
    return ", ".join(sorted(revisions)) or None


async def schema_status(target: str | AsyncEngine, *, migrations: Path = MIGRATIONS) -> SchemaStatus:
    """empty (no tables), current, outdated (an older known revision) or unknown (not ours, or newer)."""
    return await _run(target, lambda connection: _status(connection, migrations))


async def ensure_schema(target: str | AsyncEngine, *, migrations: Path = MIGRATIONS) -> None:
    """Create the schema on an empty database; raise SchemaOutdated or SchemaUnknown unless it is current."""
    status = await schema_status(target, migrations=migrations)
    if status == "empty":
        log.info("the database is empty: creating the schema")
        await upgrade(target, migrations=migrations)
    elif status == "outdated":
        raise SchemaOutdated()
    elif status == "unknown":
        revision = await current_revision(target)
        found = f"revision {revision}" if revision else "tables but no migration revision"
        raise SchemaUnknown(
            f"the database holds {found}, which this version of Fat Controller does not know: "
            "check DATABASE_URL points at Fat Controller's database, and that this is its newest release"
        )
