"""Train rows: a database a single-train release made is adopted, whole, by the train that runs now."""

from __future__ import annotations

import sqlalchemy as sa

from storage.models import AuditEvent, Deploy, Train
from storage.trains import LEGACY_TRAIN, adopt_legacy_train, ensure_train, legacy_repository, take_queue_seq
from tests.fixtures.storage import Database


async def test_the_single_train_release_s_rows_become_the_named_train_s_once(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        legacy = await ensure_train(session, LEGACY_TRAIN)
        legacy.frozen, legacy.frozen_reason, legacy.frozen_by = True, "release freeze", "U0ADMIN"
        for n in range(3):
            seq = await take_queue_seq(session, LEGACY_TRAIN)
            session.add(Deploy(train_id=LEGACY_TRAIN, requester="U1", pr_number=10 + n, queue_seq=seq))
        session.add(AuditEvent(actor="U0ADMIN", action="freeze", train_id=LEGACY_TRAIN, detail="release freeze"))

    async with database.sessions() as session, session.begin():
        assert await adopt_legacy_train(session, "app") == 3
    async with database.sessions() as session, session.begin():
        assert await adopt_legacy_train(session, "app") == 0  # nothing left to adopt
        assert await session.get(Train, LEGACY_TRAIN) is None
        train = await session.get_one(Train, "app")
        assert (train.frozen, train.frozen_reason, train.frozen_by, train.next_seq) == (
            True, "release freeze", "U0ADMIN", 4)
        assert set((await session.scalars(sa.select(Deploy.train_id))).all()) == {"app"}
        assert set((await session.scalars(sa.select(AuditEvent.train_id))).all()) == {"app"}
        assert await take_queue_seq(session, "app") == 4  # the queue goes on where it was


async def test_a_train_that_has_rows_of_its_own_adopts_nothing(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        await ensure_train(session, LEGACY_TRAIN)
        await ensure_train(session, "app")
        session.add(Deploy(train_id=LEGACY_TRAIN, requester="U1", pr_number=1, queue_seq=1))

    async with database.sessions() as session, session.begin():
        assert await adopt_legacy_train(session, "app") == 0
        assert await session.get(Train, LEGACY_TRAIN) is not None


async def test_the_single_train_release_s_repository_is_read_from_its_pull_requests(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        assert await legacy_repository(session) is None  # no deploy to say
        await ensure_train(session, LEGACY_TRAIN)
        session.add(Deploy(train_id=LEGACY_TRAIN, requester="U1", pr_number=7, queue_seq=1,
                           pr_url="https://github.example.com/acme/billing/pull/7"))
    async with database.sessions() as session:
        assert await legacy_repository(session) == "acme/billing"
