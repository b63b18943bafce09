"""The GitHub emulator's tokens: scopes and permissions, as a startup doctor reads them and as writes meet them."""

import pytest
from github import Auth, BadCredentialsException, Github, UnknownObjectException

from tests.sandbox.test_github_emulator_merging import gh, refused

WORKFLOW = ".github/workflows/ci.yml"


def test_a_token_never_added_may_do_everything_with_the_repo_and_workflow_scopes(github_emulator):
    client = Github(base_url=github_emulator.url, auth=Auth.Token("ghp_sandboxtoken"), retry=None,
                    seconds_between_requests=0, seconds_between_writes=0)

    repo = client.get_repo("acme/app")

    assert client.oauth_scopes == ["repo", "workflow"]
    assert repo.permissions.admin and repo.permissions.push and repo.permissions.pull
    assert client.get_user().login == "deploy-bot"


def test_a_read_only_token_reads_but_may_not_write(github_emulator):
    github_emulator.add_token("ghp_reader", login="reader", scopes=["repo"], push=False)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    client = Github(base_url=github_emulator.url, auth=Auth.Token("ghp_reader"), retry=None,
                    seconds_between_requests=0, seconds_between_writes=0)
    repo = client.get_repo("acme/app")

    permissions = repo.permissions
    assert (permissions.admin, permissions.maintain, permissions.push, permissions.triage, permissions.pull) == (
        False, False, False, False, True)
    assert client.oauth_scopes == ["repo"]
    assert client.get_user().login == "reader"
    assert refused(repo.get_pull(number).merge) == (403, "Must have push access to repository.")
    assert refused(repo.create_git_ref, "refs/heads/x", github_emulator.branch_head()) == (
        403, "Must have push access to repository.")
    assert repo.get_pull(number).create_issue_comment("Looks good").user.login == "reader"
    assert github_emulator.pull_request(number).state == "open"


@pytest.mark.parametrize("token, message", [
    ("ghs_installation", "Resource not accessible by integration"),
    ("github_pat_finegrained", "Resource not accessible by personal access token"),
])
def test_app_and_fine_grained_tokens_without_write_access_are_refused_in_their_words(github_emulator, token, message):
    github_emulator.add_token(token, push=False)
    number = github_emulator.create_pr("A", {"a.py": "1\n"})
    client = Github(base_url=github_emulator.url, auth=Auth.Token(token), retry=None,
                    seconds_between_requests=0, seconds_between_writes=0)
    repo = client.get_repo("acme/app")

    assert refused(repo.get_pull(number).merge) == (403, message)
    assert client.oauth_scopes is None  # only classic tokens have scopes


def test_a_token_that_cannot_see_the_repository_gets_404(github_emulator):
    github_emulator.add_token("ghp_noscope", scopes=[])
    github_emulator.add_token("ghp_outsider", pull=False, push=False)

    for token in ("ghp_noscope", "ghp_outsider"):
        with pytest.raises(UnknownObjectException):
            gh(github_emulator, token)


def test_a_revoked_token_gets_bad_credentials(github_emulator):
    github_emulator.revoke_token("ghp_leaked")

    with pytest.raises(BadCredentialsException) as caught:
        gh(github_emulator, "ghp_leaked")

    assert (caught.value.status, caught.value.data["message"]) == (401, "Bad credentials")


def test_changing_workflows_needs_the_workflow_scope(github_emulator):
    github_emulator.add_token("gho_oauth", scopes=["repo"])
    github_emulator.add_token("ghs_app", workflows=False)
    ci = github_emulator.create_pr("CI", {WORKFLOW: "on: push\n"})
    code = github_emulator.create_pr("Code", {"a.py": "1\n"})
    oauth, app = gh(github_emulator, "gho_oauth"), gh(github_emulator, "ghs_app")

    assert refused(oauth.get_pull(ci).merge) == (
        403, f"refusing to allow an OAuth App to create or update workflow `{WORKFLOW}` without `workflow` scope")
    assert refused(app.get_pull(ci).merge, merge_method="squash") == (
        403, f"refusing to allow a GitHub App to create or update workflow `{WORKFLOW}` without `workflows` permission")
    assert refused(oauth.get_git_ref("heads/master").edit, github_emulator.pr_head(ci)) == (
        422, f"refusing to allow an OAuth App to create or update workflow `{WORKFLOW}` without `workflow` scope")
    assert refused(oauth.merge, "master", f"alice/change-{ci}")[0] == 403

    assert oauth.get_pull(code).merge().merged
    assert gh(github_emulator).get_pull(ci).merge().merged
