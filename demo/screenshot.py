"""`make screenshot`: the README's pictures of the browser sandbox and the web dashboard, taken in headless Chromium.

It starts the sandbox and the real bot as `fatcontroller demo --keep` does (its `app.yaml`, the environment),
serves the page, queues a deploy as alice from the page and one as bob behind it, and waits at the first one's
canary gate (the second built ahead on it); then saves the page to `docs/browser-sandbox.png`, and the
dashboard's `/` and the deploy's page to `docs/dashboard.png` and `docs/dashboard-deploy.png`. Needs Chromium
(`/usr/bin/chromium`, or FATCONTROLLER_CHROMIUM) and Playwright.

    .venv/bin/python -m demo.screenshot [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
from pathlib import Path

import yaml

from bot.app import start_bot
from demo.scenario import app_yaml, demo_sandbox
from flows.config import Settings, load_config
from sandbox.browser import serve_browser

CHROMIUM = os.environ.get("FATCONTROLLER_CHROMIUM", "/usr/bin/chromium")
OUT = Path(__file__).resolve().parents[1] / "docs"


async def shoot(out: Path) -> None:
    from playwright.async_api import async_playwright

    sandbox = demo_sandbox()
    folder = Path(tempfile.mkdtemp(prefix="fatcontroller-screenshot-"))
    (folder / "app.yaml").write_text(yaml.safe_dump(app_yaml(sandbox), sort_keys=False))
    os.environ.update({**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'fatcontroller.db'}",
                       "FATCONTROLLER_HTTP_PORT": str(_free_port()), "FATCONTROLLER_INSTANCE": "screenshot"})
    bot = await start_bot(load_config(folder / "app.yaml"), Settings())
    sandbox.slack.commands = {"/deploy", "/pea"}
    view = serve_browser(sandbox)
    try:
        await sandbox.slack.wait_connected()
        pr = sandbox.github.create_pr("Add a welcome banner", {"app/banner.py": "BANNER = 'Welcome aboard'\n"})
        behind = sandbox.github.create_pr("Speed up checkout", {"app/checkout.py": "FAST = True\n"}, author="bob")
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
            await page.goto(f"{view.url}/?user=alice#channel/{sandbox.spec.channel}")
            await page.locator("#composer-text").fill(f"/deploy {pr}")
            await page.locator("#composer-text").press("Enter")
            card = page.locator("#messages > .message", has_text=f"#{pr} ")
            await card.get_by_role("button", name="Proceed").wait_for(timeout=60_000)
            await sandbox.slack.command("U0BOB", "/deploy", str(behind))
            canary = page.locator('#w-ecs tr[data-service="app-web-canary"]')  # the world's panel caught up
            await canary.wait_for(timeout=60_000)
            await card.get_by_role("button", name="Proceed").wait_for(timeout=60_000)
            await page.screenshot(path=str(out / "browser-sandbox.png"))
            dashboard = f"http://127.0.0.1:{os.environ['FATCONTROLLER_HTTP_PORT']}"
            await page.goto(f"{dashboard}/")
            await page.locator(".built-ahead", has_text="build #").first.wait_for(timeout=60_000)
            await page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            await page.goto(f"{dashboard}/deploys/1")
            await page.screenshot(path=str(out / "dashboard-deploy.png"), full_page=True)
            await browser.close()
    finally:
        view.stop()
        await bot.stop()
        sandbox.stop()
    print(f"wrote {out}/browser-sandbox.png, dashboard.png and dashboard-deploy.png")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    folder = parser.parse_args().out
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(folder))
