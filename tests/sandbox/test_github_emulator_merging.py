"""The GitHub emulator merges as GitHub does: merge methods, branch protection, update-branch, POST /merges,
and pull requests merged by a push that contains their head; all driven through PyGithub."""

import time
from typing import Any

import pytest
import requests
from github import Auth, Github, GithubException, InputGitTreeElement
from github.Repository import Repository

from sandbox.github import GitHubEmulator
from tests.sandbox.test_github_emulator import receiver  # noqa: F401 (a fixture)


def gh(emulator: GitHubEmulator, token: str = "any") -> Repository:
    return Github(base_url=emulator.url, auth=Auth.Token(token), retry=None, seconds_between_requests=0,
                  seconds_between_writes=0).get_repo(emulator.repo)


def api(emulator: GitHubEmulator, method: str, path: str, body: dict[str, Any] | None = None,
        token: str = "any") -> requests.Response:
    """A raw request, for what PyGithub does not expose (an answer's message, a field it does not send)."""
    return requests.request(method, f"{emulator.url}/repos/{emulator.repo}{path}", json=body, timeout=10,
                            headers={"Authorization": f"token {token}"})


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(GithubException) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.data["message"]


def direct_commit(repo: Repository, files: dict[str, str], message: str = "Direct change") -> str:
    """A commit on the base branch's head made through the git database API (not on any branch yet)."""
    head = repo.get_git_commit(repo.get_git_ref("heads/master").object.sha)
    tree = repo.create_git_tree([InputGitTreeElement(path, "100644", "blob", content=text)
                                 for path, text in files.items()], base_tree=head.tree)
    return repo.create_git_commit(message, tree, [head]).sha


# -- merge methods -----------------------------------------------------------------------------

def test_squash_merge_is_one_commit_on_the_base_head_with_the_merged_tree(github_emulator):
    number = github_emulator.create_pr("Add a banner", {"banner.py": "1\n"})
    github_emulator.push_pr(number, {"banner.py": "2\n"}, "Tweak the banner")
    other = github_emulator.push({"other.py": "x\n"})
    repo = gh(github_emulator)

    status = repo.get_pull(number).merge(merge_method="squash", commit_title="Banner (#1)",
                                         commit_message="Two commits, squashed")

    head = github_emulator.branch_head()
    assert status.merged and status.sha == head
    assert github_emulator.log(n=1) == [(head, "Banner (#1)\n\nTwo commits, squashed", (other,))]
    assert github_emulator.files_at("master") == {"README.md": "# app\n", "app/main.py": "print('hello')\n",
                                                  "banner.py": "2\n", "other.py": "x\n"}
    pull = repo.get_pull(number)
    assert (pull.merged, pull.merge_commit_sha, pull.merged_by.login) == (True, head, "deploy-bot")
    squash = repo.get_git_commit(head)
    assert (squash.author.name, squash.committer.name) == ("alice", "GitHub")
    assert api(github_emulator, "GET", f"/git/commits/{head}").json()["verification"]["verified"] is True


def test_squash_messages_default_to_githubs(github_emulator):
    one = github_emulator.create_pr("Fix the login", {"login.py": "1\n"})
    two = github_emulator.create_pr("Speed up checkout", {"cart.py": "1\n"})
    github_emulator.push_pr(two, {"cart.py": "2\n"}, "Cache the cart")
    repo = gh(github_emulator)

    repo.get_pull(one).merge(merge_method="squash")
    repo.get_pull(two).merge(merge_method="squash")

    messages = [message for _, message, _ in github_emulator.log(n=2)]
    assert messages == [f"Speed up checkout (#{two})\n\n* Speed up checkout\n\n* Cache the cart",
                        f"Fix the login (#{one})"]


def test_rebase_merge_replays_each_commit_on_the_base_head(github_emulator):
    number = github_emulator.create_pr("Add a", {"a.py": "1\n"})
    original = github_emulator.push_pr(number, {"b.py": "1\n"}, "Add b")
    other = github_emulator.push({"c.py": "1\n"})
    repo = gh(github_emulator)
    assert repo.get_pull(number).commits == 2

    status = repo.get_pull(number).merge(merge_method="rebase", sha=original)

    (last, last_message, last_parents), (first, first_message, first_parents) = github_emulator.log(n=2)
    assert (first_message, first_parents) == ("Add a", (other,))
    assert (last_message, last_parents) == ("Add b", (first,))
    assert last != original and status.sha == last == github_emulator.branch_head()
    assert repo.get_pull(number).merge_commit_sha == last
    assert repo.get_pull(number).commits == 2  # counted against the base it merged into
    replayed = repo.get_git_commit(last)
    assert (replayed.author.name, replayed.committer.name) == ("alice", "GitHub")
    assert set(github_emulator.files_at("master")) >= {"a.py", "b.py", "c.py"}


def test_a_pr_that_merges_cleanly_but_cannot_be_rebased_is_refused_a_rebase(github_emulator):
    number = github_emulator.create_pr("Try a title", {"README.md": "# tried\n"})
    github_emulator.push_pr(number, {"README.md": "# app\n"}, "Back to the old title")
    github_emulator.push({"README.md": "# renamed\n"})
    repo = gh(github_emulator)

    pull = repo.get_pull(number)
    assert (pull.mergeable, pull.rebaseable) == (True, False)
    assert refused(pull.merge, merge_method="rebase") == (405, "This branch can't be rebased")
    assert repo.get_pull(number).merge(merge_method="merge").merged


@pytest.mark.parametrize("method, setting, message", [
    ("merge", "allow_merge_commit", "Merge commits are not allowed on this repository."),
    ("squash", "allow_squash_merge", "Squash merges are not allowed on this repository."),
    ("rebase", "allow_rebase_merge", "Rebase merges are not allowed on this repository."),
])
def test_a_merge_method_the_repository_disallows_answers_405(github_emulator, method, setting, message):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    assert getattr(repo, setting) is True

    github_emulator.settings(**{setting: False})

    assert getattr(gh(github_emulator), setting) is False
    assert refused(repo.get_pull(number).merge, merge_method=method) == (405, message)
    assert not repo.get_pull(number).merged


def test_every_merge_method_keeps_the_head_sha_guard(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    stale = github_emulator.pr_head(number)
    github_emulator.push_pr(number, {"a.py": "2\n"})
    pull = gh(github_emulator).get_pull(number)

    for method in ("merge", "squash", "rebase"):
        assert refused(pull.merge, sha=stale, merge_method=method) == (
            409, "Head branch was modified. Review and try the merge again.")


def test_deleting_head_branches_on_merge_is_a_repository_setting(github_emulator):
    github_emulator.settings(delete_branch_on_merge=True)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)

    repo.get_pull(number).merge(merge_method="squash")

    assert refused(repo.get_branch, f"alice/change-{number}") == (404, "Branch not found")


# -- branch protection -------------------------------------------------------------------------

def test_protection_is_read_back_through_the_api(github_emulator):
    repo = gh(github_emulator)
    assert repo.get_branch("master").protected is False
    assert refused(repo.get_branch("master").get_protection) == (404, "Branch not protected")

    github_emulator.protect_branch("master", required_linear_history=True, strict=True, contexts=["ci/jenkins"],
                                   required_pull_request_reviews=True, required_approving_review_count=1,
                                   required_signatures=True, bypass=["release-bot"])

    branch = repo.get_branch("master")
    protection = branch.get_protection()
    assert branch.protected is True
    assert protection.required_linear_history is True and protection.enforce_admins is True
    assert (protection.required_status_checks.strict, protection.required_status_checks.contexts) == (
        True, ["ci/jenkins"])
    reviews = protection.required_pull_request_reviews
    assert reviews.required_approving_review_count == 1
    assert [user.login for user in reviews.bypass_pull_request_allowances.users] == ["release-bot"]
    assert branch.get_required_signatures() is True
    assert protection.allow_force_pushes is False

    github_emulator.unprotect_branch("master")
    assert refused(repo.get_branch("master").get_protection) == (404, "Branch not protected")


def test_reading_protection_needs_admin_rights(github_emulator):
    github_emulator.protect_branch("master", required_linear_history=True)
    github_emulator.add_token("ghp_writer", push=True)

    branch = gh(github_emulator, "ghp_writer").get_branch("master")

    assert branch.protected is True
    assert refused(branch.get_protection) == (403, "Must have admin rights to Repository.")


def test_linear_history_refuses_merge_commits_but_takes_squashes_and_rebases(github_emulator):
    github_emulator.protect_branch("master", required_linear_history=True)
    first = github_emulator.create_pr("A", {"a.py": "1\n"})
    second = github_emulator.create_pr("B", {"b.py": "1\n"})
    repo = gh(github_emulator)

    assert refused(repo.get_pull(first).merge, merge_method="merge") == (
        405, "This branch must not contain merge commits.")
    repo.get_pull(first).merge(merge_method="squash")
    repo.get_pull(second).merge(merge_method="rebase")

    assert [len(parents) for _, _, parents in github_emulator.log(n=10)] == [1, 1, 0]


def test_linear_history_refuses_a_fast_forward_to_a_merge_commit(github_emulator):
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/candidate", github_emulator.branch_head())
    candidate = repo.merge("candidate", github_emulator.pr_head(number), "Merge A")
    github_emulator.protect_branch("master", required_linear_history=True)

    assert refused(repo.get_git_ref("heads/master").edit, candidate.sha) == (
        422, "This branch must not contain merge commits.")


def test_a_pr_behind_a_strict_base_must_be_updated_before_it_merges(github_emulator, receiver):  # noqa: F811
    github_emulator.add_webhook(f"{receiver.url}/hook")
    github_emulator.protect_branch("master", strict=True)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    assert repo.get_pull(number).mergeable_state == "clean"
    base = github_emulator.push({"b.py": "1\n"})

    pull = repo.get_pull(number)
    assert (pull.mergeable, pull.mergeable_state) == (True, "behind")
    assert refused(pull.merge, merge_method="merge") == (405, "Head branch is not up to date with the base branch")

    old = github_emulator.pr_head(number)
    assert pull.update_branch(expected_head_sha=old) is True

    new = github_emulator.pr_head(number)
    assert github_emulator.log(new, n=1) == [(new, f"Merge branch 'master' into alice/change-{number}", (old, base))]
    pull = repo.get_pull(number)
    assert (pull.head.sha, pull.mergeable_state) == (new, "clean")
    assert pull.merge(merge_method="merge", sha=new).merged
    github_emulator.flush_webhooks()
    synchronize = [body for event, body in receiver.events if body.get("action") == "synchronize"]
    assert [(body["before"], body["after"]) for body in synchronize] == [(old, new)]


def test_update_branch_answers_202_and_refuses_stale_heads_nothing_new_and_conflicts(github_emulator):
    number = github_emulator.create_pr("A", {"README.md": "# A\n"})
    path = f"/pulls/{number}/update-branch"

    nothing_new = api(github_emulator, "PUT", path, {})
    assert (nothing_new.status_code, nothing_new.json()["message"]) == (
        422, "There are no new commits on the base branch.")
    github_emulator.push({"other.py": "1\n"})
    stale = api(github_emulator, "PUT", path, {"expected_head_sha": "0" * 40})
    assert (stale.status_code, stale.json()["message"]) == (422, "expected head sha didn't match current head ref.")
    head = github_emulator.pr_head(number)

    github_emulator.push({"README.md": "# B\n"})
    conflict = api(github_emulator, "PUT", path, {"expected_head_sha": head})
    assert (conflict.status_code, conflict.json()["message"]) == (422, "merge conflict between base and head")
    assert github_emulator.pr_head(number) == head

    fine = github_emulator.create_pr("B", {"b.py": "1\n"})
    github_emulator.push({"c.py": "1\n"})
    accepted = api(github_emulator, "PUT", f"/pulls/{fine}/update-branch")
    assert accepted.status_code == 202
    assert accepted.json() == {"message": "Updating pull request branch.",
                               "url": f"{github_emulator.root_url}/repos/acme/app/pulls/{fine}"}
    assert github_emulator.writes["branch_updates"] == 1


def test_update_branch_can_move_the_head_in_the_background_as_github_does(github_emulator):
    github_emulator.settings(update_branch_delay=0.3)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    github_emulator.push({"b.py": "1\n"})
    old = github_emulator.pr_head(number)

    assert gh(github_emulator).get_pull(number).update_branch() is True

    assert github_emulator.pr_head(number) == old
    deadline = time.monotonic() + 5
    while github_emulator.pr_head(number) == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert github_emulator.log(github_emulator.pr_head(number), n=1)[0][2] == (old, github_emulator.branch_head())


def test_a_branch_that_needs_pull_requests_refuses_ref_updates_but_merges_them(github_emulator):
    github_emulator.protect_branch("master", required_pull_request_reviews=True, bypass=["release-bot"])
    repo = gh(github_emulator)
    before = github_emulator.branch_head()
    commit = direct_commit(repo, {"hotfix.py": "1\n"})

    assert refused(repo.get_git_ref("heads/master").edit, commit) == (
        422, "Changes must be made through a pull request.")
    assert github_emulator.branch_head() == before

    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    assert repo.get_pull(number).merge(merge_method="merge").merged

    github_emulator.add_token("ghp_release", login="release-bot")
    released = gh(github_emulator, "ghp_release")
    released.get_git_ref("heads/master").edit(direct_commit(released, {"hotfix.py": "2\n"}))
    assert github_emulator.files_at("master")["hotfix.py"] == "2\n"


def test_required_approvals_block_the_merge_until_someone_approves(github_emulator):
    github_emulator.protect_branch("master", required_pull_request_reviews=True, required_approving_review_count=1)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)

    assert repo.get_pull(number).mergeable_state == "blocked"
    assert refused(repo.get_pull(number).merge) == (
        405, "At least 1 approving review is required by reviewers with write access.")

    github_emulator.approve_pr(number, "carol")
    assert repo.get_pull(number).mergeable_state == "clean"
    assert repo.get_pull(number).merge().merged


def test_required_status_checks_must_be_green_on_the_head(github_emulator):
    github_emulator.protect_branch("master", contexts=["ci/jenkins"])
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    repo = gh(github_emulator)
    head = repo.get_commit(github_emulator.pr_head(number))

    assert repo.get_pull(number).mergeable_state == "blocked"
    assert refused(repo.get_pull(number).merge) == (405, 'Required status check "ci/jenkins" is expected.')
    head.create_status("failure", target_url="https://jenkins/job/1", context="ci/jenkins")
    assert refused(repo.get_pull(number).merge) == (405, 'Required status check "ci/jenkins" is failing.')
    assert head.get_combined_status().state == "failure"

    github_emulator.set_status(head.sha, "ci/jenkins", "success")

    assert head.get_combined_status().state == "success"
    assert github_emulator.statuses(head.sha) == {"ci/jenkins": "success"}
    assert repo.get_pull(number).mergeable_state == "clean"
    assert repo.get_pull(number).merge().merged


def test_required_signatures_refuse_unsigned_api_commits_but_take_prs_merged_by_github(github_emulator):
    github_emulator.protect_branch("master", required_signatures=True)
    repo = gh(github_emulator)
    unsigned = direct_commit(repo, {"a.py": "1\n"})

    assert api(github_emulator, "GET", f"/git/commits/{unsigned}").json()["verification"]["verified"] is False
    assert refused(repo.get_git_ref("heads/master").edit, unsigned) == (422, "Commits must have verified signatures.")

    number = github_emulator.create_pr("B", {"b.py": "1\n"})
    merge = repo.get_pull(number).merge(merge_method="merge").sha
    assert api(github_emulator, "GET", f"/git/commits/{merge}").json()["verification"]["verified"] is True

    head = repo.get_git_commit(merge)
    signed = api(github_emulator, "POST", "/git/commits", {
        "message": "Signed change", "tree": head.tree.sha, "parents": [merge],
        "signature": "-----BEGIN PGP SIGNATURE-----\n...\n-----END PGP SIGNATURE-----"}).json()["sha"]
    repo.get_git_ref("heads/master").edit(signed)
    assert github_emulator.branch_head() == signed


def test_admins_bypass_protection_only_when_it_is_not_enforced_on_them(github_emulator):
    github_emulator.add_token("ghp_writer", push=True)
    github_emulator.protect_branch("master", required_pull_request_reviews=True, enforce_admins=False)
    admin, writer = gh(github_emulator), gh(github_emulator, "ghp_writer")

    assert refused(writer.get_git_ref("heads/master").edit, direct_commit(writer, {"a.py": "1\n"})) == (
        422, "Changes must be made through a pull request.")
    admin.get_git_ref("heads/master").edit(direct_commit(admin, {"a.py": "2\n"}))
    old = github_emulator.log(n=2)[1][0]

    github_emulator.protect_branch("master", enforce_admins=True)
    assert refused(admin.get_git_ref("heads/master").edit, old, force=True) == (
        422, "Cannot force-push to this branch")
    github_emulator.protect_branch("master", allow_force_pushes=True)
    admin.get_git_ref("heads/master").edit(old, force=True)
    assert github_emulator.branch_head() == old


# -- pull requests merged by a push ------------------------------------------------------------

def test_a_fast_forward_to_a_commit_containing_a_pr_head_merges_that_pr(github_emulator, receiver):  # noqa: F811
    github_emulator.add_webhook(f"{receiver.url}/hook")
    github_emulator.add_token("ghp_train", login="fatcontroller")
    number = github_emulator.create_pr("B", {"b.py": "1\n"})
    head, base = github_emulator.pr_head(number), github_emulator.branch_head()
    repo = gh(github_emulator, "ghp_train")
    repo.create_git_ref("refs/heads/fatcontroller/app/7", base)

    candidate = repo.merge("fatcontroller/app/7", head, f"Merge pull request #{number} from acme/alice/change-{number}")

    assert [p.sha for p in candidate.parents] == [base, head]
    assert candidate.commit.author.name == "fatcontroller"
    assert repo.get_pull(number).merged is False
    repo.get_git_ref("heads/master").edit(candidate.sha, force=False)

    pull = repo.get_pull(number)
    assert (pull.merged, pull.state, pull.merge_commit_sha, pull.merged_by.login) == (
        True, "closed", candidate.sha, "fatcontroller")
    repo.get_git_ref("heads/fatcontroller/app/7").delete()
    github_emulator.flush_webhooks()
    kinds = [(event, body.get("action")) for event, body in receiver.events]
    assert kinds == [("pull_request", "opened"), ("push", None), ("pull_request", "closed")]
    assert receiver.events[1][1]["after"] == candidate.sha
    closed = receiver.events[2][1]
    assert closed["pull_request"]["merged"] is True and closed["sender"]["login"] == "fatcontroller"
    assert closed["pull_request"]["merge_commit_sha"] == candidate.sha


def test_a_ref_update_that_is_not_a_fast_forward_is_refused_and_merges_nothing(github_emulator):
    number = github_emulator.create_pr("B", {"b.py": "1\n"})
    github_emulator.push({"c.py": "1\n"})
    repo = gh(github_emulator)

    assert refused(repo.get_git_ref("heads/master").edit, github_emulator.pr_head(number)) == (
        422, "Update is not a fast forward")
    assert repo.get_pull(number).state == "open"


# -- POST /merges ------------------------------------------------------------------------------

def test_merging_a_branch_or_sha_into_a_branch(github_emulator):
    repo = gh(github_emulator)
    repo.create_git_ref("refs/heads/candidate", github_emulator.branch_head())
    first = github_emulator.create_pr("A", {"a.py": "1\n"})
    second = github_emulator.create_pr("B", {"README.md": "# B\n"})
    third = github_emulator.create_pr("C", {"README.md": "# C\n"})

    merged = repo.merge("candidate", f"alice/change-{first}")
    assert merged.commit.message == f"Merge alice/change-{first} into candidate"
    assert github_emulator.branch_head("candidate") == merged.sha
    assert repo.merge("candidate", github_emulator.pr_head(first)) is None  # nothing to merge: 204
    by_sha = repo.merge("candidate", github_emulator.pr_head(second), "Merge B")
    assert [p.sha for p in by_sha.parents] == [merged.sha, github_emulator.pr_head(second)]

    assert refused(repo.merge, "candidate", github_emulator.pr_head(third)) == (409, "Merge conflict")
    assert refused(repo.merge, "nope", "master") == (404, "Base does not exist")
    assert refused(repo.merge, "candidate", "no-such-branch") == (404, "Head does not exist")
    assert github_emulator.writes["branch_merges"] == 2
    assert github_emulator.branch_head() != by_sha.sha  # the base branch never moved
