"""One URL before several emulators of one kind, as one GitHub holds many repositories and one Jenkins many jobs.

A sandbox of several deployable repositories (`SandboxSpec.more`) runs a GitHub emulator and a Jenkins
emulator per repository; `Front` serves one address for each kind and passes every request, as it came,
to the emulator `route` names, and its answer back with that emulator's address written as the front's (a
pull request's `url`, a `Link` header), as clients such as PyGithub follow links only to where they started.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from sandbox.server import ThreadedServer

# Headers about one hop of the connection, not the request: aiohttp sets its own.
_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"})


class Front(ThreadedServer):
    """Forwards each request to the emulator URL `route(method, path)` gives."""

    def __init__(self, name: str, route: Callable[[str, str], str]) -> None:
        super().__init__(name)
        self.route = route
        self._client: aiohttp.ClientSession | None = None

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def on_started(self) -> None:
        self._client = aiohttp.ClientSession(auto_decompress=True)

    async def _close(self, _app: web.Application) -> None:
        if self._client is not None:
            await self._client.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        target = self.route(request.method, request.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._client.request(request.method, target + request.path_qs, headers=headers,
                                        data=await request.read(), allow_redirects=False) as answer:
            body = (await answer.read()).replace(target.encode(), self.url.encode())
            kept = {k: v.replace(target, self.url) for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, body=body, headers=kept)
