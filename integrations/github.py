"""GitHub: open pull requests, merging one, and reverting a merge without undoing anyone else's work; and the
Deployments and pull request comments that report deploys and peas where developers look (DESIGN §10).

Every call runs PyGithub in a worker thread through `OutsideCaller` (one attempt with a timeout: the
client's own retries and throttling are switched off). Each public call is idempotent and re-reads
GitHub before it writes, so trying again, or a resume after a crash, never merges or reverts twice.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from github import Auth, Github, GithubException, InputGitTreeElement, UnknownObjectException
from github.GitCommit import GitCommit
from github.GitRef import GitRef
from github.GitTree import GitTree
from github.PullRequest import PullRequest as GithubPullRequest
from github.Repository import Repository

from integrations.outside import (
    CallPolicy,
    Conflict,
    Facade,
    NotFound,
    OutsideCaller,
    OutsideError,
    PermanentError,
    TransientError,
)

SYSTEM = "github"
SCAN_LIMIT = 500  # open pull requests one search looks through, newest first
REVERT_ATTEMPTS = 3  # times a revert is recomputed when the base branch moves under it
REVERT_BRANCH = "fatcontroller/revert-{number}"  # the branch of a revert that must go through a pull request

MergeMethod = Literal["merge", "squash", "rebase"]


NO_PATHS: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    author: str
    url: str  # html_url
    state: str  # open / closed
    merged: bool
    merge_sha: str | None  # the merge commit, once merged
    head_sha: str
    head_ref: str
    base_ref: str
    mergeable: bool | None  # None: unknown (GitHub still computing, or not fetched by a search)
    from_fork: bool
    created_at: datetime  # naive UTC
    # GitHub's `mergeable_state` (`behind`: the base requires it up to date; `blocked`: checks or reviews
    # missing; `clean`...) and its commit count; None when not fetched by a search
    mergeable_state: str | None = None
    commits: int | None = None


@dataclass(frozen=True)
class MergeResult:
    sha: str
    already: bool  # the pull request was merged before we asked (a resume after a crash)


@dataclass(frozen=True)
class RevertResult:
    # reverted: on the base branch now (directly, or through a revert pull request the bot merged);
    # already: found reverted; manual: later commits touched its files, people must revert it;
    # pull_request: the base only takes pull requests and the bot may not merge its revert pull request
    status: Literal["reverted", "already", "manual", "pull_request"]
    sha: str | None  # the revert commit on the base branch (None while it is not there)
    detail: str
    paths: tuple[str, ...] = ()  # reverted paths, or for "manual" the paths changed since the merge
    manual_url: str | None = None  # "manual": the merge commit to revert by hand; "pull_request": the revert PR
    pull_request: str | None = None  # the revert pull request it went through (its URL), if any


@dataclass(frozen=True)
class Deployment:
    """A GitHub Deployment: the commit it deploys, its environment and the payload it was created with."""

    id: int
    sha: str
    environment: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeploymentStatus:
    id: int
    state: str  # queued, pending, in_progress, success, failure, error, inactive
    environment_url: str


@dataclass(frozen=True)
class IssueComment:
    id: int
    body: str


DESCRIPTION_LIMIT = 140  # GitHub refuses a longer deployment (status) description


class NotMergeable(PermanentError):
    """GitHub refuses (or would refuse) the merge; `reason` says why in one of a few words."""

    REASONS = ("closed", "conflict", "head moved", "not mergeable", "base mismatch",
               "behind",  # the base requires pull requests to be up to date: update the branch first
               "checks pending")  # required status checks have not passed yet: look again later

    def __init__(self, number: int, reason: str, detail: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"not a reason a merge is refused for: {reason!r}")
        self.number = number
        self.reason = reason
        self.detail = detail
        super().__init__(SYSTEM, f"pull request #{number} cannot be merged: {detail}")


_FileEntry = tuple[str, str, str]  # mode, type, sha
_Files = dict[str, _FileEntry]  # path -> entry of every file (and submodule)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _server_message(exc: GithubException) -> str:
    data = exc.data
    message = (data.get("message") or data.get("data")) if isinstance(data, dict) else data
    return str(message or "no message")[:300]


def _refusal(message: str) -> str:
    """Why GitHub's 405 refused a merge, as one of `NotMergeable.REASONS`."""
    lowered = message.lower()
    if "up to date" in lowered:
        return "behind"
    if "required status check" in lowered and any(w in lowered for w in ("expected", "in progress", "pending")):
        return "checks pending"
    return "not mergeable"


class GitHub(Facade):
    """Pull requests and the base branch of one repository, for the deploy train."""

    def __init__(self, repo: str, base_branch: str, *, token: str | None,
                 api_url: str = "https://api.github.com", policy: CallPolicy | None = None,
                 timeout: float = 15.0, merge_method: MergeMethod = "merge") -> None:
        self.repo = repo
        self.base_branch = base_branch
        self.merge_method: MergeMethod = merge_method
        self._token = token
        self._api_url = api_url
        self._timeout = max(1, math.ceil(timeout))  # PyGithub insists on an int
        # PyGithub's connection object keeps the request being made in attributes: one client per thread.
        self._local = threading.local()
        self._caller = OutsideCaller(SYSTEM, self._classify, policy)

    # -- public API ----------------------------------------------------------------------------
    async def search_open_prs(self, text: str = "", limit: int = 25, *, within: float = 10.0) -> list[PullRequest]:
        """Open PRs against the base branch, newest first, matching a number ("123", "#123") or
        a case-insensitive substring of the title or the author's login; what was found within `within`
        seconds (the search stops there, in its thread too)."""
        return await self._caller.call("list open pull requests", self._search, text, limit, within)

    async def get_pr(self, number: int) -> PullRequest:
        return await self._caller.call(f"read pull request #{number}", self._get_pr, number)

    async def merge(self, number: int, head_sha: str) -> MergeResult:
        """Merge by the configured method, only if the head is still `head_sha`; a no-op if already merged.
        NotMergeable says why not ("behind": update the branch first; "checks pending": look again later)."""
        return await self._caller.call(f"merge pull request #{number}", self._merge, number, head_sha)

    async def update_branch(self, number: int, head_sha: str) -> None:
        """Ask GitHub to merge the base branch into the pull request's (head `head_sha`); GitHub moves the head
        in the background. A no-op when it is up to date already."""
        await self._caller.call(f"update the branch of #{number}", self._update_branch, number, head_sha)

    async def find_merge(self, number: int) -> str | None:
        """The merge commit of a merged pull request, None while it is not merged."""
        return await self._caller.call(f"read pull request #{number}", self._find_merge, number)

    async def branch_head(self) -> str:
        return await self._caller.call(f"read branch {self.base_branch}", self._branch_head)

    async def revert_merge(self, merge_sha: str, number: int, method: MergeMethod = "merge") -> RevertResult:
        """Undo what pull request `number` landed as `merge_sha` by `method` (a merge commit, a squash commit,
        or the tip of a rebased range), and only that: never anyone else's work (see the README)."""
        return await self._caller.call(f"revert the merge of #{number}", self._revert, merge_sha, number, method)

    # -- speculative builds (DESIGN §8) ---------------------------------------------------------------------
    async def make_candidate(self, branch: str, base_sha: str, number: int, head_sha: str,
                             head_label: str) -> str | None:
        """The commit of branch `branch` (created at `base_sha`) with pull request #number's head `head_sha`
        merged in (`POST /merges`), or None when they conflict (the branch is deleted then). Trying again, or
        after a crash, finds the branch and the merge already made, and makes neither twice."""
        return await self._caller.call(f"build a candidate of #{number} on {base_sha[:10]}", self._make_candidate,
                                       branch, base_sha, number, head_sha, head_label)

    async def land_candidate(self, sha: str, first_parent: str) -> bool:
        """Move the base branch to candidate `sha` by a fast-forward (`force: false`), if it still points at the
        candidate's first parent; False if it moved (the candidate is stale). True when it is there already."""
        return await self._caller.call(f"land {sha[:10]} on {self.base_branch}", self._land_candidate, sha,
                                       first_parent)

    async def drop_candidate(self, branch: str) -> None:
        """Delete a candidate's branch (gone already: nothing to do)."""
        await self._caller.call(f"delete branch {branch}", self._drop_candidate, branch)

    async def find_revert(self, merge_sha: str, *, depth: int = 100) -> str | None:
        """The commit among the newest `depth` of the base branch that reverts `merge_sha`, if any."""
        return await self._caller.call(f"look for a revert of {merge_sha[:12]}", self._find_revert,
                                       merge_sha, depth)

    # -- reporting (DESIGN §10): Deployments and comments ------------------------------------------
    async def deployments(self, environment: str, *, sha: str | None = None, limit: int = 30) -> list[Deployment]:
        """The newest `limit` deployments of `environment` (of commit `sha`, when given), newest first."""
        return await self._caller.call(f"list deployments of {environment}", self._deployments, environment, sha,
                                       limit)

    async def create_deployment(self, sha: str, environment: str, *, payload: dict[str, Any], description: str,
                                production: bool, transient: bool) -> Deployment:
        """A new deployment of commit `sha` (never merging anything into it, whatever its commit statuses say)."""
        return await self._caller.call(f"create a deployment of {sha[:12]} in {environment}",
                                       self._create_deployment, sha, environment, payload, description, production,
                                       transient)

    async def deployment_statuses(self, deployment_id: int, *, limit: int = 30) -> list[DeploymentStatus]:
        """The newest `limit` statuses of a deployment, newest first."""
        return await self._caller.call(f"list the statuses of deployment {deployment_id}",
                                       self._deployment_statuses, deployment_id, limit)

    async def create_deployment_status(self, deployment_id: int, state: str, *, description: str = "",
                                       log_url: str | None = None, environment_url: str | None = None) -> None:
        await self._caller.call(f"set deployment {deployment_id} {state}", self._create_deployment_status,
                                deployment_id, state, description, log_url, environment_url)

    async def issue_comments(self, number: int) -> list[IssueComment]:
        """Every comment on issue (or pull request) `number`, oldest first."""
        return await self._caller.call(f"list the comments of #{number}", self._issue_comments, number)

    async def create_issue_comment(self, number: int, body: str) -> None:
        await self._caller.call(f"comment on #{number}", self._create_issue_comment, number, body)

    # -- in worker threads ---------------------------------------------------------------------
    def _repo(self) -> Repository:
        repo = getattr(self._local, "repo", None)
        if repo is None:
            client = Github(
                base_url=self._api_url, auth=Auth.Token(self._token) if self._token else None,
                timeout=self._timeout, retry=None, seconds_between_requests=0, seconds_between_writes=0,
                per_page=100, lazy=True,  # lazy: objects are fetched on first use, not on creation
            )
            repo = self._local.repo = client.get_repo(self.repo)
        return repo

    def _search(self, text: str, limit: int, within: float) -> list[PullRequest]:
        stop = time.monotonic() + within
        needle = text.strip().lower()
        number = needle.removeprefix("#").strip()

        def matches(pr: PullRequest) -> bool:
            return (not needle or (number.isdigit() and int(number) == pr.number)
                    or needle in pr.title.lower() or needle in pr.author.lower())

        pulls = self._repo().get_pulls(state="open", base=self.base_branch, sort="created", direction="desc")
        prs = (self._pull_request(pull, detailed=False) for pull in itertools.islice(pulls, SCAN_LIMIT))
        # Lazy all the way down: pages are fetched only until `limit` matches are found, or until whoever
        # asked has stopped waiting.
        found: list[PullRequest] = []
        for pr in prs:
            if len(found) >= limit or time.monotonic() > stop:
                break
            if matches(pr):
                found.append(pr)
        return found

    def _get_pr(self, number: int) -> PullRequest:
        return self._pull_request(self._read_pull(number), detailed=True)

    def _read_pull(self, number: int) -> GithubPullRequest:
        """A pull request, fully read now (PyGithub objects are lazy)."""
        try:
            pull = self._repo().get_pull(number)
            pull.complete()
        except UnknownObjectException:
            raise NotFound(SYSTEM, f"no pull request #{number} in {self.repo}", status=404) from None
        return pull

    def _pull_request(self, pull: GithubPullRequest, *, detailed: bool) -> PullRequest:
        # Items of a list lack `merged` and `mergeable`: touching them would fetch each PR again.
        merged = pull.merged_at is not None
        head_repo = pull.head.repo
        return PullRequest(
            number=pull.number, title=pull.title, author=pull.user.login, url=pull.html_url,
            state=pull.state, merged=merged, merge_sha=pull.merge_commit_sha if merged else None,
            head_sha=pull.head.sha, head_ref=pull.head.ref, base_ref=pull.base.ref,
            mergeable=pull.mergeable if detailed else None,
            from_fork=head_repo is None or head_repo.full_name.lower() != self.repo.lower(),
            created_at=_naive_utc(pull.created_at),
            mergeable_state=pull.mergeable_state if detailed else None,
            commits=pull.commits if detailed else None,
        )

    def _merge(self, number: int, head_sha: str) -> MergeResult:
        pull = self._read_pull(number)
        self._check_base(pull)
        if pull.merged_at is not None:
            return MergeResult(pull.merge_commit_sha, already=True)
        self._check_mergeable(pull, head_sha)
        try:
            status = pull.merge(sha=head_sha, merge_method=self.merge_method)
        except GithubException as exc:
            if exc.status == 409:
                raise NotMergeable(number, "head moved", _server_message(exc)) from exc
            if exc.status != 405:
                raise
            # Refused: read the pull request again to say why (or find it merged meanwhile).
            message = _server_message(exc)
            if "base branch was modified" in message.lower():
                raise TransientError(SYSTEM, message, status=405) from exc
            again = self._read_pull(number)
            if again.merged_at is not None:
                return MergeResult(again.merge_commit_sha, already=True)
            self._check_mergeable(again, head_sha)
            raise NotMergeable(number, _refusal(message), message) from exc
        return MergeResult(status.sha, already=False)

    def _update_branch(self, number: int, head_sha: str) -> None:
        pull = self._read_pull(number)
        self._check_mergeable(pull, head_sha, behind_ok=True)
        try:
            pull.update_branch(expected_head_sha=head_sha)
        except GithubException as exc:
            if exc.status != 422:
                raise
            message = _server_message(exc)
            lowered = message.lower()
            if "no new commits" in lowered:
                return
            if "expected head sha" in lowered:
                raise NotMergeable(number, "head moved", message) from exc
            raise NotMergeable(number, "conflict" if "conflict" in lowered else "not mergeable", message) from exc

    def _check_base(self, pull: GithubPullRequest) -> None:
        if pull.base.ref != self.base_branch:
            raise NotMergeable(pull.number, "base mismatch",
                               f"it targets {pull.base.ref}, not {self.base_branch}")

    def _check_mergeable(self, pull: GithubPullRequest, head_sha: str, *, behind_ok: bool = False) -> None:
        if pull.state != "open":
            raise NotMergeable(pull.number, "closed", "it is closed")
        if pull.head.sha != head_sha:
            raise NotMergeable(pull.number, "head moved",
                               f"its head moved from {head_sha[:12]} to {pull.head.sha[:12]}")
        if pull.mergeable is False:
            raise NotMergeable(pull.number, "conflict", f"it conflicts with {self.base_branch}")
        if pull.mergeable_state == "behind" and not behind_ok:
            raise NotMergeable(pull.number, "behind", f"{self.base_branch} requires it to be up to date")

    def _find_merge(self, number: int) -> str | None:
        pull = self._read_pull(number)
        return pull.merge_commit_sha if pull.merged_at is not None else None

    def _branch_head(self) -> str:
        return self._repo().get_git_ref(f"heads/{self.base_branch}").object.sha

    def _make_candidate(self, branch: str, base_sha: str, number: int, head_sha: str,
                        head_label: str) -> str | None:
        repo = self._repo()
        ref = self._ref(repo, branch)
        if ref is None:
            try:
                ref = repo.create_git_ref(f"refs/heads/{branch}", base_sha)
            except GithubException as exc:
                if exc.status != 422:  # 422: it exists already (made by a try that did not hear back)
                    raise
                ref = self._ref(repo, branch)
                if ref is None:
                    raise TransientError(SYSTEM, f"branch {branch} was made and is gone again") from exc
        at = ref.object.sha
        if at != base_sha:
            parents = [p.sha for p in repo.get_git_commit(at).parents]
            if parents == [base_sha, head_sha]:
                return at  # merged already
            ref.edit(base_sha, force=True)  # a candidate of another base or head: ours is made afresh
        try:
            merged = repo.merge(branch, head_sha, f"Merge pull request #{number} from {head_label}")
        except GithubException as exc:
            if exc.status != 409:
                raise
            ref.delete()  # a conflict: no candidate, and no branch left behind
            return None
        if merged is None:  # 204: the head is in the base already; the candidate is the base itself
            return base_sha
        return merged.sha

    def _land_candidate(self, sha: str, first_parent: str) -> bool:
        repo = self._repo()
        ref = self._ref(repo, self.base_branch)
        if ref is None:
            raise NotFound(SYSTEM, f"branch {self.base_branch} does not exist")
        if ref.object.sha == sha:
            return True
        if ref.object.sha != first_parent:
            return False
        try:
            ref.edit(sha, force=False)
        except GithubException as exc:
            if exc.status != 422:  # 422: not a fast-forward any more, the branch moved meanwhile
                raise
            return self._ref(repo, self.base_branch) is not None and self._branch_head() == sha
        return True

    def _drop_candidate(self, branch: str) -> None:
        ref = self._ref(self._repo(), branch)
        if ref is not None:
            with contextlib.suppress(UnknownObjectException):
                ref.delete()

    def _find_revert(self, merge_sha: str, depth: int) -> str | None:
        marker = f"This reverts commit {merge_sha}"
        for commit in itertools.islice(self._repo().get_commits(sha=self.base_branch), depth):
            if marker in commit.commit.message:
                return commit.sha
        return None

    def _revert(self, merge_sha: str, number: int, method: MergeMethod) -> RevertResult:
        repo = self._repo()
        try:
            merge = repo.get_git_commit(merge_sha)
        except UnknownObjectException:
            raise NotFound(SYSTEM, f"no commit {merge_sha} in {self.repo}", status=404) from None
        before = self._landed_on(repo, merge, number, method)
        title = merge.message.split("\n", 1)[0]
        message = f'Revert "{title}"\n\nThis reverts commit {merge_sha}, reversing\nchanges made to {before.sha}.'
        for _ in range(REVERT_ATTEMPTS):
            done = self._find_revert(merge_sha, 100)
            if done is not None:
                return RevertResult("already", done, f"#{number} was already reverted by {done[:12]}")
            ref = repo.get_git_ref(f"heads/{self.base_branch}")
            if ref.object.sha == merge_sha:
                # Nothing landed since: the tree before the merge is exactly the revert.
                head, tree, paths = merge, before.tree, NO_PATHS
                detail = f"{self.base_branch} is back to the tree it had before #{number} was merged"
            else:
                head = repo.get_git_commit(ref.object.sha)
                plan = self._undo_tree(repo, merge, before, head, number)
                if isinstance(plan, RevertResult):
                    return plan
                tree, paths = plan
                detail = (f"reverted the changes of #{number} to {len(paths)} file(s); "
                          f"the commits that landed after it are kept")
            commit = repo.create_git_commit(message, tree, [head])
            try:
                ref.edit(commit.sha, force=False)
            except GithubException as exc:
                if exc.status != 422:
                    raise
                refused = _server_message(exc)
                if "fast forward" in refused.lower():  # the branch moved again: look again
                    continue
                # Branch protection or a signing rule: the change must go through a pull request.
                return self._revert_by_pull_request(repo, commit, number, message, detail, paths, refused)
            return RevertResult("reverted", commit.sha, detail, paths)
        raise Conflict(SYSTEM, f"{self.base_branch} kept moving while reverting #{number}; try again")

    def _landed_on(self, repo: Repository, landed: GitCommit, number: int, method: MergeMethod) -> GitCommit:
        """The base branch's commit before the pull request landed: a merge commit's first parent, a squash
        commit's parent, or the parent of the first commit of a rebased range."""
        if not landed.parents:
            raise PermanentError(SYSTEM, f"{landed.sha[:12]} has no parent: there is nothing to revert to")
        steps = self._read_pull(number).commits if method == "rebase" and len(landed.parents) == 1 else 1
        commit = landed
        for _ in range(steps):
            if len(commit.parents) != 1 and commit is not landed:
                raise PermanentError(SYSTEM, f"{commit.sha[:12]}, rebased from #{number}, is a merge commit: "
                                             "the range it landed as cannot be told apart")
            commit = repo.get_git_commit(commit.parents[0].sha)
        return commit

    def _revert_by_pull_request(self, repo: Repository, commit: GitCommit, number: int, message: str, detail: str,
                                paths: tuple[str, ...], refused: str) -> RevertResult:
        """Put the revert on a branch of its own, open (or reuse) a pull request for it and merge it if allowed."""
        branch = REVERT_BRANCH.format(number=number)
        existing = self._ref(repo, branch)
        if existing is None:
            repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
        else:
            existing.edit(commit.sha, force=True)  # ours: a retry recomputes it
        owner = self.repo.split("/", 1)[0]
        opened = list(itertools.islice(repo.get_pulls(state="open", head=f"{owner}:{branch}",
                                                      base=self.base_branch), 1))
        why = f"{self.base_branch} refused the revert of #{number} pushed directly ({refused})"
        pull = opened[0] if opened else repo.create_pull(
            base=self.base_branch, head=branch, title=message.split("\n", 1)[0],
            body=f"{message}\n\nOpened by Fat Controller: {why}.")
        title = f"{pull.title} (#{pull.number})"
        try:
            status = pull.merge(commit_title=title, commit_message=message.split("\n", 2)[2],
                                merge_method=self.merge_method, sha=commit.sha)
        except GithubException as exc:
            if exc.status not in (405, 409, 422):
                raise
            return RevertResult(
                "pull_request", None,
                f"{why}; the bot opened revert pull request #{pull.number} but may not merge it "
                f"({_server_message(exc)}): merge it, then press Retry", paths,
                manual_url=pull.html_url, pull_request=pull.html_url)
        with contextlib.suppress(GithubException):  # tidying up: a branch left behind harms nothing
            if (merged := self._ref(repo, branch)) is not None:
                merged.delete()
        return RevertResult("reverted", status.sha, f"{detail}, through revert pull request #{pull.number}", paths,
                            pull_request=pull.html_url)

    @staticmethod
    def _ref(repo: Repository, branch: str) -> GitRef | None:
        """A branch's ref, read now (a lazy one would be written to through the URL that only reads it)."""
        try:
            ref = repo.get_git_ref(f"heads/{branch}")
            ref.complete()
        except UnknownObjectException:
            return None
        return ref

    def _undo_tree(self, repo: Repository, merge: GitCommit, before: GitCommit, head: GitCommit,
                   number: int) -> tuple[GitTree, tuple[str, ...]] | RevertResult:
        """The head's tree with this merge's changes undone, or "manual" when later commits touched them.

        Only the directories the pull request changed are listed (one level at a time), so a large repository
        costs a few calls and GitHub's truncation of big recursive listings never hides a file."""
        old, new = self._changes(repo, before.tree.sha, merge.tree.sha)
        changed = tuple(sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p)))
        now = self._entries_at(repo, head.tree.sha, changed)
        touched = tuple(p for p in changed if now.get(p) != new.get(p))
        if touched:
            return RevertResult(
                "manual", None,
                f"{', '.join(touched)} changed on {self.base_branch} after #{number} was merged, so its "
                f"changes cannot be reverted automatically: revert {merge.sha[:12]} by hand",
                paths=touched, manual_url=merge.html_url,
            )
        if not changed:
            return head.tree, ()
        elements = [
            InputGitTreeElement(path, *old[path][:2], sha=old[path][2]) if path in old
            else InputGitTreeElement(path, *new[path][:2], sha=None)  # added by the merge: delete it
            for path in changed
        ]
        return repo.create_git_tree(elements, base_tree=head.tree), changed

    def _level(self, repo: Repository, sha: str) -> dict[str, _FileEntry]:
        """One directory: name -> entry."""
        tree = repo.get_git_tree(sha)
        if tree.truncated:  # past 100,000 entries in one directory: nothing sensible can be done through the API
            raise PermanentError(SYSTEM, f"GitHub lists tree {sha[:12]} only in part")
        return {e.path: (e.mode, e.type, e.sha) for e in tree.tree}

    def _flatten(self, repo: Repository, entry: _FileEntry, path: str) -> _Files:
        """The files at or under `path`: one recursive listing, or a walk when GitHub truncates it."""
        if entry[1] != "tree":
            return {path: entry}
        tree = repo.get_git_tree(entry[2], recursive=True)
        if not tree.truncated:
            return {f"{path}/{e.path}": (e.mode, e.type, e.sha) for e in tree.tree if e.type != "tree"}
        files: _Files = {}
        for name, child in self._level(repo, entry[2]).items():
            files.update(self._flatten(repo, child, f"{path}/{name}"))
        return files

    def _changes(self, repo: Repository, old_sha: str, new_sha: str, prefix: str = "") -> tuple[_Files, _Files]:
        """The files of two trees where they differ, descending only into directories that differ."""
        old_level, new_level = self._level(repo, old_sha), self._level(repo, new_sha)
        old: _Files = {}
        new: _Files = {}
        for name in sorted(old_level.keys() | new_level.keys()):
            before, after = old_level.get(name), new_level.get(name)
            if before == after:
                continue
            path = f"{prefix}{name}"
            if before and after and before[1] == after[1] == "tree":
                sub_old, sub_new = self._changes(repo, before[2], after[2], f"{path}/")
            else:
                sub_old = self._flatten(repo, before, path) if before else {}
                sub_new = self._flatten(repo, after, path) if after else {}
            old.update(sub_old)
            new.update(sub_new)
        return old, new

    def _entries_at(self, repo: Repository, root: str, paths: tuple[str, ...]) -> _Files:
        """The entries of a tree at `paths`, listing only the directories on the way to them."""
        levels: dict[str, dict[str, _FileEntry] | None] = {"": self._level(repo, root)}

        def level(directory: str) -> dict[str, _FileEntry] | None:
            if directory not in levels:
                parent, _, name = directory.rpartition("/")
                entry = (level(parent) or {}).get(name)
                levels[directory] = self._level(repo, entry[2]) if entry and entry[1] == "tree" else None
            return levels[directory]

        found: _Files = {}
        for path in paths:
            directory, _, name = path.rpartition("/")
            entry = (level(directory) or {}).get(name)
            if entry is not None and entry[1] != "tree":
                found[path] = entry
        return found

    def _deployments(self, environment: str, sha: str | None, limit: int) -> list[Deployment]:
        found = self._repo().get_deployments(environment=environment, **({"sha": sha} if sha else {}))
        return [Deployment(d.id, d.sha, d.environment, d.payload if isinstance(d.payload, dict) else {})
                for d in itertools.islice(found, limit)]

    def _create_deployment(self, sha: str, environment: str, payload: dict[str, Any], description: str,
                           production: bool, transient: bool) -> Deployment:
        # auto_merge off and no required contexts: a report must never change the repository, nor wait for CI
        created = self._repo().create_deployment(
            ref=sha, environment=environment, auto_merge=False, required_contexts=[], payload=payload,
            description=description[:DESCRIPTION_LIMIT], production_environment=production,
            transient_environment=transient)
        return Deployment(created.id, created.sha, created.environment, payload)

    def _deployment_statuses(self, deployment_id: int, limit: int) -> list[DeploymentStatus]:
        _, data = self._repo().requester.requestJsonAndCheck(
            "GET", f"/repos/{self.repo}/deployments/{deployment_id}/statuses", parameters={"per_page": limit})
        return [DeploymentStatus(int(s["id"]), str(s["state"]), str(s.get("environment_url") or ""))
                for s in (data if isinstance(data, list) else [])]

    def _create_deployment_status(self, deployment_id: int, state: str, description: str, log_url: str | None,
                                  environment_url: str | None) -> None:
        # Raw, because PyGithub's create_status knows only target_url, which log_url replaced.
        body: dict[str, Any] = {"state": state, "description": description[:DESCRIPTION_LIMIT]}
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        self._repo().requester.requestJsonAndCheck(
            "POST", f"/repos/{self.repo}/deployments/{deployment_id}/statuses", input=body)

    def _issue_comments(self, number: int) -> list[IssueComment]:
        return [IssueComment(c.id, c.body or "") for c in self._repo().get_issue(number).get_comments()]

    def _create_issue_comment(self, number: int, body: str) -> None:
        self._repo().get_issue(number).create_comment(body)

    # -- errors --------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _classify(self, exc: BaseException) -> OutsideError | None:
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.RetryError)):
            return TransientError(SYSTEM, self._scrub(f"{type(exc).__name__}: {exc}"))
        if not isinstance(exc, GithubException):
            return None
        status = exc.status
        message = self._scrub(f"HTTP {status}: {_server_message(exc)}")
        headers = exc.headers or {}
        rate_limited = status == 429 or (status == 403 and (
            "rate limit" in message.lower() or headers.get("x-ratelimit-remaining") == "0"))
        if status >= 500 or rate_limited:
            return TransientError(SYSTEM, message, status=status)
        if status == 404:
            return NotFound(SYSTEM, message, status=status)
        if status in (405, 409, 422):
            return Conflict(SYSTEM, message, status=status)
        if status in (401, 403):
            return PermanentError(SYSTEM, f"bad credentials or missing permission ({message})", status=status)
        return PermanentError(SYSTEM, message, status=status)

    # -- checks for `fatcontroller doctor`: what the token may do, read without writing anything ---------------
    @dataclass(frozen=True)
    class Access:
        """Whose GITHUB_TOKEN is, its scopes, and what GitHub lets it do in the repository."""

        login: str | None  # the token's user; None when GitHub will not say (an app's installation token)
        scopes: tuple[str, ...] | None  # a classic token's X-OAuth-Scopes; None: a token without scopes
        visible: bool  # False: the repository answers 404 (missing, or hidden from this token)
        permissions: dict[str, bool]  # the repository's `permissions` for this token: admin, push, pull...
        merge_methods: dict[str, bool | None]  # merge, squash, rebase -> allowed; None: GitHub did not say
        default_branch: str | None

    @dataclass(frozen=True)
    class BranchRules:
        """The base branch, and what its protection requires of a merge or a push."""

        exists: bool
        protected: bool
        refused: str | None = None  # why the protection's rules could not be read (they exist: `protected`)
        pull_requests: bool = False  # changes only through pull requests
        bypass: tuple[str, ...] = ()  # logins allowed to push without a pull request
        signatures: bool = False
        up_to_date: bool = False  # required_status_checks.strict
        linear_history: bool = False
        enforce_admins: bool = True

    _MERGE_SETTINGS = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}

    @property
    def api_url(self) -> str:
        return self._api_url

    async def access(self) -> GitHub.Access:
        """The token's user and scopes, and its permissions in the repository; PermanentError (401) if refused."""
        return await self._caller.call("check the token", self._access)

    async def branch_rules(self) -> GitHub.BranchRules:
        """The base branch and its protection (GET .../protection needs admin: a 403 is reported, not raised)."""
        return await self._caller.call(f"read the protection of {self.base_branch}", self._branch_rules)

    def _access(self) -> GitHub.Access:
        requester = self._repo().requester
        try:
            headers, user = requester.requestJsonAndCheck("GET", "/user")
            login: str | None = user.get("login")
        except GithubException as exc:
            if exc.status != 403:  # an app's installation token may not read /user; anything else is the token
                raise
            headers, login = exc.headers or {}, None
        scopes = headers.get("x-oauth-scopes")
        granted = None if scopes is None else tuple(s.strip() for s in scopes.split(",") if s.strip())
        try:
            _, data = requester.requestJsonAndCheck("GET", f"/repos/{self.repo}")
        except UnknownObjectException:
            return GitHub.Access(login, granted, False, {}, dict.fromkeys(self._MERGE_SETTINGS), None)
        permissions = {str(k): bool(v) for k, v in (data.get("permissions") or {}).items()}
        methods = {method: (None if data.get(setting) is None else bool(data[setting]))
                   for method, setting in self._MERGE_SETTINGS.items()}
        return GitHub.Access(login, granted, True, permissions, methods, data.get("default_branch"))

    def _branch_rules(self) -> GitHub.BranchRules:
        requester = self._repo().requester
        branch = f"/repos/{self.repo}/branches/{self.base_branch}"  # a `/` in a branch's name stays as it is
        try:
            _, data = requester.requestJsonAndCheck("GET", branch)
        except UnknownObjectException:
            return GitHub.BranchRules(exists=False, protected=False)
        if not data.get("protected"):  # anyone who can read the branch sees this; the rules need admin
            return GitHub.BranchRules(exists=True, protected=False)
        try:
            _, rules = requester.requestJsonAndCheck("GET", f"{branch}/protection")
        except GithubException as exc:
            if exc.status not in (403, 404):
                raise
            # reading the rules needs admin rights (fine-grained: Administration: read)
            return GitHub.BranchRules(exists=True, protected=True,
                                      refused=self._scrub(f"HTTP {exc.status}: {_server_message(exc)}"))

        def enabled(key: str) -> bool:
            return bool((rules.get(key) or {}).get("enabled"))

        reviews = rules.get("required_pull_request_reviews")
        allowed = ((reviews or {}).get("bypass_pull_request_allowances") or {}).get("users") or []
        return GitHub.BranchRules(
            exists=True, protected=True, pull_requests=reviews is not None,
            bypass=tuple(str(u.get("login")) for u in allowed), signatures=enabled("required_signatures"),
            up_to_date=bool((rules.get("required_status_checks") or {}).get("strict")),
            linear_history=enabled("required_linear_history"),
            enforce_admins=enabled("enforce_admins") if "enforce_admins" in rules else True)
