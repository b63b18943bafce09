"""The machinery every emulator shares: an aiohttp server on 127.0.0.1 in its own thread, and faults.

An emulator runs in a background thread with its own event loop, so that it answers while the
code under test blocks (a boto3 call in a worker thread) or is killed (a crashed bot process).
Faults are switchable per test: fail the next N matching requests, a random error rate, latency.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Fault:
    """One injected misbehaviour, applied to requests whose operation matches `match` (a regex)."""

    match: str = ".*"
    status: int = 500
    body: str = '{"message": "injected fault"}'
    headers: dict[str, str] = field(default_factory=dict)
    remaining: int | None = None  # None: until cleared
    rate: float = 1.0  # probability of firing on a matching request
    latency: float = 0.0  # seconds added before answering (or failing)
    fail: bool = True  # False: only add latency
    drop: bool = False  # close the connection without answering
    hold: float = 0.0  # with fail=False: carry the request out, then hold the answer this long

    @property
    def holds(self) -> bool:
        return self.hold > 0 and not self.fail

    def matches(self, operation: str) -> bool:
        return re.search(self.match, operation) is not None


class Faults:
    """The set of faults an emulator applies; thread-safe, seeded for repeatable random rates."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected = 0

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_next(self, count: int = 1, *, match: str = ".*", status: int = 500, **kw) -> Fault:
        return self.add(Fault(match=match, status=status, remaining=count, **kw))

    def latency(self, seconds: float, *, match: str = ".*") -> Fault:
        return self.add(Fault(match=match, latency=seconds, fail=False))

    def error_rate(self, rate: float, *, match: str = ".*", status: int = 500) -> Fault:
        return self.add(Fault(match=match, status=status, rate=rate))

    def hold_after(self, seconds: float, *, match: str = ".*", count: int = 1) -> Fault:
        """Carry out matching requests but answer only after `seconds`: a client that dies meanwhile
        has acted without learning the result (how crash-and-resume is tested)."""
        return self.add(Fault(match=match, fail=False, hold=seconds, remaining=count))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pick(self, operation: str) -> tuple[float, Fault | None, float]:
        """For one request: latency to add, the failing fault to apply (if any), and how long to hold
        the answer after carrying the request out."""
        delay, failing, hold = 0.0, None, 0.0
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(operation) or self._random.random() >= fault.rate:
                    continue
                delay += fault.latency
                used = False
                if fault.fail and failing is None:
                    failing, used = fault, True
                    self.injected += 1
                elif fault.holds:
                    hold, used = max(hold, fault.hold), True
                if used and fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return delay, failing, hold


Operation = Callable[[web.Request], str]


class ThreadedServer:
    """An aiohttp application served on 127.0.0.1 (a random port) from a daemon thread."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.port = port
        self.faults = Faults()
        # (time.time(), operation) of each request as it arrives, for the benchmarks; bounded for long demos
        self.received: deque[tuple[float, str]] = deque(maxlen=100_000)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- to override -------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        raise NotImplementedError

    def operation(self, request: web.Request) -> str:
        """The name faults match against; by default `METHOD /path`."""
        return f"{request.method} {request.path}"

    async def on_started(self) -> None:
        """Start background tasks (in the server's loop)."""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self._serve, name=f"sandbox-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"{self.name} emulator did not start")
        if self._error is not None:
            raise RuntimeError(f"{self.name} emulator failed to start") from self._error
        return self

    def stop(self) -> None:
        if self.loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(15)

    def run(self, coro: Awaitable) -> object:
        """Run a coroutine in the emulator's loop from another thread and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _start(self) -> None:
        app = self.build_app()
        app.middlewares.insert(0, self._fault_middleware)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await self.on_started()

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler):
        operation = self.operation(request)
        self.received.append((time.time(), operation))
        delay, fault, hold = self.faults.pick(operation)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            if fault.drop:
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable()
            return web.Response(status=fault.status, text=fault.body,
                                headers={"Content-Type": "application/json", **fault.headers})
        response = await handler(request)
        if hold:
            await asyncio.sleep(hold)
        return response
