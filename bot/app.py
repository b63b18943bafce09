"""The process: the Bolt app over Socket Mode and the job loop in one asyncio loop, with `/healthz` and `/metrics`.

`start_bot` checks everything it needs before taking work (the database schema, both Slack
tokens, the Socket Mode connection, each within a bound), so a bad token or an unreachable
Slack stops the start with a message naming what to fix, instead of retrying forever.
`run` is `start_bot`, then waiting for SIGTERM or SIGINT, then a clean `Bot.stop`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import sqlalchemy as sa
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

# The same two calls AsyncSocketModeHandler.handle makes, timed around (the ack is sent in the second).
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import actions, commands, home, modals, peas, picker
from bot.home import HomePublisher
from bot.metrics import HttpServer, Metrics
from bot.notifier import CARD_INTERVAL, SlackNotifier
from bot.surface import Surface
from flows.config import AppConfig, Settings
from flows.deploy.flows import DeployFlows
from flows.deploy.steps import Outside
from flows.engine import Engine
from flows.pea.flows import PeaFlows
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from integrations.outside import redact
from storage.db import StorageError, make_engine, make_sessionmaker
from storage.migrate import ensure_schema

log = logging.getLogger(__name__)

EXIT_CANNOT_START = 2
PING_INTERVAL = 2.0  # seconds between Socket Mode pings: a dead socket is noticed within a few seconds
SLACK_TIMEOUT = 10.0  # one Web API call at start
CONNECT_TIMEOUT = 15.0  # opening the Socket Mode connection
RATE_LIMIT_RETRIES = 3  # HTTP 429: wait Retry-After and try again, this many times
_TOKEN_KINDS = {"SLACK_BOT_TOKEN": "bot token (xoxb-...)",
                "SLACK_APP_TOKEN": "app-level token (xapp-...) with the connections:write scope"}


class StartupError(Exception):
    """The bot cannot start; the message says what to fix (and never holds a secret)."""


class MeasuredSocketModeHandler(AsyncSocketModeHandler):
    """Socket Mode that records how long each envelope took to acknowledge."""

    def __init__(self, app: AsyncApp, app_token: str, metrics: Metrics, **options: Any) -> None:
        super().__init__(app, app_token, **options)
        self.metrics = metrics

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.perf_counter()
        response = await run_async_bolt_app(self.app, req)
        await send_async_response(client, req, response, time.time())
        self.metrics.ack_seconds.labels(req.type).observe(time.perf_counter() - started)


@dataclass
class Bot:
    """A running bot: stop it with `stop()`."""

    config: AppConfig
    app: AsyncApp
    client: AsyncWebClient
    handler: MeasuredSocketModeHandler
    engine: Engine
    notifier: SlackNotifier
    home: HomePublisher
    metrics: Metrics
    database: AsyncEngine
    http: HttpServer | None

    @property
    def flows(self) -> DeployFlows:
        return self.engine.flows

    async def healthy(self) -> dict[str, bool]:
        """What `/healthz` reports: Slack connected, database answering."""
        try:
            async with self.database.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            database = True
        except Exception:
            database = False
        return {"slack": await self.handler.client.is_connected(), "database": database}

    async def stop(self) -> None:
        """Stop taking requests, stop the job loop, deliver what is pending, close the database."""
        await self.handler.close_async()
        await self.engine.stop()
        await self.notifier.close()
        await self.home.close()
        if self.http is not None:
            await self.http.stop()
        await self.database.dispose()


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_outside(config: AppConfig, settings: Settings, metrics: Metrics) -> Outside:
    if not settings.jenkins_url:
        raise StartupError("JENKINS_URL is not set: the train needs Jenkins to follow builds")
    outside = Outside(
        github=GitHub(config.github.repo, config.github.base_branch, token=_secret(settings.github_token),
                      api_url=settings.github_api_url),
        jenkins=Jenkins(settings.jenkins_url, settings.jenkins_user, _secret(settings.jenkins_token),
                        sha_parameter=config.jenkins.sha_parameter),
        ecs=Ecs(region=config.region, endpoint_url=settings.aws_endpoint_url),
    )
    # The facades do not take the hook in their constructors (yet): count every failed outside call.
    for facade in (outside.github, outside.jenkins, outside.ecs):
        facade._caller.on_error = metrics.outside_error
    return outside


async def _check_slack(call: Any, variable: str, api_url: str) -> None:
    """One Web API call with `variable`'s token, within SLACK_TIMEOUT; StartupError naming the token if refused."""
    kind = _TOKEN_KINDS[variable]
    try:
        await asyncio.wait_for(call, SLACK_TIMEOUT)
    except SlackApiError as exc:
        raise StartupError(f"Slack refused {variable} ({exc.response.get('error')}): check that it is this app's "
                           f"{kind}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = redact(str(exc)) or "no answer"
        raise StartupError(f"cannot reach Slack at {api_url} ({type(exc).__name__}: {reason}): "
                           "check SLACK_API_URL and the network") from None


async def _open_database(settings: Settings) -> AsyncEngine:
    url = settings.database_url.get_secret_value()
    try:
        database = make_engine(url)
    except StorageError as exc:
        raise StartupError(str(exc)) from None
    try:
        await ensure_schema(database)
    except StorageError as exc:  # SchemaOutdated says to run `fatcontroller db upgrade`
        await database.dispose()
        raise StartupError(str(exc)) from None
    return database


def build_app(client: AsyncWebClient, surface: Surface, pea_flows: PeaFlows, notifier: SlackNotifier) -> AsyncApp:
    """The Bolt app with every listener registered (the peas' DMs and Home section plugged in too)."""
    app = AsyncApp(client=client, process_before_response=False)

    @app.error
    async def handle_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed on %s: %s", body.get("type") or body.get("command"), error, exc_info=error)

    commands.register(app, surface)
    modals.register(app, surface)
    actions.register(app, surface)
    picker.register(app, surface.github)
    home.register(app, surface.home)
    peas.register(app, pea_flows, surface.config, notifier=notifier, home=surface.home)
    actions.register_fallbacks(app)
    return app


def settle_memory() -> None:
    """Keep what is loaded at start (modules, clients, the app), which lives as long as the process, out of
    the garbage collector's full passes: they otherwise take ~90 ms each and stall every ack behind them."""
    gc.collect()
    gc.freeze()


async def start_bot(config: AppConfig, settings: Settings, *, card_interval: float = CARD_INTERVAL,
                    home_debounce: float = 1.0) -> Bot:
    """Check, connect and start everything; StartupError if something is missing, wrong or unreachable."""
    bot_token, app_token = _secret(settings.slack_bot_token), _secret(settings.slack_app_token)
    if not bot_token or not app_token:
        missing = [name for name, value in (("SLACK_BOT_TOKEN", bot_token), ("SLACK_APP_TOKEN", app_token))
                   if not value]
        raise StartupError(f"{' and '.join(missing)} not set: see manifest.yaml and the README to create the app")
    metrics = Metrics()
    outside = build_outside(config, settings, metrics)
    client = AsyncWebClient(token=bot_token, base_url=settings.slack_api_url, timeout=int(SLACK_TIMEOUT))
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    await _check_slack(client.auth_test(), "SLACK_BOT_TOKEN", settings.slack_api_url)
    await _check_slack(AsyncWebClient(base_url=settings.slack_api_url, timeout=int(SLACK_TIMEOUT))
                       .apps_connections_open(app_token=app_token), "SLACK_APP_TOKEN", settings.slack_api_url)

    database = await _open_database(settings)
    sessions = make_sessionmaker(database)
    home_publisher = HomePublisher(client, config, sessions, debounce=home_debounce)
    notifier = SlackNotifier(client, config, sessions, home=home_publisher, metrics=metrics,
                             card_interval=card_interval)
    engine = Engine(config, sessions, outside, notifier, owner=settings.instance,
                    lease_ttl=timedelta(seconds=settings.lease_seconds))
    surface = Surface(config, engine.flows, sessions, outside.github, home_publisher)
    app = build_app(client, surface, engine.peas, notifier)
    handler = MeasuredSocketModeHandler(app, app_token, metrics, ping_interval=PING_INTERVAL)
    bot = Bot(config, app, client, handler, engine, notifier, home_publisher, metrics, database, None)
    try:
        try:
            await asyncio.wait_for(handler.connect_async(), CONNECT_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StartupError(f"cannot open the Socket Mode connection to Slack within {CONNECT_TIMEOUT:.0f}s "
                               f"({type(exc).__name__}): check SLACK_APP_TOKEN and the network") from None
        if settings.http_port:
            bot.http = HttpServer(metrics, sessions, bot.healthy)
            try:
                await bot.http.start(settings.http_port)
            except OSError as exc:
                bot.http = None
                raise StartupError(f"cannot serve /healthz and /metrics on port {settings.http_port} ({exc}): "
                                   "set FATCONTROLLER_HTTP_PORT to a free port, or 0 for none") from None
        engine.start()
        await notifier.resync_cards()
    except BaseException:
        await bot.stop()
        raise
    settle_memory()
    log.info("connected to Slack; the train %s is running", config.github.repo)
    return bot


async def run(config: AppConfig, settings: Settings) -> int:
    """`fatcontroller run`: serve until SIGTERM or SIGINT; 0 after a clean stop, 2 if it cannot start."""
    try:
        bot = await start_bot(config, settings)
    except StartupError as exc:
        print(f"fatcontroller: cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
        log.info("stopping")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await bot.stop()
    return 0
