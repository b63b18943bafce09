"""The GitHub facade, through PyGithub, against the GitHub emulator's real git repository."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from integrations.github import GitHub, NotMergeable
from integrations.outside import CallPolicy, NotFound, PermanentError, TransientError
from sandbox.github import GitHubEmulator
from tests.fixtures.github import GITHUB_BASE, GITHUB_REPO, GITHUB_TOKEN

MERGE = r"^PUT /repos/acme/app/pulls/\d+/merge$"


def merge_commits(emulator: GitHubEmulator) -> list[str]:
    return [sha for sha, _, parents in emulator.log(n=100) if len(parents) == 2]


def reverts_of(emulator: GitHubEmulator, merge_sha: str) -> list[str]:
    return [sha for sha, message, _ in emulator.log(n=100) if f"This reverts commit {merge_sha}" in message]


# -- reading pull requests ---------------------------------------------------------------------

async def test_search_lists_open_prs_against_the_base_branch_newest_first(github, github_emulator):
    first = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    closed = github_emulator.create_pr("Abandoned idea", {"idea.py": "x = 2\n"})
    github_emulator.create_pr("Release fix", {"fix.py": "x = 3\n"}, base="release")
    last = github_emulator.create_pr("Fix login", {"login.py": "x = 4\n"}, author="carol")
    github_emulator.close_pr(closed)

    found = await github.search_open_prs()

    assert [pr.number for pr in found] == [last, first]
    assert all(pr.state == "open" and pr.base_ref == GITHUB_BASE and not pr.merged for pr in found)


async def test_search_matches_number_title_or_author_case_insensitively(github, github_emulator):
    billing = github_emulator.create_pr("Add Billing page", {"billing.py": "x = 1\n"})
    login = github_emulator.create_pr("Fix login", {"login.py": "x = 2\n"}, author="carol")

    assert [pr.number for pr in await github.search_open_prs(f"#{login}")] == [login]
    assert [pr.number for pr in await github.search_open_prs(str(billing))] == [billing]
    assert [pr.number for pr in await github.search_open_prs("BILLING")] == [billing]
    assert [pr.number for pr in await github.search_open_prs("Carol")] == [login]
    assert await github.search_open_prs("nothing like this") == []


async def test_search_returns_at_most_limit_and_fetches_no_pr_one_by_one(github, github_emulator):
    numbers = [github_emulator.create_pr(f"Change {i}", {f"f{i}.py": "x\n"}) for i in range(4)]
    github_emulator.requests.clear()

    found = await github.search_open_prs(limit=2)

    assert [pr.number for pr in found] == numbers[::-1][:2]
    assert all(pr.mergeable is None for pr in found)  # not in the list answer: not fetched
    assert github_emulator.requests == [("GET", "/repos/acme/app/pulls")]


async def test_get_pr_reads_the_pull_request(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"}, author="dave",
                                       branch="dave/billing")

    pr = await github.get_pr(number)

    assert (pr.number, pr.title, pr.author, pr.state) == (number, "Add billing", "dave", "open")
    assert pr.url.endswith(f"/acme/app/pull/{number}")
    assert (pr.head_sha, pr.head_ref, pr.base_ref) == (github_emulator.pr_head(number), "dave/billing", "master")
    assert pr.mergeable is True and not pr.merged and pr.merge_sha is None and not pr.from_fork
    assert pr.created_at.tzinfo is None
    assert abs(pr.created_at - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


async def test_get_pr_tells_a_pull_request_from_a_fork(github, github_emulator):
    number = github_emulator.create_pr("Typo", {"README.md": "# app!\n"}, author="outsider", from_fork=True)

    assert (await github.get_pr(number)).from_fork


async def test_get_pr_of_an_unknown_number_is_not_found(github):
    with pytest.raises(NotFound, match="#42"):
        await github.get_pr(42)


async def test_concurrent_calls_each_get_their_own_answer(github, github_emulator):
    numbers = [github_emulator.create_pr(f"Change {i}", {f"f{i}.py": "x\n"}) for i in range(6)]

    prs = await asyncio.gather(*(github.get_pr(n) for n in numbers * 3))

    assert [pr.number for pr in prs] == numbers * 3
    assert [pr.title for pr in prs] == [f"Change {i}" for i in range(6)] * 3


async def test_branch_head_and_find_merge(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    assert await github.branch_head() == github_emulator.branch_head()
    assert await github.find_merge(number) is None

    merged = await github.merge(number, github_emulator.pr_head(number))

    assert await github.find_merge(number) == merged.sha == await github.branch_head()


# -- merging -----------------------------------------------------------------------------------

async def test_merge_makes_a_merge_commit_on_the_base_branch(github, github_emulator):
    before = github_emulator.branch_head()
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    head = github_emulator.pr_head(number)

    result = await github.merge(number, head)

    assert not result.already
    assert github_emulator.branch_head() == result.sha
    assert github_emulator.log(n=1)[0] == (
        result.sha, f"Merge pull request #{number} from acme/alice/change-{number}\n\nAdd billing", (before, head))
    assert github_emulator.files_at(GITHUB_BASE)["billing.py"] == "x = 1\n"
    pr = await github.get_pr(number)
    assert pr.merged and pr.merge_sha == result.sha and pr.state == "closed"


async def test_merge_of_an_already_merged_pr_reports_it_and_merges_nothing(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    head = github_emulator.pr_head(number)

    first = await github.merge(number, head)
    second = await github.merge(number, head)

    assert second.already and second.sha == first.sha
    assert merge_commits(github_emulator) == [first.sha]
    assert github_emulator.writes["merges"] == 1


async def test_merge_is_guarded_by_the_head_sha(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    seen = github_emulator.pr_head(number)
    github_emulator.push_pr(number, {"billing.py": "x = 2\n"})

    with pytest.raises(NotMergeable) as caught:
        await github.merge(number, seen)

    assert caught.value.reason == "head moved"
    assert github_emulator.writes["merges"] == 0


async def test_merge_of_a_closed_pr_is_refused(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.close_pr(number)

    with pytest.raises(NotMergeable) as caught:
        await github.merge(number, github_emulator.pr_head(number))

    assert caught.value.reason == "closed"


async def test_merge_of_a_conflicting_pr_is_refused(github, github_emulator):
    ours = github_emulator.create_pr("Title A", {"README.md": "# A\n"})
    theirs = github_emulator.create_pr("Title B", {"README.md": "# B\n"})
    await github.merge(ours, github_emulator.pr_head(ours))

    with pytest.raises(NotMergeable) as caught:
        await github.merge(theirs, github_emulator.pr_head(theirs))

    assert caught.value.reason == "conflict"
    assert github_emulator.writes["merges"] == 1


async def test_merge_of_a_pr_against_another_branch_is_refused(github, github_emulator):
    number = github_emulator.create_pr("Release fix", {"fix.py": "x\n"}, base="release")

    with pytest.raises(NotMergeable) as caught:
        await github.merge(number, github_emulator.pr_head(number))

    assert caught.value.reason == "base mismatch"


@pytest.mark.parametrize(("message", "reason"), [
    ('Required status check \\"ci\\" is expected.', "checks pending"),
    ("At least 1 approving review is required by reviewers with write access.", "not mergeable"),
])
async def test_merge_refused_for_another_reason_says_what_github_said(github, github_emulator, message, reason):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.faults.fail_next(1, match=MERGE, status=405, body=f'{{"message": "{message}"}}')

    with pytest.raises(NotMergeable, match=message.split(" ")[0]) as caught:
        await github.merge(number, github_emulator.pr_head(number))

    assert caught.value.reason == reason


async def test_a_merge_that_failed_transiently_merges_once_when_tried_again(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.faults.fail_next(1, match=MERGE, status=502)

    with pytest.raises(TransientError):
        await github.merge(number, github_emulator.pr_head(number))
    result = await github.merge(number, github_emulator.pr_head(number))

    assert github_emulator.faults.injected == 1
    assert merge_commits(github_emulator) == [result.sha]


async def test_base_branch_modified_is_transient_and_merges_when_tried_again(github, github_emulator):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.faults.fail_next(
        1, match=MERGE, status=405, body='{"message": "Base branch was modified. Review and try the merge again."}')

    with pytest.raises(TransientError, match="Base branch was modified"):
        await github.merge(number, github_emulator.pr_head(number))
    result = await github.merge(number, github_emulator.pr_head(number))

    assert merge_commits(github_emulator) == [result.sha]


async def test_a_server_error_on_merging_is_transient_after_one_attempt_and_merges_nothing(github_emulator, github):
    number = github_emulator.create_pr("Add billing", {"billing.py": "x = 1\n"})
    github_emulator.faults.error_rate(1.0, match=MERGE, status=502)

    with pytest.raises(TransientError) as caught:
        await github.merge(number, github_emulator.pr_head(number))

    assert caught.value.status == 502
    assert github_emulator.writes["merges"] == 0


# -- reverting ---------------------------------------------------------------------------------

async def merged_pr(github: GitHub, emulator: GitHubEmulator, files: dict[str, str | None]) -> tuple[int, str]:
    number = emulator.create_pr("Rework the app", files)
    return number, (await github.merge(number, emulator.pr_head(number))).sha


async def test_revert_right_after_the_merge_restores_the_tree_before_it(github, github_emulator):
    before = github_emulator.branch_head()
    number, merge_sha = await merged_pr(github, github_emulator, {"billing.py": "x\n", "README.md": "# new\n"})

    result = await github.revert_merge(merge_sha, number)

    assert result.status == "reverted"
    assert github_emulator.branch_head() == result.sha
    assert github_emulator.tree_of(result.sha) == github_emulator.tree_of(before)
    assert github_emulator.log(n=1)[0] == (
        result.sha,
        f'Revert "Merge pull request #{number} from acme/alice/change-{number}"\n\n'
        f"This reverts commit {merge_sha}, reversing\nchanges made to {before}.",
        (merge_sha,),
    )
    assert await github.find_revert(merge_sha) == result.sha


async def test_revert_after_others_landed_keeps_their_work(github, github_emulator):
    original = github_emulator.files_at(GITHUB_BASE)
    number, merge_sha = await merged_pr(github, github_emulator, {
        "billing.py": "added\n", "README.md": "# changed\n", "app/main.py": None,
    })
    github_emulator.push({"docs/guide.md": "someone else's work\n"})

    result = await github.revert_merge(merge_sha, number)

    assert result.status == "reverted"
    assert result.paths == ("README.md", "app/main.py", "billing.py")
    assert github_emulator.files_at(GITHUB_BASE) == {**original, "docs/guide.md": "someone else's work\n"}
    assert github_emulator.log(n=1)[0][2] == (github_emulator.log(n=2)[1][0],)  # on top of the newest


async def test_revert_of_files_changed_since_the_merge_is_left_to_a_person(github, github_emulator):
    number, merge_sha = await merged_pr(github, github_emulator, {"README.md": "# ours\n", "billing.py": "x\n"})
    github_emulator.push({"README.md": "# theirs\n"})
    head = github_emulator.branch_head()

    result = await github.revert_merge(merge_sha, number)

    assert (result.status, result.sha, result.paths) == ("manual", None, ("README.md",))
    assert "README.md" in result.detail
    assert result.manual_url is not None and result.manual_url.endswith(f"/acme/app/commit/{merge_sha}")
    assert github_emulator.branch_head() == head
    assert github_emulator.writes["ref_updates"] == 0


async def test_revert_twice_reverts_once(github, github_emulator):
    number, merge_sha = await merged_pr(github, github_emulator, {"billing.py": "x\n"})

    first = await github.revert_merge(merge_sha, number)
    second = await github.revert_merge(merge_sha, number)

    assert (second.status, second.sha) == ("already", first.sha)
    assert reverts_of(github_emulator, merge_sha) == [first.sha]


async def test_revert_looks_again_when_the_branch_moves_under_it(github, github_emulator):
    number, merge_sha = await merged_pr(github, github_emulator, {"billing.py": "x\n"})
    github_emulator.faults.fail_next(
        1, match=r"^PATCH /repos/acme/app/git/refs/heads/master$", status=422,
        body='{"message": "Update is not a fast forward"}')

    result = await github.revert_merge(merge_sha, number)

    assert result.status == "reverted" and github_emulator.branch_head() == result.sha
    assert github_emulator.writes["ref_updates"] == 1
    assert "billing.py" not in github_emulator.files_at(GITHUB_BASE)


async def test_find_revert_is_none_for_a_merge_not_reverted(github, github_emulator):
    _, merge_sha = await merged_pr(github, github_emulator, {"billing.py": "x\n"})

    assert await github.find_revert(merge_sha) is None


# -- credentials -------------------------------------------------------------------------------

async def test_every_request_carries_the_token(github, github_emulator):
    await github.search_open_prs()
    await github.branch_head()

    assert github_emulator.authorized_requests == len(github_emulator.requests) == 2


async def test_bad_credentials_are_permanent_and_never_show_the_token(github, github_emulator):
    github_emulator.faults.fail_next(
        1, status=401, body=f'{{"message": "Bad credentials for {GITHUB_TOKEN}"}}')

    with pytest.raises(PermanentError) as caught:
        await github.branch_head()

    assert "bad credentials" in str(caught.value).lower()
    assert GITHUB_TOKEN not in str(caught.value) and GITHUB_TOKEN not in caught.value.message


async def test_an_unreachable_github_is_reported_without_the_token(github_emulator):
    token = "plain-secret-value-without-a-known-prefix"
    github = GitHub(GITHUB_REPO, GITHUB_BASE, token=token, api_url=f"http://{token}@127.0.0.1:9/api/v3",
                    policy=CallPolicy(timeout=5.0))

    with pytest.raises(TransientError) as caught:
        await github.branch_head()

    assert token not in str(caught.value)


# -- speculative builds: candidates ---------------------------------------------------------------

CANDIDATE = "fatcontroller/app/7"


async def test_a_candidate_is_the_pr_head_merged_on_a_branch_and_lands_as_a_fast_forward(github, github_emulator):
    number = github_emulator.create_pr("Candidate", {"candidate.py": "x = 1\n"})
    base, head = github_emulator.branch_head(), github_emulator.pr_head(number)

    sha = await github.make_candidate(CANDIDATE, base, number, head, "acme:alice/candidate")
    assert sha is not None and github_emulator.branches()[CANDIDATE] == sha
    assert await github.make_candidate(CANDIDATE, base, number, head, "acme:alice/candidate") == sha  # once
    merged = github_emulator.git.commit(sha)
    assert merged.parents == (base, head) and merged.message.startswith(f"Merge pull request #{number} from")

    assert await github.land_candidate(sha, base)
    assert github_emulator.branch_head() == sha and github_emulator.pull_request(number).merged
    assert await github.land_candidate(sha, base)  # landed already: nothing more to do
    await github.drop_candidate(CANDIDATE)
    await github.drop_candidate(CANDIDATE)
    assert CANDIDATE not in github_emulator.branches()


async def test_a_candidate_whose_base_moved_does_not_land(github, github_emulator):
    number = github_emulator.create_pr("Stale", {"stale.py": "x = 1\n"})
    base = github_emulator.branch_head()
    sha = await github.make_candidate(CANDIDATE, base, number, github_emulator.pr_head(number), "acme:alice/stale")
    github_emulator.push({"README.md": "someone else\n"}, message="A push to master")
    moved = github_emulator.branch_head()

    assert sha is not None and not await github.land_candidate(sha, base)
    assert github_emulator.branch_head() == moved and not github_emulator.pull_request(number).merged


async def test_a_conflicting_candidate_is_none_and_leaves_no_branch(github, github_emulator):
    number = github_emulator.create_pr("Conflicts", {"README.md": "theirs\n"})
    github_emulator.push({"README.md": "ours\n"}, message="Ours")

    assert await github.make_candidate(CANDIDATE, github_emulator.branch_head(), number,
                                       github_emulator.pr_head(number), "acme:alice/conflicts") is None
    assert CANDIDATE not in github_emulator.branches()
