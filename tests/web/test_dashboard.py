"""The web dashboard over HTTP: its JSON and pages on deploys seeded in the database (history filters and pages,
a rolled-back deploy's whole story, the trains' queues, the weekly charts), the password in front of it and not
in front of the probes and the hook, and the real bot serving it on the sandbox with its links in cards and DMs
and none of its secrets on any page."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import start_bot
from flows.config import AppConfig, TrainConfig
from flows.engine import Engine, TrainSetup
from flows.outside import Outside
from sandbox.world import Sandbox
from storage.clock import utcnow
from storage.models import AuditEvent, Deploy, Train, UndoRecord
from storage.trains import ensure_train
from tests.fixtures.bot import BotWorld, settings_for
from tests.fixtures.storage import Database
from tests.fixtures.world import eventually, outside_for, train_config
from web.dashboard import Dashboard, SharedAnswers
from web.server import HttpServer

PASSWORD = "correct-horse-battery-staple"
MIN = timedelta(minutes=1)
ARN = "arn:aws:ecs:eu-west-1:123456789012:task-definition/app-web:{}"
REPO = "https://github.com/acme/app"


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Seeded:
    """Two trains on one database, their engine not started: what the dashboard reads is only what was seeded."""

    database: Database
    engine: Engine
    configs: list[TrainConfig]
    outsides: list[Outside]

    @property
    def lanes(self) -> list[Any]:
        return list(self.engine.lanes.values())

    async def add(self, *deploys: Deploy, audit: tuple[AuditEvent, ...] = (),
                  undo: tuple[UndoRecord, ...] = ()) -> list[int]:
        async with self.database.sessions() as session, session.begin():
            for config in self.configs:
                await ensure_train(session, config.name)
            session.add_all(deploys)
            await session.flush()
            ids = [d.id for d in deploys]
            for event in audit:
                event.deploy_id = event.deploy_id or ids[0]
            for record in undo:
                record.deploy_id = record.deploy_id or ids[0]
            session.add_all([*audit, *undo])
        return ids


def deploy(pr: int, state: str, *, train: str = "app", requested: datetime | None = None,
           requester: str = "U0ALICE", author: str = "alice", took: timedelta | None = 10 * MIN,
           **values: Any) -> Deploy:
    """A deploy row as the flows write it: requested at `requested`, started at once, finished `took` later."""
    requested = requested or utcnow() - 2 * took if took else utcnow() - MIN
    started = None if state in ("queued", "cancelled") else requested
    finished = requested + took if took is not None and state in ("completed", "rolled_back", "failed",
                                                                   "cancelled") else None
    times = {"queued": requested.isoformat()}
    if started:
        times["merging"] = (started + MIN / 6).isoformat()
    if finished:
        times[state] = finished.isoformat()
    elif state != "queued":
        times[state] = (requested + MIN / 3).isoformat()
    return Deploy(train_id=train, state=state, requester=requester, pr_number=pr, pr_title=f"Change {pr}",
                  pr_url=f"{REPO}/pull/{pr}", pr_author=author, pr_created_at=requested - 60 * MIN,
                  processes=["web"], queue_seq=float(pr), created_at=requested, started_at=started,
                  finished_at=finished, state_entered_at=requested, state_times=times,
                  in_production_at=finished - MIN if finished and state == "completed" else None,
                  rolling_back_at=finished - 2 * MIN if finished and state == "rolled_back" else None, **values)


@pytest.fixture
async def seeded(sandbox: Sandbox, sqlite_database: Database) -> AsyncIterator[Seeded]:
    configs = [train_config(sandbox, peas={"cluster": sandbox.spec.pea_cluster, "names": ["sweet-pea"]}),
               train_config(sandbox, name="billing", github={"repo": "acme/billing"})]
    outsides = [outside_for(sandbox, c) for c in configs]
    engine = Engine([TrainSetup(c, o) for c, o in zip(configs, outsides, strict=True)], sqlite_database.sessions)
    yield Seeded(sqlite_database, engine, configs, outsides)
    for outside in outsides:
        outside.close()


async def _ok() -> bool:
    return True


async def _no_metrics() -> bytes:
    return b"# nothing\n"


async def _wake(job: str) -> int:
    return 0


@pytest.fixture
async def client(seeded: Seeded) -> AsyncIterator[TestClient]:
    """The HTTP server with the dashboard over the seeded trains, no password."""
    server = HttpServer(live=lambda: (True, "ticking"), ready={"database": _ok}, metrics=_no_metrics, wake_job=_wake,
                        dashboard=Dashboard(seeded.lanes))
    async with TestClient(TestServer(server.app())) as test_client:
        yield test_client


async def _json(client: TestClient, path: str, status: int = 200) -> Any:
    answer = await client.get(path)
    assert answer.status == status, (path, answer.status, await answer.text())
    assert answer.content_type == "application/json"
    return await answer.json()


async def _html(client: TestClient, path: str, status: int = 200) -> str:
    answer = await client.get(path)
    assert answer.status == status, (path, answer.status, await answer.text())
    assert answer.content_type == "text/html"
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    return await answer.text()


# -- history --------------------------------------------------------------------------------------

async def test_history_filters_by_train_state_and_person_and_pages_newest_first(
        seeded: Seeded, client: TestClient) -> None:
    start = utcnow() - timedelta(days=3)
    app_deploys = [deploy(n, "rolled_back" if n % 5 == 0 else "completed", requested=start + n * MIN * 20,
                          requester="U0BOB" if n % 3 == 0 else "U0ALICE", author="bob" if n % 3 == 0 else "alice")
                   for n in range(1, 31)]
    billing = [deploy(100 + n, "failed", train="billing", requested=start + n * MIN) for n in range(3)]
    await seeded.add(*app_deploys, *billing)

    everything = await _json(client, "/api/history")
    assert everything["total"] == 33 and everything["page"] == 1 and everything["has_more"] is True
    ids = [d["id"] for d in everything["deploys"]]
    assert len(ids) == 25 and ids == sorted(ids, reverse=True)
    second = await _json(client, "/api/history?page=2")
    assert len(second["deploys"]) == 8 and second["has_more"] is False
    assert not {d["id"] for d in second["deploys"]} & set(ids)

    only_billing = await _json(client, "/api/history?train=billing")
    assert only_billing["total"] == 3 and {d["train"] for d in only_billing["deploys"]} == {"billing"}
    rolled_back = await _json(client, "/api/history?state=rolled_back&limit=2")
    assert rolled_back["total"] == 6 and len(rolled_back["deploys"]) == 2
    assert {d["state"] for d in rolled_back["deploys"]} == {"rolled_back"}
    bobs = await _json(client, "/api/history?person=U0BOB&train=app")
    assert bobs["total"] == 10 and {d["requester"] for d in bobs["deploys"]} == {"U0BOB"}
    assert (await _json(client, "/api/history?person=bob"))["total"] == 10  # the pull request's author too
    assert (await _json(client, "/api/history?state=rolled_back&person=U0BOB"))["total"] == 2  # 15 and 30

    for bad in ("state=exploded", "train=nope", "page=0", "page=x", "limit=1000"):
        assert "error" in await _json(client, f"/api/history?{bad}", status=400)

    page = await _html(client, "/history?state=completed&limit=10")
    assert page.count('<tr data-deploy="') == 10
    assert 'href="/history?state=completed&amp;limit=10&amp;page=2"' in page  # the next page keeps the filters
    assert '<option value="completed" selected>' in page
    second_page = await _html(client, "/history?state=completed&limit=10&page=3")
    assert second_page.count('<tr data-deploy="') == 4 and "older →" not in second_page and "← newer" in second_page
    assert "No deploy matches." in await _html(client, "/history?person=nobody")
    assert "no state" in await _html(client, "/history?state=exploded", status=400)


# -- a deploy's whole story -----------------------------------------------------------------------

async def test_a_rolled_back_deploy_s_page_shows_its_timeline_audit_links_and_what_was_undone(
        seeded: Seeded, client: TestClient) -> None:
    merge, head, revert = "a" * 40, "b" * 40, "c" * 40
    requested = utcnow() - 30 * MIN
    rolled = deploy(7, "rolled_back", requested=requested, took=20 * MIN, merge_sha=merge, pr_head_sha=head,
                    revert_sha=revert, revert_status="reverted", build_number=41,
                    build_url="http://jenkins.example/job/app-master/41/", image=f"app:{merge}",
                    outcome_reason="alarm app-web-5xx is in ALARM: 5xx over 1%", rollback_from="canary_check",
                    targets={"web": {"service": "app-web", "canary": "app-web-canary", "old_td": ARN.format(4),
                                     "new_td": ARN.format(5), "counts": [2, 2]}})
    rolled.state_times = {"queued": requested.isoformat(), "merging": (requested + MIN).isoformat(),
                          "building": (requested + 2 * MIN).isoformat(),
                          "canarying": (requested + 6 * MIN).isoformat(),
                          "canary_check": (requested + 8 * MIN).isoformat(),
                          "rolling_back": (requested + 15 * MIN).isoformat(),
                          "rolled_back": (requested + 20 * MIN).isoformat()}
    audit = (AuditEvent(at=requested, actor="U0ALICE", action="requested", detail="#7 web", train_id="app",
                        outside_ids={"pr": 7, "head_sha": head}),
             AuditEvent(at=requested + MIN, actor="fatcontroller", action="merged", detail="#7 merged as aaaa",
                        train_id="app", outside_ids={"merge_sha": merge}),
             AuditEvent(at=requested + 3 * MIN, actor="fatcontroller", action="build_found", detail="build 41",
                        train_id="app", outside_ids={"build_url": "http://jenkins.example/job/app-master/41/"}),
             AuditEvent(at=requested + 5 * MIN, actor="fatcontroller", action="task_definition_registered",
                        detail=f"web: {ARN.format(5)}", train_id="app",
                        outside_ids={"task_definition": ARN.format(5)}),
             AuditEvent(at=requested + 15 * MIN, actor="fatcontroller", action="transition:alarm",
                        detail="canary_check → rolling_back: alarm app-web-5xx is in ALARM", train_id="app"),
             AuditEvent(at=requested + 19 * MIN, actor="fatcontroller", action="undone:canary", detail="deleted",
                        train_id="app", outside_ids={"service": "app-web-canary"}))
    undo = (UndoRecord(seq=1, kind="merge", data={"pr": 7, "method": "merge", "key": "merge"},
                       done_at=requested + 19 * MIN, result=f"reverted as {revert[:12]}"),
            UndoRecord(seq=2, kind="task_definition", data={"service": "app-web", "copied_from": ARN.format(4),
                                                             "key": "app-web"},
                       done_at=requested + 18 * MIN, result="deregistered"),
            UndoRecord(seq=3, kind="canary", data={"cluster": "production", "service": "app-web-canary",
                                                    "key": "app-web-canary"},
                       done_at=requested + 17 * MIN, result="deleted"))
    [deploy_id] = await seeded.add(rolled, audit=audit, undo=undo)

    story = await _json(client, f"/api/deploys/{deploy_id}")
    assert story["deploy"]["state"] == "rolled_back" and story["deploy"]["terminal"] is True
    assert story["deploy"]["outcome_reason"].startswith("alarm app-web-5xx")
    assert [row["state"] for row in story["timeline"]] == ["queued", "merging", "building", "canarying",
                                                            "canary_check", "rolling_back", "rolled_back"]
    assert story["timeline"][1]["took"] == 60.0 and story["timeline"][-1]["took"] is None
    assert [event["action"] for event in story["audit"]][:2] == ["requested", "merged"]
    merged_ids = story["audit"][1]["ids"]
    assert merged_ids == [{"key": "merge_sha", "value": merge, "url": f"{REPO}/commit/{merge}"}]
    assert [u["kind"] for u in story["undo"]] == ["merge", "task_definition", "canary"]
    assert all("key" not in dict(u["data"]) for u in story["undo"])

    page = await _html(client, f"/deploys/{deploy_id}")
    assert f'href="{REPO}/pull/7"' in page and f'href="{REPO}/commit/{merge}"' in page
    assert 'href="http://jenkins.example/job/app-master/41/"' in page
    assert ARN.format(4) in page and ARN.format(5) in page
    assert "https://eu-west-1.console.aws.amazon.com/ecs/v2/task-definitions/app-web/5/" in page
    assert "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/production/services/app-web/" in page
    assert "Rolled back from canary check: alarm app-web-5xx is in ALARM" in page
    assert "What rollback undoes" in page and f"reverted as {revert[:12]}" in page and "deregistered" in page
    assert page.count('<li class="undo-') == 3
    assert "transition:alarm" in page and "U0ALICE" in page
    assert re.search(r'<span class="tl-state">canary check</span>.*?<span class="took">7m</span>', page, re.S)


async def test_a_deploy_that_does_not_exist_is_a_404_page_and_answer(client: TestClient) -> None:
    assert (await _json(client, "/api/deploys/999", status=404)) == {"error": "no deploy 999"}
    assert "No deploy 999" in await _html(client, "/deploys/999", status=404)


# -- every train ------------------------------------------------------------------------------------

async def test_the_trains_show_the_deploy_in_flight_the_queue_with_etas_frozen_trains_and_peas(
        seeded: Seeded, client: TestClient) -> None:
    rolling = deploy(1, "rolling_out", took=None, targets={"web": {"service": "app-web", "counts": [1, 4]}})
    first = deploy(2, "queued", took=None, candidate_base="d" * 40, candidate_sha="e" * 40, candidate_on=1,
                   candidate_build_number=12, candidate_build_url="http://jenkins.example/job/app-cand/12/",
                   candidate_result="SUCCESS")
    second = deploy(3, "queued", took=None, requester="U0BOB")
    waiting = deploy(4, "queued", took=None, train="billing")
    ids = await seeded.add(rolling, first, second, waiting)
    async with seeded.database.sessions() as session, session.begin():
        (await session.get_one(Train, "app")).in_flight_id = ids[0]
        billing = await session.get_one(Train, "billing")
        billing.frozen, billing.frozen_by, billing.frozen_reason = True, "U0ADMIN", "quarter end"
        billing.frozen_at = utcnow()

    trains = {t["name"]: t for t in (await _json(client, "/api/trains"))["trains"]}
    assert list(trains) == ["app", "billing"]
    app = trains["app"]
    assert app["frozen"] is False and app["in_flight"]["id"] == ids[0]
    assert app["in_flight"]["state"] == "rolling_out" and app["in_flight"]["targets"][0]["running"] == 1
    assert [(e["position"], e["deploy"]["id"]) for e in app["queue"]] == [(1, ids[1]), (2, ids[2])]
    assert all(e["eta"] is not None and e["finish"] >= e["eta"] for e in app["queue"])
    assert app["queue"][0]["deploy"]["candidate"]["result"] == "SUCCESS"
    assert [p["name"] for p in app["peas"]] == ["sweet-pea"] and app["peas"][0]["state"] == "free"
    assert trains["billing"]["frozen"] is True and trains["billing"]["frozen_reason"] == "quarter end"
    assert trains["billing"]["queue"][0]["eta"] is None and trains["billing"]["peas"] == []

    page = await _html(client, "/")
    assert 'data-train="app"' in page and 'data-train="billing"' in page
    assert '<progress value="1" max="4">' in page and "1/4 tasks" in page
    assert "starts in about" in page and "Built ahead on top of #1" in page and "green" in page
    assert "Frozen by U0ADMIN" in page and "quarter end" in page and "starts once the train is unfrozen" in page
    assert "sweet-pea" in page


async def test_viewers_polling_the_same_page_share_one_read_and_still_see_a_change_soon(seeded: Seeded) -> None:
    answers = SharedAnswers(fresh_for=0.3)
    server = HttpServer(live=lambda: (True, "ticking"), ready={"database": _ok}, metrics=_no_metrics, wake_job=_wake,
                        dashboard=Dashboard(seeded.lanes, answers))
    async with TestClient(TestServer(server.app())) as client:
        await seeded.add(deploy(1, "completed"))
        polls = await asyncio.gather(*(client.get("/api/history") for _ in range(10)))
        bodies = [await answer.json() for answer in polls]
        assert all(a.status == 200 for a in polls) and all(b == bodies[0] for b in bodies)
        assert answers.reads == 1  # ten browsers at once: one read of the database
        assert (await _json(client, "/api/history?state=completed"))["total"] == 1 and answers.reads == 2  # its own

        await seeded.add(deploy(2, "rolled_back"))
        began = time.monotonic()

        async def shows_the_new_deploy() -> bool:
            return (await _json(client, "/api/history"))["total"] == 2
        await eventually(shows_the_new_deploy, what="the new deploy in the history")
        assert time.monotonic() - began < 1.0  # within the page's poll: it shows within DESIGN §10's 2 s


# -- the figures ------------------------------------------------------------------------------------

async def test_stats_draws_four_weekly_charts_per_train(seeded: Seeded, client: TestClient) -> None:
    now = utcnow()
    await seeded.add(deploy(1, "completed", requested=now - timedelta(days=15)),
                     deploy(2, "completed", requested=now - timedelta(days=8)),
                     deploy(3, "rolled_back", requested=now - timedelta(days=8)),
                     deploy(4, "completed", requested=now - timedelta(hours=3)))
    figures = {t["name"]: t for t in (await _json(client, "/api/stats"))["trains"]}
    weeks = figures["app"]["weeks"]
    assert len(weeks) == 12 and sum(w["completed"] for w in weeks) == 3
    assert sum(w["rolled_back"] for w in weeks) == 1
    assert weeks[-1]["completed"] == 1 and weeks[-1]["lead_time"] is not None
    assert {w["change_failure_rate"] for w in weeks if w["rolled_back"]} == {0.5}
    assert figures["app"]["window"]["completed"] == 3 and sum(w["completed"] for w in figures["billing"]["weeks"]) == 0

    page = await _html(client, "/stats")
    assert page.count("<svg") == 8  # four charts for each of the two trains
    for name in ("Deploy frequency", "Lead time", "Change failure rate", "Time to restore"):
        assert f"{name} per week" in page
    assert page.count('<rect class="bar" ') >= 4  # weeks with something to draw


# -- the password -----------------------------------------------------------------------------------

async def test_the_password_guards_the_pages_and_the_api_but_not_the_probes_metrics_or_the_hook(
        seeded: Seeded) -> None:
    server = HttpServer(live=lambda: (True, "ticking"), ready={"database": _ok}, metrics=_no_metrics, wake_job=_wake,
                        dashboard=Dashboard(seeded.lanes), web_password=PASSWORD)
    guarded = ["/", "/history", "/stats", "/deploys/1", "/api/trains", "/api/history", "/api/deploys/1",
               "/api/stats", "/static/dashboard.js", "/static/dashboard.css"]
    async with TestClient(TestServer(server.app())) as client:
        for path in guarded:
            answer = await client.get(path)
            assert answer.status == 401, path
            assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert PASSWORD not in await answer.text()
            assert (await client.get(path, headers=basic("wrong"))).status == 401, path
            assert (await client.get(path, headers={"Authorization": "Basic !!!"})).status == 401, path
            assert (await client.get(path, headers={"Authorization": f"Bearer {PASSWORD}"})).status == 401, path
            assert (await client.get(path, headers=basic(PASSWORD))).status in (200, 404), path
        assert (await client.get("/", headers=basic(PASSWORD))).status == 200
        assert (await client.get("/api/trains", headers=basic(PASSWORD, user="someone else"))).status == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status == 200, path
        hook = await client.post("/hooks/jenkins", data=b"{}")
        assert hook.status == 400  # its own rules, not the dashboard's password


# -- the real bot -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_bot_serves_the_dashboard_links_it_from_cards_and_dms_and_shows_no_secret(
        sandbox: Sandbox, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = train_config(sandbox, web={"url": "https://deploys.acme.test/"})
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", FATCONTROLLER_HTTP_PORT=port,
                            FATCONTROLLER_WEB_PASSWORD=PASSWORD)
    bot = await start_bot(AppConfig.of(config), settings)
    world = BotWorld(bot, sandbox, config)
    secrets = [value for name, value in sandbox.env().items() if "TOKEN" in name or "SECRET" in name] + [PASSWORD]
    bodies: list[str] = []
    try:
        await sandbox.slack.wait_connected()
        pr = world.new_pr("Dashboard me")
        await world.slack.command("U0ALICE", "/deploy", str(pr))
        deploy_id = (await world.reaches(pr, "canary_check")).id
        page = f"https://deploys.acme.test/deploys/{deploy_id}"
        card = await world.card_showing(pr, "canary check")
        assert f"<{page}|Dashboard>" in card.render() or page in str(card.blocks)
        dm = await world.dm_with("U0ALICE", "Proceed")
        assert page in str(dm.blocks)

        async with aiohttp.ClientSession() as http:
            async def get(path: str, status: int = 200, **headers: str) -> str:
                async with http.get(base + path, headers=headers or basic(PASSWORD)) as answer:
                    assert answer.status == status, (path, answer.status)
                    text = await answer.text()
                    bodies.append(text)
                    return text

            assert "401" not in await get("/healthz")
            await get("/api/trains", 401, Accept="application/json")
            trains = await get("/api/trains")
            assert f'"id": {deploy_id}' in trains and '"state": "canary_check"' in trains
            await world.slack.click("U0ALICE", "Proceed", message=dm)
            done = await world.dm_with("U0ALICE", "Done")
            await world.slack.click("U0ALICE", "Done", message=done)
            completed = await world.reaches(pr, "completed")
            story = await get(f"/api/deploys/{deploy_id}")
            assert '"state": "completed"' in story and (completed.merge_sha or "-") in story
            html = await get(f"/deploys/{deploy_id}")
            assert "Audit trail" in html and "task_definition_registered" in html
            for path in ("/", "/history", f"/history?person=U0ALICE&train={config.name}", "/stats",
                         "/api/history", "/api/stats", "/static/dashboard.js", "/metrics"):
                await get(path)
        leaks = [(secret[:6], body[:80]) for body in bodies for secret in secrets if secret in body]
        assert not leaks
    finally:
        await bot.stop()
