"""`POST /hooks/jenkins`: Jenkins' Notification plugin wakes the deploy waiting for that build at once; anything
else is refused with the status the contract says, and changes nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Bot, start_bot
from flows.config import AppConfig
from sandbox.world import Sandbox
from tests.fixtures.bot import BotWorld, settings_for
from tests.fixtures.world import eventually, train_config

ALICE = "U0ALICE"
TOKEN = "hook-secret-0123456789"
NOTIFICATION = {"name": "app-master", "url": "job/app-master/",
                "build": {"full_url": "http://jenkins/job/app-master/1/", "number": 1, "phase": "COMPLETED",
                          "status": "SUCCESS", "url": "job/app-master/1/", "scm": {"commit": "0" * 40}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def hooked(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[tuple[BotWorld, str]]:
    """The bot with its HTTP port and a hook token, polling rarely: only the hook makes it look soon."""
    port = _free_port()
    config = train_config(sandbox, deploy={"poll": "30s", "tick": "30s"})
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", FATCONTROLLER_HTTP_PORT=port,
                            FATCONTROLLER_HOOK_TOKEN=TOKEN)
    bot: Bot = await start_bot(AppConfig.of(config), settings)
    await sandbox.slack.wait_connected()
    yield BotWorld(bot, sandbox, config), f"http://127.0.0.1:{port}/hooks/jenkins"
    await bot.stop()


async def _post(url: str, body: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            url, data=raw if raw is not None else json.dumps(body), headers=headers or {}) as answer:
        return answer.status


async def test_a_notification_wakes_the_deploy_waiting_for_its_build_at_once(hooked: tuple[BotWorld, str]) -> None:
    world, url = hooked
    world.sandbox.jenkins.notify_to(url, token=TOKEN)
    world.sandbox.jenkins.script_next("app-master", ["SUCCESS"], duration=2.0)
    pr = world.new_pr("Noticed by the hook")
    await world.slack.command(ALICE, "/deploy", str(pr))
    building = await world.reaches(pr, "building")

    async def finished() -> float | None:
        builds = [b for b in world.sandbox.jenkins.builds("app-master") if b.get("result")]
        return time.time() if builds else None

    done_at = await eventually(finished, within=30, what="the build finished in Jenkins")
    canarying = await world.reaches(pr, "canarying", "canary_check", within=5)
    reaction = time.time() - done_at
    assert reaction < 1.0, f"the build's end was noticed {reaction:.2f}s later"
    assert canarying.build_number == 1 and building.id == canarying.id


@pytest.mark.parametrize(("body", "headers", "status"), [
    (NOTIFICATION, {}, 401),
    (NOTIFICATION, {"X-Fatcontroller-Token": "wrong"}, 401),
    ({"name": "app-master"}, {"X-Fatcontroller-Token": TOKEN}, 400),
    ({"name": "app-master", "build": {"number": "one", "phase": "COMPLETED"}}, {"X-Fatcontroller-Token": TOKEN}, 400),
    ([1, 2, 3], {"X-Fatcontroller-Token": TOKEN}, 400),
    (NOTIFICATION, {"X-Fatcontroller-Token": TOKEN}, 202),
])
async def test_the_hook_answers_as_the_contract_says_and_changes_nothing(
        hooked: tuple[BotWorld, str], body: Any, headers: dict[str, str], status: int) -> None:
    world, url = hooked
    before = (await world.deploy_count(), world.outside_state())

    assert await _post(url, body, headers=headers) == status

    assert (await world.deploy_count(), world.outside_state()) == before


async def test_malformed_json_is_400_and_a_body_over_64_kb_is_413(hooked: tuple[BotWorld, str]) -> None:
    _, url = hooked
    token = {"X-Fatcontroller-Token": TOKEN}
    assert await _post(url, None, headers=token, raw=b"{not json") == 400
    assert await _post(url, None, headers=token, raw=b"x" * (64 * 1024 + 1)) == 413
    assert await _post(f"{url}?token={TOKEN}", NOTIFICATION) == 202  # the plugin can only put it in the URL
