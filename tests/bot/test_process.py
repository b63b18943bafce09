"""`fatcontroller run`: fails fast and clearly on bad tokens, stops cleanly on SIGTERM, serves health and metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from bot.app import EXIT_CANNOT_START, run, start_bot
from flows.config import AppConfig
from sandbox.world import Sandbox
from tests.fixtures.bot import settings_for
from tests.fixtures.world import train_config

WRONG_BOT_TOKEN = "xoxb-0000-wrong-bot-token"
WRONG_APP_TOKEN = "xapp-1-wrong-app-token"


@pytest.mark.parametrize(("variable", "token"), [("SLACK_BOT_TOKEN", WRONG_BOT_TOKEN),
                                                 ("SLACK_APP_TOKEN", WRONG_APP_TOKEN)])
async def test_a_wrong_token_stops_the_start_at_once_naming_the_variable_not_the_token(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], variable: str, token: str) -> None:
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", **{variable: token})
    started = time.monotonic()

    code = await run(AppConfig.of(train_config(sandbox)), settings)

    assert code == EXIT_CANNOT_START and time.monotonic() - started < 5
    out, err = capsys.readouterr()
    assert f"Slack refused {variable} (invalid_auth)" in err
    assert token not in out + err
    assert not sandbox.slack.connected


async def test_an_unreachable_slack_stops_the_start_with_a_clear_message(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                            SLACK_API_URL=f"http://127.0.0.1:{port}/api/")

    assert await run(AppConfig.of(train_config(sandbox)), settings) == EXIT_CANNOT_START
    assert f"cannot reach Slack at http://127.0.0.1:{port}/api/" in capsys.readouterr().err


async def test_sigterm_stops_the_bot_cleanly(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    default = signal.getsignal(signal.SIGTERM)
    running = asyncio.create_task(run(AppConfig.of(train_config(sandbox)), settings))
    await sandbox.slack.wait_connected()
    await sandbox.slack.wait_for(lambda: signal.getsignal(signal.SIGTERM) is not default,
                                 what="the bot to handle SIGTERM")

    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(running, 10) == 0
    assert not sandbox.slack.connected
    assert signal.getsignal(signal.SIGTERM) is default
    assert (tmp_path / "bot.db").exists()  # the schema was created on the empty database


async def test_healthz_readyz_and_metrics_report_the_loop_slack_the_train_acks_and_outside_errors(
        sandbox: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = train_config(sandbox)
    bot = await start_bot(AppConfig.of(config), settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                                               FATCONTROLLER_HTTP_PORT=port))
    try:
        await sandbox.slack.wait_connected()
        pr = sandbox.github.create_pr("Measured", {"app/measured.py": "x = 1\n"})
        sandbox.github.faults.fail_next(1, match="pulls", status=502)
        await sandbox.slack.command("U0ALICE", "/deploy", str(pr))
        await sandbox.slack.wait_for(lambda: sandbox.slack.ephemerals("U0ALICE"), what="the answer")

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as live:
                assert live.status == 200 and (await live.json())["ok"] is True
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert ready.status == 200
                assert await ready.json() == {"ok": True, "slack": True, "database": True}
            async with http.get(f"http://127.0.0.1:{port}/metrics") as scraped:
                metrics = await scraped.text()
    finally:
        await bot.stop()

    assert 'fatcontroller_slack_ack_seconds_count{type="slash_commands"} 1.0' in metrics
    assert 'fatcontroller_outside_call_errors_total{kind="transient",system="github"} 1.0' in metrics
    assert 'fatcontroller_deploys{state="completed",train="app"} 0.0' in metrics
    assert 'fatcontroller_queue_length{train="app"}' in metrics


async def test_a_database_that_is_not_ours_stops_the_start(sandbox: Sandbox, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(tmp_path / "other.db") as other:
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")

    assert await run(AppConfig.of(train_config(sandbox)), settings) == EXIT_CANNOT_START
    assert "does not know" in capsys.readouterr().err
    assert not sandbox.slack.connected
