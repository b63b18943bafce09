"""The web dashboard in headless Chromium, served by the real bot on the sandbox: `/` follows a deploy from queued
to completed without a reload, each change showing within 2 s; a deploy's page shows its timeline, links and
audit trail; on a phone-sized screen no page scrolls sideways.

The bot runs in-process on an event loop of its own thread, so that Playwright's synchronous API drives the
browser from the test's; the test acts through the trains' public API, as a person's clicks would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.app import Bot, start_bot
from flows.config import AppConfig
from flows.deploy.machine import Event, State
from flows.deploy.service import DeployRequest
from sandbox.world import Sandbox
from tests.fixtures.bot import settings_for
from tests.fixtures.world import train_config

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

# Chromium and a bot: one worker runs the browser modules, beside the other workers (make test).
pytestmark = pytest.mark.xdist_group("browser")

T = TypeVar("T")
ALICE, BOB = "U0ALICE", "U0BOB"
SHOWN_WITHIN_MS = 2000  # DESIGN §10: a page shows a change within 2 s
PHONE = {"width": 390, "height": 844}


class BotThread:
    """The real bot on an event loop in a thread of its own; `run` waits for a coroutine on that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bot-loop", daemon=True)
        self.thread.start()
        self.bot: Bot | None = None

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        if self.bot is not None:
            self.run(self.bot.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[BotThread, str]]:
    """The bot with its dashboard on a free port (no password: the HTTP tests cover it)."""
    port = _free_port()
    config = train_config(sandbox, web={"url": f"http://127.0.0.1:{port}"})
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", FATCONTROLLER_HTTP_PORT=port)
    running = BotThread()
    try:
        running.bot = running.run(start_bot(AppConfig.of(config), settings))
        running.run(sandbox.slack.wait_connected())
        yield running, f"http://127.0.0.1:{port}"
    finally:
        running.close()


def _state_of(running: BotThread, deploy_id: int) -> State:
    assert running.bot is not None
    view = running.run(running.bot.train().deploys.deploy(deploy_id))
    assert view is not None
    return view.state


def _until(running: BotThread, deploy_id: int, state: State, within: float = 30) -> float:
    """Wait (polling with a deadline) until the deploy is in `state`; the moment it was seen so, in ms."""
    deadline = time.monotonic() + within
    while (seen := _state_of(running, deploy_id)) is not state:
        assert time.monotonic() < deadline, f"deploy {deploy_id} is still {seen.value}, not {state.value}"
        time.sleep(0.02)  # polling the bot's database through its API, with a deadline
    return time.monotonic()


def _press(running: BotThread, deploy_id: int, state: State, event: Event) -> None:
    assert running.bot is not None
    running.run(running.bot.train().deploys.act(deploy_id, state.value, event, ALICE))


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"


def test_the_trains_page_follows_a_deploy_from_queued_to_completed_without_a_reload(
        served: tuple[BotThread, str], sandbox: Sandbox, browser_page: Any) -> None:
    running, url = served
    assert running.bot is not None
    deploys = running.bot.train().deploys
    first = sandbox.github.create_pr("First change", {"app/first.py": "A = 1\n"}, author="alice")
    second = sandbox.github.create_pr("Second change", {"app/second.py": "B = 2\n"}, author="bob")

    page = browser_page
    page.goto(url + "/")
    expect(page.locator(".empty", has_text="Nothing is deploying right now.")).to_be_visible()
    page.evaluate("() => { window.notReloaded = true; }")

    ahead = running.run(deploys.request(DeployRequest(requester=ALICE, pr_number=first))).deploy.id
    _until(running, ahead, State.CANARY_CHECK)
    in_flight = page.locator(f'.in-flight[data-deploy="{ahead}"]')
    expect(in_flight.locator('[data-state="canary_check"]')).to_be_visible(timeout=SHOWN_WITHIN_MS)

    # Queued behind it: its place and when it should start.
    behind = running.run(deploys.request(DeployRequest(requester=BOB, pr_number=second))).deploy.id
    queued = page.locator(f'.queue li[data-deploy="{behind}"]')
    expect(queued).to_contain_text("Second change", timeout=SHOWN_WITHIN_MS)
    expect(queued.locator(".position")).to_have_text("1")
    expect(queued).to_contain_text("starts in about")

    _press(running, ahead, State.CANARY_CHECK, Event.PROCEED)
    _until(running, ahead, State.AWAITING_CONFIRMATION)
    expect(in_flight.locator('[data-state="awaiting_confirmation"]')).to_be_visible(timeout=SHOWN_WITHIN_MS)

    _press(running, ahead, State.AWAITING_CONFIRMATION, Event.DONE)
    _until(running, ahead, State.COMPLETED)
    # Completed, it leaves the page's "in flight"; the deploy behind it takes the train.
    expect(page.locator(f'[data-deploy="{ahead}"]')).to_have_count(0, timeout=SHOWN_WITHIN_MS)
    _until(running, behind, State.CANARY_CHECK)
    expect(page.locator(f'.in-flight[data-deploy="{behind}"] [data-state="canary_check"]')).to_be_visible(
        timeout=SHOWN_WITHIN_MS)
    assert page.evaluate("() => window.notReloaded") is True

    # The history has the completed one, linking its page.
    page.goto(url + "/history?state=completed")
    expect(page.locator(f'tr[data-deploy="{ahead}"] [data-state="completed"]')).to_be_visible()
    page.locator(f'tr[data-deploy="{ahead}"] a[href="/deploys/{ahead}"]').first.click()
    expect(page.locator("h1")).to_contain_text(f"Deploy {ahead}")


def test_a_deploy_s_page_shows_its_timeline_and_audit_and_follows_it_live(
        served: tuple[BotThread, str], sandbox: Sandbox, browser_page: Any) -> None:
    running, url = served
    assert running.bot is not None
    pr = sandbox.github.create_pr("Audited change", {"app/audited.py": "C = 3\n"}, author="alice")
    deploy_id = running.run(running.bot.train().deploys.request(DeployRequest(requester=ALICE, pr_number=pr))
                            ).deploy.id
    _until(running, deploy_id, State.CANARY_CHECK)

    page = browser_page
    page.goto(url + f"/deploys/{deploy_id}")
    page.evaluate("() => { window.notReloaded = true; }")
    timeline = page.locator("ol.timeline")
    for state in ("queued", "merging", "building", "canarying", "canary check"):
        expect(timeline.locator(".tl-state", has_text=state).first).to_be_visible()
    expect(timeline.locator("li.current .tl-state")).to_have_text("canary check")
    view = running.run(running.bot.train().deploys.deploy(deploy_id))
    assert view is not None and view.merge_sha
    expect(page.locator(f'.facts a[href$="/commit/{view.merge_sha}"]')).to_have_text(view.merge_sha[:12])
    expect(page.locator(".facts dt", has_text="Build")).to_be_visible()
    target = view.targets[0]
    assert target.new_task_definition
    expect(page.locator("table.targets")).to_contain_text(target.new_task_definition)
    audit = page.locator("ol.audit")
    for action in ("requested", "merged", "task_definition_registered", "canary_created"):
        expect(audit.locator(".action").get_by_text(action, exact=True).first).to_be_visible()
    expect(audit.locator(".actor", has_text=ALICE).first).to_be_visible()
    # Times are shown in the viewer's zone (the browser's), not as the server's UTC.
    assert "UTC" not in (page.locator("ol.timeline time").first.text_content() or "")

    _press(running, deploy_id, State.CANARY_CHECK, Event.ROLL_BACK)
    _until(running, deploy_id, State.ROLLED_BACK)
    expect(page.locator('.deploy-head [data-state="rolled_back"]')).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("h2", has_text="What rollback undoes")).to_be_visible()
    expect(page.locator("ol.undo li.undo-merge")).to_contain_text("undone")
    assert page.evaluate("() => window.notReloaded") is True


def test_no_page_scrolls_sideways_on_a_phone(served: tuple[BotThread, str], sandbox: Sandbox,
                                             browser_page: Any) -> None:
    running, url = served
    assert running.bot is not None
    pr = sandbox.github.create_pr("A change with a rather long title that has to wrap on a small phone screen",
                                  {"app/phone.py": "D = 4\n"}, author="alice")
    deploy_id = running.run(running.bot.train().deploys.request(DeployRequest(requester=ALICE, pr_number=pr))
                            ).deploy.id
    _until(running, deploy_id, State.CANARY_CHECK)
    page = browser_page
    page.set_viewport_size(PHONE)
    for path in ("/", f"/deploys/{deploy_id}", "/history", "/stats"):
        page.goto(url + path)
        expect(page.locator("main#live")).to_be_visible()
        _no_sideways_scroll(page)
    page.goto(url + "/stats")
    expect(page.locator("svg.chart")).to_have_count(4)
    # Read in one go: the page's own refresh may swap the charts for fresh ones between two calls.
    widths = page.evaluate("() => [...document.querySelectorAll('svg.chart')]"
                           ".map(c => c.getBoundingClientRect().width)")
    assert len(widths) == 4 and all(100 < w <= PHONE["width"] for w in widths), widths
