"""The Jenkins facade, driving python-jenkins against the Jenkins emulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jenkins as python_jenkins
import pytest
import requests

from integrations.jenkins import Build, Jenkins
from integrations.outside import NotFound, PermanentError, TransientError
from sandbox.jenkins import JenkinsEmulator
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER, RecordingRegistry, eventually, finished_build


def sha(n: int) -> str:
    return f"{n:040x}"


async def webhook(emulator: JenkinsEmulator, event: str, payload: dict) -> None:
    """Deliver a GitHub webhook the way GitHub does: JSON, no auth, no crumb."""
    response = await asyncio.to_thread(requests.post, f"{emulator.url}/github-webhook/", json=payload,
                                       headers={"X-GitHub-Event": event}, timeout=5)
    response.raise_for_status()


def actions_of(emulator: JenkinsEmulator, job: str, number: int) -> set[str]:
    build = next(b for b in emulator.builds(job) if b["number"] == number)
    return {action["_class"].rsplit(".", 1)[-1] for action in build["actions"]}


async def started(jenkins: Jenkins, queue_id: int) -> tuple[str, int]:
    return await eventually(lambda: jenkins.build_from_queue(queue_id), what=f"queue item {queue_id} started")


# -- finding builds ----------------------------------------------------------------------------

async def test_a_push_to_the_base_branch_starts_its_job_and_the_build_is_found_by_its_checkout(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    await webhook(jenkins_emulator, "push", {"ref": "refs/heads/feature", "after": sha(1)})
    await webhook(jenkins_emulator, "push", {"ref": "refs/heads/master", "after": sha(2)})

    build = await eventually(lambda: jenkins.find_build("app-master", sha(2)), what="build of the push")

    assert (build.job, build.number, build.sha) == ("app-master", 1, sha(2))
    assert build.url == f"{jenkins_emulator.url}/job/app-master/1/"
    # matched through the git plugin's data: this build has no parameters
    assert actions_of(jenkins_emulator, "app-master", 1) == {"CauseAction", "BuildData"}
    assert [(job, commit) for job, _, commit in jenkins_emulator.started] == [("app-master", sha(2))]
    assert await jenkins.find_build("app-master", sha(1)) is None


async def test_an_opened_or_updated_pull_request_starts_the_pr_job_for_its_head(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    for action, head in (("closed", sha(10)), ("opened", sha(11)), ("synchronize", sha(12))):
        await webhook(jenkins_emulator, "pull_request",
                {"action": action, "pull_request": {"number": 7, "head": {"sha": head}}})

    newest = await eventually(lambda: jenkins.find_build("app-pr", sha(12)), what="build of the PR head")

    assert newest.number == 2
    assert (await jenkins.find_build("app-pr", sha(11))).number == 1
    assert await jenkins.find_build("app-pr", sha(10)) is None
    assert jenkins_emulator.builds("app-master") == []


async def test_a_build_started_through_the_api_is_queued_then_found_by_its_parameter(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.queue_delay = 0.3

    queue_id = await jenkins.start_build("app-master", sha(3))

    assert await jenkins.build_from_queue(queue_id) is None
    url, number = await started(jenkins, queue_id)
    assert url == f"{jenkins_emulator.url}/job/app-master/{number}/"
    build = await jenkins.find_build("app-master", sha(3).upper())
    assert (build.number, build.sha) == (number, sha(3))
    assert actions_of(jenkins_emulator, "app-master", number) == {"ParametersAction", "CauseAction"}
    assert jenkins_emulator.users == {JENKINS_USER}
    assert jenkins_emulator.anonymous_requests == 0


async def test_a_build_stopped_through_the_api_ends_aborted(jenkins: Jenkins,
                                                            jenkins_emulator: JenkinsEmulator) -> None:
    jenkins_emulator.script_next("app-master", ["SUCCESS"], duration=30)
    _, number = await started(jenkins, await jenkins.start_build("app-master", sha(4)))

    await jenkins.stop_build("app-master", number)

    build = await eventually(lambda: _finished(jenkins, number), what="the stopped build to end")
    assert build.result == "ABORTED"
    await jenkins.stop_build("app-master", number)  # ended already: nothing happens


async def _finished(jenkins: Jenkins, number: int) -> Build | None:
    build = await jenkins.get_build("app-master", number)
    return build if build.finished else None


async def test_find_build_returns_the_newest_build_of_the_commit(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.script(sha(4), ["FAILURE", "SUCCESS"], duration=0.05)
    first = jenkins_emulator.start_build("app-master", sha(4))
    jenkins_emulator.start_build("app-master", sha(5))
    await finished_build(jenkins, "app-master", first)
    second = jenkins_emulator.start_build("app-master", sha(4))

    build = await jenkins.find_build("app-master", sha(4))

    assert build.number == second == 3


async def test_find_build_looks_only_at_the_last_builds(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.start_build("app-master", sha(6))
    for n in range(3):
        jenkins_emulator.start_build("app-master", sha(100 + n))

    assert await jenkins.find_build("app-master", sha(6), limit=3) is None
    assert (await jenkins.find_build("app-master", sha(6), limit=4)).number == 1


# -- what a build built: the head, or (multibranch PR jobs) the head merged with its target ------

@pytest.fixture
def multibranch(jenkins_registry: RecordingRegistry) -> Iterator[JenkinsEmulator]:
    """`app-master` builds master; `app-pr` is a multibranch project with a job `PR-<n>` per pull request."""
    emulator = JenkinsEmulator({"app-master": "master", "app-pr": "multibranch"}, registry=jenkins_registry,
                               default_duration=0.1, queue_delay=0.02).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def projects(multibranch: JenkinsEmulator) -> Jenkins:
    """The facade pointed at the Jenkins with the multibranch project."""
    return Jenkins(multibranch.url, JENKINS_USER, JENKINS_TOKEN, timeout=5.0)


async def opened(emulator: JenkinsEmulator, number: int, head: str, base: str) -> None:
    """GitHub's `pull_request` webhook for a newly opened pull request (what Branch Source reads of it)."""
    await webhook(emulator, "pull_request", {"action": "opened", "number": number, "pull_request": {
        "number": number, "title": "Purple buttons", "html_url": f"https://github.com/acme/app/pull/{number}",
        "user": {"login": "alice"}, "head": {"sha": head, "ref": "alice/purple"},
        "base": {"sha": base, "ref": "master"}}})


async def pr_build(jenkins: Jenkins, job: str, head: str) -> Build:
    """The build of `head` in the PR's job, once the webhook has made the job and started it."""

    async def probe() -> Build | None:
        try:
            return await jenkins.find_build(job, head)
        except NotFound:  # the project has not made the job yet
            return None

    return await eventually(probe, what=f"a build of {head[:8]} in {job}")


async def test_a_build_of_a_commit_built_that_commit(jenkins: Jenkins, jenkins_emulator: JenkinsEmulator) -> None:
    number = jenkins_emulator.start_build("app-master", sha(7))

    found = await eventually(lambda: jenkins.find_build("app-master", sha(7)), what="the build")
    read = await jenkins.get_build("app-master", number)

    for build in (found, read):
        assert (build.sha, build.revision, build.merged_head, build.built) == (sha(7), sha(7), None, sha(7))


async def test_a_pr_merged_with_its_target_is_found_by_its_head_and_says_it_built_the_merge(
    projects: Jenkins, multibranch: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    merge = "e1" * 20
    multibranch.merge_ref = lambda _pr, _head, _base: merge
    multibranch.build_merge_ref("app-pr")
    await opened(multibranch, 110, sha(40), sha(41))

    found = await pr_build(projects, "app-pr/PR-110", sha(40))
    await finished_build(projects, "app-pr/PR-110", found.number)
    read = await projects.get_build("app-pr/PR-110", found.number, sha=sha(40).upper())

    for build in (found, read):
        assert (build.job, build.sha, build.revision, build.merged_head) == (
            "app-pr/PR-110", sha(40), merge, sha(40))
        assert build.built == merge and build.url == f"{multibranch.url}/job/app-pr/job/PR-110/1/"
    by_merge = await projects.find_build("app-pr/PR-110", merge)  # the merge is its commit too
    assert by_merge is not None and (by_merge.number, by_merge.revision) == (found.number, merge)
    assert jenkins_registry.pushed == [("app", merge)]  # the image Jenkins made is the merge's


async def test_a_pr_job_started_through_the_api_reports_the_checkout_of_the_head_it_was_started_for(
    projects: Jenkins, multibranch: JenkinsEmulator
) -> None:
    await opened(multibranch, 7, sha(42), sha(43))
    await pr_build(projects, "app-pr/PR-7", sha(42))

    _, number = await started(projects, await projects.start_build("app-pr/PR-7", sha(42)))
    build = await projects.get_build("app-pr/PR-7", number, sha=sha(42))

    assert (build.number, build.sha, build.revision, build.merged_head) == (2, sha(42), sha(42), None)


async def test_the_job_of_a_pull_request_the_project_has_not_discovered_is_not_found(projects: Jenkins) -> None:
    with pytest.raises(NotFound):
        await projects.find_build("app-pr/PR-404", sha(44))


async def test_a_job_says_whether_a_build_of_it_waits_in_the_queue(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    assert await jenkins.in_queue("app-master") is False
    jenkins_emulator.delay_queue("app-master", None)  # no executor until released
    queue_id = await jenkins.start_build("app-master", sha(45))

    assert await jenkins.in_queue("app-master") is True
    jenkins_emulator.release_queue("app-master")
    await started(jenkins, queue_id)
    assert await jenkins.in_queue("app-master") is False


# -- following a build -------------------------------------------------------------------------

async def test_a_build_is_building_and_then_green(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    number = jenkins_emulator.start_build("app-master", sha(20))

    running = await jenkins.get_build("app-master", number)
    done = await finished_build(jenkins, "app-master", number)

    assert (running.building, running.result, running.finished, running.red) == (True, None, False, False)
    assert running.sha == sha(20)
    now = datetime.now(UTC).replace(tzinfo=None)
    assert running.started_at.tzinfo is None
    assert now - timedelta(seconds=5) < running.started_at <= now
    assert (done.green, done.red, done.result) == (True, False, "SUCCESS")
    assert done.duration >= 0.25


async def test_a_commit_scripted_to_fail_once_fails_and_then_passes_when_rebuilt(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.script(sha(21), ["FAILURE", "SUCCESS"], duration=0.1)

    _, first = await started(jenkins, await jenkins.start_build("app-master", sha(21)))
    failed = await finished_build(jenkins, "app-master", first)
    _, second = await started(jenkins, await jenkins.start_build("app-master", sha(21)))
    passed = await finished_build(jenkins, "app-master", second)

    assert (failed.result, failed.red) == ("FAILURE", True)
    assert (passed.result, passed.green) == ("SUCCESS", True)
    assert (await jenkins.find_build("app-master", sha(21))).number == second
    assert jenkins_emulator.build_count("app-master", sha(21)) == 2


async def test_an_aborted_build_is_red(jenkins: Jenkins, jenkins_emulator: JenkinsEmulator) -> None:
    jenkins_emulator.script(sha(22), ["ABORTED"], duration=0.05)

    build = await finished_build(jenkins, "app-master", jenkins_emulator.start_build("app-master", sha(22)))

    assert (build.result, build.red) == ("ABORTED", True)


async def test_a_hanging_build_stays_building(jenkins: Jenkins, jenkins_emulator: JenkinsEmulator) -> None:
    jenkins_emulator.script(sha(23), ["HANG"], duration=0.1)
    jenkins_emulator.script(sha(24), ["SUCCESS"], duration=0.1)
    hanging = jenkins_emulator.start_build("app-master", sha(23))
    alongside = jenkins_emulator.start_build("app-master", sha(24))

    await finished_build(jenkins, "app-master", alongside)
    build = await jenkins.get_build("app-master", hanging)

    assert (build.building, build.result, build.finished, build.red) == (True, None, False, False)


async def test_the_build_pushes_the_image_of_its_commit_while_it_runs(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    jenkins_emulator.script(sha(25), ["SUCCESS"], duration=0.8)
    number = jenkins_emulator.start_build("app-master", sha(25))

    async def pushed() -> bool:
        return ("app", sha(25)) in jenkins_registry.pushed

    await eventually(pushed, what="image pushed")
    assert (await jenkins.get_build("app-master", number)).building


async def test_a_build_scripted_not_to_push_leaves_no_image(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    jenkins_emulator.script(sha(26), ["SUCCESS"], duration=0.05, push=False)

    build = await finished_build(jenkins, "app-master", jenkins_emulator.start_build("app-master", sha(26)))

    assert build.green
    assert jenkins_registry.pushed == []


async def test_a_queue_item_cancelled_in_jenkins_is_a_permanent_error(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.queue_delay = 30
    queue_id = await jenkins.start_build("app-master", sha(27))
    other_client = python_jenkins.Jenkins(jenkins_emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)
    await asyncio.to_thread(other_client.cancel_queue, queue_id)

    with pytest.raises(PermanentError, match="cancelled"):
        await jenkins.build_from_queue(queue_id)


# -- the wire: crumbs, errors, retries ---------------------------------------------------------

async def test_posts_need_the_crumb_which_the_facade_sends(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    bare = await asyncio.to_thread(
        requests.post, f"{jenkins_emulator.url}/job/app-master/buildWithParameters",
        params={"GIT_COMMIT": sha(30)}, auth=(JENKINS_USER, JENKINS_TOKEN), timeout=5)

    queue_id = await jenkins.start_build("app-master", sha(30))

    assert bare.status_code == 403
    assert jenkins_emulator.crumb_rejections == 1
    await started(jenkins, queue_id)
    assert jenkins_emulator.build_count("app-master", sha(30)) == 1


async def test_an_unknown_job_build_or_queue_item_is_not_found(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    with pytest.raises(NotFound):
        await jenkins.find_build("no-such-job", sha(31))
    with pytest.raises(NotFound):
        await jenkins.start_build("no-such-job", sha(31))
    with pytest.raises(NotFound):
        await jenkins.get_build("app-master", 999)
    with pytest.raises(NotFound):
        await jenkins.build_from_queue(999)
    assert jenkins_emulator.started == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_on_reads_are_transient_after_one_attempt(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator, status: int
) -> None:
    number = jenkins_emulator.start_build("app-master", sha(32))
    jenkins_emulator.faults.fail_next(1, match=r"^GET /job/app-master/", status=status)

    with pytest.raises(TransientError):
        await jenkins.find_build("app-master", sha(32))
    assert jenkins_emulator.faults.injected == 1

    build = await jenkins.find_build("app-master", sha(32))
    assert build is not None and build.number == number


async def test_a_server_error_on_starting_a_build_is_transient_and_the_build_is_found_afterwards(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    """Jenkins may have queued the build before failing its answer: the caller looks before starting again."""
    jenkins_emulator.faults.fail_next(1, match=r"^POST /job/app-master/buildWithParameters$", status=503)

    with pytest.raises(TransientError):
        await jenkins.start_build("app-master", sha(33))
    queue_id = await jenkins.start_build("app-master", sha(33))
    await started(jenkins, queue_id)

    assert jenkins_emulator.build_count("app-master", sha(33)) == 1


async def test_a_dropped_connection_is_transient(jenkins: Jenkins, jenkins_emulator: JenkinsEmulator) -> None:
    number = jenkins_emulator.start_build("app-master", sha(34))
    jenkins_emulator.faults.fail_next(1, match=r"^GET /job/app-master/", drop=True)

    with pytest.raises(TransientError):
        await jenkins.get_build("app-master", number)
    assert (await jenkins.get_build("app-master", number)).sha == sha(34)


async def test_unreachable_jenkins_is_transient_at_once_without_quoting_the_token() -> None:
    gone = JenkinsEmulator().start()
    url = gone.url
    gone.stop()
    facade = Jenkins(url, JENKINS_USER, JENKINS_TOKEN, timeout=1.0)

    began = time.monotonic()
    with pytest.raises(TransientError) as caught:
        await facade.find_build("app-master", sha(35))

    assert time.monotonic() - began < 1.5
    assert JENKINS_TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_not_retried_and_never_quote_the_token(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator, status: int
) -> None:
    jenkins_emulator.faults.fail_next(1, status=status, body=f"Invalid password/token {JENKINS_TOKEN}")

    with pytest.raises(PermanentError, match="refused the credentials") as caught:
        await jenkins.find_build("app-master", sha(36))

    assert not isinstance(caught.value, NotFound)
    assert jenkins_emulator.faults.injected == 1
    assert JENKINS_TOKEN not in str(caught.value)


async def test_other_client_errors_are_permanent_and_never_quote_the_token(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.faults.fail_next(1, match="^POST ", status=400, body=f"bad request for {JENKINS_TOKEN}")

    with pytest.raises(PermanentError) as caught:
        await jenkins.start_build("app-master", sha(37))

    assert caught.value.status == 400
    assert JENKINS_TOKEN not in str(caught.value)
    assert jenkins_emulator.started == []


async def test_an_answer_that_is_not_json_is_a_permanent_error(
    jenkins: Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    # what a single-sign-on proxy in front of Jenkins answers to an unauthenticated API call
    jenkins_emulator.faults.fail_next(1, match="^GET /job/", status=200, body="<html>Please log in</html>")

    with pytest.raises(PermanentError, match="not JSON"):
        await jenkins.find_build("app-master", sha(38))
