"""The GitHub sink of the outbox (DESIGN §10): deploys and peas reported where developers look.

- A deploy is a GitHub Deployment of the commit that landed (its `Merged` notice), in the train's
  `github.environment`, with statuses as it moves: `in_progress` from canarying, `success` at
  completed, `failure` when rolled back or failed; `log_url` is the deploy's dashboard page when
  `web.url` is set.
- Its pull request gets a comment when the train merges it (or lands it built ahead), when its deploy
  completes, and when it is rolled back: why, and whether the revert was automatic or is left to people.
- A pea deploy is a Deployment of environment `pea/<name>` on the pull request's head: queued, then
  in progress, then `success` with the pea's URL as `environment_url` (or `failure`), and `inactive`
  once the pea is released or taken over.

Nothing is remembered between deliveries: before each write GitHub is read again (a comment carries a
hidden marker and is not posted when one with it exists; a deployment is found by environment, commit
and payload before one is created; a status is not posted when the deployment already shows it or a
later one), so the outbox's repeat of a batch after a crash posts nothing twice. A GitHub failure that
may pass raises `DeliveryFailed` and the outbox tries again later; the deploy never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from flows.config import TrainConfig
from flows.deploy.flows import DeployFlows
from flows.deploy.machine import Event, State
from flows.notices import (
    SYSTEM,
    DeployNotice,
    Merged,
    Moved,
    Notice,
    PeaDeploying,
    PeaFailed,
    PeaFree,
    PeaNotice,
    PeaReleased,
    PeaStarting,
    PeaTakenOver,
    PeaUp,
)
from flows.outbox import Delivered, DeliveryFailed
from flows.outside import GitHubReportsApi, OutsideError, TransientError
from flows.pea.flows import PeaFlows
from flows.views import DeployView, PeaView

log = logging.getLogger(__name__)

NAME = "github"
MARKER = "<!-- fatcontroller:deploy:{deploy_id}:{what} -->"
PAYLOAD_KEY = "fatcontroller"  # the key of a deployment's payload that says which deploy or pea it reports
REASON_LIMIT = 600  # characters of a rollback's reason quoted in a comment
# How far along a deploy's statuses are: a status is posted only past what the deployment shows (a repeat after
# a crash must not put `in_progress` after `success`).
_RANK = {"queued": 0, "pending": 0, "in_progress": 1, "success": 2, "failure": 2, "error": 2, "inactive": 3}

T = TypeVar("T", bound=Notice)


@dataclass(frozen=True)
class ReportedTrain:
    """One train as GitHub reporting sees it: its configuration, its public API and its repository's reports."""

    config: TrainConfig
    deploys: DeployFlows
    peas: PeaFlows
    github: GitHubReportsApi

    @property
    def name(self) -> str:
        return self.config.name


class GitHubSink:
    """Delivers the outbox's notices to GitHub (the sink named `github`)."""

    name = NAME

    def __init__(self, trains: Sequence[ReportedTrain]) -> None:
        self.trains = {t.name: t for t in trains}

    async def deliver(self, stream: str, notices: Sequence[Notice]) -> Delivered:
        kind, _, key = stream.partition(":")
        reporting = [t for t in self.trains.values() if t.config.github.report]
        if not reporting or not notices:
            return Delivered()
        if kind == "deploy":
            deploy = await reporting[0].deploys.deploy(int(key))
            train = self.trains.get(deploy.train) if deploy is not None else None
            if deploy is None or train is None or not train.config.github.report:
                return Delivered()
            report = _DeployReport(train, deploy)
            await _each(stream, [n for n in notices if isinstance(n, DeployNotice)], report.notice)
        elif kind == "pea":
            train = next((t for t in reporting if key in t.peas.names), None)
            pea = await train.peas.get(key) if train is not None else None
            if train is None or pea is None:
                return Delivered()
            await _PeaReport(train, pea).deliver(stream, [n for n in notices if isinstance(n, PeaNotice)])
        return Delivered()


async def _each(stream: str, notices: Sequence[T], handle: Callable[[T], Awaitable[None]]) -> None:
    """Report each notice in order; DeliveryFailed (with how many went out) when GitHub fails in a way that may
    pass. One that cannot pass (a missing permission, a pull request gone) is logged and skipped: trying again
    would hold every later report of the stream for nothing."""
    for done, notice in enumerate(notices):
        try:
            await handle(notice)
        except TransientError as exc:
            raise DeliveryFailed(str(exc), done=done) from None
        except OutsideError as exc:
            log.warning("github: cannot report %s of %s: %s", type(notice).__name__, stream, exc)


# -- deploys --------------------------------------------------------------------------------------

class _DeployReport:
    """What one delivery reports of one deploy, reading GitHub once per delivery for what it already shows."""

    def __init__(self, train: ReportedTrain, deploy: DeployView) -> None:
        self.train = train
        self.deploy = deploy
        self.github = train.github
        self.environment = train.config.github.environment
        self._deployment: int | None = None
        self._states: list[str] | None = None  # the found deployment's statuses, newest first
        self._markers: set[str] | None = None  # the markers of the pull request's comments

    async def notice(self, notice: DeployNotice) -> None:
        deploy = self.deploy
        if isinstance(notice, Merged):
            await self._find_deployment(notice.sha, create=True)
            await self._comment("merged", merged_comment(deploy, self.train.config, notice.sha))
        elif isinstance(notice, Moved) and notice.source is not notice.target:
            if notice.target is State.CANARYING:
                await self._status("in_progress", f"Canarying {', '.join(deploy.processes)}")
            elif notice.target is State.COMPLETED:
                await self._status("success", f"Deployed {', '.join(deploy.processes)}")
                await self._comment("completed", completed_comment(deploy, self.train.config))
            elif notice.target is State.ROLLED_BACK:
                why = deploy.outcome_reason or notice.reason or await self._asked_for()
                await self._status("failure", f"Rolled back: {why}" if why else "Rolled back")
                if deploy.merge_sha is not None or deploy.revert_status is not None:
                    await self._comment("rolled_back", rolled_back_comment(deploy, self.train.config, why))
            elif notice.target is State.FAILED:
                why = deploy.outcome_reason or notice.reason
                await self._status("failure", f"Failed: {why}" if why else "Failed")

    async def _asked_for(self) -> str | None:
        """Why a rollback without a recorded reason happened: someone pressed Roll back (the audit trail says)."""
        detail = await self.train.deploys.detail(self.deploy.id)
        pressed = [a for a in (detail.audit if detail else ()) if a.action == f"transition:{Event.ROLL_BACK.value}"]
        return "Roll back was pressed in Slack" if pressed and pressed[-1].actor != SYSTEM else None

    @property
    def log_url(self) -> str | None:
        return deploy_page(self.train.config, self.deploy.id)

    async def _find_deployment(self, sha: str | None, *, create: bool) -> int | None:
        """This deploy's deployment: found on GitHub by environment, commit and payload, else created (`create`)."""
        if self._deployment is not None or sha is None:
            return self._deployment
        found = await self.github.deployments(self.environment, sha=sha)
        mine = [d for d in found if _payload(d.payload).get("deploy") == self.deploy.id]
        if mine:
            self._deployment = mine[0].id
        elif create:
            deploy = self.deploy
            created = await self.github.create_deployment(
                sha, self.environment,
                payload={PAYLOAD_KEY: {"deploy": deploy.id, "train": deploy.train, "pr": deploy.pr_number}},
                description=f"Deploy #{deploy.id} of #{deploy.pr_number} by the deploy train ({deploy.train})",
                production=True, transient=False)
            self._deployment, self._states = created.id, []
        return self._deployment

    async def _status(self, state: str, description: str) -> None:
        deployment = await self._find_deployment(self.deploy.merge_sha, create=True)
        if deployment is None:  # nothing landed: there is no commit to report on
            return
        if self._states is None:
            self._states = [s.state for s in await self.github.deployment_statuses(deployment)]
        if any(_RANK.get(s, 0) >= _RANK[state] for s in self._states):
            return
        await self.github.create_deployment_status(deployment, state, description=description, log_url=self.log_url)
        self._states.insert(0, state)

    async def _comment(self, what: str, body: str) -> None:
        marker = MARKER.format(deploy_id=self.deploy.id, what=what)
        number = self.deploy.pr_number
        if self._markers is None:
            self._markers = {line.strip() for c in await self.github.issue_comments(number)
                             for line in c.body.splitlines() if line.strip().startswith("<!-- fatcontroller:")}
        if marker in self._markers:
            return
        await self.github.create_issue_comment(number, f"{body}\n\n{marker}")
        self._markers.add(marker)


def _payload(payload: dict[str, Any]) -> dict[str, Any]:
    mine = payload.get(PAYLOAD_KEY)
    return mine if isinstance(mine, dict) else {}


def deploy_page(config: TrainConfig, deploy_id: int) -> str | None:
    """The deploy's dashboard page, when `web.url` is set."""
    return config.web.deploy_page(deploy_id) if config.web is not None else None


# -- the comments' words ----------------------------------------------------------------------------

def _repository_url(deploy: DeployView) -> str | None:
    """The repository's web address, from the pull request's (GitHub Enterprise's host too)."""
    if deploy.pr_url and "/pull/" in deploy.pr_url:
        return deploy.pr_url.rsplit("/pull/", 1)[0]
    return None


def _commit(deploy: DeployView, sha: str) -> str:
    repository = _repository_url(deploy)
    return f"[`{sha[:12]}`]({repository}/commit/{sha})" if repository else f"`{sha[:12]}`"


def _processes(deploy: DeployView) -> str:
    return ", ".join(f"`{p}`" for p in deploy.processes)


def _follow(config: TrainConfig, deploy: DeployView) -> str:
    page = deploy_page(config, deploy.id)
    return f" [The deploy's page]({page})." if page else ""


def _took(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    spent = f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
    return f", {spent} after it left the queue"


def _quoted(text: str) -> str:
    """Text from elsewhere (an outside system's answer), shortened, that cannot pass for a marker or a heading."""
    text = text.replace("<!--", "<!- -").strip()
    if len(text) > REASON_LIMIT:
        text = text[: REASON_LIMIT - 1] + "…"
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def merged_comment(deploy: DeployView, config: TrainConfig, sha: str) -> str:
    base, environment = config.github.base_branch, config.github.environment
    how = (f"landed on `{base}` as {_commit(deploy, sha)}, the commit built and tested ahead of its turn"
           if deploy.landed_ahead else f"merged into `{base}` as {_commit(deploy, sha)}")
    return (f"### :steam_locomotive: Merged by the deploy train\n"
            f"This pull request was {how} by deploy #{deploy.id} (train `{deploy.train}`), which now takes it "
            f"to `{environment}`: build, canaries, then the rollout of {_processes(deploy)}."
            f"{_follow(config, deploy)}")


def completed_comment(deploy: DeployView, config: TrainConfig) -> str:
    sha = deploy.merge_sha
    what = f"{_commit(deploy, sha)} runs" if sha else "It runs"
    return (f"### :white_check_mark: Deployed to `{config.github.environment}`\n"
            f"{what} on {_processes(deploy)} (deploy #{deploy.id}{_took(deploy.duration)})."
            f"{_follow(config, deploy)}")


def _revert(deploy: DeployView, config: TrainConfig) -> str:
    """Whether the merge was reverted by the train, waits in a pull request, or is left to people."""
    base = config.github.base_branch
    sha = deploy.merge_sha
    status = deploy.revert_status
    through = (f" through the pull request {deploy.revert_pull_request}" if deploy.revert_pull_request else "")
    if status == "reverted":
        by = f" by {_commit(deploy, deploy.revert_sha)}" if deploy.revert_sha else ""
        return f"**The merge was reverted automatically** on `{base}`{by}{through}."
    if status == "already":
        by = f" ({_commit(deploy, deploy.revert_sha)})" if deploy.revert_sha else ""
        return f"**The merge was found reverted already** on `{base}`{by}."
    if status == "pull_request":
        return (f"**The revert waits in the pull request {deploy.revert_pull_request or '(not found)'}**: "
                f"`{base}` takes changes only through pull requests. Merge it to finish the rollback.")
    merge = _commit(deploy, sha) if sha else "the merge"
    command = {"merge": f"`git revert -m 1 {sha}`", "squash": f"`git revert {sha}`"}.get(
        config.github.merge_method) if sha else None
    if status == "manual":
        return (f"**The merge must be reverted by hand**: later commits on `{base}` changed the files it touched, "
                f"so reverting {merge} automatically could undo someone else's work. Revert it"
                f"{f' ({command})' if command else ''} once you have checked those commits.")
    return (f"**The merge was not reverted by the train** (the rollback was finished by hand): check that "
            f"{merge} is reverted on `{base}`{f' ({command})' if command else ''}.")


def rolled_back_comment(deploy: DeployView, config: TrainConfig, why: str | None) -> str:
    since = f" from `{deploy.rollback_from.label}`" if deploy.rollback_from else ""
    reason = f"\n\nWhy:\n{_quoted(why)}" if why else ""
    return (f"### :rewind: Rolled back\n"
            f"Deploy #{deploy.id} of this pull request was rolled back{since}: the services run what they ran "
            f"before.{reason}\n\n{_revert(deploy, config)}{_follow(config, deploy)}")


# -- peas -----------------------------------------------------------------------------------------

ALL = ""  # an effect on every deployment of the pea (its release), not on one commit's


@dataclass(frozen=True)
class _Effect:
    """A status one pea notice asks for: of the deployment of commit `sha` (ALL: of every one)."""

    index: int  # of the notice in the batch
    sha: str
    state: str
    description: str
    pr: int | None = None
    url: str | None = None


class _PeaReport:
    """What one delivery reports of one pea: statuses of its deployments, read from GitHub before each write."""

    def __init__(self, train: ReportedTrain, pea: PeaView) -> None:
        self.train = train
        self.pea = pea
        self.github = train.github
        self.environment = f"pea/{pea.name}"

    def effects(self, notices: Sequence[PeaNotice]) -> list[_Effect]:
        pea = self.pea
        found: list[_Effect] = []
        for index, notice in enumerate(notices):
            if isinstance(notice, PeaDeploying):
                found.append(_Effect(index, notice.sha, "queued", f"Waiting for the build of #{notice.pr}",
                                     notice.pr))
            elif isinstance(notice, PeaStarting):
                found.append(_Effect(index, notice.sha, "in_progress", "Starting the pea's services", notice.pr))
            elif isinstance(notice, PeaUp) and notice.sha:
                found.append(_Effect(index, notice.sha, "success", "Up", notice.pr, notice.url or pea.url))
            elif isinstance(notice, PeaFailed) and pea.head_sha:
                found.append(_Effect(index, pea.head_sha, "failure", notice.reason, pea.pr_number))
            elif isinstance(notice, (PeaReleased, PeaFree, PeaTakenOver)):
                found.append(_Effect(index, ALL, "inactive", "Released"))
        # What a release ends is not reported on its way: the deployments only become inactive.
        last_release = max((e.index for e in found if e.sha == ALL), default=-1)
        return [e for e in found if e.index >= last_release]

    async def deliver(self, stream: str, notices: Sequence[PeaNotice]) -> None:
        effects = self.effects(notices)
        for position, effect in enumerate(effects):
            try:
                if effect.sha == ALL:
                    await self._inactivate()
                else:
                    later = {e.state for e in effects[position:] if e.sha == effect.sha}
                    await self._follow(effect, later)
            except TransientError as exc:
                raise DeliveryFailed(str(exc), done=effect.index) from None
            except OutsideError as exc:
                log.warning("github: cannot report pea %s (%s): %s", self.pea.name, stream, exc)

    async def _follow(self, effect: _Effect, later: set[str]) -> None:
        """Post `effect` on its commit's deployment, unless GitHub already shows it or one of the batch's later
        states of that commit (a repeat of the batch after a crash)."""
        deployment = await self._deployment(effect.sha, effect.pr)
        statuses = await self.github.deployment_statuses(deployment, limit=1)
        if statuses and statuses[0].state in later:
            return
        await self.github.create_deployment_status(deployment, effect.state, description=effect.description,
                                                   environment_url=effect.url)

    async def _deployment(self, sha: str, pr: int | None) -> int:
        """The pea's deployment of commit `sha` (the newest, found by environment, commit and payload), else a new
        one."""
        found = await self.github.deployments(self.environment, sha=sha)
        mine = [d for d in found if _payload(d.payload).get("pea") == self.pea.name]
        if mine:
            return mine[0].id
        number = pr if pr is not None else self.pea.pr_number
        created = await self.github.create_deployment(
            sha, self.environment, payload={PAYLOAD_KEY: {"pea": self.pea.name, "pr": number}},
            description=f"Pea {self.pea.name}" + (f" for #{number}" if number is not None else ""),
            production=False, transient=False)
        return created.id

    async def _inactivate(self) -> None:
        """Every deployment of the pea not inactive yet becomes so (nobody's pull request runs there now)."""
        for deployment in await self.github.deployments(self.environment, limit=10):
            if _payload(deployment.payload).get("pea") != self.pea.name:
                continue
            statuses = await self.github.deployment_statuses(deployment.id, limit=1)
            if statuses and statuses[0].state == "inactive":
                continue
            await self.github.create_deployment_status(deployment.id, "inactive", description="Released")
