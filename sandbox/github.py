"""A GitHub emulator: the REST subset PyGithub uses to list, merge and revert pull requests, and more.

Everything is backed by a real bare git repository in a temp dir, driven with git plumbing: pull
requests are branches of real commits, mergeability comes from `git merge-tree`, and merges, squashes,
rebases, branch updates and reverts are real commits, so trees and ancestry are computed, never invented.

Give `.url` (`http://127.0.0.1:PORT/api/v3`, GitHub Enterprise style) to PyGithub as `base_url`.
Faults match `operation()`: `METHOD /repos/owner/name/...`, the path without the `/api/v3` prefix.
`.requests` lists the (method, path) of requests answered (injected faults are counted by
`faults.injected` instead); `.writes` counts what was written through the API: `merges` (pull
requests merged, any method), `commits`, `trees`, `ref_updates`, `refs_created`, `refs_deleted`,
`branch_merges` (POST /merges), `branch_updates` (update-branch), `pulls`, `deployments`,
`deployment_statuses`, `comments`, `statuses`.

REST served (same paths, status codes, JSON shapes and messages as api.github.com): the repository;
pull requests (list with state/base/head filters, get, create, edit, merge with `merge`, `squash` or
`rebase`, update-branch); branches and their protection; git refs (get, create, update, delete),
commits, trees (recursive listings truncated past a limit, like GitHub's 100,000 entries / 7 MB);
commits and combined commit statuses; POST /merges; deployments and their statuses; issue comments
on pull requests; GET /user.

Python controls, besides the commits and pull requests tests make (`create_pr`, `push_pr`, `push`,
`close_pr`) and what they read back (`branch_head`, `pr_head`, `files_at`, `tree_of`, `log`, `commits`,
`branches`, `pull_request(n)`, `pull_requests`):
- `settings(allow_merge_commit=..., allow_squash_merge=..., allow_rebase_merge=...,
  delete_branch_on_merge=..., tree_entries_limit=..., tree_bytes_limit=..., update_branch_delay=...)`
  changes the repository's settings (all three merge methods allowed by default, as on GitHub) and
  returns them; `update_branch_delay` > 0 moves a branch `update-branch` accepted only that many
  seconds after the 202, as GitHub does it in the background.
- `protect_branch(branch, **rules)` / `unprotect_branch(branch)`: a branch protection (see
  `Protection` for the rules: linear history, up-to-date and required status checks, changes only
  through pull requests with N approvals and `bypass` logins, signed commits, admins enforced or not,
  force pushes, deletions). Merges and pushes that break a rule are refused with GitHub's messages.
- `add_token(token, scopes=[...], push=..., admin=..., workflows=..., login=...)` and
  `revoke_token(token)`: what a token may do. Classic tokens (`ghp_`, `gho_`) answer `X-OAuth-Scopes`
  and need the `repo` scope to see the (private) repository and `workflow` to change
  `.github/workflows/`; fine-grained (`github_pat_`) and app (`ghs_`) tokens have a `workflows`
  permission instead. A token never added (and no token at all) may do everything as `deploy-bot`.
- `approve_pr(n, reviewer)`: an approving review (for `required_approving_review_count`).
- `set_status(sha, context, state)`: a commit status, as CI would post it.
- `deployments()`, `comments(n)`, `statuses(sha)`: what was posted, to read back in tests.

Webhooks are posted in order, asynchronously, delivery failures ignored: `push` after the base
branch moves (merge, API ref update, POST /merges, `push()`), `pull_request`
opened/synchronize/closed/reopened/edited, `issue_comment`, `deployment`, `deployment_status`,
`status`. A pull request whose head becomes reachable from its base branch by a push or a ref update
is marked merged by that commit, as GitHub does. `mergeable_state` is `dirty` (conflicts), `draft`,
`behind` (only when the base's protection is `strict`, as on GitHub), `blocked` (required checks or
approvals missing), `unstable` (a failing status) or `clean`.

Deviations from GitHub, on purpose: a token never added has full access (so nothing needs set-up);
commits posted with a `signature` count as verified whatever it holds; `push` webhooks are only sent
for the base branch; a deployment's `auto_merge` only merges into branch refs (never into a SHA);
update-branch moves the branch before answering unless `update_branch_delay` is set. Where GitHub's
words are not documented (a 403 for a classic token without push access, refused workflow changes,
an invalid ref name, deleting the default or a protected branch) they are a close guess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from sandbox.server import ThreadedServer

API_PREFIX = "/api/v3"
ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree
API_USER = "deploy-bot"  # whom a token not added belongs to: the author of merges made through the API
WORKFLOWS = ".github/workflows"
MERGE_METHODS = ("merge", "squash", "rebase")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
STATUS_STATES = ("error", "failure", "pending", "success")
GITHUB_COMMITTER = ("GitHub", "noreply@github.com")
_HEX_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")
_DOCS = "https://docs.github.com/rest"
_MODES = {"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}
_FLAT = dict[str, tuple[str, str, str]]  # path -> (mode, type, sha) of every blob/submodule in a tree
_METHOD_SETTING = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}
_METHOD_REFUSED = {"merge": "Merge commits are not allowed on this repository.",
                   "squash": "Squash merges are not allowed on this repository.",
                   "rebase": "Rebase merges are not allowed on this repository."}
_SIGNATURE = "-----BEGIN PGP SIGNATURE-----\n\nsandbox\n-----END PGP SIGNATURE-----\n"


class ApiError(Exception):
    """A GitHub-shaped error answer."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def _invalid(field_name: str, resource: str = "PullRequest", code: str = "invalid") -> ApiError:
    return ApiError(422, "Validation Failed", [{"resource": resource, "field": field_name, "code": code}])


def _custom(message: str, resource: str = "PullRequest") -> ApiError:
    return ApiError(422, "Validation Failed", [{"resource": resource, "code": "custom", "message": message}])


def _missing(name: str) -> ApiError:
    return ApiError(422, f'Invalid request.\n\n"{name}" wasn\'t supplied.')


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


@dataclass(frozen=True)
class RepoSettings:
    """The repository's settings that change what the API does (`GitHubEmulator.settings`)."""

    allow_merge_commit: bool = True
    allow_squash_merge: bool = True
    allow_rebase_merge: bool = True
    delete_branch_on_merge: bool = False
    tree_entries_limit: int = 100_000  # a recursive tree listing is truncated past these
    tree_bytes_limit: int = 7 * 1024 * 1024
    update_branch_delay: float = 0.0  # seconds between update-branch's 202 and the branch moving


@dataclass(frozen=True)
class Protection:
    """The rules of a protected branch, named as GitHub's branch protection API names them."""

    required_linear_history: bool = False  # no merge commits: pull requests land by squash or rebase
    strict: bool = False  # required_status_checks.strict: a pull request must be up to date to merge
    contexts: tuple[str, ...] = ()  # required status checks, green on the head to merge (or push)
    required_pull_request_reviews: bool = False  # changes only through pull requests
    required_approving_review_count: int = 0
    bypass: tuple[str, ...] = ()  # logins allowed to push without a pull request
    required_signatures: bool = False  # every commit pushed must be verified
    enforce_admins: bool = True  # False: admins' tokens bypass every rule, as on GitHub
    allow_force_pushes: bool = False
    allow_deletions: bool = False


@dataclass(frozen=True)
class DeploymentStatusView:
    id: int
    state: str
    description: str
    log_url: str
    environment_url: str
    environment: str
    creator: str
    created_at: datetime


@dataclass(frozen=True)
class DeploymentView:
    """A deployment as it stands, with its statuses oldest first."""

    id: int
    ref: str
    sha: str
    task: str
    environment: str
    original_environment: str
    description: str
    payload: Any
    transient_environment: bool
    production_environment: bool
    creator: str
    created_at: datetime
    statuses: tuple[DeploymentStatusView, ...]

    @property
    def state(self) -> str | None:
        """The latest status's state, None before the first status."""
        return self.statuses[-1].state if self.statuses else None


@dataclass(frozen=True)
class CommentView:
    id: int
    issue: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PullView:
    number: int
    title: str
    body: str
    author: str
    branch: str
    base: str
    head_sha: str
    state: str
    merged: bool
    merge_commit_sha: str | None
    merged_by: str | None


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
    draft: bool = False
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    approvals: set[str] = field(default_factory=set)


@dataclass
class _Deployment:
    id: int
    ref: str
    sha: str
    task: str
    environment: str
    original_environment: str
    description: str
    payload: Any
    transient_environment: bool
    production_environment: bool
    creator: str
    created_at: datetime
    updated_at: datetime
    statuses: list[DeploymentStatusView] = field(default_factory=list)


@dataclass
class _Comment:
    id: int
    issue: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


@dataclass
class _Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class _Token:
    """What the bearer of a token may do."""

    login: str
    kind: str  # classic (ghp_), oauth (gho_), fine_grained (github_pat_), app (ghs_), anonymous
    scopes: tuple[str, ...]
    admin: bool
    maintain: bool
    push: bool
    triage: bool
    pull: bool
    workflows: bool  # the `workflows` permission of fine-grained and app tokens
    revoked: bool = False

    @property
    def classic(self) -> bool:
        return self.kind in ("classic", "oauth")

    @property
    def sees_repo(self) -> bool:
        # The repository is private: a classic token needs the `repo` scope to see it at all.
        return self.pull and (not self.classic or "repo" in self.scopes)

    @property
    def may_change_workflows(self) -> bool:
        return "workflow" in self.scopes if self.classic else self.workflows

    def permissions(self) -> dict[str, bool]:
        return {"admin": self.admin, "maintain": self.maintain, "push": self.push, "triage": self.triage,
                "pull": self.pull}

    def denied(self) -> str:
        """GitHub's answer to a write the token may not make."""
        if self.kind == "fine_grained":
            return "Resource not accessible by personal access token"
        if self.classic:
            return "Must have push access to repository."
        return "Resource not accessible by integration"

    def workflow_refusal(self, path: str) -> str:
        who, what = {"oauth": ("an OAuth App", "`workflow` scope"), "classic": ("a Personal Access Token",
                     "`workflow` scope"), "fine_grained": ("a Personal Access Token", "`workflows` permission")
                     }.get(self.kind, ("a GitHub App", "`workflows` permission"))
        return f"refusing to allow {who} to create or update workflow `{path}` without {what}"


_TOKEN = web.RequestKey("token", _Token)  # the token a request came with


def _token_kind(token: str) -> str:
    if token.startswith("github_pat_"):
        return "fine_grained"
    if token.startswith("ghs_"):
        return "app"
    if token.startswith("gho_"):
        return "oauth"
    return "classic"


def _full_access(kind: str) -> _Token:
    return _Token(API_USER, kind, ("repo", "workflow") if kind in ("classic", "oauth") else (),
                  True, True, True, True, True, True)


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

    def merge_base(self, one: str, other: str) -> str | None:
        done = self._run("merge-base", one, other, codes=(0, 1))
        return done.stdout.decode().strip() or None

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

    def rev_list(self, rev: str, *, exclude: str | None = None, oldest_first: bool = False
                 ) -> list[tuple[str, tuple[str, ...]]]:
        """(sha, parents) of the commits reachable from `rev` and not from `exclude`, parents before
        children when `oldest_first`; with no `exclude`, those on no branch yet."""
        args = ["rev-list", "--parents", *(["--reverse", "--topo-order"] if oldest_first else []), rev]
        args += [f"^{exclude}"] if exclude and exclude != ZERO_SHA else ["--not", "--branches"]
        out = []
        for line in self._out(*args).splitlines():
            sha, *parents = line.split()
            out.append((sha, tuple(parents)))
        return out

    def count(self, rev: str) -> int:
        return int(self._out("rev-list", "--count", rev))

    def branches(self) -> dict[str, str]:
        """Branch name -> head sha, of every branch."""
        out = self._out("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
        return {ref.removeprefix("refs/heads/"): sha for ref, sha in (line.split() for line in out.splitlines())}

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

    def changed_paths(self, old: str, new: str, under: str) -> list[str]:
        """Paths under the folder `under` that differ between two tree-ishes."""
        out = self._run("diff-tree", "-r", "-z", "--name-only", old, new, "--", under).stdout.decode()
        return [path for path in out.split("\0") if path]

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

    def scratch_commit(self, tree: str, parents: Iterable[str] = ()) -> str:
        """A commit no branch will hold, only to steer `merge_tree`'s merge base (a fixed date: the
        clock of real commits is left alone)."""
        env = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
               for what, value in (("NAME", "scratch"), ("EMAIL", "scratch@sandbox"), ("DATE", "946684800 +0000"))}
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self._out(*args, stdin=b"scratch", env=env)

    def update_ref(self, ref: str, new: str, old: str) -> None:
        self._out("update-ref", ref, new, old)

    def delete_ref(self, ref: str, old: str) -> None:
        self._out("update-ref", "-d", ref, old)

    def valid_ref_name(self, ref: str) -> bool:
        return self._run("check-ref-format", ref, codes=(0, 1)).returncode == 0


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
        self.writes: Counter[str] = Counter()  # what was written through the API (see the module docstring)
        self.deliveries: list[Delivery] = []
        self._webhooks = list(webhooks or [])
        self._lock = threading.RLock()
        self._pulls: dict[int, _Pull] = {}
        self._mergeability: dict[tuple[str, str], tuple[bool, str | None]] = {}
        self._rebaseability: dict[tuple[str, str], bool] = {}
        self._settings = RepoSettings()
        self._protections: dict[str, Protection] = {}
        self._tokens: dict[str, _Token] = {}
        self._signed: set[str] = set()  # commits GitHub itself made (or posted with a signature): verified
        self._deployments: dict[int, _Deployment] = {}
        self._comments: dict[int, _Comment] = {}
        self._statuses: dict[str, list[_Status]] = {}  # sha -> its statuses, oldest first
        self._ids = Counter[str]()
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

    def settings(self, **changes: Any) -> RepoSettings:
        """Change repository settings (the fields of `RepoSettings`); returns them as they now are."""
        with self._lock:
            self._settings = dataclasses.replace(self._settings, **changes)
            return self._settings

    def protect_branch(self, branch: str | None = None, **rules: Any) -> Protection:
        """Protect a branch (the base by default) with the rules of `Protection`, replacing any before."""
        rules = {key: tuple(value) if key in ("contexts", "bypass") else value for key, value in rules.items()}
        with self._lock:
            protection = self._protections[branch or self.base_branch] = Protection(**rules)
            return protection

    def unprotect_branch(self, branch: str | None = None) -> None:
        with self._lock:
            self._protections.pop(branch or self.base_branch, None)

    def add_token(self, token: str, *, login: str = API_USER, scopes: Iterable[str] = ("repo", "workflow"),
                  admin: bool = False, maintain: bool = False, push: bool = True, triage: bool | None = None,
                  pull: bool = True, workflows: bool = True, kind: str | None = None) -> None:
        """Make `token` known with what it may do; each permission implies the ones below it
        (admin > maintain > push > triage > pull). `kind` defaults from the prefix (see `_token_kind`)."""
        maintain = maintain or admin
        push = push or maintain
        triage = push if triage is None else (triage or push)
        pull = pull or triage
        with self._lock:
            self._tokens[token] = _Token(login, kind or _token_kind(token), tuple(scopes), admin, maintain, push,
                                         triage, pull, workflows)

    def revoke_token(self, token: str) -> None:
        """From now on `token` gets 401 Bad credentials."""
        with self._lock:
            grant = self._tokens.get(token) or _full_access(_token_kind(token))
            self._tokens[token] = dataclasses.replace(grant, revoked=True)

    def approve_pr(self, number: int, reviewer: str = "carol") -> None:
        with self._lock:
            self._pull(number).approvals.add(reviewer)

    def set_status(self, sha: str, context: str, state: str, *, target_url: str | None = None,
                   description: str | None = None, creator: str = "jenkins") -> None:
        """A commit status on `sha` (a branch name is resolved), as CI would post it."""
        with self._lock:
            self._add_status(self._commit_of(sha), state, context, description, target_url, creator)

    def statuses(self, sha: str) -> dict[str, str]:
        """Context -> latest state of the statuses of a commit (or branch)."""
        with self._lock:
            return {s.context: s.state for s in self._latest_statuses(self._commit_of(sha))}

    def deployments(self) -> list[DeploymentView]:
        """Every deployment, oldest first, with its statuses."""
        with self._lock:
            return [self._deployment_view(d) for d in sorted(self._deployments.values(), key=lambda d: d.id)]

    def comments(self, number: int) -> list[CommentView]:
        """The comments on pull request `number`, oldest first."""
        with self._lock:
            return [CommentView(c.id, c.issue, c.body, c.user, c.created_at, c.updated_at)
                    for c in sorted(self._comments.values(), key=lambda c: c.id) if c.issue == number]

    def pull_request(self, number: int) -> PullView:
        with self._lock:
            p = self._pull(number)
            return PullView(p.number, p.title, p.body, p.author, p.branch, p.base, p.head_sha, p.state,
                            p.merged_at is not None, p.merge_commit_sha, p.merged_by)

    def create_pr(self, title: str, files: dict[str, str | None], *, author: str = "alice",
                  branch: str | None = None, base: str | None = None, from_fork: bool = False,
                  body: str = "") -> int:
        """Open a pull request whose one commit applies `files` (None deletes) on the base's head."""
        with self._lock:
            number = self._next_number()
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
             branch: str | None = None, *, signed: bool = False) -> str:
        """Someone else's commit landing directly on a branch (the base by default, protection or
        not, as an admin can); returns its sha. `signed`: a verified signature."""
        with self._lock:
            ref = f"refs/heads/{branch or self.base_branch}"
            parent = self.git.resolve(ref)
            if parent is None:
                raise ValueError(f"no branch {ref}")
            sha = self._commit_files(parent, files, message, author)
            if signed:
                self._signed.add(sha)
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

    def commits(self, ref: str | None = None, n: int = 20, *, exclude: str | None = None) -> list[Commit]:
        """The newest `n` commits reachable from a branch or sha (the base by default) and not from `exclude`."""
        with self._lock:
            return self.git.log(self._commit_of(ref or self.base_branch), count=n,
                                exclude=self._commit_of(exclude) if exclude else None)

    def branches(self) -> dict[str, str]:
        """Branch name -> head sha, of every branch of the repository."""
        with self._lock:
            return self.git.branches()

    def pull_requests(self) -> list[PullView]:
        """Every pull request, open or not, oldest first."""
        with self._lock:
            return [self.pull_request(n) for n in sorted(self._pulls)]

    def flush_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every webhook emitted so far has been delivered (or has failed)."""
        if self._outbox is not None:
            self.run(asyncio.wait_for(self._outbox.join(), timeout))

    def _next_number(self) -> int:
        return max(self._pulls, default=0) + 1

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

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

    def _set_ref(self, ref: str, new: str, old: str, *, pusher: str, merging: _Pull | None = None) -> None:
        """Move a branch, and tell whoever listens: pushes to the base, pull request heads; a pull
        request whose head the branch now contains is merged by that push (except `merging`, which
        the caller is merging itself)."""
        self.git.update_ref(ref, new, old)
        if ref == f"refs/heads/{self.base_branch}":
            self._emit_push(ref, old, new, pusher)
        for pull in self._pulls.values():
            if pull.state == "open" and pull.head_ref == ref:
                pull.head_sha, pull.updated_at = new, _now()
                self._emit_pull("synchronize", pull, before=old, after=new)
        into = [p for p in self._pulls.values()
                if p is not merging and p.state == "open" and f"refs/heads/{p.base}" == ref]
        if into and old != ZERO_SHA:
            # A head that was reachable before would have been merged then: only the commits new on
            # the branch can merge a pull request now (one git call, however many are open).
            arrived = {sha for sha, _ in self.git.rev_list(new, exclude=old)}
            for pull in into:
                if pull.head_sha in arrived:
                    self._mark_merged(pull, new, old, pusher)
                    self._emit_pull("closed", pull, sender=pusher)

    def _delete_branch(self, branch: str, sha: str, sender: str) -> None:
        """Delete a branch; the open pull requests from or into it close, as on GitHub."""
        ref = f"refs/heads/{branch}"
        self.git.delete_ref(ref, sha)
        for pull in self._pulls.values():
            if pull.state == "open" and (pull.head_ref == ref or pull.base == branch):
                self._close(pull)
                self._emit_pull("closed", pull, sender=sender)

    def _close(self, pull: _Pull, base_sha: str | None = None) -> None:
        pull.base_sha = base_sha or self.git.resolve(f"refs/heads/{pull.base}") or pull.base_sha
        pull.state, pull.closed_at = "closed", _now()
        pull.updated_at = pull.closed_at

    def _mark_merged(self, pull: _Pull, merge_sha: str, base_sha: str, by: str) -> None:
        self._close(pull, base_sha)
        pull.merged_at, pull.merge_commit_sha, pull.merged_by = pull.closed_at, merge_sha, by

    def _pull(self, number: int) -> _Pull:
        try:
            return self._pulls[number]
        except KeyError:
            raise ApiError(404, "Not Found") from None

    # -- statuses, deployments, comments -------------------------------------------------------
    def _add_status(self, sha: str, state: str, context: str, description: str | None, target_url: str | None,
                    creator: str) -> _Status:
        now = _now()
        status = _Status(self._next_id("status"), sha, state, context, description, target_url, creator, now, now)
        self._statuses.setdefault(sha, []).append(status)
        self._emit("status", {"id": status.id, "sha": sha, "name": self.repo, "target_url": target_url,
                              "context": context, "description": description, "state": state,
                              "commit": self._commit_json(self.git.commit(sha)), "branches": [],
                              "created_at": _iso(now), "updated_at": _iso(now), "repository": self._repo_json(),
                              "sender": self._user(creator)})
        return status

    def _latest_statuses(self, sha: str) -> list[_Status]:
        latest: dict[str, _Status] = {}
        for status in self._statuses.get(sha, []):
            latest[status.context] = status
        return sorted(latest.values(), key=lambda s: s.id, reverse=True)

    def _status_state(self, sha: str, context: str) -> str | None:
        return next((s.state for s in self._latest_statuses(sha) if s.context == context), None)

    def _deployment_view(self, d: _Deployment) -> DeploymentView:
        return DeploymentView(d.id, d.ref, d.sha, d.task, d.environment, d.original_environment, d.description,
                              d.payload, d.transient_environment, d.production_environment, d.creator,
                              d.created_at, tuple(d.statuses))

    # -- rules: protection, workflows ----------------------------------------------------------
    @staticmethod
    def _bypasses(protection: Protection, actor: _Token) -> bool:
        return actor.admin and not protection.enforce_admins

    def _unmet(self, protection: Protection, pull: _Pull, base_sha: str) -> str | None:
        """What keeps a pull request from merging into its protected base, if anything."""
        if protection.strict and not self.git.is_ancestor(base_sha, pull.head_sha):
            return "Head branch is not up to date with the base branch"
        for context in protection.contexts:
            state = self._status_state(pull.head_sha, context)
            if state != "success":
                verdict = "failing" if state in ("error", "failure") else "expected"
                return f'Required status check "{context}" is {verdict}.'
        needed = protection.required_approving_review_count if protection.required_pull_request_reviews else 0
        if len(pull.approvals) < needed:
            return (f"At least {needed} approving review{' is' if needed == 1 else 's are'} required by reviewers "
                    f"with write access.")
        return None

    def _check_push(self, actor: _Token, branch: str, old: str, new: str, *, status: int) -> None:
        """Refuse to move a protected branch from `old` to `new` the way a push would."""
        protection = self._protections.get(branch)
        if protection is None or self._bypasses(protection, actor):
            return
        if old != ZERO_SHA and not self.git.is_ancestor(old, new) and not protection.allow_force_pushes:
            raise ApiError(status, "Cannot force-push to this branch")
        if protection.required_pull_request_reviews and actor.login not in protection.bypass:
            raise ApiError(status, "Changes must be made through a pull request.")
        commits = self.git.rev_list(new, exclude=old)
        if protection.required_linear_history and any(len(parents) > 1 for _, parents in commits):
            raise ApiError(status, "This branch must not contain merge commits.")
        if protection.required_signatures and any(sha not in self._signed for sha, _ in commits):
            raise ApiError(status, "Commits must have verified signatures.")
        for context in protection.contexts:
            if self._status_state(new, context) != "success":
                raise ApiError(status, f'Required status check "{context}" is expected.')

    def _check_workflows(self, actor: _Token, old: str, new: str, *, status: int) -> None:
        """Refuse a change to `.github/workflows/` (between two tree-ishes) the token may not make."""
        if actor.may_change_workflows:
            return
        changed = self.git.changed_paths(old, new, WORKFLOWS)
        if changed:
            raise ApiError(status, actor.workflow_refusal(changed[0]))

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

    def _emit_pull(self, action: str, pull: _Pull, *, sender: str | None = None, **extra: Any) -> None:
        self._emit("pull_request", {"action": action, "number": pull.number, **extra,
                                    "pull_request": self._pull_json(pull, full=True),
                                    "repository": self._repo_json(), "sender": self._user(sender or pull.author)})

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
        issue = r"/issues/{number:\d+}"
        comment = r"/issues/comments/{id:\d+}"
        deployment = r"/deployments/{id:\d+}"
        routes = [
            ("GET", "", self._get_repo),
            ("GET", "/pulls", self._list_pulls),
            ("POST", "/pulls", self._create_pull),
            ("GET", number, self._get_pull),
            ("PATCH", number, self._edit_pull),
            ("GET", number + "/merge", self._get_merged),
            ("PUT", number + "/merge", self._merge),
            ("PUT", number + "/update-branch", self._update_branch),
            ("GET", "/branches/{branch:.+}/protection", self._get_protection),
            ("GET", "/branches/{branch:.+}/protection/{part:[a-z_]+}", self._get_protection_part),
            ("GET", "/branches/{branch:.+}", self._get_branch),
            ("GET", "/git/ref/{ref:.+}", self._get_ref),
            ("GET", "/git/refs/{ref:.+}", self._get_ref),
            ("POST", "/git/refs", self._create_ref),
            ("PATCH", "/git/refs/{ref:.+}", self._update_ref),
            ("DELETE", "/git/refs/{ref:.+}", self._delete_ref),
            ("GET", "/git/commits/{sha}", self._get_git_commit),
            ("POST", "/git/commits", self._create_git_commit),
            ("GET", "/git/trees/{sha}", self._get_tree),
            ("POST", "/git/trees", self._create_tree),
            ("GET", "/commits", self._list_commits),
            ("GET", "/commits/{ref:.+}/status", self._get_combined_status),
            ("GET", "/commits/{ref:.+}/statuses", self._list_statuses),
            ("GET", "/commits/{ref:.+}", self._get_commit),
            ("POST", "/statuses/{sha}", self._create_status),
            ("POST", "/merges", self._merge_branches),
            ("GET", "/deployments", self._list_deployments),
            ("POST", "/deployments", self._create_deployment),
            ("GET", deployment, self._get_deployment),
            ("GET", deployment + "/statuses", self._list_deployment_statuses),
            ("POST", deployment + "/statuses", self._create_deployment_status),
            ("GET", deployment + r"/statuses/{status_id:\d+}", self._get_deployment_status),
            ("GET", issue, self._get_issue),
            ("GET", issue + "/comments", self._list_comments),
            ("POST", issue + "/comments", self._create_comment),
            ("GET", comment, self._get_comment),
            ("PATCH", comment, self._edit_comment),
            ("DELETE", comment, self._delete_comment),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, repo + path, handler)
        app.router.add_route("GET", API_PREFIX + "/user", self._get_user)
        return app

    def _token_of(self, request: web.Request) -> _Token:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not value.strip():
            return _full_access("anonymous")
        token = value.strip()
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                token = base64.b64decode(token).decode().partition(":")[2]
        return self._tokens.get(token) or _full_access(_token_kind(token))

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, self._path(request)))
            if request.headers.get("Authorization"):
                self.authorized_requests += 1
            token = self._token_of(request)
        request[_TOKEN] = token
        owner, name = request.match_info.get("owner"), request.match_info.get("name")
        response: web.StreamResponse
        try:
            if token.revoked:
                raise ApiError(401, "Bad credentials")
            if owner is not None:
                if f"{owner}/{name}".lower() != self.repo.lower() or not token.sees_repo:
                    raise ApiError(404, "Not Found")
                # Anyone who can read a repository may comment on its pull requests.
                needed = token.pull if "/issues/" in request.path else token.push
                if request.method not in ("GET", "HEAD") and not needed:
                    raise ApiError(403, token.denied())
            response = await handler(request)
        except ApiError as exc:
            body: dict[str, Any] = {"message": exc.message, "documentation_url": _DOCS}
            if exc.errors:
                body["errors"] = exc.errors
            response = web.json_response(body, status=exc.status)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                raise
            response = web.json_response({"message": "Not Found", "documentation_url": _DOCS}, status=404)
        if token.classic and not token.revoked:
            response.headers["X-OAuth-Scopes"] = ", ".join(token.scopes)
            response.headers["X-Accepted-OAuth-Scopes"] = "repo" if owner is not None else ""
        return response

    @staticmethod
    async def _body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        if optional and not (await request.read()).strip():
            return {}
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

    def _paged(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        offset, per_page, headers = self._page(request, len(items))
        return web.json_response(items[offset:offset + per_page], headers=headers)

    def _sha_param(self, value: str, kind: str) -> str:
        """A full sha or a branch name as `kind` (commit/tree), or a GitHub-shaped 404."""
        sha = self.git.resolve(value, kind) if _HEX_SHA.match(value) else None
        sha = sha or self.git.resolve(f"refs/heads/{value}", kind)
        if sha is None:
            raise ApiError(404, "Not Found")
        return sha

    def _commitish(self, value: str) -> str | None:
        """The commit a branch name or a (possibly short) sha names, or None."""
        sha = self.git.resolve(f"refs/heads/{value}")
        if sha is None and _HEX_PREFIX.match(value):
            sha = self.git.resolve(value)
        return sha

    # -- repository, user ----------------------------------------------------------------------
    async def _get_repo(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._repo_json(permissions=request[_TOKEN].permissions()))

    async def _get_user(self, request: web.Request) -> web.Response:
        token: _Token = request[_TOKEN]
        if token.kind == "anonymous":
            raise ApiError(401, "Requires authentication")
        return web.json_response(self._user(token.login) | {"name": token.login, "email": None})

    # -- pull requests -------------------------------------------------------------------------
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
                owner, _, branch = request.query["head"].rpartition(":")
                pulls = [p for p in pulls if p.branch == branch and (not owner or owner.lower()
                                                                     == self._head_label(p).split(":")[0].lower())]
            pulls.sort(key=lambda p: (p.updated_at if sort == "updated" else p.created_at, p.number),
                       reverse=direction == "desc")
            offset, per_page, headers = self._page(request, len(pulls))
            page = [self._pull_json(p, full=False) for p in pulls[offset:offset + per_page]]
        return web.json_response(page, headers=headers)

    async def _get_pull(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        with self._lock:
            return web.json_response(self._pull_json(self._pull(number), full=True))

    async def _create_pull(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not isinstance(title, str) or not title.strip():
            raise _invalid("title", code="missing_field")
        if not isinstance(base, str):
            raise _invalid("base", code="missing_field")
        if not isinstance(head, str):
            raise _invalid("head", code="missing_field")
        owner, _, branch = head.rpartition(":")
        with self._lock:
            base_sha = self.git.resolve(f"refs/heads/{base}")
            if base_sha is None:
                raise _invalid("base")
            head_sha = self.git.resolve(f"refs/heads/{branch}")
            if (owner and owner.lower() != self.owner.lower()) or head_sha is None:
                raise _invalid("head")
            if any(p.state == "open" and p.head_ref == f"refs/heads/{branch}" and p.base == base
                   for p in self._pulls.values()):
                raise _custom(f"A pull request already exists for {self.owner}:{branch}.")
            if self.git.is_ancestor(head_sha, base_sha):
                raise _custom(f"No commits between {base} and {branch}")
            now = _now()
            pull = _Pull(self._next_number(), title, body.get("body") or "", actor.login, branch, base,
                         f"refs/heads/{branch}", head_sha, base_sha, False, now, now,
                         draft=bool(body.get("draft", False)))
            self._pulls[pull.number] = pull
            self.writes["pulls"] += 1
            self._emit_pull("opened", pull)
            return web.json_response(self._pull_json(pull, full=True), status=201)

    async def _edit_pull(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        with self._lock:
            pull = self._pull(int(request.match_info["number"]))
            if "base" in body:
                if not isinstance(body["base"], str) or self.git.resolve(f"refs/heads/{body['base']}") is None:
                    raise _invalid("base")
                if pull.state != "open":
                    raise _custom("Cannot change the base branch of a closed pull request.")
                pull.base = body["base"]
            for key in ("title", "body"):
                if isinstance(body.get(key), str):
                    setattr(pull, key, body[key])
            state = body.get("state")
            if state not in (None, "open", "closed"):
                raise _invalid("state")
            pull.updated_at = _now()
            if state == "closed" and pull.state == "open":
                self._close(pull)
                self._emit_pull("closed", pull, sender=actor.login)
            elif state == "open" and pull.state == "closed":
                head = self.git.resolve(pull.head_ref)
                if pull.merged_at is not None or head is None:
                    raise _custom("state cannot be changed. The head branch has been deleted."
                                  if head is None else "state cannot be changed. The pull request is merged.")
                pull.state, pull.closed_at, pull.head_sha = "open", None, head
                self._emit_pull("reopened", pull, sender=actor.login)
            else:
                self._emit_pull("edited", pull, sender=actor.login)
            return web.json_response(self._pull_json(pull, full=True))

    async def _get_merged(self, request: web.Request) -> web.Response:
        with self._lock:
            if self._pull(int(request.match_info["number"])).merged_at is None:
                raise ApiError(404, "Not Found")
        return web.Response(status=204)

    async def _merge(self, request: web.Request) -> web.Response:
        body = await self._body(request, optional=True)
        with self._lock:
            return web.json_response(self._merge_pull(int(request.match_info["number"]), body, request[_TOKEN]))

    def _merge_pull(self, number: int, body: dict[str, Any], actor: _Token) -> dict[str, Any]:
        pull = self._pull(number)
        method = body.get("merge_method", "merge")
        if method not in MERGE_METHODS:
            raise ApiError(422, "Validation Failed")
        if pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if not getattr(self._settings, _METHOD_SETTING[method]):
            raise ApiError(405, _METHOD_REFUSED[method])
        if body.get("sha") is not None and body["sha"] != pull.head_sha:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        if pull.draft:
            raise ApiError(405, "Pull Request is still a draft")
        base_ref = f"refs/heads/{pull.base}"
        base_sha = self.git.resolve(base_ref)
        assert base_sha is not None
        clean, tree = self.git.merge_tree(base_sha, pull.head_sha)
        if not clean:
            raise ApiError(405, "Pull Request is not mergeable")
        protection = self._protections.get(pull.base)
        if protection is not None and not self._bypasses(protection, actor):
            if protection.required_linear_history and method == "merge":
                raise ApiError(405, "This branch must not contain merge commits.")
            problem = self._unmet(protection, pull, base_sha)
            if problem:
                raise ApiError(405, problem)
        replayed = self._replay(base_sha, pull.head_sha) if method == "rebase" else []
        if replayed is None:
            raise ApiError(405, "This branch can't be rebased")
        if method == "rebase":
            tree = replayed[-1][1] if replayed else self.git.commit(base_sha).tree
        self._check_workflows(actor, base_sha, tree, status=403)
        merger = (actor.login, _email(actor.login), None)
        if method == "merge":
            head_owner = pull.author if pull.from_fork else self.owner
            title = body.get("commit_title") or f"Merge pull request #{number} from {head_owner}/{pull.branch}"
            message = body.get("commit_message") or pull.title
            new = self.git.commit_tree(tree, [base_sha, pull.head_sha], f"{title}\n\n{message}", author=merger,
                                       committer=GITHUB_COMMITTER)
            self._signed.add(new)
        elif method == "squash":
            new = self.git.commit_tree(tree, [base_sha], self._squash_message(pull, base_sha, body),
                                       author=(pull.author, _email(pull.author), None), committer=GITHUB_COMMITTER)
            self._signed.add(new)
        else:
            new = base_sha
            for commit, replay_tree in replayed:
                new = self.git.commit_tree(replay_tree, [new], commit.message, author=commit.author,
                                           committer=GITHUB_COMMITTER)
                self._signed.add(new)
        self.writes["merges"] += 1
        if new != base_sha:
            self._set_ref(base_ref, new, base_sha, pusher=actor.login, merging=pull)
        self._mark_merged(pull, new, base_sha, actor.login)
        self._emit_pull("closed", pull, sender=actor.login)
        head = self.git.resolve(pull.head_ref)
        if self._settings.delete_branch_on_merge and not pull.from_fork and head is not None \
                and pull.branch != self.base_branch and pull.branch not in self._protections:
            self._delete_branch(pull.branch, head, actor.login)
        return {"sha": new, "merged": True, "message": "Pull Request successfully merged"}

    def _squash_message(self, pull: _Pull, base_sha: str, body: dict[str, Any]) -> str:
        """GitHub's defaults: the commit's title and body for one commit, the pull request's title and
        the commits' messages as a list for several; commit_title/commit_message replace them."""
        commits = [self.git.commit(sha) for sha, parents in self.git.rev_list(pull.head_sha, exclude=base_sha,
                                                                              oldest_first=True) if len(parents) == 1]
        if len(commits) == 1:
            default_title, _, default_message = commits[0].message.partition("\n")
            default_message = default_message.strip()
        else:
            default_title = pull.title
            default_message = "\n\n".join(f"* {c.message}" for c in commits)
        title = body.get("commit_title") or f"{default_title} (#{pull.number})"
        message = body["commit_message"] if isinstance(body.get("commit_message"), str) else default_message
        return f"{title}\n\n{message}" if message else title

    def _replay(self, onto: str, head: str) -> list[tuple[Commit, str]] | None:
        """The pull request's commits (not its merge commits) replayed one by one on `onto`, as
        (commit, new tree) with the ones that become empty dropped; None when one does not apply."""
        current = self.git.commit(onto).tree
        replayed = []
        for sha, parents in self.git.rev_list(head, exclude=onto, oldest_first=True):
            if len(parents) != 1:
                continue
            commit = self.git.commit(sha)
            parent_tree = self.git.commit(parents[0]).tree
            if parent_tree == current:
                tree = commit.tree
            else:
                # A cherry-pick: merge the commit into `current` with its parent as the merge base,
                # which scratch commits give `merge-tree` (git 2.39 has no --merge-base).
                base = self.git.scratch_commit(parent_tree)
                clean, tree = self.git.merge_tree(self.git.scratch_commit(current, [base]),
                                                  self.git.scratch_commit(commit.tree, [base]))
                if not clean:
                    return None
            if tree != current:
                replayed.append((commit, tree))
                current = tree
        return replayed

    async def _update_branch(self, request: web.Request) -> web.Response:
        body = await self._body(request, optional=True)
        actor: _Token = request[_TOKEN]
        number = int(request.match_info["number"])
        with self._lock:
            pull = self._pull(number)
            if pull.state != "open":
                raise ApiError(422, "Pull request is closed.")
            expected = body.get("expected_head_sha")
            if expected is not None and expected != pull.head_sha:
                raise ApiError(422, "expected head sha didn't match current head ref.")
            base_sha = self.git.resolve(f"refs/heads/{pull.base}")
            assert base_sha is not None
            if self.git.is_ancestor(base_sha, pull.head_sha):
                raise ApiError(422, "There are no new commits on the base branch.")
            clean, tree = self.git.merge_tree(pull.head_sha, base_sha)
            if not clean:
                raise ApiError(422, "merge conflict between base and head")
            self._check_workflows(actor, pull.head_sha, tree, status=403)
            old = pull.head_sha
            new = self.git.commit_tree(tree, [old, base_sha], f"Merge branch '{pull.base}' into {pull.branch}",
                                       author=(actor.login, _email(actor.login), None), committer=GITHUB_COMMITTER)
            self._signed.add(new)
            if pull.head_ref.startswith("refs/heads/"):
                self._check_push(actor, pull.branch, old, new, status=422)
            delay = self._settings.update_branch_delay
            if delay > 0 and self.loop is not None:
                self.loop.call_later(delay, self._finish_update_branch, pull, old, new, actor.login)
            else:
                self._finish_update_branch(pull, old, new, actor.login)
        return web.json_response({"message": "Updating pull request branch.",
                                  "url": f"{self.root_url}/repos/{self.repo}/pulls/{number}"}, status=202)

    def _finish_update_branch(self, pull: _Pull, old: str, new: str, pusher: str) -> None:
        with self._lock:
            # In the background, like GitHub: a push meanwhile wins, and the update is dropped.
            if pull.state == "open" and pull.head_sha == old and self.git.resolve(pull.head_ref) == old:
                self.writes["branch_updates"] += 1
                self._set_ref(pull.head_ref, new, old, pusher=pusher)

    # -- branches and protection ---------------------------------------------------------------
    async def _get_branch(self, request: web.Request) -> web.Response:
        branch = request.match_info["branch"]
        with self._lock:
            sha = self.git.resolve(f"refs/heads/{branch}")
            if sha is None:
                raise ApiError(404, "Branch not found")
            protection = self._protections.get(branch)
            summary: dict[str, Any] = {"enabled": protection is not None}
            if protection is not None:
                summary["required_status_checks"] = {
                    "enforcement_level": ("everyone" if protection.enforce_admins else "non_admins")
                    if protection.strict or protection.contexts else "off",
                    "contexts": list(protection.contexts),
                    "checks": [{"context": c, "app_id": None} for c in protection.contexts]}
            return web.json_response({
                "name": branch, "commit": self._commit_json(self.git.commit(sha)),
                "_links": {"self": f"{self._api}/branches/{branch}", "html": f"{self._html}/tree/{branch}"},
                "protected": protection is not None, "protection": summary,
                "protection_url": f"{self._api}/branches/{branch}/protection",
            })

    def _protection_for(self, request: web.Request) -> tuple[str, Protection]:
        token: _Token = request[_TOKEN]
        if not token.admin:
            raise ApiError(403, "Must have admin rights to Repository." if token.classic else token.denied())
        branch = request.match_info["branch"]
        if self.git.resolve(f"refs/heads/{branch}") is None:
            raise ApiError(404, "Branch not found")
        protection = self._protections.get(branch)
        if protection is None:
            raise ApiError(404, "Branch not protected")
        return branch, protection

    async def _get_protection(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._protection_json(*self._protection_for(request)))

    async def _get_protection_part(self, request: web.Request) -> web.Response:
        part = request.match_info["part"]
        with self._lock:
            data = self._protection_json(*self._protection_for(request))
            if part not in data:
                raise ApiError(404, {"required_status_checks": "Required status checks not enabled",
                                     "required_pull_request_reviews": "Required pull request reviews not enabled",
                                     "restrictions": "Push restrictions not enabled"}.get(part, "Not Found"))
            return web.json_response(data[part])

    # -- git refs ------------------------------------------------------------------------------
    async def _get_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        with self._lock:
            sha = self.git.resolve(ref) if ref.startswith("refs/heads/") else None
            if sha is None:
                raise ApiError(404, "Not Found")
            return web.json_response(self._ref_json(ref, sha))

    async def _create_ref(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        ref, sha = body.get("ref"), body.get("sha")
        if not isinstance(ref, str):
            raise _missing("ref")
        if not isinstance(sha, str):
            raise _missing("sha")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if not ref.startswith("refs/heads/") or not self.git.valid_ref_name(ref):
            raise ApiError(422, f"{ref} is not a valid ref name.")
        with self._lock:
            if not _HEX_SHA.match(sha) or self.git.object_type(sha) != "commit":
                raise ApiError(422, "Object does not exist")
            if self.git.resolve(ref) is not None:
                raise ApiError(422, "Reference already exists")
            # What the new branch brings that the default branch has not: its changes since they parted.
            since = self.git.merge_base(self.branch_head(), sha) or EMPTY_TREE
            self._check_workflows(actor, since, sha, status=422)
            self.writes["refs_created"] += 1
            self._set_ref(ref, sha, ZERO_SHA, pusher=actor.login)
            return web.json_response(self._ref_json(ref, sha), status=201)

    async def _update_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        sha = body.get("sha")
        if not isinstance(sha, str):
            raise _missing("sha")
        with self._lock:
            current = self.git.resolve(ref) if ref.startswith("refs/heads/") else None
            if current is None:
                raise ApiError(422, "Reference does not exist")
            if not _HEX_SHA.match(sha) or self.git.object_type(sha) != "commit":
                raise ApiError(422, "Object does not exist")
            if not body.get("force") and not self.git.is_ancestor(current, sha):
                raise ApiError(422, "Update is not a fast forward")
            self._check_push(actor, ref.removeprefix("refs/heads/"), current, sha, status=422)
            self._check_workflows(actor, current, sha, status=422)
            self.writes["ref_updates"] += 1
            self._set_ref(ref, sha, current, pusher=actor.login)
            return web.json_response(self._ref_json(ref, sha))

    async def _delete_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        actor: _Token = request[_TOKEN]
        with self._lock:
            current = self.git.resolve(ref) if ref.startswith("refs/heads/") else None
            if current is None:
                raise ApiError(422, "Reference does not exist")
            branch = ref.removeprefix("refs/heads/")
            if branch == self.base_branch:
                raise ApiError(422, "Cannot delete the default branch")
            protection = self._protections.get(branch)
            if protection is not None and not protection.allow_deletions and not self._bypasses(protection, actor):
                raise ApiError(422, "Cannot delete this protected branch")
            self.writes["refs_deleted"] += 1
            self._delete_branch(branch, current, actor.login)
        return web.Response(status=204)

    # -- git objects ---------------------------------------------------------------------------
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
        login = request[_TOKEN].login
        author = body.get("author") or {"name": login, "email": _email(login)}
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
            if isinstance(body.get("signature"), str) and body["signature"].strip():
                self._signed.add(sha)
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
            raise _missing("tree")
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

    # -- commits and statuses ------------------------------------------------------------------
    async def _list_commits(self, request: web.Request) -> web.Response:
        with self._lock:
            head = self.git.resolve(f"refs/heads/{self.base_branch}")
            if "sha" in request.query:
                head = self._sha_param(request.query["sha"], "commit")
            assert head is not None
            offset, per_page, headers = self._page(request, self.git.count(head))
            commits = self.git.log(head, skip=offset, count=per_page)
            return web.json_response([self._commit_json(c) for c in commits], headers=headers)

    def _commit_param(self, request: web.Request) -> str:
        sha = self._commitish(request.match_info["ref"])
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {request.match_info['ref']}")
        return sha

    async def _get_commit(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._commit_json(self.git.commit(self._commit_param(request))))

    async def _get_combined_status(self, request: web.Request) -> web.Response:
        with self._lock:
            sha = self._commit_param(request)
            statuses = self._latest_statuses(sha)
            states = {s.state for s in statuses}
            state = "failure" if states & {"error", "failure"} else \
                "pending" if not statuses or "pending" in states else "success"
            return web.json_response({
                "state": state, "statuses": [self._status_json(s) for s in statuses], "sha": sha,
                "total_count": len(statuses), "repository": self._repo_json(),
                "commit_url": f"{self._api}/commits/{sha}", "url": f"{self._api}/commits/{sha}/status"})

    async def _list_statuses(self, request: web.Request) -> web.Response:
        with self._lock:
            statuses = self._statuses.get(self._commit_param(request), [])
            return self._paged(request, [self._status_json(s) for s in reversed(statuses)])

    async def _create_status(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        sha = request.match_info["sha"]
        state = body.get("state")
        if state not in STATUS_STATES:
            raise _invalid("state", resource="Status")
        with self._lock:
            if not _HEX_SHA.match(sha) or self.git.object_type(sha) != "commit":
                raise ApiError(422, f"No commit found for SHA: {sha}")
            status = self._add_status(sha, state, body.get("context") or "default", body.get("description"),
                                      body.get("target_url"), request[_TOKEN].login)
            self.writes["statuses"] += 1
            return web.json_response(self._status_json(status), status=201)

    async def _merge_branches(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        base, head, message = body.get("base"), body.get("head"), body.get("commit_message")
        if not isinstance(base, str):
            raise _missing("base")
        if not isinstance(head, str):
            raise _missing("head")
        with self._lock:
            base_sha = self.git.resolve(f"refs/heads/{base}")
            if base_sha is None:
                raise ApiError(404, "Base does not exist")
            head_sha = self._commitish(head)
            if head_sha is None:
                raise ApiError(404, "Head does not exist")
            if self.git.is_ancestor(head_sha, base_sha):
                return web.Response(status=204)
            clean, tree = self.git.merge_tree(base_sha, head_sha)
            if not clean:
                raise ApiError(409, "Merge conflict")
            self._check_workflows(actor, base_sha, tree, status=403)
            merge = self.git.commit_tree(tree, [base_sha, head_sha], message or f"Merge {head} into {base}",
                                         author=(actor.login, _email(actor.login), None), committer=GITHUB_COMMITTER)
            self._signed.add(merge)
            self._check_push(actor, base, base_sha, merge, status=409)
            self.writes["branch_merges"] += 1
            self._set_ref(f"refs/heads/{base}", merge, base_sha, pusher=actor.login)
            return web.json_response(self._commit_json(self.git.commit(merge)), status=201)

    # -- deployments ---------------------------------------------------------------------------
    def _deployment(self, request: web.Request) -> _Deployment:
        deployment = self._deployments.get(int(request.match_info["id"]))
        if deployment is None:
            raise ApiError(404, "Not Found")
        return deployment

    async def _list_deployments(self, request: web.Request) -> web.Response:
        with self._lock:
            found = sorted(self._deployments.values(), key=lambda d: d.id, reverse=True)
            for key in ("sha", "ref", "task", "environment"):
                if key in request.query:
                    found = [d for d in found if getattr(d, key) == request.query[key]]
            return self._paged(request, [self._deployment_json(d) for d in found])

    async def _get_deployment(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._deployment_json(self._deployment(request)))

    async def _create_deployment(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        ref = body.get("ref")
        if not isinstance(ref, str):
            raise _missing("ref")
        environment = body.get("environment") or "production"
        with self._lock:
            sha = self._commitish(ref)
            if sha is None:
                raise ApiError(422, f"No ref found for: {ref}")
            default_sha = self.branch_head()
            is_branch = self.git.resolve(f"refs/heads/{ref}") is not None
            if body.get("auto_merge", True) and is_branch and not self.git.is_ancestor(default_sha, sha):
                return self._auto_merge(ref, sha, default_sha, actor)
            self._check_contexts(ref, sha, body.get("required_contexts"))
            payload = body.get("payload", {})
            if isinstance(payload, str):
                with contextlib.suppress(ValueError):
                    payload = json.loads(payload)
            now = _now()
            deployment = _Deployment(
                self._next_id("deployment"), ref, sha, body.get("task") or "deploy", environment, environment,
                body.get("description") or "", payload, bool(body.get("transient_environment", False)),
                bool(body.get("production_environment", environment == "production")), actor.login, now, now)
            self._deployments[deployment.id] = deployment
            self.writes["deployments"] += 1
            self._emit("deployment", {"action": "created", "deployment": self._deployment_json(deployment),
                                      "repository": self._repo_json(), "sender": self._user(actor.login)})
            return web.json_response(self._deployment_json(deployment), status=201)

    def _auto_merge(self, ref: str, sha: str, default_sha: str, actor: _Token) -> web.Response:
        """Deploying a branch behind the default one merges the default branch into it instead."""
        clean, tree = self.git.merge_tree(sha, default_sha)
        if not clean:
            raise ApiError(409, f"Conflict merging {self.base_branch} into {ref}.")
        merge = self.git.commit_tree(tree, [sha, default_sha], f"Merge {self.base_branch} into {ref}",
                                     author=(actor.login, _email(actor.login), None), committer=GITHUB_COMMITTER)
        self._signed.add(merge)
        self._set_ref(f"refs/heads/{ref}", merge, sha, pusher=actor.login)
        return web.json_response({"message": f"Auto-merged {self.base_branch} into {ref} on deployment."},
                                 status=202)

    def _check_contexts(self, ref: str, sha: str, required: Any) -> None:
        """Every required context (all the commit's contexts when not given) must be green."""
        latest = {s.context: s.state for s in self._latest_statuses(sha)}
        contexts = list(latest) if required is None else required
        if not isinstance(contexts, list):
            raise _invalid("required_contexts", resource="Deployment")
        failing = [{"context": c, "state": latest.get(c, "missing")} for c in contexts if latest.get(c) != "success"]
        if failing:
            raise ApiError(409, f"Conflict: Commit status checks failed for {ref}.",
                           [{"contexts": failing, "resource": "Deployment", "field": "required_contexts",
                             "code": "invalid"}])

    async def _list_deployment_statuses(self, request: web.Request) -> web.Response:
        with self._lock:
            deployment = self._deployment(request)
            return self._paged(request, [self._deployment_status_json(deployment, s)
                                         for s in reversed(deployment.statuses)])

    async def _get_deployment_status(self, request: web.Request) -> web.Response:
        with self._lock:
            deployment = self._deployment(request)
            wanted = int(request.match_info["status_id"])
            status = next((s for s in deployment.statuses if s.id == wanted), None)
            if status is None:
                raise ApiError(404, "Not Found")
            return web.json_response(self._deployment_status_json(deployment, status))

    async def _create_deployment_status(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        state = body.get("state")
        if state not in DEPLOYMENT_STATES:
            raise _invalid("state", resource="DeploymentStatus")
        with self._lock:
            deployment = self._deployment(request)
            if isinstance(body.get("environment"), str) and body["environment"]:
                deployment.environment = body["environment"]
            status = self._add_deployment_status(deployment, state, actor.login, body)
            if state == "success" and body.get("auto_inactive", True):
                for other in self._deployments.values():
                    if other is not deployment and other.environment == deployment.environment \
                            and not other.transient_environment and other.statuses \
                            and other.statuses[-1].state == "success":
                        self._add_deployment_status(other, "inactive", actor.login, {})
            return web.json_response(self._deployment_status_json(deployment, status), status=201)

    def _add_deployment_status(self, deployment: _Deployment, state: str, creator: str,
                               body: dict[str, Any]) -> DeploymentStatusView:
        # log_url replaced target_url; GitHub keeps both, the same.
        log_url = body.get("log_url") or body.get("target_url") or ""
        status = DeploymentStatusView(self._next_id("deployment_status"), state, body.get("description") or "",
                                      log_url, body.get("environment_url") or "", deployment.environment,
                                      creator, _now())
        deployment.statuses.append(status)
        deployment.updated_at = status.created_at
        self.writes["deployment_statuses"] += 1
        self._emit("deployment_status", {
            "action": "created", "deployment_status": self._deployment_status_json(deployment, status),
            "deployment": self._deployment_json(deployment), "repository": self._repo_json(),
            "sender": self._user(creator)})
        return status

    # -- issues and comments -------------------------------------------------------------------
    def _comment(self, request: web.Request) -> _Comment:
        comment = self._comments.get(int(request.match_info["id"]))
        if comment is None:
            raise ApiError(404, "Not Found")
        return comment

    async def _get_issue(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._issue_json(self._pull(int(request.match_info["number"]))))

    async def _list_comments(self, request: web.Request) -> web.Response:
        with self._lock:
            number = self._pull(int(request.match_info["number"])).number
            return self._paged(request, [self._comment_json(c) for c in sorted(self._comments.values(),
                                                                               key=lambda c: c.id)
                                         if c.issue == number])

    async def _create_comment(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        actor: _Token = request[_TOKEN]
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise _invalid("body", resource="IssueComment", code="missing_field")
        with self._lock:
            pull = self._pull(int(request.match_info["number"]))
            now = _now()
            comment = _Comment(self._next_id("comment"), pull.number, body["body"], actor.login, now, now)
            self._comments[comment.id] = comment
            self.writes["comments"] += 1
            self._emit_comment("created", comment)
            return web.json_response(self._comment_json(comment), status=201)

    async def _get_comment(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._comment_json(self._comment(request)))

    async def _edit_comment(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise _invalid("body", resource="IssueComment", code="missing_field")
        with self._lock:
            comment = self._comment(request)
            before, comment.body, comment.updated_at = comment.body, body["body"], _now()
            self.writes["comments"] += 1
            self._emit_comment("edited", comment, changes={"body": {"from": before}})
            return web.json_response(self._comment_json(comment))

    async def _delete_comment(self, request: web.Request) -> web.Response:
        with self._lock:
            comment = self._comment(request)
            del self._comments[comment.id]
            self._emit_comment("deleted", comment)
        return web.Response(status=204)

    def _emit_comment(self, action: str, comment: _Comment, **extra: Any) -> None:
        self._emit("issue_comment", {"action": action, **extra, "issue": self._issue_json(self._pulls[comment.issue]),
                                     "comment": self._comment_json(comment), "repository": self._repo_json(),
                                     "sender": self._user(comment.user)})

    # -- JSON shapes ---------------------------------------------------------------------------
    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": _stable_id(login), "node_id": f"U_{login}", "avatar_url": "",
                "url": f"{self.url}/users/{login}", "html_url": f"{self.root_url}/{login}",
                "type": "Organization" if login == self.owner else "User", "site_admin": False}

    def _repo_json(self, owner: str | None = None, permissions: dict[str, bool] | None = None) -> dict[str, Any]:
        owner = owner or self.owner
        full = f"{owner}/{self.name}"
        s = self._settings
        return {
            "id": _stable_id(full), "node_id": f"R_{full}", "name": self.name, "full_name": full,
            "private": True, "owner": self._user(owner), "html_url": f"{self.root_url}/{full}",
            "description": None, "fork": owner != self.owner, "url": f"{self.url}/repos/{full}",
            "clone_url": f"{self.root_url}/{full}.git", "git_url": f"git://127.0.0.1/{full}.git",
            "ssh_url": f"git@127.0.0.1:{full}.git", "default_branch": self.base_branch,
            "visibility": "private", "archived": False, "disabled": False,
            "permissions": permissions or {"admin": True, "maintain": True, "push": True, "triage": True,
                                           "pull": True},
            "allow_merge_commit": s.allow_merge_commit, "allow_squash_merge": s.allow_squash_merge,
            "allow_rebase_merge": s.allow_rebase_merge, "allow_auto_merge": False, "allow_update_branch": True,
            "delete_branch_on_merge": s.delete_branch_on_merge,
            "squash_merge_commit_title": "COMMIT_OR_PR_TITLE", "squash_merge_commit_message": "COMMIT_MESSAGES",
            "merge_commit_title": "MERGE_MESSAGE", "merge_commit_message": "PR_TITLE",
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

    def _rebaseable(self, pull: _Pull, base_sha: str) -> bool:
        key = (base_sha, pull.head_sha)
        if key not in self._rebaseability:
            self._rebaseability[key] = self._replay(base_sha, pull.head_sha) is not None
        return self._rebaseability[key]

    def _merge_state(self, pull: _Pull, base_sha: str, clean: bool) -> str:
        """GitHub's mergeable_state of an open pull request."""
        if not clean:
            return "dirty"
        if pull.draft:
            return "draft"
        protection = self._protections.get(pull.base)
        if protection is not None:
            if protection.strict and not self.git.is_ancestor(base_sha, pull.head_sha):
                return "behind"
            if self._unmet(protection, pull, base_sha):
                return "blocked"
            if protection.required_linear_history and not (self._settings.allow_squash_merge
                                                           or self._settings.allow_rebase_merge):
                return "blocked"
        if any(s.state in ("error", "failure") for s in self._latest_statuses(pull.head_sha)):
            return "unstable"
        return "clean"

    def _pull_json(self, pull: _Pull, *, full: bool) -> dict[str, Any]:
        """A pull request as GET /pulls/N answers (`full`) or as one item of GET /pulls."""
        url = f"{self._api}/pulls/{pull.number}"
        is_open = pull.state == "open"
        clean, test_merge = self._mergeable(pull) if is_open else (None, None)
        base_sha = self.git.resolve(f"refs/heads/{pull.base}") if is_open else pull.base_sha
        assert base_sha is not None
        head_owner = self._head_label(pull).split(":", 1)[0]
        data: dict[str, Any] = {
            "url": url, "id": 1000 + pull.number, "node_id": f"PR_{pull.number}",
            "html_url": f"{self._html}/pull/{pull.number}",
            "diff_url": f"{self._html}/pull/{pull.number}.diff",
            "patch_url": f"{self._html}/pull/{pull.number}.patch",
            "issue_url": f"{self._api}/issues/{pull.number}", "commits_url": f"{url}/commits",
            "comments_url": f"{self._api}/issues/{pull.number}/comments",
            "statuses_url": f"{self._api}/statuses/{pull.head_sha}",
            "number": pull.number, "state": pull.state, "locked": False, "title": pull.title,
            "user": self._user(pull.author), "body": pull.body, "labels": [], "milestone": None,
            "created_at": _iso(pull.created_at), "updated_at": _iso(pull.updated_at),
            "closed_at": _iso(pull.closed_at), "merged_at": _iso(pull.merged_at),
            # Like GitHub: an open pull request's merge_commit_sha is its test merge, not a real merge.
            "merge_commit_sha": pull.merge_commit_sha or test_merge,
            "assignee": None, "assignees": [], "requested_reviewers": [], "draft": pull.draft,
            "head": {"label": self._head_label(pull), "ref": pull.branch, "sha": pull.head_sha,
                     "user": self._user(head_owner), "repo": self._repo_json(head_owner)},
            "base": {"label": f"{self.owner}:{pull.base}", "ref": pull.base, "sha": base_sha,
                     "user": self._user(self.owner), "repo": self._repo_json()},
            "author_association": "CONTRIBUTOR" if pull.from_fork else "MEMBER", "auto_merge": None,
        }
        if full:
            data.update({
                "merged": pull.merged_at is not None, "mergeable": clean,
                "rebaseable": None if clean is None else clean and self._rebaseable(pull, base_sha),
                "mergeable_state": "unknown" if clean is None else self._merge_state(pull, base_sha, clean),
                "merged_by": self._user(pull.merged_by) if pull.merged_by else None,
                # the commits on the head and not on the base (when it closed, for a closed one), as GitHub counts
                "commits": len(self.git.rev_list(pull.head_sha, exclude=base_sha)),
                "comments": sum(c.issue == pull.number for c in self._comments.values()),
                "review_comments": 0, "maintainer_can_modify": False,
            })
        return data

    def _issue_json(self, pull: _Pull) -> dict[str, Any]:
        """The issue side of a pull request, as GET /issues/N answers."""
        url = f"{self._api}/issues/{pull.number}"
        return {
            "url": url, "repository_url": self._api, "comments_url": f"{url}/comments",
            "html_url": f"{self._html}/pull/{pull.number}", "id": 2000 + pull.number, "node_id": f"I_{pull.number}",
            "number": pull.number, "title": pull.title, "user": self._user(pull.author), "labels": [],
            "state": pull.state, "locked": False, "assignee": None, "assignees": [], "milestone": None,
            "comments": sum(c.issue == pull.number for c in self._comments.values()),
            "created_at": _iso(pull.created_at), "updated_at": _iso(pull.updated_at),
            "closed_at": _iso(pull.closed_at), "author_association": "MEMBER", "body": pull.body,
            "pull_request": {"url": f"{self._api}/pulls/{pull.number}", "html_url": f"{self._html}/pull/{pull.number}",
                             "diff_url": f"{self._html}/pull/{pull.number}.diff",
                             "patch_url": f"{self._html}/pull/{pull.number}.patch",
                             "merged_at": _iso(pull.merged_at)},
        }

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        return {
            "id": comment.id, "node_id": f"IC_{comment.id}", "url": f"{self._api}/issues/comments/{comment.id}",
            "html_url": f"{self._html}/pull/{comment.issue}#issuecomment-{comment.id}", "body": comment.body,
            "user": self._user(comment.user), "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at), "issue_url": f"{self._api}/issues/{comment.issue}",
            "author_association": "MEMBER", "performed_via_github_app": None,
        }

    def _deployment_json(self, d: _Deployment) -> dict[str, Any]:
        url = f"{self._api}/deployments/{d.id}"
        return {
            "url": url, "id": d.id, "node_id": f"DE_{d.id}", "sha": d.sha, "ref": d.ref, "task": d.task,
            "payload": d.payload, "original_environment": d.original_environment, "environment": d.environment,
            "description": d.description, "creator": self._user(d.creator), "created_at": _iso(d.created_at),
            "updated_at": _iso(d.updated_at), "statuses_url": f"{url}/statuses", "repository_url": self._api,
            "transient_environment": d.transient_environment, "production_environment": d.production_environment,
            "performed_via_github_app": None,
        }

    def _deployment_status_json(self, d: _Deployment, s: DeploymentStatusView) -> dict[str, Any]:
        url = f"{self._api}/deployments/{d.id}"
        return {
            "url": f"{url}/statuses/{s.id}", "id": s.id, "node_id": f"DES_{s.id}", "state": s.state,
            "creator": self._user(s.creator), "description": s.description, "environment": s.environment,
            "target_url": s.log_url, "log_url": s.log_url, "environment_url": s.environment_url,
            "created_at": _iso(s.created_at), "updated_at": _iso(s.created_at), "deployment_url": url,
            "repository_url": self._api, "performed_via_github_app": None,
        }

    def _status_json(self, s: _Status) -> dict[str, Any]:
        return {"url": f"{self._api}/statuses/{s.sha}", "avatar_url": None, "id": s.id, "node_id": f"SC_{s.id}",
                "state": s.state, "description": s.description, "target_url": s.target_url, "context": s.context,
                "created_at": _iso(s.created_at), "updated_at": _iso(s.updated_at), "creator": self._user(s.creator)}

    def _protection_json(self, branch: str, p: Protection) -> dict[str, Any]:
        url = f"{self._api}/branches/{branch}/protection"
        data: dict[str, Any] = {
            "url": url,
            "required_signatures": {"url": f"{url}/required_signatures", "enabled": p.required_signatures},
            "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": p.enforce_admins},
            "required_linear_history": {"enabled": p.required_linear_history},
            "allow_force_pushes": {"enabled": p.allow_force_pushes},
            "allow_deletions": {"enabled": p.allow_deletions},
            "block_creations": {"enabled": False},
            "required_conversation_resolution": {"enabled": False},
            "lock_branch": {"enabled": False},
            "allow_fork_syncing": {"enabled": False},
        }
        if p.strict or p.contexts:
            data["required_status_checks"] = {
                "url": f"{url}/required_status_checks", "strict": p.strict, "contexts": list(p.contexts),
                "contexts_url": f"{url}/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in p.contexts]}
        if p.required_pull_request_reviews:
            data["required_pull_request_reviews"] = {
                "url": f"{url}/required_pull_request_reviews", "dismiss_stale_reviews": False,
                "require_code_owner_reviews": False, "require_last_push_approval": False,
                "required_approving_review_count": p.required_approving_review_count,
                "bypass_pull_request_allowances": {"users": [self._user(u) for u in p.bypass], "teams": [],
                                                   "apps": []}}
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

    def _verification(self, commit: Commit) -> dict[str, Any]:
        if commit.sha in self._signed:
            return {"verified": True, "reason": "valid", "signature": _SIGNATURE,
                    "payload": f"tree {commit.tree}\n", "verified_at": _iso(commit.committer[2])}
        return {"verified": False, "reason": "unsigned", "signature": None, "payload": None, "verified_at": None}

    def _git_commit_json(self, commit: Commit) -> dict[str, Any]:
        return {
            "sha": commit.sha, "node_id": f"C_{commit.sha}", "url": f"{self._api}/git/commits/{commit.sha}",
            "html_url": f"{self._html}/commit/{commit.sha}", "author": self._person(commit.author),
            "committer": self._person(commit.committer),
            "tree": {"sha": commit.tree, "url": f"{self._api}/git/trees/{commit.tree}"},
            "message": commit.message,
            "parents": self._parents_json(commit, "git/commits"),
            "verification": self._verification(commit),
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
        # GitHub cuts recursive listings past its limits and says so; a client then walks the
        # subtrees itself, one non-recursive listing each (those are never cut here).
        entries, size, truncated = [], 0, False
        for mode, kind, item, blob_size, path in self.git.ls_tree(sha, recursive=recursive):
            entry: dict[str, Any] = {"path": path, "mode": mode, "type": kind, "sha": item}
            if kind == "blob":
                entry |= {"size": blob_size, "url": f"{self._api}/git/blobs/{item}"}
            elif kind == "tree":
                entry["url"] = f"{self._api}/git/trees/{item}"
            if recursive:
                size += len(json.dumps(entry)) + 1
                if len(entries) >= self._settings.tree_entries_limit or size > self._settings.tree_bytes_limit:
                    truncated = True
                    break
            entries.append(entry)
        return {"sha": sha, "url": f"{self._api}/git/trees/{sha}", "tree": entries, "truncated": truncated}
