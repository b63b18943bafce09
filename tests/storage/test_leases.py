"""Work leases: exactly one worker holds a row, whatever the backend and however hard they race."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from storage.clock import utcnow
from storage.db import make_sessionmaker
from storage.leases import claim, claim_due, release
from storage.models import Deploy, Pea
from storage.trains import ensure_train, take_queue_seq
from tests.fixtures.storage import Database

TTL = timedelta(seconds=30)
RACERS = 20
T = TypeVar("T")


async def add_deploys(database: Database, count: int, *, due_at: datetime | None = None) -> list[int]:
    async with database.sessions() as session:
        await ensure_train(session, "default")
        deploys = [
            Deploy(train_id="default", requester="U1", pr_number=100 + n, queue_seq=n, due_at=due_at)
            for n in range(count)
        ]
        session.add_all(deploys)
        await session.commit()
        return [deploy.id for deploy in deploys]


async def race(
    database: Database, attempt: Callable[[AsyncSession, int], Awaitable[T]], racers: int = RACERS
) -> list[T]:
    """Run `attempt(session, n)` for `racers` workers at once, each on its own engine, and commit each."""
    barrier = asyncio.Barrier(racers)

    async def racer(n: int) -> T:
        sessions = make_sessionmaker(database.new_engine())
        async with sessions() as session:
            await session.connection()  # connect before the start line, so the race is on the claim
            await barrier.wait()
            result = await attempt(session, n)
            await session.commit()
            return result

    return await asyncio.gather(*(racer(n) for n in range(racers)))


async def lease_of(session: AsyncSession, deploy_id: int) -> tuple[str | None, datetime | None]:
    deploy = await session.get_one(Deploy, deploy_id, populate_existing=True)
    return deploy.work_owner, deploy.work_expires_at


async def test_twenty_concurrent_claimers_of_one_deploy_exactly_one_wins(database: Database) -> None:
    (deploy_id,) = await add_deploys(database, 1)

    won = await race(database, lambda session, n: claim(session, Deploy, deploy_id, f"worker-{n}", TTL))

    assert won.count(True) == 1
    async with database.sessions() as session:
        owner, _ = await lease_of(session, deploy_id)
    assert owner == f"worker-{won.index(True)}"


async def test_a_held_lease_is_refused_to_others_and_renewed_for_its_owner(database: Database) -> None:
    (deploy_id,) = await add_deploys(database, 1)
    now = utcnow()
    async with database.sessions() as session:
        assert await claim(session, Deploy, deploy_id, "a", TTL, now=now)
        assert not await claim(session, Deploy, deploy_id, "b", TTL, now=now + TTL / 2)
        assert await claim(session, Deploy, deploy_id, "a", TTL, now=now + TTL / 2)
        assert await lease_of(session, deploy_id) == ("a", now + TTL / 2 + TTL)


async def test_an_expired_lease_is_taken_over_and_its_old_owner_cannot_renew_it(database: Database) -> None:
    (deploy_id,) = await add_deploys(database, 1)
    now = utcnow()
    async with database.sessions() as session:
        assert await claim(session, Deploy, deploy_id, "crashed", TTL, now=now)
        later = now + TTL + timedelta(seconds=1)

        assert await claim(session, Deploy, deploy_id, "survivor", TTL, now=later)
        assert not await claim(session, Deploy, deploy_id, "crashed", TTL, now=later)
        assert (await lease_of(session, deploy_id))[0] == "survivor"


async def test_a_claim_respects_extra_conditions(database: Database) -> None:
    (deploy_id,) = await add_deploys(database, 1)
    async with database.sessions() as session:
        assert not await claim(session, Deploy, deploy_id, "a", TTL, where=[Deploy.state == "canary_check"])
        assert await claim(session, Deploy, deploy_id, "a", TTL, where=[Deploy.state == "queued"])


async def test_a_released_lease_is_free_for_anyone_but_only_its_owner_can_release_it(database: Database) -> None:
    (deploy_id,) = await add_deploys(database, 1)
    async with database.sessions() as session:
        await claim(session, Deploy, deploy_id, "a", TTL)

        await release(session, Deploy, deploy_id, "b")
        assert (await lease_of(session, deploy_id))[0] == "a"

        await release(session, Deploy, deploy_id, "a")
        assert await lease_of(session, deploy_id) == (None, None)
        assert await claim(session, Deploy, deploy_id, "b", TTL)


async def test_claims_on_peas_use_the_work_lease_not_the_holders_claim(database: Database) -> None:
    claim_ends = utcnow() + timedelta(hours=8)
    async with database.sessions() as session:
        session.add(Pea(name="sweet-pea", state="up", holder="U1", claim_expires_at=claim_ends))
        await session.commit()

        assert await claim(session, Pea, "sweet-pea", "a", TTL)
        assert not await claim(session, Pea, "sweet-pea", "b", TTL)
        pea = await session.get_one(Pea, "sweet-pea", populate_existing=True)
    assert pea.work_owner == "a"
    assert pea.claim_expires_at == claim_ends


async def test_claim_due_returns_only_due_rows_without_a_live_lease(database: Database) -> None:
    now = utcnow()
    due = await add_deploys(database, 3, due_at=now - timedelta(seconds=5))
    await add_deploys(database, 2, due_at=now + timedelta(minutes=5))
    await add_deploys(database, 2, due_at=None)  # finished
    async with database.sessions() as session:
        assert await claim(session, Deploy, due[0], "busy", TTL, now=now)
        await session.commit()

        claimed = await claim_due(session, Deploy, "tick", TTL, now=now, limit=10)

    assert sorted(claimed) == due[1:]


async def test_claim_due_takes_the_most_overdue_first_up_to_the_limit(database: Database) -> None:
    now = utcnow()
    late = await add_deploys(database, 2, due_at=now - timedelta(minutes=10))
    await add_deploys(database, 3, due_at=now - timedelta(seconds=1))
    async with database.sessions() as session:
        assert sorted(await claim_due(session, Deploy, "tick", TTL, now=now, limit=2)) == late


async def test_claim_due_takes_over_expired_leases(database: Database) -> None:
    now = utcnow()
    (deploy_id,) = await add_deploys(database, 1, due_at=now)
    async with database.sessions() as session:
        await claim(session, Deploy, deploy_id, "crashed", TTL, now=now)
        later = now + 2 * TTL
        assert await claim_due(session, Deploy, "tick", TTL, now=later, limit=10) == [deploy_id]


async def test_twenty_concurrent_tickers_over_fifty_due_rows_claim_every_row_exactly_once(
    database: Database,
) -> None:
    now = utcnow()
    due = await add_deploys(database, 50, due_at=now - timedelta(seconds=1))

    batches = await race(database, lambda session, n: claim_due(session, Deploy, f"ticker-{n}", TTL, now=now, limit=5))

    claimed = [key for batch in batches for key in batch]
    assert sorted(claimed) == due
    async with database.sessions() as session:
        for n, batch in enumerate(batches):
            for key in batch:
                assert (await lease_of(session, key))[0] == f"ticker-{n}"


async def test_twenty_concurrent_writers_of_one_version_exactly_one_wins(database: Database) -> None:
    """The ORM's version column: of writers that all read version 1, one commits and the others are refused."""
    (deploy_id,) = await add_deploys(database, 1)

    async def write(session: AsyncSession, n: int) -> bool:
        deploy = await session.get_one(Deploy, deploy_id)
        if deploy.version != 1:  # read after another writer committed: it is no longer racing for version 1
            return False
        deploy.notes = f"writer-{n}"
        try:
            await session.flush()
            await session.commit()
            return True
        except StaleDataError:
            await session.rollback()
            return False

    won = await race(database, write)

    assert won.count(True) == 1
    async with database.sessions() as session:
        deploy = await session.get_one(Deploy, deploy_id)
    assert (deploy.notes, deploy.version) == (f"writer-{won.index(True)}", 2)


async def test_twenty_concurrent_requests_get_distinct_queue_positions(database: Database) -> None:
    async with database.sessions() as session:
        await ensure_train(session, "default")
        await session.commit()

    seqs = await race(database, lambda session, n: take_queue_seq(session, "default"))

    assert sorted(seqs) == list(range(1, RACERS + 1))


async def test_queue_positions_need_the_train_to_exist(database: Database) -> None:
    async with database.sessions() as session:
        with pytest.raises(LookupError, match="no train 'other'"):
            await take_queue_seq(session, "other")
