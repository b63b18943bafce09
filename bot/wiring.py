"""The composition root: the one module of the Slack surface that builds what the domain runs on.

It opens the database (creating the schema on an empty one, refusing an out-of-date one), builds
the outside systems' clients from the environment, the engine (whose `deploys` and `peas` are the
domain's public API), the store where the Slack surface keeps its messages, and the outbox's other
sinks (GitHub reporting, `report.github`, for the trains with `github.report`). Every other module
of `bot/` sees only the domain's API and views. It also builds what `fatcontroller doctor` asks
(`flows.doctor`), and `preflight`, the doctor's fast part that `run` makes before it takes work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import sqlalchemy as sa
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import Metrics
from bot.store import MessageStore
from flows.config import Settings, TrainConfig, revealed
from flows.doctor import Report, SlackAnswer, Systems, examine
from flows.engine import SLACK, Engine, TrainSetup
from flows.outbox import Sink
from flows.outside import Outside
from integrations.cloudwatch import CloudWatch
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from integrations.outside import CallPolicy, Facade, OutsideError, TransientError, redact
from report import github as github_report
from storage.db import StorageError, make_engine, make_sessionmaker
from storage.migrate import ensure_schema, upgrade
from storage.slack import SlackStore
from storage.trains import adopt_legacy_train, legacy_repository

# `redact` is the outside systems' scrubber, for the process's own start-up errors.
__all__ = ["Wired", "WiringError", "build_outside", "doctor", "legacy_heir", "preflight", "redact", "upgrade_database",
           "wire"]

log = logging.getLogger(__name__)


class WiringError(Exception):
    """Something the process needs is missing or unusable; the message says what to fix (and holds no secret)."""


REPORT_TIMEOUT = 10.0  # seconds one GitHub reporting call may take: the outbox tries again later anyway


def _github(config: TrainConfig, settings: Settings, policy: CallPolicy | None = None) -> GitHub:
    return GitHub(config.github.repo, config.github.base_branch, token=revealed(settings.github_token),
                  api_url=settings.github_api_url, merge_method=config.github.merge_method, policy=policy,
                  timeout=policy.timeout if policy else 15.0)


def _count_errors(facades: Sequence[Facade], metrics: Metrics) -> None:
    def count(_what: str, error: OutsideError) -> None:
        metrics.outside_error(error.system, isinstance(error, TransientError))

    for facade in facades:
        facade._caller.on_error = count


def build_outside(config: TrainConfig, settings: Settings, metrics: Metrics | None = None) -> Outside:
    """The clients of GitHub, Jenkins and AWS (ECS, CloudWatch) for `config`, from the environment's endpoints
    and secrets."""
    if not settings.jenkins_url:
        raise WiringError("JENKINS_URL is not set: the train needs Jenkins to follow builds")
    github = _github(config, settings)
    jenkins = Jenkins(settings.jenkins_url, settings.jenkins_user, revealed(settings.jenkins_token),
                      sha_parameter=config.jenkins.sha_parameter)
    ecs = Ecs(region=config.region, endpoint_url=settings.aws_endpoint_url)
    cloudwatch = CloudWatch(region=ecs.region, endpoint_url=settings.aws_endpoint_url)
    if metrics is not None:
        _count_errors((github, jenkins, ecs, cloudwatch), metrics)
    return Outside(github=github, jenkins=jenkins, ecs=ecs, cloudwatch=cloudwatch)


@dataclass
class Wired:
    """What a bot process runs on: the engine (the domain's API), the Slack surface's store, the database, and
    the outbox's sinks besides Slack (GitHub reporting), with the clients they alone use."""

    engine: Engine
    store: MessageStore
    database: AsyncEngine
    sinks: list[Sink] = field(default_factory=list)
    clients: list[Facade] = field(default_factory=list)

    async def database_answers(self) -> bool:
        try:
            async with self.database.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        self.engine.close()
        for client in self.clients:
            client.close()
        await self.database.dispose()


def legacy_heir(trains: Sequence[TrainConfig], repository: str | None) -> TrainConfig:
    """Which train takes over a single-train release's rows: the one train, or the train on the repository its
    deploys came from (the file's first train when none is, or the database holds no deploy)."""
    return next((t for t in trains if repository is not None and t.github.repo.lower() == repository.lower()),
                trains[0])


async def wire(trains: Sequence[TrainConfig], settings: Settings, metrics: Metrics) -> Wired:
    """Open the database and build the engine of `trains` and the Slack store; WiringError if something is
    wrong."""
    setups = [TrainSetup(config, build_outside(config, settings, metrics)) for config in trains]
    url = settings.database_url.get_secret_value()
    try:
        database = make_engine(url)
    except StorageError as exc:
        raise WiringError(str(exc)) from None
    try:
        await ensure_schema(database)
    except StorageError as exc:  # SchemaOutdated says to run `fatcontroller db upgrade`
        await database.dispose()
        raise WiringError(str(exc)) from None
    sessions = make_sessionmaker(database)
    # A database a single-train release made: its train becomes one of this file's (idempotent, one transaction).
    async with sessions() as session, session.begin():
        heir = legacy_heir(trains, await legacy_repository(session)).name
        adopted = await adopt_legacy_train(session, heir)
    if adopted:
        log.info("the single-train database's %d deploys now belong to train %s", adopted, heir)
    reporting = [config for config in trains if config.github.report]
    engine = Engine(setups, sessions, sinks=(SLACK, github_report.NAME) if reporting else (SLACK,),
                    owner=settings.instance, lease_ttl=timedelta(seconds=settings.lease_seconds))
    engine.outbox.on_failure = metrics.outbox_failed
    sinks, clients = github_reporting(engine, reporting, settings, metrics)
    return Wired(engine, SlackStore(sessions), database, sinks, clients)


def github_reporting(engine: Engine, trains: Sequence[TrainConfig], settings: Settings,
                     metrics: Metrics | None = None) -> tuple[list[Sink], list[Facade]]:
    """The GitHub sink of `trains` (those that report, DESIGN §10), and its clients: each train's GitHub with threads
    of its own, so a slow report never takes a thread a deploy step waits for."""
    if not trains:
        return [], []
    clients = {config.name: _github(config, settings, CallPolicy(timeout=REPORT_TIMEOUT, workers=2))
               for config in trains}
    if metrics is not None:
        _count_errors(list(clients.values()), metrics)
    lanes = engine.lanes
    sink = github_report.GitHubSink([github_report.ReportedTrain(lanes[name].config, lanes[name].deploys,
                                                                 lanes[name].peas, github)
                                     for name, github in clients.items()])
    return [sink], list(clients.values())


async def upgrade_database(settings: Settings) -> None:
    """`fatcontroller db upgrade`: migrate the database of `DATABASE_URL` to this release's schema."""
    try:
        await upgrade(settings.database_url.get_secret_value())
    except StorageError as exc:
        raise WiringError(str(exc)) from None


# -- `fatcontroller doctor`, and its fast part before `run` takes work ---------------------------------------
PREFLIGHT_TIMEOUT = 15.0  # seconds each outside system has to answer the checks `run` makes at start
SLACK_CHECK_TIMEOUT = 10.0
# manifest.yaml's bot scopes (tests/bot/test_doctor.py keeps the two in step)
BOT_SCOPES = ("chat:write", "chat:write.public", "commands", "im:write")


class SlackTokens:
    """The doctor's questions to Slack: auth.test with the bot token, apps.connections.open with the app token."""

    expected_scopes: tuple[str, ...] = BOT_SCOPES

    def __init__(self, settings: Settings, timeout: float = SLACK_CHECK_TIMEOUT) -> None:
        self.api_url = settings.slack_api_url
        self._bot, self._app = revealed(settings.slack_bot_token), revealed(settings.slack_app_token)
        self._timeout = timeout

    async def bot_token(self) -> SlackAnswer:
        if not self._bot:
            return SlackAnswer(ok=False, unset=True)
        client = AsyncWebClient(token=self._bot, base_url=self.api_url, timeout=int(self._timeout))
        return await self._ask(client.auth_test(), bot=True)

    async def app_token(self) -> SlackAnswer:
        if not self._app:
            return SlackAnswer(ok=False, unset=True)
        client = AsyncWebClient(base_url=self.api_url, timeout=int(self._timeout))
        # hands out a Socket Mode URL, nothing more: no connection is opened
        return await self._ask(client.apps_connections_open(app_token=self._app), bot=False)

    async def _ask(self, call: Awaitable[AsyncSlackResponse], *, bot: bool) -> SlackAnswer:
        try:
            response = await asyncio.wait_for(call, self._timeout)
        except SlackApiError as exc:
            data = exc.response.data  # not JSON (a wrong SLACK_API_URL's 404 page): a str
            said = data.get("error") if isinstance(data, dict) else None
            return SlackAnswer(ok=False, error=str(said or f"HTTP {exc.response.status_code}"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return SlackAnswer(ok=False, unreachable=True,
                               error=f"{type(exc).__name__}: {redact(str(exc)) or 'no answer'}")
        if not bot:
            return SlackAnswer(ok=True)
        # Slack names a token's scopes in this header of every Web API answer
        scopes = next((v for k, v in (response.headers or {}).items() if k.lower() == "x-oauth-scopes"), None)
        who = f"{response.get('user')} in {response.get('team')}" if response.get("user") else None
        return SlackAnswer(ok=True, who=who, scopes=None if scopes is None else
                           tuple(s.strip() for s in str(scopes).split(",") if s.strip()))


def doctor_systems(config: TrainConfig, settings: Settings, *, slack: bool = True) -> tuple[Systems, list[Facade]]:
    """The clients the doctor asks, built as `build_outside` builds them (without JENKINS_URL: no Jenkins),
    and the facades to close afterwards."""
    github = _github(config, settings)
    jenkins = (Jenkins(settings.jenkins_url, settings.jenkins_user, revealed(settings.jenkins_token),
                       sha_parameter=config.jenkins.sha_parameter) if settings.jenkins_url else None)
    ecs = Ecs(region=config.region, endpoint_url=settings.aws_endpoint_url)
    cloudwatch = CloudWatch(region=ecs.region, endpoint_url=settings.aws_endpoint_url)
    facades: list[Facade] = [github, ecs, cloudwatch, *([jenkins] if jenkins is not None else [])]
    return Systems(github, jenkins, ecs, cloudwatch, SlackTokens(settings) if slack else None), facades


async def doctor(config: TrainConfig, settings: Settings, *, fast: bool = False,
                 within: float | None = None) -> Report:
    """`fatcontroller doctor`: every check of the configured train (`fast`: the part `run` makes at start)."""
    systems, facades = doctor_systems(config, settings, slack=not fast)
    try:
        return await examine(config, systems, fast=fast, within=within)
    finally:
        for facade in facades:
            facade.close()


async def preflight(trains: Sequence[TrainConfig], settings: Settings, *, within: float = PREFLIGHT_TIMEOUT) -> None:
    """The doctor's fast part for every train at once, before the bot takes work: WiringError naming every problem
    with its fix, in the doctor's words (and the train's name, when there are several). A system that does not
    answer is only logged: the bot waits out outside failures itself."""
    reports = await asyncio.gather(*(doctor(config, settings, fast=True, within=within) for config in trains))
    named = len(trains) > 1
    problems = []
    for config, report in zip(trains, reports, strict=True):
        where = f"train {config.name}: " if named else ""
        for check in report.problems:
            if check.transient:
                log.warning("not checked at start: %s%s", where, check.words)
            else:
                problems.append(f"{where}{check.words}")
    if len(problems) == 1:
        raise WiringError(problems[0])
    if problems:
        raise WiringError(f"{len(problems)} problems (`fatcontroller doctor` checks everything):\n"
                          + "\n".join(f"  {words}" for words in problems))
