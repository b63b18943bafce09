"""The GitHub facade against repositories set up as teams really run them: merge methods, up-to-date rules,
protected base branches and large trees (DESIGN §12), on the GitHub emulator's real git repository."""

from collections.abc import Callable

import pytest

from integrations.github import GitHub, MergeMethod, NotMergeable
from integrations.outside import CallPolicy
from sandbox.github import GitHubEmulator
from tests.fixtures.github import GITHUB_BASE, GITHUB_REPO, GITHUB_TOKEN

MakeGitHub = Callable[[MergeMethod], GitHub]


@pytest.fixture
def github_by(github_emulator: GitHubEmulator) -> MakeGitHub:
    """The facade merging by a given method."""
    def make(method: MergeMethod) -> GitHub:
        return GitHub(GITHUB_REPO, GITHUB_BASE, token=GITHUB_TOKEN, api_url=github_emulator.url,
                      policy=CallPolicy(timeout=10.0), timeout=5.0, merge_method=method)
    return make


def two_commit_pr(emulator: GitHubEmulator) -> int:
    number = emulator.create_pr("Add billing", {"billing.py": "x = 1\n", "app/main.py": None})
    emulator.push_pr(number, {"billing/tax.py": "rate = 0.2\n"})
    return number


# -- merge methods -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["squash", "rebase"])
async def test_a_repository_that_allows_only_one_method_is_merged_by_it(github_by, github_emulator, method):
    github_emulator.settings(allow_merge_commit=False, allow_squash_merge=method == "squash",
                             allow_rebase_merge=method == "rebase")
    before = github_emulator.branch_head()
    number = two_commit_pr(github_emulator)

    merged = await github_by(method).merge(number, github_emulator.pr_head(number))

    landed = github_emulator.commits(n=3, exclude=before)
    assert github_emulator.branch_head() == merged.sha
    assert [len(c.parents) for c in landed] == ([1] if method == "squash" else [1, 1])
    assert "billing/tax.py" in github_emulator.files_at(GITHUB_BASE)


async def test_a_method_the_repository_refuses_is_named_in_the_refusal(github_by, github_emulator):
    github_emulator.settings(allow_merge_commit=False)
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})

    with pytest.raises(NotMergeable) as refused:
        await github_by("merge").merge(number, github_emulator.pr_head(number))

    assert refused.value.reason == "not mergeable" and "Merge commits are not allowed" in refused.value.detail


@pytest.mark.parametrize("method", ["squash", "rebase"])
async def test_reverting_what_a_squash_or_a_rebase_landed_restores_the_tree_before_it(
        github_by, github_emulator, method):
    original = github_emulator.files_at(GITHUB_BASE)
    github = github_by(method)
    number = two_commit_pr(github_emulator)
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha

    result = await github.revert_merge(landed, number, method)

    assert result.status == "reverted"
    assert github_emulator.files_at(GITHUB_BASE) == original
    assert (await github.revert_merge(landed, number, method)).status == "already"


@pytest.mark.parametrize("method", ["squash", "rebase"])
async def test_reverting_a_squash_or_a_rebase_after_a_later_commit_keeps_the_later_work(
        github_by, github_emulator, method):
    original = github_emulator.files_at(GITHUB_BASE)
    github = github_by(method)
    number = two_commit_pr(github_emulator)
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha
    github_emulator.push({"docs/guide.md": "someone else's work\n"})

    result = await github.revert_merge(landed, number, method)

    assert result.status == "reverted"
    assert result.paths == ("app/main.py", "billing.py", "billing/tax.py")
    assert github_emulator.files_at(GITHUB_BASE) == {**original, "docs/guide.md": "someone else's work\n"}


async def test_a_rebased_range_is_reverted_whole_never_only_its_last_commit(github_by, github_emulator):
    github = github_by("rebase")
    before = github_emulator.branch_head()
    number = two_commit_pr(github_emulator)
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha

    result = await github.revert_merge(landed, number, "rebase")

    assert f"changes made to {before}" in github_emulator.commits(n=1)[0].message
    assert "billing.py" not in github_emulator.files_at(GITHUB_BASE)  # from the range's first commit
    assert result.status == "reverted"


# -- branches that must be up to date -------------------------------------------------------------

async def test_a_pull_request_behind_a_strict_base_is_refused_as_behind_then_updated(github, github_emulator):
    github_emulator.protect_branch(strict=True)
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.push({"docs/guide.md": "moved on\n"})
    head = github_emulator.pr_head(number)

    with pytest.raises(NotMergeable) as refused:
        await github.merge(number, head)
    assert refused.value.reason == "behind"

    await github.update_branch(number, head)

    updated = github_emulator.pr_head(number)
    assert updated != head and github_emulator.writes["branch_updates"] == 1
    assert "docs/guide.md" in github_emulator.files_at(updated)
    await github.update_branch(number, updated)  # up to date already: nothing to do
    assert github_emulator.writes["branch_updates"] == 1
    merged = await github.merge(number, updated)
    assert github_emulator.branch_head() == merged.sha


async def test_updating_a_branch_whose_head_moved_is_refused_as_head_moved(github, github_emulator):
    github_emulator.protect_branch(strict=True)
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.push({"docs/guide.md": "moved on\n"})
    head = github_emulator.pr_head(number)
    github_emulator.push_pr(number, {"billing.py": "x = 2\n"})

    with pytest.raises(NotMergeable) as refused:
        await github.update_branch(number, head)

    assert refused.value.reason == "head moved"


async def test_required_checks_not_passed_yet_are_checks_pending(github, github_emulator):
    github_emulator.protect_branch(contexts=("ci",))
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    head = github_emulator.pr_head(number)

    with pytest.raises(NotMergeable) as refused:
        await github.merge(number, head)
    assert refused.value.reason == "checks pending"

    github_emulator.set_status(head, "ci", "success")
    assert (await github.merge(number, head)).sha == github_emulator.branch_head()


# -- protected base branches ------------------------------------------------------------------------

async def test_a_base_that_only_takes_pull_requests_gets_the_revert_through_one(github, github_emulator):
    original = github_emulator.files_at(GITHUB_BASE)
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha
    github_emulator.protect_branch(required_pull_request_reviews=True)

    result = await github.revert_merge(landed, number)

    assert result.status == "reverted" and result.pull_request is not None
    [revert] = [p for p in github_emulator.pull_requests() if p.number != number]
    assert revert.merged and revert.branch == f"fatcontroller/revert-{number}"
    assert result.pull_request.endswith(f"/pull/{revert.number}")
    assert github_emulator.files_at(GITHUB_BASE) == original
    assert f"fatcontroller/revert-{number}" not in github_emulator.branches()  # tidied away
    assert (await github.revert_merge(landed, number)).status == "already"


@pytest.mark.parametrize("rules", [
    {"required_pull_request_reviews": True, "required_approving_review_count": 1},
    {"required_signatures": True, "contexts": ("ci",)},
], ids=["review required", "signed and checked"])
async def test_a_revert_pull_request_the_bot_may_not_merge_is_handed_over_and_reused_on_retry(
        github, github_emulator, rules):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha
    head = github_emulator.branch_head()
    github_emulator.protect_branch(**rules)

    first = await github.revert_merge(landed, number)
    again = await github.revert_merge(landed, number)

    assert (first.status, first.sha) == ("pull_request", None)
    assert first.manual_url == first.pull_request and again.pull_request == first.pull_request
    assert "may not merge it" in first.detail
    assert github_emulator.branch_head() == head
    assert len([p for p in github_emulator.pull_requests() if p.state == "open"]) == 1


# -- large repositories -----------------------------------------------------------------------------

async def test_a_revert_on_a_tree_github_lists_only_in_part_misses_no_file(github, github_emulator):
    github_emulator.push({f"lib/module_{i}.py": f"n = {i}\n" for i in range(30)})
    original = github_emulator.files_at(GITHUB_BASE)
    github_emulator.settings(tree_entries_limit=10)  # every recursive listing here is truncated
    added = {f"billing/part_{i}/rule_{j}.py": "x\n" for i in range(3) for j in range(5)}
    number = github_emulator.create_pr("Add billing", {**added, "lib/module_3.py": "n = 'changed'\n"})
    landed = (await github.merge(number, github_emulator.pr_head(number))).sha
    github_emulator.push({"docs/guide.md": "someone else's work\n"})

    result = await github.revert_merge(landed, number)

    assert result.status == "reverted" and len(result.paths) == 16
    assert github_emulator.files_at(GITHUB_BASE) == {**original, "docs/guide.md": "someone else's work\n"}
