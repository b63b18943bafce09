"""A GitHub emulator: the REST subset PyGithub uses to list, merge and revert pull requests.

Everything is backed by a real bare git repository in a temp dir, driven with git plumbing: pull
requests are branches of real commits, mergeability comes from `git merge-tree`, and merges and
reverts are real commits, so trees and ancestry are computed, never invented.

Give `.url` (`http://127.0.0.1:PORT/api/v3`, GitHub Enterprise style) to PyGithub as `base_url`.
Any token is accepted. Faults match `operation()`: `METHOD /repos/owner/name/...`, the path without
the `/api/v3` prefix. `.requests` lists the (method, path) of requests answered (injected faults
are counted by `faults.injected` instead); `.writes` counts merges, commits, trees and ref updates
made through the API. Only merge commits are offered (`merge_method` squash/rebase answer 405).

Webhooks are posted in order, asynchronously, delivery failures ignored: `push` after the base
branch moves (merge, API ref update, `push()`), `pull_request` opened/synchronize/closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from sandbox.server import ThreadedServer

API_PREFIX = "/api/v3"
ZERO_SHA = "0" * 40
API_USER = "deploy-bot"  # whom every token belongs to: the author of merges made through the API
_HEX_SHA = re.compile(r"^[0-9a-f]{40}$")
_DOCS = "https://docs.github.com/rest"
_MODES = {"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}
_FLAT = dict[str, tuple[str, str, str]]  # path -> (mode, type, sha) of every blob/submodule in a tree


class ApiError(Exception):
    """A GitHub-shaped error answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: tuple[str, str, int]  # name, email, unix time
    committer: tuple[str, str, int]
    message: str


@dataclass(frozen=True)
class Delivery:
    """One webhook POST: `status` is None when it could not be delivered."""

    url: str
    event: str
    status: int | None
    error: str | None = None


@dataclass
class _Pull:
    number: int
    title: str
    body: str
    author: str
    branch: str
    base: str
    head_ref: str  # the git ref holding the head: refs/heads/<branch>, or refs/pull/N/head for forks
    head_sha: str
    base_sha: str  # frozen when the pull request closes
    from_fork: bool
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | int | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode()) or 1


def _email(login: str) -> str:
    return f"{login}@users.noreply.github.com"


class GitRepo:
    """A bare repository driven by git plumbing (not thread-safe: the emulator serialises access)."""

    def __init__(self, path: str, initial_branch: str) -> None:
        self.path = path
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        # A user's or the system's git config (signing, hooks, templates) must not change what we compute.
        self._env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
        self._run("init", "--bare", "-q", "-b", initial_branch, path)
        self._env["GIT_DIR"] = path
        self._clock = int(time.time())
        self._commits: dict[str, Commit] = {}

    def _run(self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
             codes: Iterable[int] = (0,)) -> subprocess.CompletedProcess[bytes]:
        # cwd outside any work tree, so that git never looks at the caller's checkout
        done = subprocess.run(["git", *args], input=stdin, capture_output=True, check=False,
                              cwd=os.path.dirname(self.path), env={**self._env, **(env or {})})
        if done.returncode not in codes:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done

    def _out(self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
        return self._run(*args, stdin=stdin, env=env).stdout.decode().strip()

    # -- reading -------------------------------------------------------------------------------
    def resolve(self, rev: str, kind: str = "commit") -> str | None:
        """The sha `rev` names, peeled to `kind`, or None."""
        done = self._run("rev-parse", "--verify", "-q", f"{rev}^{{{kind}}}", codes=(0, 1, 128))
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def object_type(self, sha: str) -> str | None:
        done = self._run("cat-file", "-t", sha, codes=(0, 1, 128))
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self._run("merge-base", "--is-ancestor", older, newer, codes=(0, 1)).returncode == 0

    def commit(self, sha: str) -> Commit:
        if sha not in self._commits:
            self.log(sha, count=1)
        return self._commits[sha]

    def log(self, rev: str, *, skip: int = 0, count: int = 30, exclude: str | None = None) -> list[Commit]:
        """Commits reachable from `rev` (not from `exclude`), newest first."""
        fmt = "%H%n%T%n%P%n%an%n%ae%n%at%n%cn%n%ce%n%ct%n%B"
        args = ["log", "-z", f"--format={fmt}", f"--skip={skip}", f"--max-count={count}", rev]
        if exclude:
            args.append(f"^{exclude}")
        args.append("--")
        commits = []
        for record in self._run(*args).stdout.decode().split("\0"):
            if not record:
                continue
            sha, tree, parents, an, ae, at, cn, ce, ct, message = record.split("\n", 9)
            commit = Commit(sha, tree, tuple(parents.split()), (an, ae, int(at)), (cn, ce, int(ct)),
                            message.rstrip("\n"))
            self._commits[sha] = commit
            commits.append(commit)
        return commits

    def count(self, rev: str) -> int:
        return int(self._out("rev-list", "--count", rev))

    def ls_tree(self, tree: str, *, recursive: bool) -> list[tuple[str, str, str, int | None, str]]:
        """(mode, type, sha, size, path) of a tree's entries; recursive listings include subtrees."""
        args = ["ls-tree", "-z", "-l", *(["-r", "-t"] if recursive else []), tree]
        entries = []
        for line in self._run(*args).stdout.decode().split("\0"):
            if line:
                meta, path = line.split("\t", 1)
                mode, kind, sha, size = meta.split()
                entries.append((mode, kind, sha, None if size == "-" else int(size), path))
        return entries

    def flat_tree(self, rev: str | None) -> _FLAT:
        if rev is None:
            return {}
        return {path: (mode, kind, sha)
                for mode, kind, sha, _, path in self.ls_tree(rev, recursive=True) if kind != "tree"}

    def files(self, rev: str) -> dict[str, str]:
        blobs = [(path, sha) for path, (_, kind, sha) in self.flat_tree(rev).items() if kind == "blob"]
        out = self._run("cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in blobs).encode()).stdout
        contents, offset = {}, 0
        for path, _ in blobs:
            header_end = out.index(b"\n", offset)
            size = int(out[offset:header_end].split()[2])
            contents[path] = out[header_end + 1:header_end + 1 + size].decode(errors="replace")
            offset = header_end + 1 + size + 1
        return contents

    def merge_tree(self, ours: str, theirs: str) -> tuple[bool, str]:
        """(clean, tree) of a three-way merge; the tree holds conflict markers when not clean."""
        done = self._run("merge-tree", "--write-tree", "--no-messages", ours, theirs, codes=(0, 1))
        return done.returncode == 0, done.stdout.decode().split("\n", 1)[0].strip()

    # -- writing -------------------------------------------------------------------------------
    def blob(self, content: str) -> str:
        return self._out("hash-object", "-w", "--stdin", stdin=content.encode())

    def write_tree(self, flat: _FLAT) -> str:
        index = os.path.join(self.path, f"index-{uuid.uuid4().hex}")
        try:
            lines = "".join(f"{mode} {sha}\t{path}\0" for path, (mode, _, sha) in sorted(flat.items()))
            env = {"GIT_INDEX_FILE": index}
            self._run("read-tree", "--empty", env=env)
            self._run("update-index", "-z", "--index-info", stdin=lines.encode(), env=env)
            return self._out("write-tree", env=env)
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def commit_tree(self, tree: str, parents: Iterable[str], message: str, *,
                    author: tuple[str, str, int | None], committer: tuple[str, str] | None = None) -> str:
        # Strictly increasing seconds: two commits made in the same second with the same content
        # would otherwise be the same object.
        self._clock = max(self._clock + 1, int(time.time()))
        name, email, when = author
        committer_name, committer_email = committer or (name, email)
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
               "GIT_AUTHOR_DATE": f"{when or self._clock} +0000",
               "GIT_COMMITTER_NAME": committer_name, "GIT_COMMITTER_EMAIL": committer_email,
               "GIT_COMMITTER_DATE": f"{self._clock} +0000"}
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self._out(*args, stdin=message.encode(), env=env)

    def update_ref(self, ref: str, new: str, old: str) -> None:
        self._out("update-ref", ref, new, old)


def apply_changes(flat: _FLAT, path: str, entry: tuple[str, str, str] | None) -> None:
    """Set (or with None delete) `path` in a flat tree, replacing whatever file or folder was in the way."""
    for key in [k for k in flat if k.startswith(f"{path}/")]:
        del flat[key]
    parts = path.split("/")
    for depth in range(1, len(parts)):
        flat.pop("/".join(parts[:depth]), None)
    flat.pop(path, None)
    if entry is not None:
        flat[path] = entry


class GitHubEmulator(ThreadedServer):
    """GitHub REST for one repository, with control methods for tests and the demo (thread-safe)."""

    def __init__(self, repo: str = "acme/app", base_branch: str = "master",
                 webhooks: list[str] | None = None, initial_files: dict[str, str] | None = None) -> None:
        super().__init__("github")
        self.repo = repo
        self.owner, self.name = repo.split("/", 1)
        self.base_branch = base_branch
        self.requests: list[tuple[str, str]] = []
        self.authorized_requests = 0  # requests that carried an Authorization header
        self.writes: Counter[str] = Counter()  # merges, commits, trees, ref_updates made through the API
        self.deliveries: list[Delivery] = []
        self._webhooks = list(webhooks or [])
        self._lock = threading.RLock()
        self._pulls: dict[int, _Pull] = {}
        self._mergeability: dict[tuple[str, str], tuple[bool, str | None]] = {}
        self._dir = tempfile.mkdtemp(prefix="github-emulator-")
        self.git = GitRepo(os.path.join(self._dir, f"{self.name}.git"), base_branch)
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        files = initial_files or {"README.md": f"# {self.name}\n", "app/main.py": "print('hello')\n"}
        flat: _FLAT = {path: ("100644", "blob", self.git.blob(text)) for path, text in files.items()}
        root = self.git.commit_tree(self.git.write_tree(flat), [], "Initial commit",
                                    author=(self.owner, _email(self.owner), None))
        self.git.update_ref(f"refs/heads/{base_branch}", root, ZERO_SHA)

    # -- addresses -----------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """Where html_url links point (not served)."""
        return super().url

    @property
    def url(self) -> str:
        """The API base to give PyGithub as `base_url`."""
        return f"{self.root_url}{API_PREFIX}"

    @property
    def _api(self) -> str:
        return f"{self.url}/repos/{self.repo}"

    @property
    def _html(self) -> str:
        return f"{self.root_url}/{self.repo}"

    # -- control API ---------------------------------------------------------------------------
    def add_webhook(self, url: str) -> None:
        with self._lock:
            self._webhooks.append(url)

    def remove_webhook(self, url: str) -> None:
        with self._lock:
            self._webhooks.remove(url)

    def create_pr(self, title: str, files: dict[str, str | None], *, author: str = "alice",
                  branch: str | None = None, base: str | None = None, from_fork: bool = False,
                  body: str = "") -> int:
        """Open a pull request whose one commit applies `files` (None deletes) on the base's head."""
        with self._lock:
            number = max(self._pulls, default=0) + 1
            base = base or self.base_branch
            start = self.git.resolve(f"refs/heads/{base}")
            if start is None:  # a new base branch, cut from the default one
                start = self.branch_head()
                self.git.update_ref(f"refs/heads/{base}", start, ZERO_SHA)
            branch = branch or f"{author}/change-{number}"
            head_ref = f"refs/pull/{number}/head" if from_fork else f"refs/heads/{branch}"
            if self.git.resolve(head_ref) is not None:
                raise ValueError(f"branch {branch} already exists")
            head = self._commit_files(start, files, title, author)
            self.git.update_ref(head_ref, head, ZERO_SHA)
            now = _now()
            pull = _Pull(number, title, body, author, branch, base, head_ref, head, start, from_fork,
                         created_at=now, updated_at=now)
            self._pulls[number] = pull
            self._emit_pull("opened", pull)
            return number

    def push_pr(self, number: int, files: dict[str, str | None], message: str | None = None) -> str:
        """A new commit on an open pull request's branch; returns the new head sha."""
        with self._lock:
            pull = self._pull(number)
            if pull.state != "open":
                raise ValueError(f"pull request #{number} is {pull.state}")
            message = message or f"Update {', '.join(files)}"
            sha = self._commit_files(pull.head_sha, files, message, pull.author)
            self._set_ref(pull.head_ref, sha, pull.head_sha, pusher=pull.author)
            return sha

    def push(self, files: dict[str, str | None], message: str = "Direct commit", author: str = "bob",
             branch: str | None = None) -> str:
        """Someone else's commit landing directly on a branch (the base by default); returns its sha."""
        with self._lock:
            ref = f"refs/heads/{branch or self.base_branch}"
            parent = self.git.resolve(ref)
            if parent is None:
                raise ValueError(f"no branch {ref}")
            sha = self._commit_files(parent, files, message, author)
            self._set_ref(ref, sha, parent, pusher=author)
            return sha

    def close_pr(self, number: int) -> None:
        with self._lock:
            pull = self._pull(number)
            if pull.state == "open":
                self._close(pull)
                self._emit_pull("closed", pull)

    def pr_head(self, number: int) -> str:
        with self._lock:
            return self._pull(number).head_sha

    def branch_head(self, branch: str | None = None) -> str:
        with self._lock:
            sha = self.git.resolve(f"refs/heads/{branch or self.base_branch}")
            if sha is None:
                raise KeyError(branch)
            return sha

    def files_at(self, ref: str) -> dict[str, str]:
        """Path -> content of every file at a branch name or commit sha."""
        with self._lock:
            return self.git.files(self._commit_of(ref))

    def tree_of(self, ref: str) -> str:
        with self._lock:
            return self.git.commit(self._commit_of(ref)).tree

    def log(self, ref: str | None = None, n: int = 20) -> list[tuple[str, str, tuple[str, ...]]]:
        """(sha, message, parents) of the newest `n` commits reachable from a branch or sha."""
        with self._lock:
            return [(c.sha, c.message, c.parents)
                    for c in self.git.log(self._commit_of(ref or self.base_branch), count=n)]

    def flush_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every webhook emitted so far has been delivered (or has failed)."""
        if self._outbox is not None:
            self.run(asyncio.wait_for(self._outbox.join(), timeout))

    def _commit_of(self, ref: str) -> str:
        sha = self.git.resolve(f"refs/heads/{ref}") or self.git.resolve(ref)
        if sha is None:
            raise KeyError(ref)
        return sha

    def _commit_files(self, parent: str, files: dict[str, str | None], message: str, author: str) -> str:
        flat = self.git.flat_tree(parent)
        for path, content in files.items():
            apply_changes(flat, path, None if content is None else ("100644", "blob", self.git.blob(content)))
        return self.git.commit_tree(self.git.write_tree(flat), [parent], message,
                                    author=(author, _email(author), None))

    def _set_ref(self, ref: str, new: str, old: str, *, pusher: str) -> None:
        """Move a branch, and tell whoever listens: pushes to the base, pull request heads."""
        self.git.update_ref(ref, new, old)
        if ref == f"refs/heads/{self.base_branch}":
            self._emit_push(ref, old, new, pusher)
        for pull in self._pulls.values():
            if pull.state == "open" and pull.head_ref == ref:
                pull.head_sha, pull.updated_at = new, _now()
                self._emit_pull("synchronize", pull, before=old, after=new)

    def _close(self, pull: _Pull, base_sha: str | None = None) -> None:
        pull.base_sha = base_sha or self.git.resolve(f"refs/heads/{pull.base}") or pull.base_sha
        pull.state, pull.closed_at = "closed", _now()
        pull.updated_at = pull.closed_at

    def _pull(self, number: int) -> _Pull:
        try:
            return self._pulls[number]
        except KeyError:
            raise ApiError(404, "Not Found") from None

    # -- webhooks ------------------------------------------------------------------------------
    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        if self._outbox is None or self.loop is None:
            self._pending.append((event, payload))
        else:
            self.loop.call_soon_threadsafe(self._outbox.put_nowait, (event, payload))

    def _emit_push(self, ref: str, before: str, after: str, pusher: str) -> None:
        forced = before != ZERO_SHA and not self.git.is_ancestor(before, after)
        commits = self.git.log(after, count=20, exclude=None if before == ZERO_SHA or forced else before)
        self._emit("push", {
            "ref": ref, "before": before, "after": after, "created": before == ZERO_SHA,
            "deleted": False, "forced": forced, "base_ref": None,
            "compare": f"{self._html}/compare/{before[:12]}...{after[:12]}",
            "commits": [self._push_commit(c) for c in reversed(commits)],
            "head_commit": self._push_commit(self.git.commit(after)),
            "repository": self._repo_json(), "pusher": {"name": pusher, "email": _email(pusher)},
            "sender": self._user(pusher),
        })

    def _emit_pull(self, action: str, pull: _Pull, **extra: str) -> None:
        self._emit("pull_request", {"action": action, "number": pull.number, **extra,
                                    "pull_request": self._pull_json(pull, full=True),
                                    "repository": self._repo_json(), "sender": self._user(pull.author)})

    def _push_commit(self, commit: Commit) -> dict[str, Any]:
        def person(who: tuple[str, str, int]) -> dict[str, str]:
            return {"name": who[0], "email": who[1], "username": who[0]}
        return {"id": commit.sha, "tree_id": commit.tree, "distinct": True, "message": commit.message,
                "timestamp": _iso(commit.committer[2]), "url": f"{self._html}/commit/{commit.sha}",
                "author": person(commit.author), "committer": person(commit.committer)}

    async def _send_webhooks(self) -> None:
        assert self._outbox is not None and self._session is not None
        while True:
            event, payload = await self._outbox.get()
            try:
                with self._lock:
                    urls = list(self._webhooks)
                for url in urls:
                    self.deliveries.append(await self._deliver(url, event, payload))
            finally:
                self._outbox.task_done()

    async def _deliver(self, url: str, event: str, payload: dict[str, Any]) -> Delivery:
        assert self._session is not None
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-GitHub-Hook-ID": "1", "User-Agent": "GitHub-Hookshot/sandbox"}
        try:
            async with self._session.post(url, json=payload, headers=headers) as response:
                await response.read()
                return Delivery(url, event, response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Delivery(url, event, None, f"{type(exc).__name__}: {exc}")

    async def on_started(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._outbox = asyncio.Queue()
        with self._lock:
            pending, self._pending = self._pending, []
        for item in pending:
            self._outbox.put_nowait(item)
        self._sender = asyncio.get_running_loop().create_task(self._send_webhooks())

    async def _shutdown(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._session is not None:
            await self._session.close()

    def stop(self) -> None:
        if self.loop is not None and self._session is not None:
            self.run(self._shutdown())
        super().stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- HTTP ----------------------------------------------------------------------------------
    def _path(self, request: web.Request) -> str:
        return request.path.removeprefix(API_PREFIX)

    def operation(self, request: web.Request) -> str:
        return f"{request.method} {self._path(request)}"

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware])
        repo = API_PREFIX + "/repos/{owner}/{name}"
        number = r"/pulls/{number:\d+}"
        routes = [
            ("GET", "", self._get_repo),
            ("GET", "/pulls", self._list_pulls),
            ("GET", number, self._get_pull),
            ("GET", number + "/merge", self._get_merged),
            ("PUT", number + "/merge", self._merge),
            ("GET", "/branches/{branch:.+}", self._get_branch),
            ("GET", "/git/ref/{ref:.+}", self._get_ref),
            ("GET", "/git/refs/{ref:.+}", self._get_ref),
            ("PATCH", "/git/refs/{ref:.+}", self._update_ref),
            ("GET", "/git/commits/{sha}", self._get_git_commit),
            ("POST", "/git/commits", self._create_git_commit),
            ("GET", "/git/trees/{sha}", self._get_tree),
            ("POST", "/git/trees", self._create_tree),
            ("GET", "/commits", self._list_commits),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, repo + path, handler)
        return app

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, self._path(request)))
            if request.headers.get("Authorization"):
                self.authorized_requests += 1
        try:
            owner, name = request.match_info.get("owner"), request.match_info.get("name")
            if owner is not None and f"{owner}/{name}".lower() != self.repo.lower():
                raise ApiError(404, "Not Found")
            return await handler(request)
        except ApiError as exc:
            return web.json_response({"message": exc.message, "documentation_url": _DOCS}, status=exc.status)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                raise
            return web.json_response({"message": "Not Found", "documentation_url": _DOCS}, status=404)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return body

    @staticmethod
    def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
        try:
            return min(high, max(low, int(request.query.get(name, default))))
        except ValueError:
            raise ApiError(422, f"Invalid value for {name}") from None

    def _page(self, request: web.Request, total: int) -> tuple[int, int, dict[str, str]]:
        """(offset, per_page, headers with a Link) for a list of `total` items."""
        per_page = self._int_param(request, "per_page", 30, 1, 100)
        page = self._int_param(request, "page", 1, 1, 10**6)
        last = max(1, math.ceil(total / per_page))

        def link(number: int, rel: str) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f'<{self.root_url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(min(page - 1, last), "prev")]
        return (page - 1) * per_page, per_page, {"Link": ", ".join(links)} if links else {}

    def _sha_param(self, value: str, kind: str) -> str:
        """A full sha or a branch name as `kind` (commit/tree), or a GitHub-shaped 404."""
        sha = self.git.resolve(value, kind) if _HEX_SHA.match(value) else None
        sha = sha or self.git.resolve(f"refs/heads/{value}", kind)
        if sha is None:
            raise ApiError(404, "Not Found")
        return sha

    async def _get_repo(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._repo_json())

    async def _list_pulls(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise ApiError(422, "Validation Failed")
        sort = request.query.get("sort", "created")
        direction = request.query.get("direction", "desc" if sort == "created" else "asc")
        with self._lock:
            pulls = [p for p in self._pulls.values() if state in ("all", p.state)]
            if "base" in request.query:
                pulls = [p for p in pulls if p.base == request.query["base"]]
            if "head" in request.query:
                pulls = [p for p in pulls if self._head_label(p) == request.query["head"]]
            pulls.sort(key=lambda p: (p.updated_at if sort == "updated" else p.created_at, p.number),
                       reverse=direction == "desc")
            offset, per_page, headers = self._page(request, len(pulls))
            page = [self._pull_json(p, full=False) for p in pulls[offset:offset + per_page]]
        return web.json_response(page, headers=headers)

    async def _get_pull(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        with self._lock:
            return web.json_response(self._pull_json(self._pull(number), full=True))

    async def _get_merged(self, request: web.Request) -> web.Response:
        with self._lock:
            if self._pull(int(request.match_info["number"])).merged_at is None:
                raise ApiError(404, "Not Found")
        return web.Response(status=204)

    async def _merge(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        with self._lock:
            return web.json_response(self._merge_pull(int(request.match_info["number"]), body))

    def _merge_pull(self, number: int, body: dict[str, Any]) -> dict[str, Any]:
        pull = self._pull(number)
        method = body.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise ApiError(422, "Validation Failed")
        if pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if method != "merge":
            raise ApiError(405, f"{method.capitalize()} merges are not allowed on this repository.")
        if body.get("sha") is not None and body["sha"] != pull.head_sha:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        base_ref = f"refs/heads/{pull.base}"
        base_sha = self.git.resolve(base_ref)
        assert base_sha is not None
        clean, tree = self.git.merge_tree(base_sha, pull.head_sha)
        if not clean:
            raise ApiError(405, "Pull Request is not mergeable")
        head_owner = pull.author if pull.from_fork else self.owner
        title = body.get("commit_title") or f"Merge pull request #{number} from {head_owner}/{pull.branch}"
        message = body.get("commit_message") or pull.title
        merge = self.git.commit_tree(tree, [base_sha, pull.head_sha], f"{title}\n\n{message}",
                                     author=(API_USER, _email(API_USER), None),
                                     committer=("GitHub", "noreply@github.com"))
        self.writes["merges"] += 1
        self._set_ref(base_ref, merge, base_sha, pusher=API_USER)
        self._close(pull, base_sha)
        pull.merged_at, pull.merge_commit_sha, pull.merged_by = pull.closed_at, merge, API_USER
        self._emit_pull("closed", pull)
        return {"sha": merge, "merged": True, "message": "Pull Request successfully merged"}

    async def _get_branch(self, request: web.Request) -> web.Response:
        branch = request.match_info["branch"]
        with self._lock:
            sha = self.git.resolve(f"refs/heads/{branch}")
            if sha is None:
                raise ApiError(404, "Branch not found")
            return web.json_response({
                "name": branch, "commit": self._commit_json(self.git.commit(sha)),
                "_links": {"self": f"{self._api}/branches/{branch}", "html": f"{self._html}/tree/{branch}"},
                "protected": False, "protection": {"enabled": False},
                "protection_url": f"{self._api}/branches/{branch}/protection",
            })

    async def _get_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        with self._lock:
            sha = self.git.resolve(ref) if ref.startswith("refs/heads/") else None
            if sha is None:
                raise ApiError(404, "Not Found")
            return web.json_response(self._ref_json(ref, sha))

    async def _update_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        body = await self._body(request)
        sha = body.get("sha")
        if not isinstance(sha, str):
            raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        with self._lock:
            current = self.git.resolve(ref) if ref.startswith("refs/heads/") else None
            if current is None:
                raise ApiError(422, "Reference does not exist")
            if not _HEX_SHA.match(sha) or self.git.object_type(sha) != "commit":
                raise ApiError(422, "Object does not exist")
            if not body.get("force") and not self.git.is_ancestor(current, sha):
                raise ApiError(422, "Update is not a fast forward")
            self.writes["ref_updates"] += 1
            self._set_ref(ref, sha, current, pusher=API_USER)
            return web.json_response(self._ref_json(ref, sha))

    async def _get_git_commit(self, request: web.Request) -> web.Response:
        sha = request.match_info["sha"]
        with self._lock:
            if not _HEX_SHA.match(sha) or self.git.object_type(sha) != "commit":
                raise ApiError(404, "Not Found")
            return web.json_response(self._git_commit_json(self.git.commit(sha)))

    async def _create_git_commit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        message, tree, parents = body.get("message"), body.get("tree"), body.get("parents", [])
        if not isinstance(message, str) or not isinstance(tree, str) or not isinstance(parents, list):
            raise ApiError(422, "Invalid request.")
        author = body.get("author") or {"name": API_USER, "email": _email(API_USER)}
        committer = body.get("committer") or author
        with self._lock:
            if not _HEX_SHA.match(tree) or self.git.object_type(tree) != "tree":
                raise ApiError(422, "Tree SHA does not exist")
            for parent in parents:
                if not isinstance(parent, str) or not _HEX_SHA.match(parent) \
                        or self.git.object_type(parent) != "commit":
                    raise ApiError(422, "Parent SHA does not exist or is not a commit object")
            when = int(datetime.fromisoformat(author["date"]).timestamp()) if author.get("date") else None
            sha = self.git.commit_tree(tree, parents, message, author=(author["name"], author["email"], when),
                                       committer=(committer["name"], committer["email"]))
            self.writes["commits"] += 1
            return web.json_response(self._git_commit_json(self.git.commit(sha)), status=201)

    async def _get_tree(self, request: web.Request) -> web.Response:
        recursive = request.query.get("recursive") not in (None, "", "0", "false")
        with self._lock:
            sha = self._sha_param(request.match_info["sha"], "tree")
            return web.json_response(self._tree_json(sha, recursive=recursive))

    async def _create_tree(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        entries, base = body.get("tree"), body.get("base_tree")
        if not isinstance(entries, list):
            raise ApiError(422, 'Invalid request.\n\n"tree" wasn\'t supplied.')
        with self._lock:
            if base is not None and (not isinstance(base, str) or not _HEX_SHA.match(base)
                                     or self.git.object_type(base) != "tree"):
                raise ApiError(422, "base_tree is not a valid tree oid")
            flat = self.git.flat_tree(base)
            for entry in entries:
                self._apply_tree_entry(flat, entry)
            sha = self.git.write_tree(flat)
            self.writes["trees"] += 1
            return web.json_response(self._tree_json(sha, recursive=False), status=201)

    def _apply_tree_entry(self, flat: _FLAT, entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"] \
                or entry["path"].startswith("/") or entry.get("mode") not in _MODES:
            raise ApiError(422, "Invalid tree info")
        path, mode = entry["path"].strip("/"), entry["mode"]
        kind = entry.get("type", _MODES[mode])
        if "content" in entry:
            if not isinstance(entry["content"], str) or kind != "blob":
                raise ApiError(422, "Invalid tree info")
            apply_changes(flat, path, (mode, "blob", self.git.blob(entry["content"])))
        elif entry.get("sha") is None:
            apply_changes(flat, path, None)
        else:
            sha = entry["sha"]
            if not isinstance(sha, str) or not _HEX_SHA.match(sha) or kind != _MODES[mode] \
                    or (kind != "commit" and self.git.object_type(sha) != kind):
                raise ApiError(422, f"GitRPC::BadObjectState: {entry['sha']} is not a valid {kind}")
            if kind == "tree":
                apply_changes(flat, path, None)
                flat.update({f"{path}/{sub}": item for sub, item in self.git.flat_tree(sha).items()})
            else:
                apply_changes(flat, path, (mode, kind, sha))

    async def _list_commits(self, request: web.Request) -> web.Response:
        with self._lock:
            head = self.git.resolve(f"refs/heads/{self.base_branch}")
            if "sha" in request.query:
                head = self._sha_param(request.query["sha"], "commit")
            assert head is not None
            offset, per_page, headers = self._page(request, self.git.count(head))
            commits = self.git.log(head, skip=offset, count=per_page)
            return web.json_response([self._commit_json(c) for c in commits], headers=headers)

    # -- JSON shapes ---------------------------------------------------------------------------
    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": _stable_id(login), "node_id": f"U_{login}", "avatar_url": "",
                "url": f"{self.url}/users/{login}", "html_url": f"{self.root_url}/{login}",
                "type": "Organization" if login == self.owner else "User", "site_admin": False}

    def _repo_json(self, owner: str | None = None) -> dict[str, Any]:
        owner = owner or self.owner
        full = f"{owner}/{self.name}"
        return {
            "id": _stable_id(full), "node_id": f"R_{full}", "name": self.name, "full_name": full,
            "private": True, "owner": self._user(owner), "html_url": f"{self.root_url}/{full}",
            "description": None, "fork": owner != self.owner, "url": f"{self.url}/repos/{full}",
            "clone_url": f"{self.root_url}/{full}.git", "git_url": f"git://127.0.0.1/{full}.git",
            "ssh_url": f"git@127.0.0.1:{full}.git", "default_branch": self.base_branch,
            "visibility": "private", "archived": False, "disabled": False,
            "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
            "allow_merge_commit": True, "allow_squash_merge": False, "allow_rebase_merge": False,
        }

    def _head_label(self, pull: _Pull) -> str:
        return f"{pull.author if pull.from_fork else self.owner}:{pull.branch}"

    def _mergeable(self, pull: _Pull) -> tuple[bool, str | None]:
        """Whether an open pull request merges cleanly into its base now, and GitHub's test merge commit."""
        base_sha = self.git.resolve(f"refs/heads/{pull.base}")
        assert base_sha is not None
        key = (base_sha, pull.head_sha)
        if key not in self._mergeability:
            clean, tree = self.git.merge_tree(base_sha, pull.head_sha)
            test_merge = self.git.commit_tree(
                tree, [base_sha, pull.head_sha], f"Merge {pull.head_sha} into {base_sha}",
                author=("GitHub", "noreply@github.com", None)) if clean else None
            self._mergeability[key] = (clean, test_merge)
        return self._mergeability[key]

    def _pull_json(self, pull: _Pull, *, full: bool) -> dict[str, Any]:
        """A pull request as GET /pulls/N answers (`full`) or as one item of GET /pulls."""
        url = f"{self._api}/pulls/{pull.number}"
        is_open = pull.state == "open"
        clean, test_merge = self._mergeable(pull) if is_open else (None, None)
        base_sha = self.git.resolve(f"refs/heads/{pull.base}") if is_open else pull.base_sha
        head_owner = self._head_label(pull).split(":", 1)[0]
        data: dict[str, Any] = {
            "url": url, "id": 1000 + pull.number, "node_id": f"PR_{pull.number}",
            "html_url": f"{self._html}/pull/{pull.number}",
            "diff_url": f"{self._html}/pull/{pull.number}.diff",
            "patch_url": f"{self._html}/pull/{pull.number}.patch",
            "issue_url": f"{self._api}/issues/{pull.number}", "commits_url": f"{url}/commits",
            "statuses_url": f"{self._api}/statuses/{pull.head_sha}",
            "number": pull.number, "state": pull.state, "locked": False, "title": pull.title,
            "user": self._user(pull.author), "body": pull.body, "labels": [], "milestone": None,
            "created_at": _iso(pull.created_at), "updated_at": _iso(pull.updated_at),
            "closed_at": _iso(pull.closed_at), "merged_at": _iso(pull.merged_at),
            # Like GitHub: an open pull request's merge_commit_sha is its test merge, not a real merge.
            "merge_commit_sha": pull.merge_commit_sha or test_merge,
            "assignee": None, "assignees": [], "requested_reviewers": [], "draft": False,
            "head": {"label": self._head_label(pull), "ref": pull.branch, "sha": pull.head_sha,
                     "user": self._user(head_owner), "repo": self._repo_json(head_owner)},
            "base": {"label": f"{self.owner}:{pull.base}", "ref": pull.base, "sha": base_sha,
                     "user": self._user(self.owner), "repo": self._repo_json()},
            "author_association": "CONTRIBUTOR" if pull.from_fork else "MEMBER", "auto_merge": None,
        }
        if full:
            data.update({
                "merged": pull.merged_at is not None, "mergeable": clean, "rebaseable": clean,
                "mergeable_state": "unknown" if clean is None else ("clean" if clean else "dirty"),
                "merged_by": self._user(pull.merged_by) if pull.merged_by else None,
                "comments": 0, "review_comments": 0, "maintainer_can_modify": False,
            })
        return data

    def _ref_json(self, ref: str, sha: str) -> dict[str, Any]:
        return {"ref": ref, "node_id": f"REF_{ref}", "url": f"{self._api}/git/{ref}",
                "object": {"sha": sha, "type": "commit", "url": f"{self._api}/git/commits/{sha}"}}

    def _parents_json(self, commit: Commit, endpoint: str) -> list[dict[str, str]]:
        return [{"sha": p, "url": f"{self._api}/{endpoint}/{p}", "html_url": f"{self._html}/commit/{p}"}
                for p in commit.parents]

    @staticmethod
    def _person(who: tuple[str, str, int]) -> dict[str, Any]:
        return {"name": who[0], "email": who[1], "date": _iso(who[2])}

    def _git_commit_json(self, commit: Commit) -> dict[str, Any]:
        return {
            "sha": commit.sha, "node_id": f"C_{commit.sha}", "url": f"{self._api}/git/commits/{commit.sha}",
            "html_url": f"{self._html}/commit/{commit.sha}", "author": self._person(commit.author),
            "committer": self._person(commit.committer),
            "tree": {"sha": commit.tree, "url": f"{self._api}/git/trees/{commit.tree}"},
            "message": commit.message,
            "parents": self._parents_json(commit, "git/commits"),
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
        }

    def _commit_json(self, commit: Commit) -> dict[str, Any]:
        """A commit as the commits and branches endpoints answer."""
        def account(email: str) -> dict[str, Any] | None:
            login = email.removesuffix("@users.noreply.github.com")
            return self._user(login) if login != email else None

        git = self._git_commit_json(commit)
        return {
            "sha": commit.sha, "node_id": git["node_id"], "url": f"{self._api}/commits/{commit.sha}",
            "html_url": git["html_url"], "comments_url": f"{self._api}/commits/{commit.sha}/comments",
            "commit": {key: git[key] for key in ("url", "author", "committer", "message", "tree")}
            | {"comment_count": 0, "verification": git["verification"]},
            "author": account(commit.author[1]), "committer": account(commit.committer[1]),
            "parents": self._parents_json(commit, "commits"),
        }

    def _tree_json(self, sha: str, *, recursive: bool) -> dict[str, Any]:
        entries = []
        for mode, kind, item, size, path in self.git.ls_tree(sha, recursive=recursive):
            entry: dict[str, Any] = {"path": path, "mode": mode, "type": kind, "sha": item}
            if kind == "blob":
                entry |= {"size": size, "url": f"{self._api}/git/blobs/{item}"}
            elif kind == "tree":
                entry["url"] = f"{self._api}/git/trees/{item}"
            entries.append(entry)
        return {"sha": sha, "url": f"{self._api}/git/trees/{sha}", "tree": entries, "truncated": False}
