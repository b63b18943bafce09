"""The GitHub emulator speaks GitHub's REST shapes to PyGithub and posts GitHub's webhooks."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aiohttp import web
from github import Auth, Github, GithubException, InputGitTreeElement
from github.Repository import Repository

from sandbox.github import GitHubEmulator
from sandbox.server import ThreadedServer


class HookReceiver(ThreadedServer):
    """Records the webhooks posted to /hook."""

    def __init__(self) -> None:
        super().__init__("hooks")
        self.events: list[tuple[str, dict[str, Any]]] = []

    def build_app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            self.events.append((request.headers["X-GitHub-Event"], await request.json()))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        return app


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver().start()
    yield server
    server.stop()


def client(emulator: GitHubEmulator, per_page: int = 30) -> Repository:
    return Github(base_url=emulator.url, auth=Auth.Token("any"), retry=None, per_page=per_page,
                  seconds_between_requests=0, seconds_between_writes=0).get_repo(emulator.repo)


def test_pull_requests_are_paged_with_link_headers(github_emulator):
    numbers = [github_emulator.create_pr(f"Change {i}", {f"f{i}.py": "x\n"}) for i in range(5)]
    github_emulator.close_pr(numbers[0])
    repo = client(github_emulator, per_page=2)

    assert [p.number for p in repo.get_pulls(state="open")] == numbers[:0:-1]
    assert [p.number for p in repo.get_pulls(state="closed")] == [numbers[0]]
    assert sorted(p.number for p in repo.get_pulls(state="all")) == numbers
    assert github_emulator.requests.count(("GET", "/repos/acme/app/pulls")) == 2 + 1 + 3


def test_mergeability_is_computed_by_git(github_emulator):
    first = github_emulator.create_pr("A", {"README.md": "# A\n"})
    second = github_emulator.create_pr("B", {"README.md": "# B\n"})
    repo = client(github_emulator)
    assert repo.get_pull(second).mergeable is True

    repo.get_pull(first).merge(merge_method="merge")

    pull = repo.get_pull(second)
    assert (pull.mergeable, pull.mergeable_state) == (False, "dirty")
    with pytest.raises(GithubException) as caught:
        pull.merge(merge_method="merge")
    assert caught.value.status == 405
    assert repo.get_pull(first).is_merged() and not pull.is_merged()


def test_merge_with_a_stale_head_sha_is_a_conflict(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    stale = github_emulator.pr_head(number)
    github_emulator.push_pr(number, {"a.py": "2\n"})

    with pytest.raises(GithubException) as caught:
        client(github_emulator).get_pull(number).merge(sha=stale, merge_method="merge")

    assert caught.value.status == 409 and "Head branch was modified" in caught.value.data["message"]


def test_ref_updates_must_fast_forward_unless_forced(github_emulator):
    old = github_emulator.branch_head()
    new = github_emulator.push({"a.py": "1\n"})
    ref = client(github_emulator).get_git_ref("heads/master")

    with pytest.raises(GithubException) as caught:
        ref.edit(old)
    assert (caught.value.status, caught.value.data["message"]) == (422, "Update is not a fast forward")
    assert github_emulator.branch_head() == new

    ref.edit(old, force=True)
    assert github_emulator.branch_head() == old


def test_trees_and_commits_are_built_from_a_base_tree(github_emulator):
    repo = client(github_emulator)
    head = repo.get_git_commit(github_emulator.branch_head())
    base_tree = repo.get_git_tree(head.tree.sha, recursive=True)

    tree = repo.create_git_tree([
        InputGitTreeElement("app/main.py", "100644", "blob", sha=None),
        InputGitTreeElement("docs/deep/guide.md", "100644", "blob", content="guide\n"),
    ], base_tree=base_tree)
    commit = repo.create_git_commit("Docs", tree, [head])
    repo.get_git_ref("heads/master").edit(commit.sha)

    assert github_emulator.files_at("master") == {"README.md": "# app\n", "docs/deep/guide.md": "guide\n"}
    listed = repo.get_git_tree(tree.sha, recursive=True)
    assert {(e.path, e.type) for e in listed.tree} == {
        ("README.md", "blob"), ("docs", "tree"), ("docs/deep", "tree"), ("docs/deep/guide.md", "blob")}
    assert [c.commit.message for c in repo.get_commits(sha="master")] == ["Docs", "Initial commit"]
    assert github_emulator.writes == {"trees": 1, "commits": 1, "ref_updates": 1}


def test_unknown_things_are_github_shaped_404s(github_emulator):
    for path in ("/repos/acme/other", "/repos/acme/app/pulls/7", "/repos/acme/app/git/ref/heads/nope",
                 "/repos/acme/app/git/commits/" + "0" * 40, "/nothing/here"):
        answer = requests.get(github_emulator.url + path, timeout=5)
        assert (answer.status_code, answer.json()["message"]) == (404, "Not Found"), path


def test_webhooks_announce_pull_requests_and_pushes_to_the_base_branch(github_emulator, receiver):
    github_emulator.add_webhook(f"{receiver.url}/hook")
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    head = github_emulator.push_pr(number, {"a.py": "2\n"})
    before = github_emulator.branch_head()
    merge = client(github_emulator).get_pull(number).merge(merge_method="merge").sha

    github_emulator.flush_webhooks()

    kinds = [(event, body.get("action")) for event, body in receiver.events]
    assert kinds == [("pull_request", "opened"), ("pull_request", "synchronize"), ("push", None),
                     ("pull_request", "closed")]
    assert receiver.events[1][1]["pull_request"]["head"]["sha"] == head
    push = receiver.events[2][1]
    assert (push["ref"], push["before"], push["after"]) == ("refs/heads/master", before, merge)
    assert push["head_commit"]["id"] == merge and push["repository"]["full_name"] == "acme/app"
    assert receiver.events[3][1]["pull_request"]["merged"] is True


def test_a_failing_webhook_does_not_stop_the_others(github_emulator, receiver):
    github_emulator.add_webhook("http://127.0.0.1:9/unreachable")
    github_emulator.add_webhook(f"{receiver.url}/hook")

    sha = github_emulator.push({"a.py": "1\n"})
    github_emulator.flush_webhooks()

    assert [d.status is None for d in github_emulator.deliveries] == [True, False]
    assert [(event, body["after"]) for event, body in receiver.events] == [("push", sha)]
