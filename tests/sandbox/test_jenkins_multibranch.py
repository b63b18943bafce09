"""Multibranch projects of PR jobs, and PR builds of the merge ref, as GitHub Branch Source makes them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import jenkins
import pytest
import requests

from sandbox.jenkins import JenkinsEmulator
from sandbox.world import Sandbox, SandboxSpec
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER, RecordingRegistry
from tests.sandbox.test_jenkins import wait_for

HEAD = "a1" * 20
NEW_HEAD = "a2" * 20
BASE = "b1" * 20
NEW_BASE = "b2" * 20
MERGE = "e1" * 20
PIPELINE_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
PIPELINE_RUN = "org.jenkinsci.plugins.workflow.job.WorkflowRun"


@pytest.fixture
def emulator(jenkins_registry: RecordingRegistry) -> Iterator[JenkinsEmulator]:
    """`app-master` builds master; `app-pr` is a multibranch project of PR jobs."""
    emulator = JenkinsEmulator({"app-master": "master", "app-pr": "multibranch"}, registry=jenkins_registry,
                               default_duration=0.1, queue_delay=0.02).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: JenkinsEmulator) -> jenkins.Jenkins:
    return jenkins.Jenkins(emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)


def pull_request(emulator: JenkinsEmulator, number: int, head: str, *, action: str = "opened",
                 base_sha: str = BASE, title: str = "Purple buttons") -> None:
    """A `pull_request` webhook as GitHub sends it (the fields Branch Source reads)."""
    payload = {"action": action, "number": number, "pull_request": {
        "number": number, "title": title, "body": "Makes them purple.",
        "html_url": f"https://github.com/acme/app/pull/{number}", "user": {"login": "alice"},
        "head": {"sha": head, "ref": f"alice/change-{number}"}, "base": {"sha": base_sha, "ref": "master"}}}
    requests.post(f"{emulator.url}/github-webhook/", json=payload, headers={"X-GitHub-Event": "pull_request"},
                  timeout=5).raise_for_status()


def push(emulator: JenkinsEmulator, after: str, *, commits: tuple[str, ...] = ()) -> None:
    payload = {"ref": "refs/heads/master", "after": after, "commits": [{"id": sha} for sha in commits],
               "pusher": {"name": "bob"}}
    requests.post(f"{emulator.url}/github-webhook/", json=payload, headers={"X-GitHub-Event": "push"},
                  timeout=5).raise_for_status()


def finished(client: jenkins.Jenkins, job: str, number: int) -> dict[str, Any]:
    """The build once it exists and has finished."""

    def probe() -> dict[str, Any] | None:
        try:
            build = client.get_build_info(job, number)
        except jenkins.JenkinsException:  # not there yet
            return None
        return None if build["building"] else build

    return wait_for(probe)


def git_data(build: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in build["actions"] if a.get("_class") == "hudson.plugins.git.util.BuildData")


def test_a_pull_request_event_creates_its_pr_job_in_the_project_and_builds_it(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    pull_request(emulator, 110, HEAD)
    wait_for(lambda: emulator.started)

    build = finished(client, "app-pr/PR-110", 1)
    project = client.get_job_info("app-pr")
    job = client.get_job_info("app-pr/PR-110")

    assert project["_class"] == "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"
    assert project["jobs"] == [{"_class": PIPELINE_JOB, "name": "PR-110", "color": "blue",
                                "url": f"{emulator.url}/job/app-pr/job/PR-110/"}]
    assert (job["_class"], job["name"], job["fullName"], job["buildable"]) == (
        PIPELINE_JOB, "PR-110", "app-pr/PR-110", True)
    metadata = next(a for a in job["actions"] if a["_class"].endswith("ObjectMetadataAction"))
    assert (metadata["objectDisplayName"], metadata["objectUrl"]) == (
        "Purple buttons", "https://github.com/acme/app/pull/110")
    assert (build["_class"], build["result"], build["fullDisplayName"]) == (
        PIPELINE_RUN, "SUCCESS", "app-pr » PR-110 #1")
    assert build["url"] == f"{emulator.url}/job/app-pr/job/PR-110/1/"
    assert git_data(build)["lastBuiltRevision"] == {"SHA1": HEAD, "branch": [{"SHA1": HEAD, "name": "PR-110"}]}
    assert jenkins_registry.pushed == [("app", HEAD)]
    assert emulator.started == [("app-pr/PR-110", 1, HEAD)]


def test_every_job_is_listed_with_its_full_name_and_folders_only_when_asked(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    pull_request(emulator, 7, HEAD)
    pull_request(emulator, 12, NEW_HEAD)
    wait_for(lambda: len(emulator.started) == 2)

    top = {job["fullname"] for job in client.get_jobs()}
    every = [job["fullname"] for job in client.get_all_jobs()]

    assert top == {"app-master", "app-pr"}
    assert every == ["app-master", "app-pr", "app-pr/PR-12", "app-pr/PR-7"]  # a folder's items sorted by name
    assert emulator.job_names() == ["app-master", "app-pr/PR-12", "app-pr/PR-7"]


def test_a_push_to_the_pull_request_builds_its_new_head_and_closing_it_leaves_the_job_unbuildable(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    pull_request(emulator, 110, HEAD)
    finished(client, "app-pr/PR-110", wait_for(lambda: emulator.started)[0][1])
    pull_request(emulator, 110, NEW_HEAD, action="synchronize")
    second = finished(client, "app-pr/PR-110", wait_for(lambda: len(emulator.started) == 2 and 2))

    pull_request(emulator, 110, NEW_HEAD, action="closed")
    info = wait_for(lambda: (i := client.get_job_info("app-pr/PR-110")) and not i["buildable"] and i)

    assert git_data(second)["lastBuiltRevision"]["SHA1"] == NEW_HEAD
    assert [b["number"] for b in info["builds"]] == [2, 1]
    assert info["color"] == "disabled"
    with pytest.raises(requests.HTTPError) as refused:
        client.build_job("app-pr/PR-110")
    assert refused.value.response.status_code == 409


def test_a_pr_job_started_through_the_api_checks_out_its_pull_request_and_keeps_the_parameter(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    pull_request(emulator, 110, HEAD)
    finished(client, "app-pr/PR-110", wait_for(lambda: emulator.started)[0][1])

    queue_id = client.build_job("app-pr/PR-110", {"GIT_COMMIT": HEAD})
    number = wait_for(lambda: (client.get_queue_item(queue_id).get("executable") or {}).get("number"))
    build = finished(client, "app-pr/PR-110", number)

    assert number == 2
    assert build["actions"][0]["parameters"] == [
        {"_class": "hudson.model.StringParameterValue", "name": "GIT_COMMIT", "value": HEAD}]
    assert git_data(build)["lastBuiltRevision"]["SHA1"] == HEAD
    assert client.get_job_info("app-pr/PR-110")["lastSuccessfulBuild"]["number"] == 2


def test_an_unknown_pr_job_is_not_found(client: jenkins.Jenkins) -> None:
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        client.get_job_info("app-pr/PR-404")
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        client.get_build_info("app-pr/PR-404", 1)


# -- the merge ref -------------------------------------------------------------------------------

def test_a_merge_ref_build_builds_and_pushes_the_merge_and_records_the_head(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    asked: list[tuple[int, str, str]] = []
    emulator.merge_ref = lambda pr, head, base: asked.append((pr, head, base)) or MERGE
    emulator.build_merge_ref("app-pr")

    pull_request(emulator, 110, HEAD)
    build = finished(client, "app-pr/PR-110", wait_for(lambda: emulator.started)[0][1])

    data = git_data(build)
    assert asked == [(110, HEAD, BASE)]  # the base commit the event named, as Branch Source merges
    assert data["lastBuiltRevision"] == {"SHA1": MERGE, "branch": [{"SHA1": HEAD, "name": "PR-110"}]}
    assert data["buildsByBranchName"]["PR-110"]["marked"]["SHA1"] == HEAD
    assert data["buildsByBranchName"]["PR-110"]["revision"]["SHA1"] == MERGE
    assert any(a["_class"] == "hudson.plugins.git.util.MergeRecord" for a in build["actions"])
    assert jenkins_registry.pushed == [("app", MERGE)]
    assert emulator.started == [("app-pr/PR-110", 1, MERGE)]
    assert f"Merge succeeded, producing {MERGE}" in client.get_build_console_output("app-pr/PR-110", 1)


def test_a_merge_that_conflicts_fails_the_build_without_an_image(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    emulator.merge_ref = lambda _pr, _head, _base: None
    emulator.build_merge_ref("app-pr")

    pull_request(emulator, 110, HEAD)
    build = finished(client, "app-pr/PR-110", wait_for(lambda: emulator.started)[0][1])

    assert build["result"] == "FAILURE"
    assert not [a for a in build["actions"] if a["_class"] == "hudson.plugins.git.util.BuildData"]
    assert jenkins_registry.pushed == []
    assert "Merge conflict" in client.get_build_console_output("app-pr/PR-110", 1)


def test_a_pr_job_is_in_the_queue_until_its_build_begins_also_while_its_merge_is_made(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    merging, merged = threading.Event(), threading.Event()

    def slow_merge(_pr: int, _head: str, _base: str) -> str:
        merging.set()
        merged.wait(5)
        return MERGE

    emulator.merge_ref = slow_merge
    emulator.build_merge_ref("app-pr")
    pull_request(emulator, 110, HEAD)
    assert merging.wait(5)

    during = client.get_job_info("app-pr/PR-110")
    merged.set()
    wait_for(lambda: emulator.started)
    after = client.get_job_info("app-pr/PR-110")

    # as Jenkins' pending items: handed to an executor, the item is in the queue until its build exists
    assert (during["inQueue"], during["queueItem"]["_class"], during["builds"]) == (
        True, "hudson.model.Queue$BuildableItem", [])
    assert (after["inQueue"], after["queueItem"], [b["number"] for b in after["builds"]]) == (False, None, [1])


def test_merge_ref_is_per_pr_job_and_without_the_hook_the_build_fails_loudly(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    pull_request(emulator, 110, HEAD)
    pull_request(emulator, 111, NEW_HEAD)
    wait_for(lambda: len(emulator.started) == 2)
    emulator.build_merge_ref("app-pr/PR-111")

    pull_request(emulator, 110, HEAD, action="reopened")
    pull_request(emulator, 111, NEW_HEAD, action="reopened")
    plain = finished(client, "app-pr/PR-110", 2)
    merged = finished(client, "app-pr/PR-111", 2)

    assert git_data(plain)["lastBuiltRevision"]["SHA1"] == HEAD
    assert merged["result"] == "FAILURE"
    assert "no merge_ref hook is set" in client.get_build_console_output("app-pr/PR-111", 2)
    with pytest.raises(ValueError, match="multibranch"):
        emulator.build_merge_ref("app-master")


def test_a_push_to_the_base_rebuilds_merge_ref_pr_jobs_except_one_whose_head_just_landed(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    merges: list[tuple[int, str, str]] = []
    emulator.merge_ref = lambda pr, head, base: merges.append((pr, head, base)) or f"{pr:040x}"
    emulator.build_merge_ref("app-pr")
    pull_request(emulator, 110, HEAD)
    pull_request(emulator, 111, NEW_HEAD)
    wait_for(lambda: len(emulator.started) == 2)

    # the base moves: PR 111's head landed with it (it is being merged), PR 110 must be merged again
    push(emulator, NEW_BASE, commits=(NEW_HEAD, NEW_BASE))
    wait_for(lambda: len(emulator.started) == 4)  # master, then PR-110 again

    assert sorted(merges) == [(110, HEAD, BASE), (110, HEAD, NEW_BASE), (111, NEW_HEAD, BASE)]
    assert sorted(job for job, _, _ in emulator.started) == ["app-master", "app-pr/PR-110", "app-pr/PR-110",
                                                             "app-pr/PR-111"]
    rebuilt = finished(client, "app-pr/PR-110", 2)
    assert rebuilt["actions"][0]["causes"][0]["shortDescription"] == "Push event to branch master"


# -- on the sandbox, against the GitHub emulator's repository ------------------------------------

@pytest.fixture
def world() -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxSpec(jobs={"app-master": "master", "app-pr": "multibranch"},
                                  build_duration=0.1)).start()
    yield sandbox
    sandbox.stop()


def test_on_the_sandbox_a_pr_build_of_the_merge_ref_merges_the_base_into_the_head(world: Sandbox) -> None:
    github, emulator = world.github, world.jenkins
    registry = RecordingRegistry()
    emulator.registry = registry
    emulator.build_merge_ref("app-pr")
    number = github.create_pr("Purple buttons", {"app/buttons.css": "button { color: purple }\n"})
    job = f"app-pr/PR-{number}"
    head = github.pr_head(number)
    client = jenkins.Jenkins(emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)
    first = finished(client, job, 1)
    github.push({"README.md": "# app, now with a changelog\n"})  # the base moves on: the PR is behind
    base = github.branch_head()

    def built(head_sha: str) -> dict[str, Any] | None:
        """The finished build whose checkout merged the base into `head_sha`."""
        for build in emulator.builds(job):
            data = [a for a in build["actions"] if a["_class"] == "hudson.plugins.git.util.BuildData"]
            if not build["building"] and data and data[0]["lastBuiltRevision"]["branch"][0]["SHA1"] == head_sha \
                    and data[0]["lastBuiltRevision"]["SHA1"] != head_sha:
                return build
        return None

    rebuilt = wait_for(lambda: built(head))  # the push to the base rebuilt the PR
    merge = git_data(rebuilt)["lastBuiltRevision"]["SHA1"]

    # opened while the PR was up to date: the merge was the head itself
    assert git_data(first)["lastBuiltRevision"]["SHA1"] == head
    assert github.log(merge, 1)[0][2] == (head, base)  # Jenkins merges the base into the PR head
    assert github.files_at(merge)["README.md"] == "# app, now with a changelog\n"
    assert github.files_at(merge)["app/buttons.css"] == "button { color: purple }\n"
    assert ("app", merge) in registry.pushed
    assert git_data(rebuilt)["remoteUrls"] == [f"{github.root_url}/acme/app.git"]


    github.push_pr(number, {"app/buttons.css": "button { color: rebeccapurple }\n"})
    updated = wait_for(lambda: built(github.pr_head(number)))  # a push to the PR: its new head merged
    files = github.files_at(git_data(updated)["lastBuiltRevision"]["SHA1"])
    assert (files["README.md"], files["app/buttons.css"]) == ("# app, now with a changelog\n",
                                                              "button { color: rebeccapurple }\n")
