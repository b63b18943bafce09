"""Migrations create the schema the models describe, and `run` refuses a database it does not match."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from storage.migrate import (
    MIGRATIONS,
    SchemaOutdated,
    SchemaUnknown,
    alembic_config,
    current_revision,
    ensure_schema,
    schema_status,
    upgrade,
)
from storage.models import Base
from tests.fixtures.storage import Database

NEXT_REVISION = '''
"""A later release's migration."""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("later", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("later")
'''


HEAD = "0011"


def next_release(tmp_path: Path, revision: str = NEXT_REVISION) -> Path:
    """The migrations of a later release: ours plus one more revision."""
    migrations = tmp_path / "next_release_migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "9999_later.py").write_text(revision)
    return migrations


def schema_diff(connection: Connection) -> list[object]:
    return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)


async def test_migrations_create_exactly_the_schema_the_models_describe(database: Database) -> None:
    async with database.engine.connect() as connection:
        diff = await connection.run_sync(schema_diff)
    assert diff == []


async def test_an_empty_database_is_reported_empty_and_has_no_revision(empty_database: Database) -> None:
    assert await schema_status(empty_database.engine) == "empty"
    assert await current_revision(empty_database.engine) is None


async def test_ensure_schema_creates_and_stamps_the_schema_on_an_empty_database(db_url: str) -> None:
    await ensure_schema(db_url)

    assert await schema_status(db_url) == "current"
    assert await current_revision(db_url) == HEAD


async def test_replicas_starting_together_on_an_empty_database_all_start(empty_database: Database) -> None:
    engines = [empty_database.new_engine() for _ in range(4)]

    await asyncio.gather(*(ensure_schema(engine) for engine in engines))

    assert await schema_status(empty_database.engine) == "current"


async def test_ensure_schema_leaves_a_current_database_alone(database: Database) -> None:
    await ensure_schema(database.engine)
    assert await current_revision(database.engine) == HEAD


async def test_upgrade_twice_is_harmless(database: Database) -> None:
    await upgrade(database.engine)
    assert await schema_status(database.engine) == "current"


async def test_a_database_behind_the_newest_release_is_outdated_and_run_refuses_it(
    database: Database, tmp_path: Path
) -> None:
    later = next_release(tmp_path)

    assert await schema_status(database.engine, migrations=later) == "outdated"
    with pytest.raises(SchemaOutdated, match=r"out of date: run `fatcontroller db upgrade`"):
        await ensure_schema(database.engine, migrations=later)


async def test_db_upgrade_brings_an_outdated_database_up_to_date(database: Database, tmp_path: Path) -> None:
    later = next_release(tmp_path)

    await upgrade(database.engine, migrations=later)

    assert await current_revision(database.engine) == "9999"
    assert await schema_status(database.engine, migrations=later) == "current"
    await ensure_schema(database.engine, migrations=later)


async def test_a_migration_that_fails_leaves_the_database_as_it_was(database: Database, tmp_path: Path) -> None:
    broken = NEXT_REVISION.replace(
        'op.create_table("later", sa.Column("id", sa.Integer, primary_key=True))',
        'op.create_table("later", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.execute("INSERT INTO no_such_table VALUES (1)")',
    )
    later = next_release(tmp_path, broken)

    with pytest.raises(sa.exc.DBAPIError, match="no_such_table"):
        await upgrade(database.engine, migrations=later)

    assert await current_revision(database.engine) == HEAD
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert "later" not in tables


async def test_a_database_of_the_first_release_upgrades_and_keeps_its_cards(empty_database: Database) -> None:
    """0002 moves the Slack references off the deploys: a card posted before the upgrade is edited after it."""
    await upgrade(empty_database.engine, revision="0001")
    async with empty_database.engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO trains (id, frozen, next_seq) VALUES ('default', false, 2)"))
        await connection.execute(sa.text(
            "INSERT INTO deploys (id, train_id, state, needs_attention, requester, pr_number, processes, jump_queue,"
            " skip_build, queue_seq, build_attempts, slack_channel, slack_ts, created_at, updated_at,"
            " state_entered_at, state_times, targets, version, lease_owner)"
            " VALUES (1, 'default', 'rolling_out', false, 'U1', 7, '[]', false, false, 1, 0, 'C1', '111.222',"
            " '2026-11-30 10:00:00', '2026-11-30 10:00:00', '2026-11-30 10:00:00', '{}', '{}', 3, 'copy-1')"))

    await upgrade(empty_database.engine)

    async with empty_database.engine.connect() as connection:
        cards = (await connection.execute(sa.text("SELECT key, channel, ts FROM slack_messages"))).all()
        owner = await connection.scalar(sa.text("SELECT work_owner FROM deploys WHERE id = 1"))
        diff = await connection.run_sync(schema_diff)
    assert [tuple(row) for row in cards] == [("deploy:1:card", "C1", "111.222")]
    assert owner == "copy-1" and diff == []


async def test_the_audit_log_of_a_single_train_database_learns_its_train(empty_database: Database) -> None:
    """0007: a deploy's events take its train, a freeze the database's one train."""
    await upgrade(empty_database.engine, revision="0006")
    async with empty_database.engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO trains (id, frozen, next_seq) VALUES ('default', false, 2)"))
        await connection.execute(sa.text(
            "INSERT INTO deploys (id, train_id, state, needs_attention, requester, pr_number, processes, jump_queue,"
            " skip_build, queue_seq, build_attempts, created_at, updated_at, state_entered_at, state_times, targets,"
            " version, retry_attempts) VALUES (1, 'default', 'completed', false, 'U1', 7, '[]', false, false, 1, 0,"
            " '2026-11-30 10:00:00', '2026-11-30 10:00:00', '2026-11-30 10:00:00', '{}', '{}', 3, 0)"))
        await connection.execute(sa.text(
            "INSERT INTO audit_events (at, actor, action, deploy_id, outside_ids) VALUES"
            " ('2026-11-30 10:00:00', 'U1', 'requested', 1, '{}'),"
            " ('2026-11-30 10:01:00', 'U0ADMIN', 'freeze', NULL, '{}'),"
            " ('2026-11-30 10:02:00', 'U2', 'pea_claim', NULL, '{}')"))

    await upgrade(empty_database.engine)

    async with empty_database.engine.connect() as connection:
        trains = (await connection.execute(sa.text("SELECT action, train_id FROM audit_events ORDER BY id"))).all()
    assert [tuple(row) for row in trains] == [("requested", "default"), ("freeze", "default"), ("pea_claim", None)]


async def test_a_database_from_a_newer_release_is_unknown(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))

    assert await schema_status(database.engine) == "unknown"
    with pytest.raises(SchemaUnknown, match="revision ffff"):
        await ensure_schema(database.engine)


async def test_tables_without_a_revision_are_not_mistaken_for_an_empty_database(database: Database) -> None:
    def stamp_base(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.stamp(config, "base")

    async with database.engine.begin() as connection:
        await connection.run_sync(stamp_base)

    assert await schema_status(database.engine) == "unknown"
    with pytest.raises(SchemaUnknown, match="tables but no migration revision"):
        await ensure_schema(database.engine)
