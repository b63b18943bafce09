"""`make screenshot`: the README's picture of the browser sandbox, taken in headless Chromium.

It starts the sandbox and the real bot as `fatcontroller demo --keep` does (its `app.yaml`, the environment),
serves the page, queues a deploy as alice from the page and waits at its canary gate, then saves the page to
`docs/browser-sandbox.png`. Needs Chromium (`/usr/bin/chromium`, or FATCONTROLLER_CHROMIUM) and Playwright.

    .venv/bin/python -m demo.screenshot [--out docs/browser-sandbox.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import yaml

from bot.app import start_bot
from demo.scenario import app_yaml, demo_sandbox
from flows.config import Settings, load_config
from sandbox.browser import serve_browser

CHROMIUM = os.environ.get("FATCONTROLLER_CHROMIUM", "/usr/bin/chromium")
OUT = Path(__file__).resolve().parents[1] / "docs" / "browser-sandbox.png"


async def shoot(out: Path) -> None:
    from playwright.async_api import async_playwright

    sandbox = demo_sandbox()
    folder = Path(tempfile.mkdtemp(prefix="fatcontroller-screenshot-"))
    (folder / "app.yaml").write_text(yaml.safe_dump(app_yaml(sandbox), sort_keys=False))
    os.environ.update({**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'fatcontroller.db'}",
                       "FATCONTROLLER_HTTP_PORT": "0", "FATCONTROLLER_INSTANCE": "screenshot"})
    bot = await start_bot(load_config(folder / "app.yaml"), Settings())
    sandbox.slack.commands = {"/deploy", "/pea"}
    view = serve_browser(sandbox)
    try:
        await sandbox.slack.wait_connected()
        pr = sandbox.github.create_pr("Add a welcome banner", {"app/banner.py": "BANNER = 'Welcome aboard'\n"})
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
            await page.goto(f"{view.url}/?user=alice#channel/{sandbox.spec.channel}")
            await page.locator("#composer-text").fill(f"/deploy {pr}")
            await page.locator("#composer-text").press("Enter")
            card = page.locator("#messages > .message", has_text=f"#{pr} ")
            await card.get_by_role("button", name="Proceed").wait_for(timeout=60_000)
            canary = page.locator('#w-ecs tr[data-service="app-web-canary"]')  # the world's panel caught up
            await canary.wait_for(timeout=60_000)
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out))
            await browser.close()
    finally:
        view.stop()
        await bot.stop()
        sandbox.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    asyncio.run(shoot(parser.parse_args().out))
