"""`/healthz` is liveness (the job loop ticks), `/readyz` readiness (Slack connected, the database answering):
through the real bot, a dropped Slack socket makes it unready but never dead, and a job loop that stops
ticking makes it dead while Slack is still connected. The server's own rules (a check that raises or hangs
fails the probe, never the server) are checked on a server of its own."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Bot, start_bot
from flows.config import AppConfig
from sandbox.server import Fault
from sandbox.world import Sandbox
from tests.fixtures.bot import settings_for
from tests.fixtures.world import train_config
from web import server
from web.server import HttpServer

LEASE_SECONDS = 1.0  # with the test config's 200 ms tick, liveness allows 3 * 0.2 + 1 = 1.6 s without a tick
LIVENESS_LIMIT = 3 * 0.2 + LEASE_SECONDS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, await answer.json()


async def _until(url: str, status: int, *, within: float = 15.0) -> dict[str, Any]:
    """Poll `url` until it answers `status`; its body then."""
    deadline = time.monotonic() + within
    while True:
        got, body = await _get(url)
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still answers {got} {body} after {within:.0f}s, not {status}")
        await asyncio.sleep(0.1)  # polling an HTTP probe, as an orchestrator does


@pytest.fixture
async def probed(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[tuple[Bot, str]]:
    """The bot with its HTTP port and a short lease, so that a stuck loop is noticed within two seconds."""
    port = _free_port()
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", FATCONTROLLER_HTTP_PORT=port,
                            FATCONTROLLER_LEASE_SECONDS=LEASE_SECONDS)
    bot = await start_bot(AppConfig.of(train_config(sandbox)), settings)
    try:
        await sandbox.slack.wait_connected()
        lane = bot.engine.lanes[bot.train().name]
        await sandbox.slack.wait_for(lambda: lane.last_tick is not None, what="the job loop's first tick")
        yield bot, f"http://127.0.0.1:{port}"
    finally:
        await bot.stop()


async def test_both_probes_answer_200_while_the_loop_ticks_slack_is_connected_and_the_database_answers(
        probed: tuple[Bot, str]) -> None:
    _, url = probed
    live = await _until(f"{url}/healthz", 200)
    assert live["ok"] is True and "tick finished" in live["job_loop"], live
    assert await _get(f"{url}/readyz") == (200, {"ok": True, "slack": True, "database": True})


async def test_slack_s_socket_down_makes_the_bot_unready_but_never_dead(
        probed: tuple[Bot, str], sandbox: Sandbox) -> None:
    bot, url = probed
    slack = sandbox.slack
    # Held down: every reconnection fails at apps.connections.open, as while Slack's edge is out.
    slack.faults.add(Fault(match=r"^apps[.]connections[.]open$", status=503))
    await slack.drop_socket()

    unready = await _until(f"{url}/readyz", 503)
    assert unready == {"ok": False, "slack": False, "database": True}
    # Longer than liveness allows without a tick: the loop goes on ticking, so the process is alive.
    down_since = time.monotonic()
    while time.monotonic() - down_since < LIVENESS_LIMIT + 0.5:
        status, live = await _get(f"{url}/healthz")
        assert status == 200 and live["ok"] is True, live
        await asyncio.sleep(0.2)  # probing through the outage
    assert not slack.connected and slack.faults.injected > 0

    slack.faults.clear()
    await slack.wait_connected(timeout=20)
    assert await _until(f"{url}/readyz", 200) == {"ok": True, "slack": True, "database": True}
    assert bot.alive()[0]


async def test_a_job_loop_that_stops_ticking_makes_the_bot_dead_with_the_reason(
        probed: tuple[Bot, str], monkeypatch: pytest.MonkeyPatch) -> None:
    bot, url = probed
    await _until(f"{url}/healthz", 200)
    stuck, freed = asyncio.Event(), asyncio.Event()
    work = bot.engine.lanes[bot.train().name].work
    run_due = work.run_due

    async def hang() -> int:  # a step that never returns: the tick under way never finishes
        stuck.set()
        await freed.wait()
        return await run_due()

    monkeypatch.setattr(work, "run_due", hang)
    bot.engine.wake()
    await asyncio.wait_for(stuck.wait(), 5)

    dead = await _until(f"{url}/healthz", 503, within=LIVENESS_LIMIT + 5)
    assert dead["ok"] is False and "it is stuck" in dead["job_loop"], dead
    assert f"limit {LIVENESS_LIMIT:.0f}s" in dead["job_loop"]
    # Slack and the database are fine: only liveness says so.
    assert await _get(f"{url}/readyz") == (200, {"ok": True, "slack": True, "database": True})

    freed.set()
    assert (await _until(f"{url}/healthz", 200))["ok"] is True


async def test_liveness_counts_from_the_start_until_the_first_tick_and_is_false_once_stopped(
        probed: tuple[Bot, str]) -> None:
    bot = probed[0]
    engine, lane = bot.engine, bot.engine.lanes[bot.train().name]
    assert lane.last_tick is not None and lane.started_at is not None
    assert engine.alive(now=lane.last_tick + LIVENESS_LIMIT - 0.1)[0]
    alive, why = engine.alive(now=lane.last_tick + LIVENESS_LIMIT + 0.1)
    assert not alive and "last tick finished" in why
    await engine.stop()
    assert engine.alive() == (False, "the job loop is not running")


# -- the server on its own ------------------------------------------------------------------------------------
async def _serve(live: server.Liveness, ready: dict[str, server.Check]) -> tuple[HttpServer, str]:
    async def nothing() -> bytes:
        return b""

    async def woken(job: str) -> int:
        return 0

    http = HttpServer(live=live, ready=ready, metrics=nothing, wake_job=woken)
    port = _free_port()
    await http.start(port, host="127.0.0.1")
    return http, f"http://127.0.0.1:{port}"


async def test_a_readiness_check_that_raises_or_hangs_fails_the_probe_in_time_and_names_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "CHECK_TIMEOUT", 0.3)

    async def passes() -> bool:
        return True

    async def raises() -> bool:
        raise ConnectionResetError("reset by peer")

    async def hangs() -> bool:
        await asyncio.sleep(60)  # a database that never answers
        return True

    http, url = await _serve(lambda: (True, "ticking"), {"slack": passes, "database": hangs, "cache": raises})
    try:
        began = time.monotonic()
        status, body = await _get(f"{url}/readyz")
        assert time.monotonic() - began < 2
        assert (status, body) == (503, {"ok": False, "slack": True, "database": False, "cache": False})
        assert await _get(f"{url}/healthz") == (200, {"ok": True, "job_loop": "ticking"})
    finally:
        await http.stop()


async def test_liveness_failing_answers_503_with_its_reason() -> None:
    async def passes() -> bool:
        return True

    http, url = await _serve(lambda: (False, "the job loop is not running"), {"database": passes})
    try:
        assert await _get(f"{url}/healthz") == (503, {"ok": False, "job_loop": "the job loop is not running"})
        assert await _get(f"{url}/readyz") == (200, {"ok": True, "database": True})
    finally:
        await http.stop()
