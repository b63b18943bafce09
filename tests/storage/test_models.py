"""Rows round-trip faithfully: naive UTC times, JSON edited in place, and no silent lost updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from storage.clock import utcnow
from storage.db import make_sessionmaker
from storage.models import AuditEvent, Deploy, UndoRecord
from storage.trains import ensure_train
from tests.fixtures.storage import Database


async def add_deploy(database: Database, **values: object) -> int:
    async with database.sessions() as session:
        await ensure_train(session, "default")
        deploy = Deploy(train_id="default", requester="U1", pr_number=42, queue_seq=1, **values)
        session.add(deploy)
        await session.commit()
        return deploy.id


async def read_deploy(database: Database, deploy_id: int) -> Deploy:
    """The row as stored, through a new engine (nothing cached)."""
    async with make_sessionmaker(database.new_engine())() as session:
        return await session.get_one(Deploy, deploy_id)


def test_utcnow_is_naive_utc() -> None:
    now = utcnow()
    assert now.tzinfo is None
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)


async def test_times_are_stored_and_read_back_as_naive_utc(database: Database) -> None:
    in_paris = datetime(2024, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    deploy_id = await add_deploy(database, pr_created_at=in_paris, due_at=datetime(2024, 6, 1, 12, 0))

    deploy = await read_deploy(database, deploy_id)

    assert deploy.pr_created_at == datetime(2024, 6, 1, 12, 30)
    assert deploy.due_at == datetime(2024, 6, 1, 12, 0)
    for value in (deploy.pr_created_at, deploy.due_at, deploy.created_at, deploy.updated_at):
        assert value.tzinfo is None
    assert abs(deploy.created_at - utcnow()) < timedelta(seconds=30)


async def test_naive_utc_times_compare_in_queries(database: Database) -> None:
    deploy_id = await add_deploy(database, due_at=datetime(2024, 6, 1, 12, 0))
    aware_after = datetime(2024, 6, 1, 13, 0, 1, tzinfo=timezone(timedelta(hours=1)))
    async with database.sessions() as session:
        due = await session.scalars(sa.select(Deploy.id).where(Deploy.due_at <= aware_after))
        assert list(due) == [deploy_id]


async def test_json_fields_edited_in_place_are_saved(database: Database) -> None:
    deploy_id = await add_deploy(database, processes=["web"])
    async with database.sessions() as session:
        deploy = await session.get_one(Deploy, deploy_id)
        deploy.state_times["merging"] = "2024-06-01T12:00:00"
        deploy.processes.append("worker")
        await session.commit()

    stored = await read_deploy(database, deploy_id)
    assert stored.state_times == {"merging": "2024-06-01T12:00:00"}
    assert stored.processes == ["web", "worker"]


async def test_a_write_over_a_stale_copy_fails_instead_of_overwriting(database: Database) -> None:
    deploy_id = await add_deploy(database)
    async with database.sessions() as first, make_sessionmaker(database.new_engine())() as second:
        mine = await first.get_one(Deploy, deploy_id)
        theirs = await second.get_one(Deploy, deploy_id)
        theirs.state = "cancelled"
        await second.commit()

        mine.state = "merging"
        with pytest.raises(StaleDataError):
            await first.commit()

    stored = await read_deploy(database, deploy_id)
    assert (stored.state, stored.version) == ("cancelled", 2)


async def test_undo_records_and_audit_events_belong_to_their_deploy(database: Database) -> None:
    deploy_id = await add_deploy(database)
    async with database.sessions() as session:
        session.add(UndoRecord(deploy_id=deploy_id, seq=1, kind="merge", data={"sha": "a" * 40}))
        session.add(AuditEvent(actor="U1", action="merge", deploy_id=deploy_id, outside_ids={"merge_sha": "a" * 40}))
        await session.commit()

        session.add(UndoRecord(deploy_id=deploy_id, seq=1, kind="canary"))
        with pytest.raises(sa.exc.IntegrityError):
            await session.commit()
        await session.rollback()

        session.add(AuditEvent(actor="U1", action="merge", deploy_id=deploy_id + 1000))
        with pytest.raises(sa.exc.IntegrityError):
            await session.commit()
