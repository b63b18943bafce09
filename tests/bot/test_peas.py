"""Peas in Slack, typed and clicked through the Slack emulator against the real bot and the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Bot
from flows.pea import service
from flows.pea.flows import PeaFlows
from flows.pea.worker import PeaWorker
from sandbox.slack import SlackEmulator
from sandbox.world import Sandbox
from storage.models import Pea
from tests.fixtures.bot import SLACK_ACK_LIMIT_MS, start_world
from tests.fixtures.peas import PEAS, PROCESSES
from tests.fixtures.world import eventually

ALICE, BOB, ADMIN = "U0ALICE", "U0BOB", "U0ADMIN"


@dataclass
class PeaWorld:
    bot: Bot
    sandbox: Sandbox
    flows: PeaFlows

    @property
    def slack(self) -> SlackEmulator:
        return self.sandbox.slack

    async def ready_pr(self, title: str) -> int:
        """A new PR whose head has a green build on the PR job."""
        pr = self.sandbox.github.create_pr(title, {f"app/{title.replace(' ', '_')}.py": "x = 1\n"})
        sha = self.sandbox.github.pr_head(pr)

        async def green() -> bool:
            build = await self.bot.engine.lanes[self.bot.train().name].outside.jenkins.find_build("app-pr", sha)
            return build is not None and build.green

        await eventually(green, what=f"a green build of #{pr}")
        return pr

    async def pea(self, name: str) -> Pea:
        found = await service.get_pea(self.bot.engine.sessions, name)
        assert found is not None
        return found

    async def reaches(self, name: str, state: str) -> Pea:
        async def probe() -> Pea | None:
            pea = await service.get_pea(self.bot.engine.sessions, name)  # the row appears with the first claim
            return pea if pea is not None and pea.state == state else None

        return await eventually(probe, what=f"{name} {state}")

    async def dm_saying(self, user: str, text: str) -> Any:
        return await self.slack.wait_for(
            lambda: next((m for m in reversed(self.slack.dms(user)) if text in m.render()), None),
            what=f"a DM to {user} saying {text!r}")


@pytest.fixture
async def pea_world(pea_sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[PeaWorld]:
    bot, config = await start_world(pea_sandbox, tmp_path, peas={
        "cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"})
    engine = bot.engine
    lane = engine.lanes[config.name]
    flows = lane.peas
    # The engine runs the peas too; this quicker worker only shortens the freshness checks.
    worker = PeaWorker(config, engine.sessions, lane.outside, engine.outbox, owner="peas-under-test",
                       lease_ttl=engine.lease_ttl, poll=timedelta(seconds=0.05), check_every=timedelta(seconds=0.2))

    async def work() -> None:
        while True:
            if not await worker.pass_once():
                await asyncio.sleep(0.02)

    loop = asyncio.create_task(work())
    yield PeaWorld(bot, pea_sandbox, flows)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await bot.stop()
    slow = [ack for ack in pea_sandbox.slack.acks if ack.latency_ms >= SLACK_ACK_LIMIT_MS]
    assert not slow, f"acks slower than Slack allows: {slow}"


async def test_pea_deploy_claims_a_pea_and_the_holder_gets_the_url_and_the_list_shows_it(
        pea_world: PeaWorld) -> None:
    slack = pea_world.slack
    listed = await (await slack.command(ALICE, "/pea")).ephemeral()
    assert "3 of 3 free" in listed.text and all(name in listed.render() for name in PEAS)
    pr = await pea_world.ready_pr("Purple buttons")

    answer = await (await slack.command(ALICE, "/pea", f"deploy sweet-pea {pr}")).ephemeral()
    assert f"Deploying #{pr} to `sweet-pea`" in answer.text

    up = await pea_world.dm_saying(ALICE, "is up at https://sweet-pea.dev.acme.com")
    assert up.buttons == ["Extend", "Release"]
    pea = await pea_world.pea("sweet-pea")
    for process in PROCESSES:
        assert pea_world.sandbox.aws.running_images("peas", f"pea-sweet-pea-{process}") == [pea.image]
    listed = await (await slack.command(BOB, "/pea")).ephemeral()
    line = next(row for row in listed.render().splitlines() if "sweet-pea" in row)
    assert "`up`" in line and "<@U0ALICE>" in line and "Purple buttons" in line and pea.head_sha[:8] in line
    assert "https://sweet-pea.dev.acme.com" in line and "until" in line
    assert "2 of 3 free" in listed.text


async def test_a_stranger_is_refused_and_the_holder_releases_with_the_dm_button(pea_world: PeaWorld) -> None:
    slack = pea_world.slack
    pr = await pea_world.ready_pr("Mine")
    await slack.command(ALICE, "/pea", f"deploy sweet-pea {pr}")
    up = await pea_world.dm_saying(ALICE, "is up at")

    refused = await (await slack.command(BOB, "/pea", "release sweet-pea")).ephemeral()
    assert "held by <@U0ALICE>" in refused.text and "Nothing was changed" in refused.text
    over = await (await slack.command(BOB, "/pea", f"deploy sweet-pea {pr}")).ephemeral()
    assert "held by <@U0ALICE>" in over.text
    assert (await pea_world.pea("sweet-pea")).holder == ALICE

    released = await (await slack.click(ALICE, "Release", message=up)).ephemeral()
    assert "Released `sweet-pea`" in released.text
    await pea_world.reaches("sweet-pea", "free")
    for process in PROCESSES:
        assert pea_world.sandbox.aws.service("peas", f"pea-sweet-pea-{process}")["desiredCount"] == 0
    await pea_world.dm_saying(ALICE, "You released `sweet-pea`")
    [before] = [m for m in slack.dms(ALICE) if m.ts == up.ts]
    assert before.buttons == []  # the buttons went with the pea


async def test_bad_input_is_quoted_back_with_what_to_type(pea_world: PeaWorld) -> None:
    slack = pea_world.slack
    for text, expected in [("deploy green-pea 12", "no pea `green-pea`"),
                           ("deploy sweet-pea twelve", "`twelve` is not a pull request number"),
                           ("deploy sweet-pea 999", "no pull request #999"),
                           ("extend sweet-pea", "`sweet-pea` is not claimed"),
                           ("frobnicate", "`frobnicate` is not a `/pea` command")]:
        answer = await (await slack.command(ALICE, "/pea", text)).ephemeral()
        assert expected in answer.text and "Nothing was changed" in answer.text, (text, answer.text)
    help_text = await (await slack.command(ALICE, "/pea", "help")).ephemeral()
    assert "/pea deploy &lt;pea&gt; &lt;pr&gt;" in help_text.text
    assert all(not v.held for v in await pea_world.flows.all())


async def test_the_form_deploys_a_picked_pr_to_a_picked_pea_and_shows_refusals_beside_the_field(
        pea_world: PeaWorld) -> None:
    slack = pea_world.slack
    theirs = await pea_world.ready_pr("Bob's work")
    await slack.command(BOB, "/pea", f"deploy chick-pea {theirs}")
    await pea_world.reaches("chick-pea", "deploying")
    pr = await pea_world.ready_pr("Faster checkout")

    await slack.command(ALICE, "/pea", "deploy")
    form = await slack.wait_for(lambda: slack.current_view(ALICE), what="the pea form")
    options = form["blocks"][0]["element"]["options"]
    assert [o["value"] for o in options][-1] == "chick-pea"  # free peas first, someone else's last
    [picked] = await slack.suggest(ALICE, "pr_pick", "pr", "checkout")

    refused = await slack.submit_view(ALICE, {"pea": {"pea": "chick-pea"}, "pr": {"pr_pick": picked}})
    assert refused.errors and "held by <@U0BOB>" in refused.errors["pea"]
    submitted = await slack.submit_view(ALICE, {"pea": {"pea": "snow-pea"}, "pr": {"pr_pick": picked}})
    assert submitted.errors is None and slack.current_view(ALICE) is None
    assert f"Deploying #{pr} to `snow-pea`" in (await submitted.ephemeral()).text
    await pea_world.dm_saying(ALICE, "is up at https://snow-pea.dev.acme.com")


async def test_the_app_home_shows_your_peas(pea_world: PeaWorld) -> None:
    pr = await pea_world.ready_pr("Home page")
    await pea_world.slack.command(ALICE, "/pea", f"deploy snow-pea {pr}")
    await pea_world.reaches("snow-pea", "up")

    await pea_world.slack.open_home(ALICE)

    def shows_the_pea() -> bool:
        home = pea_world.slack.home(ALICE)
        text = str(home) if home else ""
        return "Your peas" in text and "snow-pea" in text and "`up`" in text

    await pea_world.slack.wait_for(shows_the_pea, what="snow-pea on Alice's Home")
    extended = await (await pea_world.slack.click(ALICE, "Extend", in_home=True)).ephemeral()
    assert "`snow-pea` is yours until" in extended.text


async def test_an_admin_releasing_your_pea_is_a_mention_and_your_title_stays_escaped(pea_world: PeaWorld) -> None:
    """Issue 13, item 14: the DM once read `&lt;@U0ADMIN&gt; released sweet-pea` (a mention escaped twice)."""
    slack = pea_world.slack
    pr = await pea_world.ready_pr("Purple <!channel> buttons")
    await slack.command(ALICE, "/pea", f"deploy sweet-pea {pr}")
    up = await pea_world.dm_saying(ALICE, "is up at")
    assert "Purple &lt;!channel&gt; buttons" in up.render() and "<!channel>" not in up.render()
    assert "until <!date^" in up.render()  # a time each reader sees in their own zone, as on the cards

    answer = await (await slack.command(ADMIN, "/pea", "release sweet-pea")).ephemeral()
    assert "Released `sweet-pea`" in answer.text

    told = await pea_world.dm_saying(ALICE, "released `sweet-pea`")
    assert f"<@{ADMIN}> released `sweet-pea`" in told.render() and "&lt;@" not in told.render()
    assert f"<@{ADMIN}> released sweet-pea" in told.text  # the notification's text mentions too
