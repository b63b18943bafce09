"""The outbox: notices written in a transaction are delivered once each, in order per stream, by any copy;
a sink that fails is tried again later without losing or reordering anything; nothing blocks a stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flows.deploy.machine import Event, State
from flows.notices import CanaryReminder, Merged, Moved, Notice
from flows.outbox import Delivered, DeliveryFailed, Outbox
from storage import leases
from storage.clock import utcnow
from storage.models import OutboxNotice, OutboxStream
from tests.fixtures.storage import Database
from tests.fixtures.world import eventually

LEASE = timedelta(seconds=30)


class Sink:
    """A sink that keeps what it was given; it fails the next `failures` deliveries after `done_first` notices."""

    name = "slack"

    def __init__(self, failures: int = 0, done_first: int = 0) -> None:
        self.delivered: list[Notice] = []
        self.calls = 0
        self.failures = failures
        self.done_first = done_first

    async def deliver(self, stream: str, notices: Sequence[Notice]) -> Delivered:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            self.delivered.extend(notices[: self.done_first])
            raise DeliveryFailed("slack is down", done=self.done_first, retry_after=0.05)
        self.delivered.extend(notices)
        return Delivered()


def merged(deploy_id: int, n: int) -> Merged:
    return Merged(deploy_id, "app", f"{n:040d}")


async def write(outbox: Outbox, database: Database, *notices: Notice) -> None:
    async with database.sessions() as session, session.begin():
        await outbox.write(session, *notices)
    outbox.wake()


async def pending(database: Database) -> int:
    async with database.sessions() as session:
        return await session.scalar(sa.select(sa.func.count()).select_from(OutboxNotice)) or 0


async def test_notices_are_delivered_in_order_per_stream_and_the_outbox_empties(database: Database) -> None:
    sink = Sink()
    outbox = Outbox(database.sessions, [sink.name], owner="one", lease_ttl=LEASE, poll=0.05, settle=0.0)
    await write(outbox, database, *(merged(1, n) for n in range(5)), *(merged(2, n) for n in range(5)))
    outbox.start([sink])
    try:
        await eventually(lambda: _count(sink, 10), what="ten notices delivered")
        for deploy_id in (1, 2):
            assert [n for n in sink.delivered if n.deploy_id == deploy_id] == [merged(deploy_id, n) for n in range(5)]
        await eventually(lambda: _empty(database), what="the outbox empty")
    finally:
        await outbox.stop()


async def test_a_failing_sink_is_retried_and_gets_the_rest_in_order_without_repeats(database: Database) -> None:
    sink = Sink(failures=3, done_first=1)
    outbox = Outbox(database.sessions, [sink.name], owner="one", lease_ttl=LEASE, poll=0.05, settle=0.0)
    notices = [merged(1, n) for n in range(4)]
    await write(outbox, database, *notices)
    outbox.start([sink])
    try:
        await eventually(lambda: _count(sink, 4), what="every notice delivered")
        assert sink.delivered == notices  # one went out with each failed attempt, the rest at the fourth
        assert sink.calls == 4
        await eventually(lambda: _empty(database), what="the outbox empty")
    finally:
        await outbox.stop()


async def test_a_dead_copys_stream_is_delivered_by_another_once_its_lease_ends(database: Database) -> None:
    dead = Outbox(database.sessions, ["slack"], owner="dead", lease_ttl=timedelta(seconds=0.3))
    await write(dead, database, merged(1, 0), merged(1, 1))
    async with database.sessions() as session, session.begin():  # it claimed the stream, then died
        claimed = await _claim(session, "dead", timedelta(seconds=0.3))
    assert claimed == ["slack|deploy:1"]

    sink = Sink()
    alive = Outbox(database.sessions, [sink.name], owner="alive", lease_ttl=LEASE, poll=0.05, settle=0.0)
    alive.start([sink])
    try:
        await eventually(lambda: _count(sink, 2), what="the dead copy's notices delivered")
        assert sink.delivered == [merged(1, 0), merged(1, 1)]
    finally:
        await alive.stop()


async def test_two_copies_never_deliver_a_stream_twice_or_out_of_order(database: Database) -> None:
    sink = Sink()
    copies = [Outbox(database.sessions, [sink.name], owner=f"copy-{n}", lease_ttl=LEASE, poll=0.02, settle=0.0)
              for n in range(2)]
    for copy in copies:
        copy.start([sink])
    try:
        for n in range(20):
            await write(copies[n % 2], database, merged(n % 3, n))
            await asyncio.sleep(0)
        await eventually(lambda: _count(sink, 20), what="twenty notices delivered")
        for deploy_id in range(3):
            assert [n.sha for n in sink.delivered if n.deploy_id == deploy_id] == [
                f"{n:040d}" for n in range(20) if n % 3 == deploy_id]
    finally:
        for copy in copies:
            await copy.stop()


async def test_a_notice_this_release_cannot_read_is_dropped_and_the_stream_goes_on(database: Database) -> None:
    sink = Sink()
    outbox = Outbox(database.sessions, [sink.name], owner="one", lease_ttl=LEASE, poll=0.05, settle=0.0)
    await write(outbox, database, merged(1, 0))
    async with database.sessions() as session, session.begin():
        session.add(OutboxNotice(stream_id="slack|deploy:1", kind="FromTheFuture", payload={}, created_at=utcnow()))
    moved = Moved(1, "app", Event.MERGED, State.MERGING, State.BUILDING)
    await write(outbox, database, moved, CanaryReminder(1, "app"))
    outbox.start([sink])
    try:
        await eventually(lambda: _count(sink, 3), what="the readable notices delivered")
        assert [type(n) for n in sink.delivered] == [Merged, Moved, CanaryReminder]
        await eventually(lambda: _empty(database), what="the outbox empty")
    finally:
        await outbox.stop()


async def _claim(session: AsyncSession, owner: str, ttl: timedelta) -> list[str]:
    return [str(k) for k in await leases.claim_due(session, OutboxStream, owner, ttl, now=utcnow(), limit=10)]


async def _count(sink: Sink, n: int) -> bool:
    return len(sink.delivered) >= n


async def _empty(database: Database) -> bool:
    return await pending(database) == 0
