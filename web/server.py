"""The process's HTTP server on `FATCONTROLLER_HTTP_PORT`: `/healthz`, `/readyz`, `/metrics`, `/hooks/jenkins` and
the web dashboard (`web.dashboard`).

It serves on every interface by default: Prometheus scrapes, Jenkins posts and the orchestrator probes,
from outside the host.

The two probes answer different questions, so that an orchestrator restarts the process only when a
restart can help:

- `/healthz`, liveness: is the process working at all, i.e. does its job loop still tick? 200, or 503
  with the reason. It asks no outside system: Slack's socket reconnects by itself and a database
  outage is not cured by a restart, so neither may get the process killed.
- `/readyz`, readiness: can it serve now? 200 when every check passes (Slack's socket connected, the
  database answering), 503 naming the one that does not. Each check has `CHECK_TIMEOUT` to answer:
  a hung database must fail the probe, not hang it.

With a web password (`FATCONTROLLER_WEB_PASSWORD`) every path but the probes, `/metrics` and the hook (which
have their own callers and rules) asks for it with HTTP basic auth, whatever the user name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from web.dashboard import Dashboard
from web.hooks import MAX_BODY, jenkins_hook

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
CHECK_TIMEOUT = 3.0  # seconds each readiness check has; probes commonly give up after 5

# Liveness: (alive, why). Synchronous on purpose: it must not wait for anything outside the process.
Liveness = Callable[[], tuple[bool, str]]
# Readiness: one check by name; True when it passes (raising or running out of time counts as failing).
Check = Callable[[], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Asked by machines with rules of their own (the hook has its token): never behind the dashboard's password.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/hooks/jenkins"})
REALM = "Fat Controller"


def authorized(header: str | None, password: str) -> bool:
    """Whether an `Authorization` header is HTTP basic auth with `password` (any user name)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, colon, given = decoded.partition(":")
    return bool(colon) and hmac.compare_digest(given.encode(), password.encode())


class HttpServer:
    """`/healthz` (liveness), `/readyz` (readiness), `/metrics`, the Jenkins hook, and the dashboard if given."""

    def __init__(self, *, live: Liveness, ready: Mapping[str, Check], metrics: Callable[[], Awaitable[bytes]],
                 wake_job: Callable[[str], Awaitable[int]], hook_token: str | None = None,
                 dashboard: Dashboard | None = None, web_password: str | None = None) -> None:
        self.live = live
        self.ready = ready
        self.metrics = metrics
        self.wake_job = wake_job
        self.hook_token = hook_token
        self.dashboard = dashboard
        self.web_password = web_password or None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._basic_auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/hooks/jenkins", jenkins_hook(self.wake_job, self.hook_token))
        if self.dashboard is not None:
            self.dashboard.add_routes(app)
        return app

    @web.middleware
    async def _basic_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.web_password is None or request.path in OPEN_PATHS \
                or authorized(request.headers.get("Authorization"), self.web_password):
            return await handler(request)
        return web.json_response({"error": "the dashboard asks for its password (HTTP basic auth)"}, status=401,
                                 headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})

    async def start(self, port: int, host: str = "0.0.0.0") -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        alive, why = self.live()
        return web.json_response({"ok": alive, "job_loop": why}, status=200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        names = list(self.ready)
        passed = await asyncio.gather(*(self._check(name) for name in names))
        checks = dict(zip(names, passed, strict=True))
        ok = all(passed)
        return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)

    async def _check(self, name: str) -> bool:
        try:
            return bool(await asyncio.wait_for(self.ready[name](), CHECK_TIMEOUT))
        except TimeoutError:
            log.warning("readiness: the %s check did not answer within %.0fs", name, CHECK_TIMEOUT)
            return False
        except Exception as exc:  # a probe answers 503; it never fails with a 500
            log.warning("readiness: the %s check failed: %s: %s", name, type(exc).__name__, exc)
            return False

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=await self.metrics(), headers={"Content-Type": CONTENT_TYPE_METRICS})
