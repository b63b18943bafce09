"""The process: the Bolt app over Socket Mode and the job loop in one asyncio loop, with `/healthz` (liveness),
`/readyz` (readiness) and `/metrics`.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

# The same two calls AsyncSocketModeHandler.handle makes, timed around (the ack is sent in the second).
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot import listeners
from bot.delivery import CARD_INTERVAL, SlackSink
from bot.home import HomePublisher
from bot.metrics import Metrics, exposition_of
from bot.surface import Surface
from bot.trains import TrainFlows
from bot.wiring import Wired, WiringError, preflight, redact, wire
from flows.config import AppConfig, Settings, revealed
from flows.engine import Engine
from web.dashboard import Dashboard
from web.server import HttpServer

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
    trains: dict[str, TrainFlows]  # every train's public API and configuration, in the file's order
    app: AsyncApp
    client: AsyncWebClient
    handler: MeasuredSocketModeHandler
    wired: Wired
    sink: SlackSink
    home: HomePublisher
    metrics: Metrics
    http: HttpServer | None

    @property
    def engine(self) -> Engine:
        return self.wired.engine

    def train(self, name: str | None = None) -> TrainFlows:
        """Train `name`; without a name, the one train (KeyError when there are several)."""
        if name is None:
            if len(self.trains) != 1:
                raise KeyError(f"name one of the trains {', '.join(self.trains)}")
            return next(iter(self.trains.values()))
        return self.trains[name]

    def alive(self) -> tuple[bool, str]:
        """What `/healthz` reports (liveness): whether the job loop ticks. Slack's socket is not asked: it
        reconnects by itself, and a restart would only cut short the work under way."""
        return self.engine.alive()

    async def slack_connected(self) -> bool:
        return await self.handler.client.is_connected()

    def readiness(self) -> dict[str, Callable[[], Awaitable[bool]]]:
        """What `/readyz` checks (readiness): Slack's socket connected, the database answering."""
        return {"slack": self.slack_connected, "database": self.wired.database_answers}

    async def stop(self) -> None:
        """Stop taking requests, stop the job loop, deliver what is due, close the database."""
        await self.handler.close_async()
        self.sink.card_interval = 0  # what is held back goes out now
        await self.engine.stop()
        await self.home.close()
        if self.http is not None:
            await self.http.stop()
        await self.wired.close()


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


def build_app(client: AsyncWebClient, surface: Surface) -> AsyncApp:
    """The Bolt app with every listener registered."""
    app = AsyncApp(client=client, process_before_response=False)

    @app.error
    async def handle_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed on %s: %s", body.get("type") or body.get("command"), error, exc_info=error)

    listeners.register(app, surface)
    return app


def settle_memory() -> None:
    """Keep what is loaded at start (modules, clients, the app), which lives as long as the process, out of
    the garbage collector's full passes: they otherwise take ~90 ms each and stall every ack behind them."""
    gc.collect()
    gc.freeze()


async def start_bot(config: AppConfig, settings: Settings, *, card_interval: float = CARD_INTERVAL,
                    home_debounce: float = 1.0) -> Bot:
    """Check, connect and start everything; StartupError if something is missing, wrong or unreachable."""
    bot_token, app_token = revealed(settings.slack_bot_token), revealed(settings.slack_app_token)
    if not bot_token or not app_token:
        missing = [name for name, value in (("SLACK_BOT_TOKEN", bot_token), ("SLACK_APP_TOKEN", app_token))
                   if not value]
        raise StartupError(f"{' and '.join(missing)} not set: see manifest.yaml and the README to create the app")
    metrics = Metrics()
    client = AsyncWebClient(token=bot_token, base_url=settings.slack_api_url, timeout=int(SLACK_TIMEOUT))
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    await _check_slack(client.auth_test(), "SLACK_BOT_TOKEN", settings.slack_api_url)
    await _check_slack(AsyncWebClient(base_url=settings.slack_api_url, timeout=int(SLACK_TIMEOUT))
                       .apps_connections_open(app_token=app_token), "SLACK_APP_TOKEN", settings.slack_api_url)

    trains = list(config.trains.values())
    try:
        # the doctor's fast part, for every train at once: a train that cannot work takes no work
        await preflight(trains, settings)
        wired = await wire(trains, settings, metrics)
    except WiringError as exc:
        raise StartupError(str(exc)) from None
    return await serve(config, settings, wired, client, metrics, card_interval=card_interval,
                       home_debounce=home_debounce)


async def serve(config: AppConfig, settings: Settings, wired: Wired, client: AsyncWebClient, metrics: Metrics, *,
                card_interval: float = CARD_INTERVAL, home_debounce: float = 1.0) -> Bot:
    """The Slack surface over what `wired` runs on, connected, its job loop started: `start_bot` once it has
    checked everything and wired the domain."""
    bot_token, app_token = revealed(settings.slack_bot_token), revealed(settings.slack_app_token)
    trains = list(config.trains.values())
    engine = wired.engine
    flows = {name: TrainFlows(lane.config, lane.deploys, lane.peas) for name, lane in engine.lanes.items()}
    commands = config.slack.commands
    home = HomePublisher(client, list(flows.values()), commands, wired.store, debounce=home_debounce)
    # The outbox honours Slack's rate limits itself (Retry-After reschedules the stream): no retries in the client.
    delivering = AsyncWebClient(token=bot_token, base_url=settings.slack_api_url, timeout=int(SLACK_TIMEOUT))
    sink = SlackSink(delivering, list(flows.values()), wired.store, home=home, metrics=metrics,
                     card_interval=card_interval)
    app = build_app(client, Surface(flows, commands, home))
    handler = MeasuredSocketModeHandler(app, app_token or "", metrics, ping_interval=PING_INTERVAL)
    bot = Bot(config, flows, app, client, handler, wired, sink, home, metrics, None)
    try:
        try:
            await asyncio.wait_for(handler.connect_async(), CONNECT_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StartupError(f"cannot open the Socket Mode connection to Slack within {CONNECT_TIMEOUT:.0f}s "
                               f"({type(exc).__name__}): check SLACK_APP_TOKEN and the network") from None
        if settings.http_port:
            bot.http = HttpServer(live=bot.alive, ready=bot.readiness(),
                                  metrics=lambda: exposition_of(metrics, {n: t.deploys.counts
                                                                          for n, t in flows.items()}),
                                  wake_job=engine.wake_job, hook_token=revealed(settings.hook_token),
                                  dashboard=Dashboard(list(flows.values())),
                                  web_password=revealed(settings.web_password))
            try:
                await bot.http.start(settings.http_port)
            except OSError as exc:
                bot.http = None
                raise StartupError(f"cannot serve /healthz, /readyz, /metrics, /hooks/jenkins and the dashboard on "
                                   f"port {settings.http_port} ({exc}): "
                                   "set FATCONTROLLER_HTTP_PORT to a free port, or 0 for none") from None
        engine.start([sink, *wired.sinks])  # Slack, and GitHub reporting when a train reports there
    except BaseException:
        await bot.stop()
        raise
    settle_memory()
    log.info("connected to Slack; running %s", ", ".join(f"train {t.name} ({t.github.repo})" for t in trains))
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
