"""The listeners, dispatched by Bolt without Socket Mode: what each request is acked with and answered.

The app is the real one (`bot.app.build_app` with every listener) over the real domain on the
sandbox; the requests are the payloads Slack sends, handed to `AsyncApp.async_dispatch` as Socket
Mode would. Answers to people go through the Slack emulator's Web API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import build_app
from bot.home import HomePublisher
from bot.surface import Surface
from bot.trains import TrainFlows
from flows.engine import Engine, TrainSetup
from sandbox.world import Sandbox
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.slack import SlackStore
from tests.fixtures.world import eventually, outside_for, train_config

ALICE = "U0ALICE"
Dispatch = Callable[[dict[str, Any]], Awaitable[BoltResponse]]


@pytest.fixture
async def app(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[AsyncApp]:
    database = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'listeners.db'}")
    await upgrade(database)
    sessions = make_sessionmaker(database)
    config = train_config(sandbox)
    # not started: the listeners alone are under test
    lane = Engine([TrainSetup(config, outside_for(sandbox))], sessions).lanes[config.name]
    client = AsyncWebClient(token=sandbox.spec.bot_token, base_url=sandbox.slack.api_url)
    train = TrainFlows(config, lane.deploys, lane.peas)
    home = HomePublisher(client, [train], config.slack.commands, SlackStore(sessions), debounce=0.01)
    yield build_app(client, Surface({train.name: train}, config.slack.commands, home))
    await home.close()
    await database.dispose()


@pytest.fixture
def dispatch(app: AsyncApp) -> Dispatch:
    async def send(body: dict[str, Any]) -> BoltResponse:
        return await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))

    return send


def command(text: str, name: str = "/deploy") -> dict[str, Any]:
    return {"command": name, "text": text, "user_id": ALICE, "user_name": "alice", "channel_id": "C0DEPLOYS",
            "team_id": "T0SANDBOX", "trigger_id": "1.2.3", "api_app_id": "A0APP"}


def block_action(action_id: str, value: str) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": ALICE}, "team": {"id": "T0SANDBOX"}, "api_app_id": "A0APP",
            "trigger_id": "1.2.3", "actions": [{"action_id": action_id, "block_id": "b", "value": value,
                                                 "type": "button"}]}


async def answered(sandbox: Sandbox, text: str) -> str:
    """The ephemeral answer Alice got that contains `text`."""
    async def probe() -> str | None:
        return next((m.text for m in sandbox.slack.ephemerals(ALICE) if text in m.text), None)

    return await eventually(probe, within=5, what=f"an answer with {text!r}")


async def test_a_command_is_acked_at_once_and_answered_ephemerally(dispatch: Dispatch, sandbox: Sandbox) -> None:
    response = await dispatch(command("help"))

    assert response.status == 200
    assert "Deploy a pull request" in await answered(sandbox, "Deploy a pull request")


async def test_bad_input_is_quoted_back_with_what_to_type_and_nothing_is_queued(
        dispatch: Dispatch, sandbox: Sandbox, app: AsyncApp) -> None:
    await dispatch(command("12x web"))

    answer = await answered(sandbox, "12x")
    assert "not a pull request number" in answer and "Nothing was changed" in answer
    await dispatch(command("queue"))
    assert "The train is empty" in await answered(sandbox, "The train is empty")


async def test_a_refusal_from_the_domain_is_worded_with_the_commands_to_type(dispatch: Dispatch,
                                                                             sandbox: Sandbox) -> None:
    await dispatch(command("999"))

    answer = await answered(sandbox, "#999")
    assert "There is no pull request #999 in acme/app" in answer and "Nothing was changed" in answer


async def test_a_forged_button_is_acked_and_refused(dispatch: Dispatch, sandbox: Sandbox) -> None:
    response = await dispatch(block_action("deploy_proceed", '{"deploy": "x"}'))

    assert response.status == 200
    assert "not valid any more" in await answered(sandbox, "not valid any more")


async def test_a_pea_button_for_a_pea_that_does_not_exist_is_refused(dispatch: Dispatch, sandbox: Sandbox) -> None:
    await dispatch(block_action("pea_release", json.dumps({"pea": "green-pea"})))

    assert "Peas are not set up here" in await answered(sandbox, "Peas are not set up")


async def test_an_unknown_action_is_acked_rather_than_left_to_time_out(dispatch: Dispatch, sandbox: Sandbox) -> None:
    response = await dispatch(block_action("somebody_elses_button", "1"))

    assert response.status == 200
    await answered(sandbox, "not valid any more")


async def test_a_form_submitted_empty_is_answered_beside_its_fields(dispatch: Dispatch) -> None:
    body = {"type": "view_submission", "user": {"id": ALICE}, "team": {"id": "T0SANDBOX"}, "api_app_id": "A0APP",
            "view": {"type": "modal", "callback_id": "deploy_request", "private_metadata": "{}",
                     "state": {"values": {}}}}

    response = await dispatch(body)

    assert json.loads(response.body) == {"response_action": "errors", "errors": {
        "pr": "Pick a pull request.", "processes": "Tick at least one process."}}


async def test_pull_request_suggestions_are_the_ack_and_a_typed_number_is_offered_when_github_is_down(
        dispatch: Dispatch, sandbox: Sandbox) -> None:
    pr = sandbox.github.create_pr("Searchable banner", {"app/banner.py": "x = 1\n"})
    body = {"type": "block_suggestion", "user": {"id": ALICE}, "team": {"id": "T0SANDBOX"}, "api_app_id": "A0APP",
            "action_id": "pr_pick", "block_id": "pr", "value": "banner"}

    found = json.loads((await dispatch(body)).body)["options"]
    assert [o["value"] for o in found] == [str(pr)]

    sandbox.github.faults.error_rate(1.0)
    typed = json.loads((await dispatch(body | {"value": "#42"})).body)["options"]
    assert typed == [{"text": {"type": "plain_text", "text": "#42", "emoji": True}, "value": "42"}]
