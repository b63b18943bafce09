"""The browser sandbox with the real bot: `fatcontroller run` in a process of its own on the sandbox, driven by a
person in the page (headless Chromium), as `demo --keep` serves it.

A deploy queued from the composer and taken through its card's buttons, one rolled back by itself when its watched
alarm is switched to ALARM in the world panel, the `/deploy` form with its pull request search, a pea claimed and
released from its DM; and every Block Kit payload the bot sent meanwhile
renders without an "unsupported" marker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.browser import BrowserView
from sandbox.world import Sandbox, SandboxSpec
from tests.fixtures.browser import assert_renders_everything
from tests.fixtures.world import raw_train_config

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

# Chromium and a bot process: one worker runs the browser modules, beside the other workers (make test).
pytestmark = pytest.mark.xdist_group("browser")

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0DEPLOYS"
PEA = "sweet-pea"
ALARM = "app-5xx-rate"  # watched by every deploy (DESIGN §9), OK unless a test flips it in the world panel


@pytest.fixture
def world(aws_credentials: None, tmp_path: Path) -> Iterator[tuple[Sandbox, BrowserView]]:
    """A sandbox with a pea, the bot running on it as `fatcontroller run` does, and the page's server."""
    sandbox = Sandbox(SandboxSpec(step_interval=0.02, build_duration=0.2,
                                  pea_services=(f"pea-{PEA}-web", f"pea-{PEA}-worker"))).start()
    sandbox.slack.commands = {"/deploy", "/pea"}
    config = tmp_path / "app.yaml"
    sandbox.aws.create_alarm(ALARM)
    config.write_text(yaml.safe_dump(raw_train_config(sandbox, peas={
        "cluster": sandbox.spec.pea_cluster, "names": [PEA], "url": "https://{pea}.dev.acme.com", "lease": "1h"},
        deploy={"alarms": [ALARM]})))
    env = {**os.environ, **sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
           "FATCONTROLLER_HTTP_PORT": "0", "FATCONTROLLER_INSTANCE": "browser-bot"}
    bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--config", str(config)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    view = BrowserView(sandbox)
    try:
        deadline = time.monotonic() + 30
        while not sandbox.slack.connected:
            assert bot.poll() is None, f"the bot did not start: {bot.stderr.read() if bot.stderr else ''}"
            assert time.monotonic() < deadline, "the bot did not connect to Slack within 30 s"
            time.sleep(0.05)
        view.start()
        yield sandbox, view
    finally:
        bot.terminate()
        bot.wait(30)
        view.stop()
        sandbox.stop()


@pytest.fixture
def page(world: tuple[Sandbox, BrowserView], browser_page: Any) -> Any:
    browser_page.goto(f"{world[1].url}/?user=alice#channel/{CHANNEL}")
    expect(browser_page.locator("#app-connection")).to_have_text("the app is connected")
    return browser_page


def send(page: Any, line: str) -> None:
    page.locator("#composer-text").fill(line)
    page.locator("#composer-text").press("Enter")


def card(page: Any, pr: int) -> Any:
    return page.locator("#messages > .message:not(.ephemeral)", has_text=f"#{pr} ")


def renders_everything_the_bot_sent(sandbox: Sandbox, page: Any) -> None:
    """Every message, edit and view the bot sent renders with no unsupported block or element."""
    assert_renders_everything(page, sandbox.slack.api_calls())


def test_a_deploy_queued_from_the_page_is_taken_through_its_card_to_completed(world, page) -> None:
    sandbox, _ = world
    pr = sandbox.github.create_pr("Blue banner", {"app/banner.py": "BLUE = True\n"}, author="alice")

    send(page, f"/deploy {pr}")
    expect(page.locator("#messages .message.ephemeral", has_text="Queued")).to_have_count(1)
    card(page, pr).get_by_role("button", name="Proceed").click()
    card(page, pr).get_by_role("button", name="Done").click()
    expect(card(page, pr)).to_contain_text("completed")
    merged = sandbox.github.pull_request(pr).merge_commit_sha
    assert merged and set(sandbox.aws.running_images("production", "app-web")) == {sandbox.image(merged)}
    renders_everything_the_bot_sent(sandbox, page)


def test_an_alarm_switched_to_alarm_in_the_world_panel_rolls_the_deploy_back_by_itself(world, page) -> None:
    sandbox, _ = world
    pr = sandbox.github.create_pr("Serves errors", {"app/errors.py": "RAISE = True\n"}, author="alice")

    send(page, f"/deploy {pr}")
    expect(card(page, pr).get_by_role("button", name="Proceed")).to_be_visible()
    expect(card(page, pr)).to_contain_text(f"{ALARM} OK")  # the card shows the watched alarm
    page.locator(f'tr[data-alarm="{ALARM}"]').get_by_role("button", name="ALARM").click()
    expect(card(page, pr)).to_contain_text("rolled back")
    expect(card(page, pr)).to_contain_text(f"alarm {ALARM} is in ALARM")
    assert sandbox.github.pull_request(pr).merged and "Revert" in sandbox.github.log(n=1)[0][1]
    renders_everything_the_bot_sent(sandbox, page)


def test_the_deploy_form_finds_the_pull_request_and_queues_it(world, page) -> None:
    sandbox, _ = world
    sandbox.github.create_pr("Unrelated", {"app/other.py": "x = 1\n"}, author="bob")
    pr = sandbox.github.create_pr("Faster checkout", {"app/checkout.py": "FAST = True\n"}, author="alice")

    send(page, "/deploy")
    modal = page.locator("#modal-layer .modal")
    expect(modal.locator(".modal-header h3")).to_have_text("Deploy")
    modal.locator(".bk-external-input").fill("checkout")
    modal.locator(".bk-external-option", has_text="Faster checkout").click()
    modal.get_by_role("button", name="Queue it").click()
    expect(page.locator("#modal-layer")).to_be_hidden()
    expect(page.locator("#messages .message.ephemeral", has_text=f"Queued deploy 1 of #{pr}")).to_have_count(1)
    expect(card(page, pr)).to_be_visible()
    renders_everything_the_bot_sent(sandbox, page)


def test_a_pea_is_claimed_from_the_composer_and_released_from_its_dm(world, page) -> None:
    sandbox, _ = world
    pr = sandbox.github.create_pr("Purple buttons", {"app/style.css": "button { color: purple; }\n"})

    send(page, f"/pea deploy {PEA} {pr}")
    page.locator("#nav-dm").click()
    up = page.locator("#messages > .message", has_text=f"{PEA} is up")
    expect(up).to_have_count(1)
    up.get_by_role("button", name="Release").click()
    page.locator(".bk-confirm").get_by_role("button", name="Release").click()  # "Release?" asks first
    expect(page.locator("#messages > .message", has_text=f"You released {PEA}")).to_have_count(1)
    expect(page.locator(f'#w-peas tr[data-service="pea-{PEA}-web"]')).to_contain_text("0/0")
    renders_everything_the_bot_sent(sandbox, page)
