"""The composition root: which train takes over a database a single-train release made, and that it does."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from bot.metrics import Metrics
from bot.wiring import legacy_heir, wire
from flows.config import Settings, load_config
from storage.db import make_engine
from storage.migrate import upgrade
from tests.fixtures.trains import two_trains


def test_a_single_train_database_goes_to_the_train_on_its_repository(tmp_path: Path) -> None:
    trains = list(load_config(two_trains(tmp_path)).trains.values())
    assert legacy_heir(trains, "acme/billing").name == "billing"
    assert legacy_heir(trains, "ACME/Billing").name == "billing"  # GitHub's names ignore case
    assert legacy_heir(trains, "acme/elsewhere").name == "app"  # none on it: the file's first train
    assert legacy_heir(trains, None).name == "app"
    assert legacy_heir(trains[1:], "acme/app").name == "billing"  # a file of one train always takes it


async def test_a_database_of_the_single_train_release_is_taken_over_by_the_train_on_its_repository(
        tmp_path: Path) -> None:
    """The schema of the single-train release (0007, main before many trains), its rows under train `default`:
    `db upgrade` brings it to this release's, and the process of two trains gives them to billing, whose
    repository its pull requests are in."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'single.db'}"
    database = make_engine(url)
    await upgrade(database, revision="0007")
    async with database.begin() as connection:
        await connection.execute(sa.text("INSERT INTO trains (id, frozen, next_seq) VALUES ('default', true, 3)"))
        await connection.execute(sa.text(
            "INSERT INTO deploys (id, train_id, state, needs_attention, requester, pr_number, pr_url, processes,"
            " jump_queue, skip_build, queue_seq, build_attempts, created_at, updated_at, state_entered_at,"
            " state_times, targets, version, retry_attempts) VALUES (1, 'default', 'queued', false, 'U1', 7,"
            " 'https://github.com/acme/billing/pull/7', '[]', false, false, 2, 0, '2026-11-30 10:00:00',"
            " '2026-11-30 10:00:00', '2026-11-30 10:00:00', '{}', '{}', 1, 0)"))
    await upgrade(database)  # `fatcontroller db upgrade`
    await database.dispose()
    trains = list(load_config(two_trains(tmp_path)).trains.values())
    settings = Settings(DATABASE_URL=url, JENKINS_URL="http://127.0.0.1:9", GITHUB_API_URL="http://127.0.0.1:9",
                        AWS_ENDPOINT_URL="http://127.0.0.1:9", FATCONTROLLER_HTTP_PORT=0)

    wired = await wire(trains, settings, Metrics())
    try:
        billing = await wired.engine.lanes["billing"].deploys.queue()
        app = await wired.engine.lanes["app"].deploys.queue()
    finally:
        await wired.close()

    assert [e.deploy.pr_number for e in billing.entries] == [7] and billing.train.frozen
    assert app.entries == () and not app.train.frozen
