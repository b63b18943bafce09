"""The browser sandbox without a browser: the Slack emulator's additions it relies on, and its JSON API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from demo.scenario import demo_sandbox
from sandbox.browser import BrowserView
from sandbox.slack import SLACKBOT, SlackEmulator
from sandbox.world import Sandbox, SandboxSpec
from tests.fixtures.browser import make_candidate

T = TypeVar("T")
ALICE = "U0ALICE"
CHANNEL = "C0DEPLOYS"


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def step(name: str, *, notify: bool = True) -> dict:
    """A modal with a text input and two buttons with the same label."""
    return {"type": "modal", "callback_id": name, "title": plain(name.title()), "submit": plain("Next"),
            "notify_on_close": notify, "blocks": [
                {"type": "input", "block_id": "reason", "label": plain("Reason"),
                 "element": {"type": "plain_text_input", "action_id": "reason"}},
                {"type": "actions", "block_id": "pick", "elements": [
                    {"type": "button", "action_id": "pick-a", "value": "a", "text": plain("Pick")},
                    {"type": "button", "action_id": "pick-b", "value": "b", "text": plain("Pick")}]}]}


@pytest.fixture
async def bolt(slack_emulator: SlackEmulator) -> AsyncIterator[list[dict]]:
    """A Bolt app: /steps opens a modal, Submit pushes a second one, every click and close is kept."""
    app = AsyncApp(client=AsyncWebClient(token="xoxb-test", base_url=slack_emulator.api_url))
    seen: list[dict] = []

    @app.command("/steps")
    async def steps(ack, body, client) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=step("first", notify=False))

    @app.view("first")
    async def first(ack) -> None:
        await ack(response_action="push", view=step("second"))

    @app.action("pick-a")
    @app.action("pick-b")
    async def pick(ack, body) -> None:
        await ack()
        seen.append(body)

    @app.view_closed("second")
    async def closed(ack, body) -> None:
        await ack()
        seen.append(body)

    handler = AsyncSocketModeHandler(app, "xapp-test")
    await handler.connect_async()
    await slack_emulator.wait_connected()
    yield seen
    await handler.close_async()


async def test_an_unknown_command_is_answered_by_slackbot_at_once_and_never_reaches_the_app(slack_emulator) -> None:
    slack_emulator.commands = {"/deploy"}  # and no app is even connected: nothing waits for an ack
    interaction = await slack_emulator.command(ALICE, "/deply", "6")

    assert interaction.answered_by_slack and interaction.ack is None and interaction.latency_ms == 0.0
    answer = await interaction.ephemeral()
    assert answer.user == SLACKBOT and answer.via == "slack" and answer.channel == CHANNEL
    assert answer.text.startswith("/deply is not a valid command.")
    assert slack_emulator.acks == []


async def test_a_click_in_a_modal_picks_the_button_by_action_id_and_carries_what_was_typed(slack_emulator,
                                                                                           bolt) -> None:
    await slack_emulator.command(ALICE, "/steps")
    await slack_emulator.wait_for(lambda: slack_emulator.current_view(ALICE), what="the first step")

    await slack_emulator.click(ALICE, "Pick", in_modal=True, action_id="pick-b",
                               values={"reason": {"reason": "half typed"}})
    body = await slack_emulator.wait_for(lambda: bolt[-1] if bolt else None, what="the click")
    assert body["actions"][0]["action_id"] == "pick-b" and body["actions"][0]["value"] == "b"
    assert body["view"]["state"]["values"]["reason"]["reason"]["value"] == "half typed"
    assert body["state"] == body["view"]["state"]


async def test_close_goes_back_from_a_pushed_view_and_the_x_closes_the_stack(slack_emulator, bolt) -> None:
    await slack_emulator.command(ALICE, "/steps")
    await slack_emulator.wait_for(lambda: slack_emulator.current_view(ALICE), what="the first step")
    await slack_emulator.submit_view(ALICE, {"reason": {"reason": "go on"}})
    assert [v["callback_id"] for v in slack_emulator.views(ALICE)] == ["first", "second"]

    back = await slack_emulator.close_view(ALICE)  # "second" asked to be told
    assert back is not None and back.type == "view_closed"
    assert [v["callback_id"] for v in slack_emulator.views(ALICE)] == ["first"]
    closed = await slack_emulator.wait_for(lambda: [b for b in bolt if b["type"] == "view_closed"], what="view_closed")
    assert closed[0]["view"]["callback_id"] == "second" and closed[0]["is_cleared"] is False

    assert await slack_emulator.close_view(ALICE, all_views=True) is None  # "first" did not ask
    assert slack_emulator.current_view(ALICE) is None
    with pytest.raises(AssertionError, match="has no modal open"):
        await slack_emulator.close_view(ALICE)


@pytest.fixture(scope="module")
def view() -> Iterator[BrowserView]:
    sandbox = Sandbox(SandboxSpec(alarms=("app-web-5xx",), pea_services=("pea-chick-pea-web",))).start()
    browser = BrowserView(sandbox)
    browser.start()
    yield browser
    browser.stop()
    sandbox.stop()


async def get(view: BrowserView, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(view.url + path) as response:
        return await response.json()


async def post(view: BrowserView, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(view.url + path, json=body) as response:
        return response.status, await response.json()


async def eventually(predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
    """Poll until `predicate` returns something truthy (a condition, not a guess at how long to sleep)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        await asyncio.sleep(0.02)
    return result


async def test_the_state_says_unchanged_until_something_changes(view: BrowserView) -> None:
    first = await get(view, "/api/state?user=alice")
    assert first["user"] == ALICE and first["workspace"]["channels"] == [{"id": CHANNEL, "name": "deploys"}]
    assert await get(view, f"/api/state?user=alice&since={first['version']}") == {
        "version": first["version"], "unchanged": True}

    client = AsyncWebClient(token=view.slack.bot_token, base_url=view.slack.api_url)  # as the app would
    posted = await client.chat_postMessage(channel=CHANNEL, text="parent")
    await client.chat_postMessage(channel=CHANNEL, text="child", thread_ts=posted["ts"])
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="parent, edited")
    later = await get(view, f"/api/state?user=alice&since={first['version']}")
    assert later["version"] != first["version"]
    [parent] = [m for m in later["slack"]["channels"][CHANNEL] if m["ts"] == posted["ts"]]
    assert parent["text"] == "parent, edited" and len(parent["edits"]) == 1 and parent["is_app"]
    assert [r["text"] for r in parent["replies"]] == ["child"]


async def test_the_world_is_read_from_the_emulators(view: BrowserView) -> None:
    sandbox = view.sandbox
    number = sandbox.github.create_pr("Make it blue", {"app/colour.py": "BLUE = True\n"}, author="bob")
    world = view.world_state()
    [repo] = world["repos"]  # this sandbox has one repository
    assert repo["repo"] == "acme/app"
    github = repo["github"]
    assert github["base"] == "master" and github["branches"][0]["name"] == "master"
    [branch] = [b for b in github["branches"] if b["name"] == f"bob/change-{number}"]
    assert [c["subject"] for c in branch["commits"]] == ["Make it blue"]
    assert github["pulls"][0]["number"] == number and github["pulls"][0]["state"] == "open"
    clusters = {c["name"]: c for c in world["ecs"]["clusters"]}
    web = next(s for s in clusters["production"]["services"] if s["name"] == "app-web")
    assert (web["desired"], web["running"], web["task_definition"]) == (4, 4, "app-web:1")
    running = sandbox.aws.running_images("production", "app-web")[0].rsplit(":", 1)[1]
    assert web["images"][0].startswith(f"{running[:10]} (")  # with what the commit is: a branch head, a subject
    assert web["deployments"][0]["status"] == "PRIMARY" and web["deployments"][0]["rollout"] == "COMPLETED"
    assert clusters["peas"]["peas"] and clusters["peas"]["services"][0]["name"] == "pea-chick-pea-web"
    assert world["alarms"][0]["name"] == "app-web-5xx" and world["alarms"][0]["state"] == "OK"
    assert {j["name"] for j in repo["jenkins"]} == {"app-master", "app-pr"}
    assert github["candidates"] == []


async def test_every_repository_is_in_the_world_with_its_candidate_branches_and_its_own_jenkins() -> None:
    sandbox = demo_sandbox()  # acme/app and acme/billing, a train each
    view = BrowserView(sandbox)
    try:
        app, billing = sandbox.repos["acme/app"], sandbox.repos["acme/billing"]
        pr = app.github.create_pr("Blue banner", {"app/banner.py": "BLUE = True\n"})
        merge = make_candidate(app.github, "fatcontroller/app/12", pr, sandbox.spec.github_token)
        ledger = billing.github.create_pr("Round invoices", {"billing/round.py": "CENTS = 2\n"}, author="bob")
        landed = billing.github.push({"billing/tax.py": "RATE = 0.2\n"}, message="Tax at 20%")

        def billing_built() -> Any:
            repos = view.world_state()["repos"]
            jobs = {j["name"]: j for j in repos[1]["jenkins"]}
            return repos if jobs["billing-pr"]["builds"] and jobs["billing-master"]["builds"] else None

        repos = await eventually(billing_built, timeout=10)
        assert [r["repo"] for r in repos] == ["acme/app", "acme/billing"]
        on_app, on_billing = repos[0]["github"], repos[1]["github"]
        [candidate] = on_app["candidates"]
        assert (candidate["name"], candidate["train"], candidate["deploy"], candidate["sha"]) == (
            "fatcontroller/app/12", "app", 12, merge)
        assert [c["subject"] for c in candidate["commits"]] == [f"Merge #{pr} into fatcontroller/app/12",
                                                               "Blue banner"]
        assert "fatcontroller/app/12" not in [b["name"] for b in on_app["branches"]]  # shown once, as a candidate
        assert on_billing["base"] == "master" and on_billing["branches"][0]["sha"] == landed
        assert on_billing["branches"][0]["commits"][0]["subject"] == "Tax at 20%"
        assert [(p["number"], p["title"]) for p in on_billing["pulls"]] == [(ledger, "Round invoices")]
        assert {j["name"] for j in repos[0]["jenkins"]} == {"app-master", "app-pr"}
        [built] = [b for j in repos[1]["jenkins"] if j["name"] == "billing-pr" for b in j["builds"]]
        assert built["pr"] == ledger and built["sha"] == billing.github.pr_head(ledger)
    finally:
        sandbox.stop()


async def test_a_pull_request_of_another_repository_is_scripted_in_its_own_jenkins() -> None:
    sandbox = demo_sandbox()
    view = BrowserView(sandbox)
    view.start()
    try:
        billing = sandbox.repos["acme/billing"]
        ledger = billing.github.create_pr("Round invoices", {"billing/round.py": "CENTS = 2\n"})
        opened = billing.github.pr_head(ledger)
        await eventually(lambda: billing.jenkins.build_count("billing-pr", opened), timeout=10)  # its first build
        status, answer = await post(view, "/api/jenkins/fail-next", {"pr": ledger, "repo": "acme/billing"})
        assert status == 200 and answer["scripted"] == f"the next build of PR #{ledger} of acme/billing fails, " \
                                                       "later ones pass"
        head = billing.github.push_pr(ledger, {"billing/round.py": "CENTS = 3\n"})
        build = await eventually(lambda: next((b for j in view.world_state()["repos"][1]["jenkins"]
                                               for b in j["builds"] if b["sha"] == head and b["result"]), None))
        assert build["result"] == "FAILURE"
        status, answer = await post(view, "/api/jenkins/fail-next", {"pr": 1, "repo": "acme/nope"})
        assert "no repository 'acme/nope'" in answer["error"]
    finally:
        view.stop()
        sandbox.stop()


async def test_a_job_scripted_from_the_page_fails_its_next_build(view: BrowserView) -> None:
    sandbox = view.sandbox
    status, answer = await post(view, "/api/jenkins/fail-next", {"job": "app-master"})
    assert status == 200 and answer["ok"], answer
    sha = sandbox.github.push({"README.md": "# scripted\n"}, message="Land something")
    build = await eventually(lambda: next((b for j in view.world_state()["repos"][0]["jenkins"]
                                           if j["name"] == "app-master"
                                           for b in j["builds"] if b["sha"] == sha and b["result"]), None))
    assert build["result"] == "FAILURE"
    assert "fails once" in view.world_state()["scripted"][-1]["what"]


async def test_bad_requests_are_refused_with_a_reason(view: BrowserView) -> None:
    assert (await post(view, "/api/command", {"user": "nobody", "command": "/deploy"}))[1]["error"].startswith(
        "unknown user 'nobody'")
    assert "starts with /" in (await post(view, "/api/command", {"user": "alice", "command": "deploy"}))[1]["error"]
    assert "no modal is open" in (await post(view, "/api/submit", {"user": "alice"}))[1]["error"]
    assert "one of" in (await post(view, "/api/alarm", {"name": "app-web-5xx", "state": "RED"}))[1]["error"]
    assert "no alarm" in (await post(view, "/api/alarm", {"name": "nope", "state": "OK"}))[1]["error"]
    assert "no Jenkins job" in (await post(view, "/api/jenkins/fail-next", {"job": "nope"}))[1]["error"]
    status, answer = await post(view, "/api/click", ["not", "an", "object"])
    assert status == 400 and not answer["ok"]
    assert (await get(view, "/api/state?user=nobody"))["error"].startswith("unknown user")
