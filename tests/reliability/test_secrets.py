"""Secrets never leave the process: a whole scenario (a deploy to completion, a pea, refusals, outside
failures retried) runs with recognisable secrets, and nothing captured holds one: the logs at DEBUG,
every message, edit, ephemeral and view Slack received, every argument of every Web API call, the
audit log and the deploys' texts. Every audited action names its actor. The web dashboard, served by
the bot after a deploy completed and one was rolled back, shows none of them on any page, JSON answer,
probe or refusal, in bodies or headers (DESIGN §10: nothing on it is a secret)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from bot.app import start_bot
from flows.config import AppConfig
from sandbox.slack import Message
from sandbox.world import Sandbox, SandboxSpec
from storage.models import AuditEvent, Deploy, Pea
from tests.fixtures.bot import BotWorld, settings_for, start_world
from tests.fixtures.peas import MANUAL_JOB, PEAS, pea_services
from tests.fixtures.world import train_config

ALICE, ADMIN = "U0ALICE", "U0ADMIN"
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-4242-SECRETslackbot-q8Zr1",
    "SLACK_APP_TOKEN": "xapp-1-A42-SECRETslackapp-k3Lm9",
    "GITHUB_TOKEN": "ghp_SECRETgithubPAT0000000000000000x7",
    "JENKINS_TOKEN": "11SECRETjenkinsApiToken5e1d",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/SECRETawsKEY",
}
WEB_PASSWORD = "SECRETwebPassword-Dq4n7"  # FATCONTROLLER_WEB_PASSWORD: the dashboard's own secret
HOOK_TOKEN = "SECREThookToken-Vz81c"  # FATCONTROLLER_HOOK_TOKEN
WEB_URL = "https://deploys.acme.test/"
MAIN = Path(__file__).parents[2]


@pytest.fixture
def secret_sandbox(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox, with peas, where every token and key is a recognisable secret."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])
    spec = SandboxSpec(step_interval=0.02, build_duration=0.2, pea_services=pea_services(),
                       jobs={"app-master": "master", "app-pr": "pr", MANUAL_JOB: "manual"},
                       bot_token=SECRETS["SLACK_BOT_TOKEN"], app_token=SECRETS["SLACK_APP_TOKEN"],
                       github_token=SECRETS["GITHUB_TOKEN"], jenkins_token=SECRETS["JENKINS_TOKEN"])
    world = Sandbox(spec).start()
    yield world
    world.stop()


def _database_password(url: str) -> str | None:
    return sa.make_url(url).password


def _leaks(texts: list[str], secrets: list[str]) -> list[str]:
    """Each secret found, with where: the text's start (an answer's path) and what surrounds the secret."""
    return [f"{secret[:8]}… in {text[:60]!r}: …{text[max(0, at - 80):at]!r}<secret>…"
            for text in texts for secret in secrets if (at := text.find(secret)) >= 0]


async def test_a_whole_scenario_leaks_no_secret_and_audits_every_actor(
        secret_sandbox: Sandbox, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, slack, github = secret_sandbox, secret_sandbox.slack, secret_sandbox.github
    secrets = list(SECRETS.values()) + [p for p in [_database_password(db_url)] if p]
    bot, config = await start_world(sandbox, tmp_path, peas={
        "cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"},
        database_url=db_url)
    world = BotWorld(bot, sandbox, config)
    try:
        # Outside failures on the way, each retried: their error texts are logged and counted.
        github.faults.fail_next(2, match="pulls", status=502)
        sandbox.jenkins.faults.fail_next(1, status=500)
        sandbox.aws.server_error(1, match="ecs:")
        slack.ratelimit("chat.update")
        pr = world.new_pr("Secretive change")
        await slack.command(ALICE, "/deploy", f"{pr} --notes \"token is {SECRETS['GITHUB_TOKEN'][:6]}\"")
        await world.reaches(pr, "canary_check", within=30)
        await slack.click(ALICE, "Proceed", message=await world.dm_with(ALICE, "Proceed"))
        await world.reaches(pr, "awaiting_confirmation", within=30)
        await slack.click(ALICE, "Done", message=await world.dm_with(ALICE, "Done"))
        await world.reaches(pr, "completed")
        await (await slack.command(ALICE, "/deploy", "99999")).ephemeral()
        await (await slack.command(ALICE, "/deploy", "freeze now")).ephemeral()
        await slack.command(ADMIN, "/deploy", "freeze release day")
        await slack.command(ADMIN, "/deploy", "unfreeze")
        pea_pr = world.new_pr("Pea change")
        await slack.wait_for(lambda: sandbox.jenkins.build_count("app-pr", github.pr_head(pea_pr)),
                             what="the PR job's build")
        answer = await (await slack.command(ALICE, "/pea", f"deploy sweet-pea {pea_pr}")).ephemeral()
        assert "sweet-pea" in answer.text and "Nothing was changed" not in answer.text, answer.text
        await slack.wait_for(lambda: any("is up at" in m.render() for m in slack.dms(ALICE)), 30, what="the pea up")
        await slack.command(ALICE, "/pea", "release sweet-pea")
        await slack.command(ALICE, "/deploy")
        await slack.wait_for(lambda: slack.current_view(ALICE), what="the form")
        await slack.open_home(ALICE)
        await slack.wait_for(lambda: slack.home(ALICE), what="the App Home")

        async with bot.engine.sessions() as session:
            audit = (await session.scalars(sa.select(AuditEvent))).all()
            deploys = (await session.scalars(sa.select(Deploy))).all()
            peas = (await session.scalars(sa.select(Pea))).all()
    finally:
        await bot.stop()

    shown: list[str] = [caplog.text]
    for channel in (config.slack.channel, slack.dm_channel(ALICE), slack.dm_channel(ADMIN)):
        for message in slack.messages(channel):
            shown += [message.text, json.dumps(message.blocks)] + [e.text + json.dumps(e.blocks) for e in message.edits]
    for user in (ALICE, ADMIN):
        shown += [m.text + json.dumps(m.blocks) for m in slack.ephemerals(user)]
        shown += [json.dumps(slack.home(user)), json.dumps(slack.current_view(user))]
    shown += [json.dumps(call.args, default=str) for call in slack.api_calls()]
    shown += [f"{a.action} {a.detail} {json.dumps(a.outside_ids)}" for a in audit]
    shown += [f"{d.attention} {d.outcome_reason} {d.notes}" for d in deploys]
    shown += [f"{p.failure_reason}" for p in peas]

    assert not _leaks(shown, secrets)
    assert sum(f.injected for f in (github.faults, sandbox.jenkins.faults, sandbox.aws.faults, slack.faults)) >= 4
    people = set(sandbox.spec.users)
    assert audit and all(a.actor in people | {"fatcontroller"} or a.actor.startswith("fatcontroller")
                         for a in audit), {a.actor for a in audit}
    acted = {(a.actor, a.action) for a in audit}
    assert any(actor == ALICE for actor, _ in acted) and any(actor == ADMIN for actor, _ in acted), acted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()}


async def test_no_dashboard_page_api_answer_or_probe_shows_a_secret(secret_sandbox: Sandbox, db_url: str) -> None:
    sandbox, slack = secret_sandbox, secret_sandbox.slack
    secrets = [*SECRETS.values(), WEB_PASSWORD, HOOK_TOKEN] + [p for p in [_database_password(db_url)] if p]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = train_config(sandbox, web={"url": WEB_URL})
    settings = settings_for(sandbox, db_url, FATCONTROLLER_HTTP_PORT=port, FATCONTROLLER_WEB_PASSWORD=WEB_PASSWORD,
                            FATCONTROLLER_HOOK_TOKEN=HOOK_TOKEN)
    bot = await start_bot(AppConfig.of(config), settings)
    world = BotWorld(bot, sandbox, config)
    answers: list[str] = []  # "<path> <status>", then every header and the body of each answer

    def dm_of(pr: int, label: str) -> Message | None:
        return next((m for m in reversed(slack.dms(ALICE)) if label in m.buttons and f"#{pr}" in m.render()), None)

    try:
        await slack.wait_connected()
        # Outside failures on the way, each retried: their error texts reach the audit trail the pages show.
        sandbox.github.faults.fail_next(2, match="pulls", status=502)
        sandbox.jenkins.faults.fail_next(1, status=500)
        sandbox.aws.server_error(1, match="ecs:")
        shipped = world.new_pr("Ship the dashboard")
        await slack.command(ALICE, "/deploy", str(shipped))
        await slack.click(ALICE, "Proceed", message=await slack.wait_for(lambda: dm_of(shipped, "Proceed"), 30))
        await slack.click(ALICE, "Done", message=await slack.wait_for(lambda: dm_of(shipped, "Done"), 30))
        completed = await world.reaches(shipped, "completed", within=30)
        undone = world.new_pr("Undo the dashboard")
        await slack.command(ALICE, "/deploy", str(undone))
        await slack.click(ALICE, "Roll back", message=await slack.wait_for(lambda: dm_of(undone, "Roll back"), 30))
        rolled = await world.reaches(undone, "rolled_back", within=30)
        ids = (completed.id, rolled.id)

        async with aiohttp.ClientSession() as http:
            async def get(path: str, status: int = 200, headers: dict[str, str] | None = None,
                          method: str = "GET") -> str:
                async with http.request(method, base + path,
                                        headers=_basic(WEB_PASSWORD) if headers is None else headers) as answer:
                    body = await answer.text()
                    answers.append(f"{path} {answer.status}\n" + "\n".join(f"{k}: {v}" for k, v in
                                                                          answer.headers.items()) + "\n" + body)
                    assert answer.status == status, (path, answer.status, body[:300])
                    return body

            pages = ["/", "/history", "/stats", f"/history?train={config.name}&state=completed",
                     f"/history?person={ALICE}&limit=1&page=2", "/history?state=rolled_back",
                     "/api/trains", "/api/history", "/api/stats", f"/api/history?train={config.name}&state=rolled_back",
                     f"/api/history?person={ALICE}&limit=1&page=2", "/static/dashboard.js", "/static/dashboard.css",
                     *(f"{prefix}/deploys/{i}" for i in ids for prefix in ("", "/api"))]
            bodies = {path: await get(path) for path in pages}
            for probe in ("/healthz", "/readyz", "/metrics"):  # open, and shown the password all the same
                await get(probe, headers={})
                await get(probe)
            for path in ("/", "/api/trains", f"/deploys/{ids[0]}", f"/api/deploys/{ids[1]}"):
                await get(path, 401, headers={})
                await get(path, 401, headers=_basic(SECRETS["GITHUB_TOKEN"]))
            await get("/deploys/999999", 404)
            await get("/api/deploys/999999", 404)
            await get("/history?state=exploded", 400)
            await get("/hooks/jenkins", 401, headers={"X-Fatcontroller-Token": "wrong"}, method="POST")
    finally:
        await bot.stop()

    # What was read is the deploys' whole story, so an empty page cannot pass for a clean one.
    assert json.loads(bodies["/api/history"])["total"] == 2
    assert completed.merge_sha and completed.merge_sha in bodies[f"/deploys/{completed.id}"]
    assert '"state": "rolled_back"' in bodies[f"/api/deploys/{rolled.id}"]
    assert "What rollback undoes" in bodies[f"/deploys/{rolled.id}"]
    assert not _leaks(answers, secrets)


@pytest.mark.parametrize(("command", "database", "code"), [
    (["db", "upgrade"], None, 0),  # succeeds, printing what it did
    (["run"], None, 2),  # the schema is fine, Slack is unreachable
    (["db", "upgrade"], "no_such_database", 1),  # the server refuses the connection
])
def test_the_command_line_never_prints_the_database_password(db_backend: str, db_url: str, tmp_path: Path,
                                                             command: list[str], database: str | None,
                                                             code: int) -> None:
    if db_backend != "postgresql":
        pytest.skip("an SQLite URL carries no password")
    url = sa.make_url(db_url)
    password = url.password
    assert password
    if database:
        url = url.set(database=database)
    config = tmp_path / "app.yaml"
    config.write_text((MAIN / "app.yaml").read_text())
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False), "FATCONTROLLER_CONFIG": str(config),
           "SLACK_BOT_TOKEN": "xoxb-x", "SLACK_APP_TOKEN": "xapp-x", "SLACK_API_URL": "http://127.0.0.1:9/api/",
           "JENKINS_URL": "http://127.0.0.1:9", "FATCONTROLLER_HTTP_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "bot.cli", *command], env=env, cwd=MAIN, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert password not in done.stdout + done.stderr
