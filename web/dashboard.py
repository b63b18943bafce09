"""The read-only web dashboard (DESIGN §10): every train, a deploy's whole story, the history and the figures, as
pages and as JSON.

Pages are rendered on the server (Jinja2); a small script polls the page's JSON and, when it changed, swaps in
the page's new content, so a page follows a deploy without a reload. Nothing here acts: actions stay in
Slack, where people are known. Everything is read through the trains' public API (`flows`), as frozen views.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from flows.config import TrainConfig
from flows.deploy.flows import DeployFlows, history_of, queues_of
from flows.deploy.machine import State
from flows.pea.flows import PeaFlows
from flows.views import DeployView, HistoryPage, QueueView
from web import present
from web.charts import bar_chart

HERE = Path(__file__).parent
POLL_MS = 1000  # how often a page asks whether it changed: a change shows within the 2 s DESIGN §10 allows
# Viewers of the same page and query share one answer this long: however many browsers poll, each page costs
# at most a few reads a second, and a change still shows within POLL_MS + SHARED_FOR (bench.ack_latency).
SHARED_FOR = 0.5
SHARED_PAGES = 256  # answers kept at most (history queries are many): the oldest go first
PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000  # the offset stays far inside the database's integers
# Only this origin's own script, styles and pictures; no frames: the pages are read-only and stay that way.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class DashboardTrain(Protocol):
    """One train as the dashboard reads it: its name and public API (the Slack surface's `TrainFlows` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def deploys(self) -> DeployFlows: ...

    @property
    def peas(self) -> PeaFlows: ...


class BadQuery(ValueError):
    """A filter or page the history cannot take; its message says which and why."""


@dataclass(frozen=True)
class HistoryQuery:
    """`/history`'s filters and page, read from the query string."""

    train: str | None
    state: State | None
    person: str | None
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def link(self, page: int) -> str:
        """The query string of another page with the same filters."""
        pairs = [("train", self.train), ("state", self.state.value if self.state else None),
                 ("person", self.person), ("limit", str(self.limit) if self.limit != PAGE_SIZE else None),
                 ("page", str(page) if page != 1 else None)]
        query = urlencode([(k, v) for k, v in pairs if v])
        return f"?{query}" if query else "?"


def _now() -> datetime:
    """Naive UTC, as the views' times are."""
    return datetime.now(UTC).replace(tzinfo=None)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(human=present.human, iso=present.iso, utc_text=present.utc_text, percent=present.percent,
                       poll_ms=POLL_MS, states=list(State))
    return env


def _number(value: str | None, name: str, default: int, *, at_most: int | None = None) -> int:
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise BadQuery(f"{name} must be a whole number from 1")
    number = int(value)
    if at_most is not None and number > at_most:
        raise BadQuery(f"{name} must be at most {at_most}")
    return number


Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class _Answer:
    """A page or JSON answer as sent, to send again to the next viewers: a Response object is sent only once."""

    at: float
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]

    def response(self) -> web.Response:
        return web.Response(body=self.body, status=self.status, content_type=self.content_type,
                            headers=dict(self.headers))


class SharedAnswers:
    """What each page and query answered lately, read once for every viewer asking within `fresh_for` seconds
    (those asking while it is read wait for that read), so the dashboard's cost does not grow with its viewers.
    One read at a time: the event loop is the Slack acks' too, and they must not queue behind many renders."""

    def __init__(self, fresh_for: float = SHARED_FOR, kept: int = SHARED_PAGES) -> None:
        self.fresh_for, self.kept = fresh_for, kept
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._reading: dict[str, asyncio.Future[_Answer]] = {}
        self._one_at_a_time = asyncio.Semaphore(1)
        self.reads = 0

    def shared(self, handler: Handler) -> Handler:
        async def answer(request: web.Request) -> web.Response:
            return (await self._answer(request.path_qs, lambda: handler(request))).response()
        return answer

    async def _answer(self, key: str, read: Callable[[], Awaitable[web.Response]]) -> _Answer:
        kept = self._answers.get(key)
        if kept is not None and time.monotonic() - kept.at < self.fresh_for:
            return kept
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._read(key, read))
        # one viewer going away must not cancel the read the others wait for
        return await asyncio.shield(reading)

    async def _read(self, key: str, read: Callable[[], Awaitable[web.Response]]) -> _Answer:
        try:
            async with self._one_at_a_time:
                self.reads += 1
                response = await read()
            body = response.body if isinstance(response.body, bytes) else b""
            answer = _Answer(time.monotonic(), response.status, body, response.content_type,
                             tuple((k, v) for k, v in response.headers.items() if k.lower() != "content-type"))
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.kept:
                self._answers.popitem(last=False)
            return answer
        finally:
            self._reading.pop(key, None)


class Dashboard:
    """The dashboard's routes over the trains' public API."""

    def __init__(self, trains: Sequence[DashboardTrain], answers: SharedAnswers | None = None) -> None:
        self.trains = {t.name: t for t in trains}
        self.templates = _environment()
        self.answers = answers or SharedAnswers()

    def add_routes(self, app: web.Application) -> None:
        router, shared = app.router, self.answers.shared
        router.add_get("/", shared(self.handle_trains_page))
        router.add_get(r"/deploys/{deploy_id:\d+}", shared(self.handle_deploy_page))
        router.add_get("/history", shared(self.handle_history_page))
        router.add_get("/stats", shared(self.handle_stats_page))
        router.add_get("/api/trains", shared(self.handle_trains_api))
        router.add_get(r"/api/deploys/{deploy_id:\d+}", shared(self.handle_deploy_api))
        router.add_get("/api/history", shared(self.handle_history_api))
        router.add_get("/api/stats", shared(self.handle_stats_api))
        router.add_static("/static", HERE / "static", append_version=True)

    # -- reading --------------------------------------------------------------------------------
    def _config_of(self, train: str) -> TrainConfig:
        found = self.trains.get(train) or next(iter(self.trains.values()))
        return found.deploys.config

    async def _queues(self) -> list[tuple[QueueView, list[Any]]]:
        """Every train's queue (one read for all) and its peas."""
        queues = await queues_of([t.deploys for t in self.trains.values()])
        return [(queue, await train.peas.all() if train.peas.names else [])
                for queue, train in zip(queues, self.trains.values(), strict=True)]

    def _history_query(self, request: web.Request) -> HistoryQuery:
        query = request.query
        train = query.get("train") or None
        if train is not None and train not in self.trains:
            raise BadQuery(f"no train {train!r}: one of {', '.join(self.trains)}")
        state = query.get("state") or None
        if state is not None and state not in State.__members__.values():
            raise BadQuery(f"no state {state!r}: one of {', '.join(s.value for s in State)}")
        person = (query.get("person") or "").strip() or None
        return HistoryQuery(train, State(state) if state else None, person,
                            _number(query.get("page"), "page", 1, at_most=MAX_PAGE),
                            _number(query.get("limit"), "limit", PAGE_SIZE, at_most=MAX_PAGE_SIZE))

    async def _history(self, asked: HistoryQuery) -> HistoryPage:
        trains = [t.deploys for t in self.trains.values() if asked.train in (None, t.name)]
        return await history_of(trains, state=asked.state, person=asked.person, limit=asked.limit,
                                offset=asked.offset)

    async def _stats(self) -> list[dict[str, Any]]:
        figures = []
        for train in self.trains.values():
            weeks = await train.deploys.weekly()
            figures.append({"name": train.name, "window": await train.deploys.stats(), "weeks": weeks})
        return figures

    # -- pages ----------------------------------------------------------------------------------
    def _page(self, template: str, poll: str, status: int = 200, **values: Any) -> web.Response:
        html = self.templates.get_template(template).render(poll=poll, now=_now(), trains=list(self.trains),
                                                            **values)
        return web.Response(text=html, content_type="text/html", status=status,
                            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def handle_trains_page(self, request: web.Request) -> web.Response:
        now = _now()
        rows = [{"queue": queue, "peas": peas, "config": self._config_of(queue.train.name),
                 "in_flight": _in_flight(queue, now)} for queue, peas in await self._queues()]
        return self._page("trains.html", "/api/trains", rows=rows, step_of=present.step_of)

    async def handle_deploy_page(self, request: web.Request) -> web.Response:
        deploy_id = int(request.match_info["deploy_id"])
        detail = await self._any_train().detail(deploy_id)
        if detail is None:
            return self._page("missing.html", f"/api/deploys/{deploy_id}", status=404, deploy_id=deploy_id)
        deploy, config = detail.deploy, self._config_of(detail.deploy.train)
        return self._page("deploy.html", f"/api/deploys/{deploy_id}", deploy=deploy, config=config,
                          timeline=present.timeline(deploy, _now()), audit=present.audit_rows(detail.audit, deploy,
                                                                                               config),
                          undo=[{"undo": u, "ids": present.linked_ids(u.data, deploy, config)} for u in detail.undo],
                          links=present.deploy_links(deploy, config), step=present.step_of(deploy),
                          service_url=lambda service, cluster=None: present.service_url(config, service, cluster),
                          task_definition_url=present.task_definition_url)

    async def handle_history_page(self, request: web.Request) -> web.Response:
        try:
            asked = self._history_query(request)
        except BadQuery as exc:
            return self._page("history.html", "/api/history", status=400, error=str(exc), asked=None, found=None)
        found = await self._history(asked)
        return self._page("history.html", f"/api/history{request.query_string and '?' + request.query_string}",
                          error=None, asked=asked, found=found)

    async def handle_stats_page(self, request: web.Request) -> web.Response:
        charts = []
        for figures in await self._stats():
            charts.append({**figures, "charts": _charts(figures["weeks"])})
        return self._page("stats.html", "/api/stats", figures=charts)

    # -- JSON -----------------------------------------------------------------------------------
    async def handle_trains_api(self, request: web.Request) -> web.Response:
        now = _now()
        trains = []
        for queue, peas in await self._queues():
            flight = _in_flight(queue, now)
            trains.append({
                **present.jsonable(queue.train),
                "in_flight": None if flight is None else {**present.deploy_json(flight["deploy"]),
                                                          "finish_in": present.jsonable(flight["finish"])},
                "queue": [{"position": e.position, "eta": present.jsonable(e.eta),
                           "finish": present.jsonable(e.finish), "deploy": present.deploy_json(e.deploy)}
                          for e in queue.queued],
                "peas": [present.jsonable(p) for p in peas],
            })
        return _json({"trains": trains})

    async def handle_deploy_api(self, request: web.Request) -> web.Response:
        deploy_id = int(request.match_info["deploy_id"])
        detail = await self._any_train().detail(deploy_id)
        if detail is None:
            return _json({"error": f"no deploy {deploy_id}"}, status=404)
        deploy, config = detail.deploy, self._config_of(detail.deploy.train)
        return _json({"deploy": present.deploy_json(deploy),
                      "timeline": present.jsonable(present.timeline(deploy, _now())),
                      "audit": present.jsonable(present.audit_rows(detail.audit, deploy, config)),
                      "undo": [{**present.jsonable(u), "ids": present.linked_ids(u.data, deploy, config)}
                               for u in detail.undo]})

    async def handle_history_api(self, request: web.Request) -> web.Response:
        try:
            asked = self._history_query(request)
        except BadQuery as exc:
            return _json({"error": str(exc)}, status=400)
        found = await self._history(asked)
        return _json({"deploys": [present.deploy_json(d) for d in found.deploys], "total": found.total,
                      "page": asked.page, "limit": asked.limit, "has_more": found.has_more,
                      "filters": {"train": asked.train, "state": asked.state.value if asked.state else None,
                                  "person": asked.person}})

    async def handle_stats_api(self, request: web.Request) -> web.Response:
        return _json({"trains": [{"name": f["name"], "window": present.jsonable(f["window"]),
                                  "weeks": [{**present.jsonable(w), "change_failure_rate": w.change_failure_rate}
                                            for w in f["weeks"]]}
                                 for f in await self._stats()]})

    def _any_train(self) -> DeployFlows:
        # Deploy ids are unique across the trains of one database: any train's API finds any deploy.
        return next(iter(self.trains.values())).deploys


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _in_flight(queue: QueueView, now: datetime) -> dict[str, Any] | None:
    entry = next((e for e in queue.entries if e.position == 0), None)
    if entry is None:
        return None
    deploy: DeployView = entry.deploy
    return {"deploy": deploy, "finish": entry.finish, "in_state": now - deploy.state_entered_at,
            "since": now - (deploy.started_at or deploy.created_at)}


def _charts(weeks: Sequence[Any]) -> list[dict[str, Any]]:
    """The four charts of a train's weeks: how often it deploys, how fast, how often it fails, how fast it heals."""
    labels = [w.start.strftime("%b %d") for w in weeks]

    def seconds(value: timedelta | None) -> float | None:
        return None if value is None else value.total_seconds()

    def duration(value: float) -> str:
        return present.human(timedelta(seconds=value))

    series: list[tuple[str, str, list[float | None], Callable[[float], str]]] = [
        ("Deploy frequency", "completed deploys per week", [float(w.completed) for w in weeks], lambda v: f"{v:g}"),
        ("Lead time", "median, pull request opened to running in production",
         [seconds(w.lead_time) for w in weeks], duration),
        ("Change failure rate", "rolled back ÷ (completed + rolled back)",
         [w.change_failure_rate for w in weeks], lambda v: f"{v:.0%}"),
        ("Time to restore", "median, rolling back to rolled back", [seconds(w.time_to_restore) for w in weeks],
         duration),
    ]
    return [{"name": name, "what": what,
             "svg": bar_chart(f"{name} per week", list(zip(labels, values, strict=True)), shown,
                              css=name.lower().replace(" ", "-"))}
            for name, what, values, shown in series]
