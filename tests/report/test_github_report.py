"""GitHub reporting (DESIGN §10) through the emulators with the real engine: a Deployment of the landed commit with
statuses as the deploy moves, pull request comments, peas as `pea/<name>` Deployments, and none of it ever holding
a deploy up or repeating itself."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.deploy.flows import DeployFlows
from flows.deploy.machine import Event, State
from flows.deploy.service import DeployRequest
from flows.engine import SLACK, Engine, TrainSetup
from flows.notices import Moved, PeaFree, PeaNotice, PeaUp
from integrations.github import GitHub
from integrations.outside import CallPolicy
from report.github import NAME, GitHubSink, ReportedTrain
from sandbox.github import CommentView, DeploymentView
from sandbox.server import Fault
from sandbox.world import Sandbox
from tests.fixtures.bot import start_world
from tests.fixtures.peas import pool_config
from tests.fixtures.storage import Database
from tests.fixtures.world import REQUESTER, RecordingSink, Train, eventually, outside_for, train_config

MARKER = "<!-- fatcontroller:deploy:{id}:{what} -->"
REPORTS = r"/deployments|/issues/\d+/comments"  # the GitHub operations only reporting makes
OUTAGE = 60.0  # seconds GitHub's reporting endpoints fail for (issue 17: "GitHub failing for 60 s")


@dataclass
class Outage(Fault):
    """A fault for a span of wall time from when it is made, which then passes by itself (no timer, no sleep)."""

    seconds: float = OUTAGE
    began: float = field(default_factory=time.monotonic)

    @property
    def ends(self) -> float:
        return self.began + self.seconds

    def matches(self, operation: str) -> bool:
        return time.monotonic() < self.ends and super().matches(operation)


class Reported(Train):
    """A train whose engine reports to GitHub too (the outbox's sinks `slack` and `github`)."""

    sink: GitHubSink
    reports: GitHub

    @property
    def lane(self) -> Any:
        return self.engine.lanes[self.config.name]

    def deployments(self, environment: str = "production") -> list[DeploymentView]:
        return [d for d in self.sandbox.github.deployments() if d.environment == environment]

    def comments(self, pr: int) -> list[CommentView]:
        return self.sandbox.github.comments(pr)

    def commented(self, pr: int, deploy_id: int, what: str) -> list[CommentView]:
        marker = MARKER.format(id=deploy_id, what=what)
        return [c for c in self.comments(pr) if marker in c.body]

    async def has_comment(self, pr: int, deploy_id: int, what: str, *, within: float = 20.0) -> CommentView:
        async def probe() -> CommentView | None:
            found = self.commented(pr, deploy_id, what)
            return found[0] if found else None

        return await eventually(probe, within=within, what=f"a {what} comment on #{pr}")

    async def deployment_reaches(self, state: str, environment: str = "production", *,
                                 within: float = 20.0) -> DeploymentView:
        async def probe() -> DeploymentView | None:
            return next((d for d in self.deployments(environment) if d.state == state), None)

        return await eventually(probe, within=within, what=f"a deployment in {environment} {state}")

    async def through_canaries(self, deploy_id: int) -> None:
        """Proceed at the canary gate and confirm: the deploy completes."""
        await self.reaches(deploy_id, "canary_check")
        await self.press(deploy_id, "Proceed")
        await self.reaches(deploy_id, "awaiting_confirmation")
        await self.press(deploy_id, "Done")
        await self.reaches(deploy_id, "completed")


@pytest.fixture
async def make_reported(sqlite_database: Database, notifier: RecordingSink) -> AsyncIterator[Callable[..., Reported]]:
    """Build a train on `sandbox` whose engine delivers to the recording sink and to the GitHub sink."""
    built: list[Reported] = []

    def build(sandbox: Sandbox, *, pool: bool = False, **sections: Any) -> Reported:
        config = pool_config(sandbox, **sections) if pool else train_config(sandbox, **sections)
        outside = outside_for(sandbox, config)
        engine = Engine([TrainSetup(config, outside)], sqlite_database.sessions, sinks=(SLACK, NAME),
                        owner="engine-1")
        train = Reported(config, sqlite_database, sandbox, notifier, outside, engine=engine)
        env = sandbox.env()
        train.reports = GitHub(sandbox.spec.repo, sandbox.spec.base_branch, token=env["GITHUB_TOKEN"],
                               api_url=env["GITHUB_API_URL"], policy=CallPolicy(timeout=5.0), timeout=5.0)
        lane = engine.lanes[config.name]
        train.sink = GitHubSink([ReportedTrain(config, lane.deploys, lane.peas, train.reports)])
        engine.start([notifier, train.sink])
        built.append(train)
        return train

    yield build
    for train in built:
        await train.engine.stop()
        train.outside.close()
        train.reports.close()


async def test_a_completed_deploy_is_a_deployment_of_its_merge_commit_with_statuses_and_comments(
        sandbox: Sandbox, make_reported: Callable[..., Reported]) -> None:
    train = make_reported(sandbox, web={"url": "https://deploys.acme.com"})
    pr = train.new_pr("Greet in French")
    deploy = await train.request(pr)

    await train.through_canaries(deploy.id)

    done = await train.deployment_reaches("success")
    merged = await train.deploy(deploy.id)
    assert [d.id for d in train.deployments()] == [done.id]
    assert done.sha == merged.merge_sha and done.ref == merged.merge_sha
    assert done.payload["fatcontroller"]["deploy"] == deploy.id and done.production_environment
    assert [s.state for s in done.statuses] == ["in_progress", "success"]
    assert {s.log_url for s in done.statuses} == {f"https://deploys.acme.com/deploys/{deploy.id}"}
    assert merged.merge_sha is not None
    said_merged = await train.has_comment(pr, deploy.id, "merged")
    assert merged.merge_sha[:12] in said_merged.body and "Merged by the deploy train" in said_merged.body
    said_done = await train.has_comment(pr, deploy.id, "completed")
    assert "Deployed to `production`" in said_done.body and "`web`, `worker`" in said_done.body
    assert f"https://deploys.acme.com/deploys/{deploy.id}" in said_done.body
    assert len(train.comments(pr)) == 2


async def test_a_rolled_back_deploy_fails_its_deployment_and_says_why_and_how_it_was_reverted(
        sandbox: Sandbox, make_reported: Callable[..., Reported]) -> None:
    train = make_reported(sandbox, github={"environment": "live"})
    pr = train.new_pr("Risky change")
    deploy = await train.request(pr)
    await train.reaches(deploy.id, "canary_check")

    await train.press(deploy.id, "Roll back")

    rolled = await train.reaches(deploy.id, "rolled_back")
    failed = await train.deployment_reaches("failure", "live")
    assert [s.state for s in failed.statuses] == ["in_progress", "failure"]
    said = await train.has_comment(pr, deploy.id, "rolled_back")
    assert "Rolled back" in said.body and "canary check" in said.body.lower() and "Roll back was pressed" in said.body
    assert "reverted automatically" in said.body and rolled.revert_sha is not None
    assert rolled.revert_sha[:12] in said.body and f"/commit/{rolled.revert_sha}" in said.body
    assert not train.commented(pr, deploy.id, "completed")
    assert train.deployments() == []  # only in the configured environment


async def test_a_revert_left_to_people_says_so_with_the_merge_commit_to_revert(
        sandbox: Sandbox, make_reported: Callable[..., Reported]) -> None:
    train = make_reported(sandbox)
    pr = train.new_pr("Change the readme", files={"README.md": "# ours\n"})
    deploy = await train.request(pr)
    await train.reaches(deploy.id, "canary_check")
    sandbox.github.push({"README.md": "# theirs, since\n"})  # someone else's work on the same file

    await train.press(deploy.id, "Roll back")

    rolled = await train.reaches(deploy.id, "rolled_back")
    assert rolled.revert_status == "manual" and rolled.merge_sha is not None
    said = await train.has_comment(pr, deploy.id, "rolled_back")
    assert "reverted by hand" in said.body and f"/commit/{rolled.merge_sha}" in said.body
    assert f"git revert -m 1 {rolled.merge_sha}" in said.body
    await train.deployment_reaches("failure")


async def test_github_failing_holds_no_deploy_and_the_reports_land_after_without_repeats(
        sandbox: Sandbox, make_reported: Callable[..., Reported]) -> None:
    train = make_reported(sandbox)
    outage = sandbox.github.faults.add(Fault(match=REPORTS, status=502))
    pr = train.new_pr("Ship it while GitHub is down")
    deploy = await train.request(pr)

    await train.through_canaries(deploy.id)  # within the usual time: nothing waited for the reports

    assert outage and sandbox.github.faults.injected > 0
    assert train.deployments() == [] and train.comments(pr) == []
    sandbox.github.faults.clear()
    done = await train.deployment_reaches("success", within=30)
    assert [s.state for s in done.statuses] == ["in_progress", "success"]
    await train.has_comment(pr, deploy.id, "completed", within=30)
    assert len(train.commented(pr, deploy.id, "merged")) == 1 and len(train.comments(pr)) == 2


async def test_github_failing_for_60_s_delays_no_deploy_and_every_report_lands_after_once_and_in_order(
        sandbox: Sandbox, make_reported: Callable[..., Reported], notifier: RecordingSink) -> None:
    """Issue 17: the reporting endpoints (deployments, their statuses, issue comments) answer 500 for 60 s of wall
    time while a deploy goes through canary, rollout and completed; merging, which is not reporting, still works.
    The deploy finishes long before GitHub is back, and then each report arrives once, in order."""
    github = sandbox.github
    train = make_reported(sandbox)
    pr = train.new_pr("Ship it through a GitHub outage")
    outage = Outage(match=REPORTS, status=500)
    github.faults.add(outage)
    deploy = await train.request(pr)

    # The requester acts on what Slack tells them; Slack's notices keep coming while GitHub is down.
    await notifier.told(Moved, deploy_id=deploy.id, target=State.CANARY_CHECK, within=30)
    await train.press(deploy.id, "Proceed")
    await notifier.told(Moved, deploy_id=deploy.id, target=State.ROLLING_OUT, within=30)
    await notifier.told(Moved, deploy_id=deploy.id, target=State.AWAITING_CONFIRMATION, within=30)
    await train.press(deploy.id, "Done")
    done = await train.reaches(deploy.id, "completed", within=30)

    finished = time.monotonic()
    assert finished - outage.began < OUTAGE / 3, f"the deploy took {finished - outage.began:.1f}s: it waited"
    assert done.merge_sha is not None and github.writes["merges"] == 1  # merged during the outage
    assert github.faults.injected > 0  # reporting was tried, and failed
    assert github.writes["deployments"] == github.writes["deployment_statuses"] == github.writes["comments"] == 0
    assert github.deployments() == [] and train.comments(pr) == []

    async def everything_reported() -> bool:
        deployments = train.deployments()
        return bool(deployments and deployments[0].state == "success" and train.commented(pr, deploy.id, "merged")
                    and train.commented(pr, deploy.id, "completed"))

    # Polled, not slept: what lands can only land once the outage is over, and should land soon after it.
    await eventually(everything_reported, within=outage.ends - time.monotonic() + 30, what="every report")
    landed = time.monotonic()
    assert outage.ends <= landed < outage.ends + 15, f"the reports landed {landed - outage.ends:.1f}s after"
    await train.engine.outbox.stop()  # whatever else was due has gone out: nothing more can come

    assert {k: github.writes[k] for k in ("deployments", "deployment_statuses", "comments")} == {
        "deployments": 1, "deployment_statuses": 2, "comments": 2}
    [deployment] = github.deployments()
    assert deployment.sha == done.merge_sha and deployment.payload["fatcontroller"]["deploy"] == deploy.id
    assert [s.state for s in deployment.statuses] == ["in_progress", "success"]
    comments = train.comments(pr)
    assert [c.id for c in comments] == [train.commented(pr, deploy.id, what)[0].id for what in ("merged", "completed")]
    # The writes GitHub answered, in the order it answered them, follow the deploy's story: the Deployment and the
    # merge's comment, then `in_progress` (canarying), then `success` and the completion's comment.
    created = f"/repos/{sandbox.spec.repo}/deployments"
    names = {created: ["deployment"], f"{created}/{deployment.id}/statuses": ["in_progress", "success"],
             f"/repos/{sandbox.spec.repo}/issues/{pr}/comments": ["merged comment", "completed comment"]}
    story = [names[path].pop(0) for method, path in github.requests
             if method == "POST" and re.search(REPORTS, path)]
    assert set(story[:2]) == {"deployment", "merged comment"} and story[2] == "in_progress", story
    assert set(story[3:]) == {"success", "completed comment"} and len(story) == 5, story


async def test_github_hanging_delays_no_slack_message(sandbox: Sandbox, make_reported: Callable[..., Reported],
                                                      notifier: RecordingSink) -> None:
    """Each sink has its own delivery loop: Slack's messages never wait behind a GitHub call that hangs."""
    train = make_reported(sandbox)
    sandbox.github.faults.add(Fault(match=r"POST .*/issues/\d+/comments", latency=4.5, fail=False))
    pr = train.new_pr("Slow GitHub")
    deploy = await train.request(pr)

    await train.reaches(deploy.id, "canary_check")  # while the merge's comment hangs

    await notifier.told(Moved, deploy_id=deploy.id, target=State.CANARY_CHECK, within=1.5)
    await train.has_comment(pr, deploy.id, "merged", within=30)


async def test_a_report_repeated_after_a_crash_repeats_no_comment_deployment_or_status(
        sandbox: Sandbox, make_reported: Callable[..., Reported], notifier: RecordingSink) -> None:
    train = make_reported(sandbox)
    pr = train.new_pr("Say it once")
    deploy = await train.request(pr)
    await train.through_canaries(deploy.id)
    await train.has_comment(pr, deploy.id, "completed")
    await train.deployment_reaches("success")
    writes = {k: sandbox.github.writes[k] for k in ("deployments", "deployment_statuses", "comments")}

    # The outbox hands the same notices over again when a copy died between the sends and its record of them.
    await train.sink.deliver(f"deploy:{deploy.id}", notifier.of(deploy.id))
    await train.sink.deliver(f"deploy:{deploy.id}", notifier.of(deploy.id)[:3])

    assert {k: sandbox.github.writes[k] for k in writes} == writes
    assert len(train.deployments()) == 1 and len(train.comments(pr)) == 2


async def test_without_reporting_nothing_is_posted(sandbox: Sandbox, make_reported: Callable[..., Reported]) -> None:
    train = make_reported(sandbox, github={"report": False})
    pr = train.new_pr("Quietly")
    deploy = await train.request(pr)

    await train.through_canaries(deploy.id)

    await train.engine.outbox.stop()  # whatever was due has been delivered
    assert sandbox.github.deployments() == [] and train.comments(pr) == []
    assert sandbox.github.writes["deployments"] == sandbox.github.writes["comments"] == 0


async def test_a_pea_is_a_deployment_of_its_environment_with_its_url_made_inactive_on_release(
        pea_sandbox: Sandbox, make_reported: Callable[..., Reported], notifier: RecordingSink) -> None:
    train = make_reported(pea_sandbox, pool=True)
    peas = train.lane.peas
    pr = train.new_pr("Purple buttons")
    head = pea_sandbox.github.pr_head(pr)

    await peas.deploy(REQUESTER, "sweet-pea", pr)

    up = await train.deployment_reaches("success", "pea/sweet-pea", within=30)
    assert up.sha == head and not up.production_environment
    assert up.statuses[-1].environment_url == "https://sweet-pea.dev.acme.com"
    assert [s.state for s in up.statuses][-2:] == ["in_progress", "success"]
    assert train.deployments() == []  # nothing in production

    await peas.release(REQUESTER, "sweet-pea")

    gone = await train.deployment_reaches("inactive", "pea/sweet-pea", within=30)
    assert gone.id == up.id and len(train.deployments("pea/sweet-pea")) == 1
    await eventually(lambda: _told(notifier, PeaFree), what="the pea free")
    statuses = pea_sandbox.github.writes["deployment_statuses"]
    pea_notices = [n for n in notifier.notices if isinstance(n, PeaNotice) and n.pea == "sweet-pea"]
    assert any(isinstance(n, PeaUp) for n in pea_notices)
    await train.sink.deliver("pea:sweet-pea", pea_notices)  # a repeat after a crash
    assert pea_sandbox.github.writes["deployment_statuses"] == statuses
    assert len(pea_sandbox.github.deployments()) == 1


async def _told(notifier: RecordingSink, kind: type[PeaNotice]) -> bool:
    return any(isinstance(n, kind) for n in notifier.notices)


async def test_the_bot_reports_through_its_outbox_to_github_beside_slack(sandbox: Sandbox, tmp_path: Path) -> None:
    """The composition root: the process's outbox has both sinks and delivers to GitHub (and only Slack without
    reporting)."""
    bot, _ = await start_world(sandbox, tmp_path)
    try:
        assert bot.engine.outbox.sinks == (SLACK, NAME) and len(bot.wired.sinks) == 1
        flows = bot.train().deploys
        pr = sandbox.github.create_pr("Through the bot", {"app/bot.py": "x = 1\n"})
        deploy = (await flows.request(DeployRequest(requester=REQUESTER, pr_number=pr))).deploy
        for state, event in ((State.CANARY_CHECK, Event.PROCEED), (State.AWAITING_CONFIRMATION, Event.DONE)):
            await eventually(lambda at=state: _in(flows, deploy.id, at), what=f"the deploy in {state}")
            await flows.act(deploy.id, state.value, event, REQUESTER)
        done = await eventually(lambda: _deployed(sandbox), what="a successful deployment")
        assert [s.state for s in done.statuses] == ["in_progress", "success"]
        await eventually(lambda: _comments(sandbox, pr, 2), what="two comments")
    finally:
        await bot.stop()

    (tmp_path / "quiet").mkdir()
    quiet, _ = await start_world(sandbox, tmp_path / "quiet", github={"report": False})
    try:
        assert quiet.engine.outbox.sinks == (SLACK,) and quiet.wired.sinks == []
    finally:
        await quiet.stop()


async def _in(flows: DeployFlows, deploy_id: int, state: State) -> bool:
    view = await flows.deploy(deploy_id)
    return view is not None and view.state is state


async def _deployed(sandbox: Sandbox) -> DeploymentView | None:
    return next((d for d in sandbox.github.deployments() if d.state == "success"), None)


async def _comments(sandbox: Sandbox, pr: int, count: int) -> bool:
    return len(sandbox.github.comments(pr)) == count
