"""The App Home's audience is kept in the database: a copy that never saw someone open the tab republishes it."""

from __future__ import annotations

from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from bot.home import HomePublisher
from bot.trains import TrainFlows
from flows.engine import Engine, TrainSetup
from sandbox.world import Sandbox
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.slack import SlackStore
from tests.fixtures.world import outside_for, train_config

ALICE = "U0ALICE"


async def test_a_home_opened_on_one_copy_is_republished_by_another(sandbox: Sandbox, tmp_path: Path) -> None:
    database = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'home.db'}")
    await upgrade(database)
    sessions = make_sessionmaker(database)
    config = train_config(sandbox)
    client = AsyncWebClient(token=sandbox.spec.bot_token, base_url=sandbox.slack.api_url)
    copies = []
    for _ in range(2):  # two copies of the bot on one database (their engines are not started)
        lane = Engine([TrainSetup(config, outside_for(sandbox))], sessions).lanes[config.name]
        copies.append(HomePublisher(client, [TrainFlows(config, lane.deploys, lane.peas)], config.slack.commands,
                                    SlackStore(sessions), debounce=0.01))
    first, second = copies
    try:
        await first.opened(ALICE)
        assert len(sandbox.slack.api_calls("views.publish")) == 1

        second.changed()  # the train changed, as seen by the copy that delivered it

        await sandbox.slack.wait_for(lambda: len(sandbox.slack.api_calls("views.publish")) == 2,
                                     what="the second copy publishing Alice's Home")
        assert sandbox.slack.api_calls("views.publish")[-1].args["user_id"] == ALICE
    finally:
        for copy in copies:
            await copy.close()
        await database.dispose()
