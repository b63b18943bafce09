"""The GitHub emulator's branches, pull requests opened through the API, truncated trees, deployments and
comments, driven through PyGithub as the product calls them."""

import pytest
from github import GithubException
from github.Repository import Repository

from tests.sandbox.test_github_emulator import receiver  # noqa: F401 (a fixture)
from tests.sandbox.test_github_emulator_merging import api, direct_commit, gh, refused


def walk(repo: Repository, sha: str, prefix: str = "") -> set[str]:
    """Every file path of a tree, listed one non-recursive level at a time (what a client does when a
    recursive listing comes back truncated)."""
    paths = set()
    for entry in repo.get_git_tree(sha).tree:
        path = f"{prefix}{entry.path}"
        paths |= walk(repo, entry.sha, f"{path}/") if entry.type == "tree" else {path}
    return paths


# -- branches ----------------------------------------------------------------------------------

def test_branches_are_created_and_deleted_through_git_refs(github_emulator):
    repo = gh(github_emulator)
    head = github_emulator.branch_head()

    ref = repo.create_git_ref("refs/heads/fatcontroller/app/7", head)

    assert (ref.ref, ref.object.sha) == ("refs/heads/fatcontroller/app/7", head)
    assert repo.get_branch("fatcontroller/app/7").commit.sha == head
    assert refused(repo.create_git_ref, "refs/heads/fatcontroller/app/7", head) == (422, "Reference already exists")
    assert refused(repo.create_git_ref, "refs/heads/other", "1" * 40) == (422, "Object does not exist")

    ref.delete()

    assert refused(repo.get_branch, "fatcontroller/app/7") == (404, "Branch not found")
    again = api(github_emulator, "DELETE", "/git/refs/heads/fatcontroller/app/7")
    assert (again.status_code, again.json()["message"]) == (422, "Reference does not exist")
    default = api(github_emulator, "DELETE", "/git/refs/heads/master")
    assert default.status_code == 422 and github_emulator.branch_head() == head
    assert github_emulator.writes == {"refs_created": 1, "refs_deleted": 1}


def test_a_protected_branch_is_not_deleted_unless_deletions_are_allowed(github_emulator):
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/release", github_emulator.branch_head())
    github_emulator.protect_branch("release")

    assert refused(repo.get_git_ref("heads/release").delete) == (422, "Cannot delete this protected branch")
    github_emulator.protect_branch("release", allow_deletions=True)
    repo.get_git_ref("heads/release").delete()


def test_deleting_a_pr_branch_closes_the_pr_unmerged(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)

    repo.get_git_ref(f"heads/alice/change-{number}").delete()

    pull = repo.get_pull(number)
    assert (pull.state, pull.merged) == ("closed", False)


# -- pull requests opened through the API ------------------------------------------------------

def test_a_bot_opens_a_revert_pr_from_a_branch_it_made_and_merges_it(github_emulator, receiver):  # noqa: F811
    github_emulator.add_webhook(f"{receiver.url}/hook")
    repo = gh(github_emulator)
    revert = direct_commit(repo, {"README.md": "# reverted\n"}, 'Revert "Merge pull request #3"')
    repo.create_git_ref("refs/heads/fatcontroller/revert-3", revert)

    pull = repo.create_pull(base="master", head="fatcontroller/revert-3", title='Revert "Add a banner"',
                            body="Rolled back by the train.")

    assert (pull.user.login, pull.state, pull.title, pull.body) == (
        "deploy-bot", "open", 'Revert "Add a banner"', "Rolled back by the train.")
    assert (pull.head.ref, pull.head.sha, pull.base.ref, pull.head.label) == (
        "fatcontroller/revert-3", revert, "master", "acme:fatcontroller/revert-3")
    assert repo.get_pull(pull.number).mergeable is True
    assert [p.number for p in repo.get_pulls(state="open", head="acme:fatcontroller/revert-3")] == [pull.number]
    assert list(repo.get_pulls(state="open", head="acme:someone-else")) == []

    with pytest.raises(GithubException) as duplicate:
        repo.create_pull(base="master", head="fatcontroller/revert-3", title="Again")
    assert (duplicate.value.status, duplicate.value.data["errors"][0]["message"]) == (
        422, "A pull request already exists for acme:fatcontroller/revert-3.")

    repo.get_pull(pull.number).merge(merge_method="merge")

    assert [p.number for p in repo.get_pulls(state="closed", head="acme:fatcontroller/revert-3")] == [pull.number]
    assert list(repo.get_pulls(state="open", head="acme:fatcontroller/revert-3")) == []
    github_emulator.flush_webhooks()
    opened = [body for event, body in receiver.events if event == "pull_request" and body["action"] == "opened"]
    assert [body["pull_request"]["head"]["ref"] for body in opened] == ["fatcontroller/revert-3"]


def test_opening_a_pr_is_refused_as_github_refuses_it(github_emulator):
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/empty", github_emulator.branch_head())

    def errors(**kwargs: str) -> tuple[int, list]:
        with pytest.raises(GithubException) as caught:
            repo.create_pull(**{"base": "master", "title": "T", **kwargs})
        return caught.value.status, caught.value.data["errors"]

    assert errors(head="empty") == (422, [{"resource": "PullRequest", "code": "custom",
                                           "message": "No commits between master and empty"}])
    assert errors(head="no-such-branch") == (422, [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
    assert errors(head="empty", base="nope") == (422, [{"resource": "PullRequest", "field": "base",
                                                        "code": "invalid"}])


def test_a_draft_pr_does_not_merge(github_emulator):
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/wip", direct_commit(repo, {"wip.py": "1\n"}))

    pull = repo.create_pull(base="master", head="wip", title="WIP", draft=True)

    assert (pull.draft, repo.get_pull(pull.number).mergeable_state) == (True, "draft")
    assert refused(pull.merge) == (405, "Pull Request is still a draft")


def test_a_pr_is_closed_and_reopened_through_the_api(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    pull = gh(github_emulator).get_pull(number)

    pull.edit(state="closed", title="A, abandoned")
    assert (gh(github_emulator).get_pull(number).state, pull.title) == ("closed", "A, abandoned")
    pull.edit(state="open")
    assert gh(github_emulator).get_pull(number).state == "open"


# -- trees -------------------------------------------------------------------------------------

def test_recursive_trees_past_the_limit_are_truncated_and_can_be_walked(github_emulator):
    files = {f"src/pkg{i}/mod{j}.py": f"{i}{j}\n" for i in range(3) for j in range(3)}
    github_emulator.push(files)
    repo = gh(github_emulator)
    tree_sha = github_emulator.tree_of("master")
    everything = set(github_emulator.files_at("master"))

    whole = repo.get_git_tree(tree_sha, recursive=True)
    assert whole.truncated is False and len(whole.tree) == 11 + 4 + 1  # files, folders, app/

    github_emulator.settings(tree_entries_limit=5)
    cut = repo.get_git_tree(tree_sha, recursive=True)
    assert cut.truncated is True and [e.path for e in cut.tree] == [e.path for e in whole.tree][:5]
    assert walk(repo, tree_sha) == everything

    github_emulator.settings(tree_entries_limit=100_000, tree_bytes_limit=1000)
    by_size = repo.get_git_tree(tree_sha, recursive=True)
    assert by_size.truncated is True and 0 < len(by_size.tree) < len(whole.tree)


# -- deployments -------------------------------------------------------------------------------

def test_deployments_and_their_statuses_are_recorded_and_listed(github_emulator, receiver):  # noqa: F811
    github_emulator.add_webhook(f"{receiver.url}/hook")
    repo = gh(github_emulator)
    sha = github_emulator.branch_head()

    deployment = repo.create_deployment(ref=sha, environment="production", description="#1 Add a banner",
                                        auto_merge=False, required_contexts=[], payload={"deploy_id": 1},
                                        transient_environment=False, production_environment=True)
    deployment.create_status("in_progress", target_url="https://fc.acme.com/deploys/1", description="canarying")
    done = deployment.create_status("success", environment_url="https://app.acme.com", description="completed")

    assert (deployment.sha, deployment.ref, deployment.environment, deployment.payload) == (
        sha, sha, "production", {"deploy_id": 1})
    assert (deployment.creator.login, deployment.task, deployment.production_environment) == (
        "deploy-bot", "deploy", True)
    assert (done.state, done.environment_url, done.environment) == ("success", "https://app.acme.com", "production")
    assert [(s.state, s.target_url) for s in deployment.get_statuses()] == [
        ("success", ""), ("in_progress", "https://fc.acme.com/deploys/1")]
    [view] = github_emulator.deployments()
    assert (view.id, view.sha, view.state, view.description) == (deployment.id, sha, "success", "#1 Add a banner")
    assert [s.state for s in view.statuses] == ["in_progress", "success"]
    assert [d.id for d in repo.get_deployments(environment="production")] == [deployment.id]
    assert list(repo.get_deployments(sha="0" * 40)) == []
    github_emulator.flush_webhooks()
    assert [event for event, _ in receiver.events] == ["deployment", "deployment_status", "deployment_status"]


def test_a_status_logs_to_log_url_and_a_new_success_makes_the_last_one_inactive(github_emulator):
    repo = gh(github_emulator)
    first = repo.create_deployment(ref="master", auto_merge=False, required_contexts=[])
    first.create_status("success")
    second = repo.create_deployment(ref="master", auto_merge=False, required_contexts=[])

    answer = api(github_emulator, "POST", f"/deployments/{second.id}/statuses",
                 {"state": "success", "log_url": "https://fc.acme.com/deploys/2"}).json()

    assert answer["log_url"] == answer["target_url"] == "https://fc.acme.com/deploys/2"
    assert [d.state for d in github_emulator.deployments()] == ["inactive", "success"]


def test_a_pea_deployment_is_transient_and_made_inactive_when_released(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    pea = repo.create_deployment(ref=github_emulator.pr_head(number), environment="pea/sweet-pea",
                                 auto_merge=False, required_contexts=[], transient_environment=True,
                                 production_environment=False)
    pea.create_status("success", environment_url="https://sweet-pea.dev.acme.com")

    pea.create_status("inactive")

    [view] = github_emulator.deployments()
    assert (view.environment, view.transient_environment, view.production_environment) == (
        "pea/sweet-pea", True, False)
    assert [s.state for s in view.statuses] == ["success", "inactive"]


def test_deployments_are_refused_as_github_refuses_them(github_emulator):
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/behind", github_emulator.branch_head())
    github_emulator.push({"new.py": "1\n"})

    assert refused(repo.create_deployment, ref="nope") == (422, "No ref found for: nope")
    assert refused(repo.create_deployment, ref="master", required_contexts=["ci/jenkins"]) == (
        409, "Conflict: Commit status checks failed for master.")
    github_emulator.set_status("master", "ci/jenkins", "success")
    assert repo.create_deployment(ref="master", required_contexts=["ci/jenkins"]).sha == github_emulator.branch_head()

    merged = api(github_emulator, "POST", "/deployments", {"ref": "behind"})
    assert (merged.status_code, merged.json()) == (202, {"message": "Auto-merged master into behind on deployment."})
    assert github_emulator.log("behind", n=1)[0][2][1] == github_emulator.branch_head()
    bad = api(github_emulator, "POST", f"/deployments/{github_emulator.deployments()[0].id}/statuses",
              {"state": "exploded"})
    assert bad.status_code == 422


# -- comments ----------------------------------------------------------------------------------

def test_comments_on_a_pull_request_are_posted_edited_and_listed(github_emulator, receiver):  # noqa: F811
    github_emulator.add_webhook(f"{receiver.url}/hook")
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    pull = repo.get_pull(number)

    comment = pull.create_issue_comment("Merged by the train.")
    comment.edit("Merged by the train as abc123.")
    pull.merge(merge_method="merge")
    repo.get_issue(number).create_comment("Deployed: completed.")

    assert [c.body for c in repo.get_pull(number).get_issue_comments()] == [
        "Merged by the train as abc123.", "Deployed: completed."]
    assert repo.get_pull(number).comments == 2
    assert [(c.body, c.user) for c in github_emulator.comments(number)] == [
        ("Merged by the train as abc123.", "deploy-bot"), ("Deployed: completed.", "deploy-bot")]
    assert repo.get_issue(number).pull_request is not None
    assert api(github_emulator, "POST", "/issues/99/comments", {"body": "x"}).status_code == 404
    github_emulator.flush_webhooks()
    actions = [body["action"] for event, body in receiver.events if event == "issue_comment"]
    assert actions == ["created", "edited", "created"]
