"""The composition root: the one module of the Slack surface that builds what the domain runs on.

It opens the database (creating the schema on an empty one, refusing an out-of-date one), builds
the outside systems' clients from the environment, the engine (whose `deploys` and `peas` are the
domain's public API), and the store where the Slack surface keeps its messages. Every other module
of `bot/` sees only the domain's API and views.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import Metrics
from bot.store import MessageStore
from flows.config import AppConfig, Settings, revealed
from flows.engine import Engine
from flows.outside import Outside
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from integrations.outside import OutsideError, TransientError, redact
from storage.db import StorageError, make_engine, make_sessionmaker
from storage.migrate import ensure_schema, upgrade
from storage.slack import SlackStore

# `redact` is the outside systems' scrubber, for the process's own start-up errors.
__all__ = ["Wired", "WiringError", "build_outside", "redact", "upgrade_database", "wire"]


class WiringError(Exception):
    """Something the process needs is missing or unusable; the message says what to fix (and holds no secret)."""


def build_outside(config: AppConfig, settings: Settings, metrics: Metrics | None = None) -> Outside:
    """The clients of GitHub, Jenkins and AWS for `config`, from the environment's endpoints and secrets."""
    if not settings.jenkins_url:
        raise WiringError("JENKINS_URL is not set: the train needs Jenkins to follow builds")
    github = GitHub(config.github.repo, config.github.base_branch, token=revealed(settings.github_token),
                    api_url=settings.github_api_url)
    jenkins = Jenkins(settings.jenkins_url, settings.jenkins_user, revealed(settings.jenkins_token),
                      sha_parameter=config.jenkins.sha_parameter)
    ecs = Ecs(region=config.region, endpoint_url=settings.aws_endpoint_url)
    if metrics is not None:
        def count(_what: str, error: OutsideError) -> None:
            metrics.outside_error(error.system, isinstance(error, TransientError))

        for facade in (github, jenkins, ecs):
            facade._caller.on_error = count
    return Outside(github=github, jenkins=jenkins, ecs=ecs)


@dataclass
class Wired:
    """What a bot process runs on: the engine (the domain's API), the Slack surface's store, the database."""

    engine: Engine
    store: MessageStore
    database: AsyncEngine

    async def database_answers(self) -> bool:
        try:
            async with self.database.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.database.dispose()


async def wire(config: AppConfig, settings: Settings, metrics: Metrics) -> Wired:
    """Open the database and build the engine and the Slack store; WiringError if something is wrong."""
    outside = build_outside(config, settings, metrics)
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
    engine = Engine(config, sessions, outside, owner=settings.instance,
                    lease_ttl=timedelta(seconds=settings.lease_seconds))
    engine.outbox.on_failure = metrics.outbox_failed
    return Wired(engine, SlackStore(sessions), database)


async def upgrade_database(settings: Settings) -> None:
    """`fatcontroller db upgrade`: migrate the database of `DATABASE_URL` to this release's schema."""
    try:
        await upgrade(settings.database_url.get_secret_value())
    except StorageError as exc:
        raise WiringError(str(exc)) from None
