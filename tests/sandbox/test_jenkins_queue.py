"""The queue and builds: coalesced webhook builds, stopping, queue waits, outcomes scripted per pull request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jenkins
import pytest
import requests

from sandbox.jenkins import JenkinsEmulator
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER, RecordingRegistry
from tests.sandbox.test_jenkins import wait_for


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture
def emulator(jenkins_registry: RecordingRegistry) -> Iterator[JenkinsEmulator]:
    emulator = JenkinsEmulator({"app-master": "master", "app-pr": "multibranch"}, registry=jenkins_registry,
                               default_duration=0.1, queue_delay=0.02).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: JenkinsEmulator) -> jenkins.Jenkins:
    return jenkins.Jenkins(emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)


def hook(emulator: JenkinsEmulator, event: str, payload: dict[str, Any]) -> None:
    requests.post(f"{emulator.url}/github-webhook/", json=payload, headers={"X-GitHub-Event": event},
                  timeout=5).raise_for_status()


def push(emulator: JenkinsEmulator, after: str) -> None:
    hook(emulator, "push", {"ref": "refs/heads/master", "after": after})


def pull_request(emulator: JenkinsEmulator, number: int, head: str, action: str = "opened") -> None:
    hook(emulator, "pull_request", {"action": action, "pull_request": {
        "number": number, "head": {"sha": head}, "base": {"ref": "master", "sha": sha(999)}}})


def result(client: jenkins.Jenkins, job: str, number: int) -> str:
    """The build's result once it has finished."""

    def probe() -> str | None:
        try:
            return client.get_build_info(job, number)["result"]
        except jenkins.JenkinsException:  # not started yet
            return None

    return wait_for(probe)


# -- coalesced webhook builds ----------------------------------------------------------------------

def test_pushes_within_the_coalescing_window_make_one_build_of_the_latest_commit(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    emulator.coalesce("app-master", 0.4)

    for n in (1, 2, 3):
        push(emulator, sha(n))
    assert result(client, "app-master", 1) == "SUCCESS"
    time.sleep(0.3)  # long enough for any second build to have started

    assert emulator.started == [("app-master", 1, sha(3))]
    assert emulator.coalesced == [("app-master", sha(1)), ("app-master", sha(2))]
    assert jenkins_registry.pushed == [("app", sha(3))]


def test_the_next_push_can_be_coalesced_away_so_its_commit_never_gets_a_build(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.coalesce_next("app-master")

    push(emulator, sha(1))  # say the merge commit of a deploy
    push(emulator, sha(2))
    assert result(client, "app-master", 1) == "SUCCESS"

    assert emulator.started == [("app-master", 1, sha(2))]
    assert emulator.coalesced == [("app-master", sha(1))]
    assert emulator.build_count("app-master", sha(1)) == 0


def test_coalescing_a_multibranch_project_covers_its_pr_jobs(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.coalesce("app-pr", 0.3)

    pull_request(emulator, 7, sha(1))
    pull_request(emulator, 7, sha(2), action="synchronize")
    pull_request(emulator, 8, sha(3))
    result(client, "app-pr/PR-7", 1)
    result(client, "app-pr/PR-8", 1)

    assert sorted(emulator.started) == [("app-pr/PR-7", 1, sha(2)), ("app-pr/PR-8", 1, sha(3))]


# -- stopping --------------------------------------------------------------------------------------

def test_stopping_a_running_build_aborts_it(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, jenkins_registry: RecordingRegistry
) -> None:
    emulator.script(sha(1), ["HANG"], duration=5.0)
    number = emulator.start_build("app-master", sha(1))

    client.stop_build("app-master", number)

    assert result(client, "app-master", number) == "ABORTED"
    build = client.get_build_info("app-master", number)
    assert build["building"] is False
    assert jenkins_registry.pushed == []  # stopped before it got as far as its image
    assert f"Aborted by {JENKINS_USER}" in client.get_build_console_output("app-master", number)
    client.stop_build("app-master", number)  # stopping a finished build does nothing
    assert client.get_job_info("app-master")["color"] == "aborted"


def test_a_pr_job_build_can_be_stopped_too(client: jenkins.Jenkins, emulator: JenkinsEmulator) -> None:
    emulator.script_next("app-pr", ["HANG"])
    pull_request(emulator, 110, sha(1))
    wait_for(lambda: emulator.started)

    client.stop_build("app-pr/PR-110", 1)

    assert result(client, "app-pr/PR-110", 1) == "ABORTED"


def test_a_queued_build_is_cancelled_and_one_that_left_the_queue_is_not_found(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.queue_delay = 5
    waiting = client.build_job("app-master", {"GIT_COMMIT": sha(1)})
    emulator.queue_delay = 0
    started = client.build_job("app-master", {"GIT_COMMIT": sha(2)})
    wait_for(lambda: client.get_queue_item(started).get("executable"))
    crumb = requests.get(f"{emulator.url}/crumbIssuer/api/json", timeout=5).json()["crumb"]

    gone = requests.post(f"{emulator.url}/queue/cancelItem", params={"id": started}, timeout=5,
                         headers={"Jenkins-Crumb": crumb})
    client.cancel_queue(waiting)

    assert gone.status_code == 404
    item = client.get_queue_item(waiting)
    assert (item["_class"], item["cancelled"], item["executable"]) == ("hudson.model.Queue$LeftItem", True, None)
    assert [number for _, number, _ in emulator.started] == [1]


# -- waiting in the queue --------------------------------------------------------------------------

def test_a_build_waits_for_an_executor_after_its_quiet_period_then_starts(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.delay_queue("app-master", 0.4, why="Waiting for next available executor on 'linux'", count=1)

    queue_id = client.build_job("app-master", {"GIT_COMMIT": sha(1)})
    waiting = wait_for(lambda: (i := client.get_queue_item(queue_id)) and i["_class"].endswith("BuildableItem") and i)
    listed = client.get_queue_info()

    assert waiting["why"] == "Waiting for next available executor on 'linux'"
    assert "executable" not in waiting
    assert [item["id"] for item in listed] == [queue_id]
    assert client.get_job_info("app-master")["queueItem"]["_class"] == "hudson.model.Queue$BuildableItem"
    executable = wait_for(lambda: client.get_queue_item(queue_id).get("executable"))
    assert executable["number"] == 1

    # count=1: the next build does not wait
    again = client.build_job("app-master", {"GIT_COMMIT": sha(2)})
    assert wait_for(lambda: client.get_queue_item(again).get("executable"), within=0.5)


def test_a_held_build_waits_until_released(client: jenkins.Jenkins, emulator: JenkinsEmulator) -> None:
    emulator.delay_queue("app-pr", None)
    pull_request(emulator, 110, sha(1))
    item = wait_for(lambda: (i := client.get_queue_info()) and i[0]["_class"].endswith("BuildableItem") and i[0])
    time.sleep(0.2)

    assert (item["task"]["name"], item["why"]) == ("PR-110", "Waiting for next available executor")
    assert emulator.started == []

    emulator.release_queue("app-pr")
    assert result(client, "app-pr/PR-110", 1) == "SUCCESS"
    assert client.get_queue_info() == []


def test_build_with_parameters_honours_its_delay(client: jenkins.Jenkins, emulator: JenkinsEmulator) -> None:
    queue_id = client.build_job("app-master", {"GIT_COMMIT": sha(1), "delay": "1sec"})

    item = client.get_queue_item(queue_id)

    assert item["why"].startswith("In the quiet period. Expires in ")
    assert item["why"].endswith(" ms") or item["why"].endswith(" sec")
    assert item["params"] == f"\nGIT_COMMIT={sha(1)}"


# -- outcomes scripted per pull request ----------------------------------------------------------

def test_the_next_build_of_a_pr_fails_then_it_is_green_whatever_commit_it_builds(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.script_pr(110, ["FAILURE", "SUCCESS"])

    pull_request(emulator, 110, sha(1))
    first = result(client, "app-pr/PR-110", 1)
    pull_request(emulator, 110, sha(3), action="synchronize")  # a new head: still the PR's script
    pull_request(emulator, 111, sha(2))

    assert first == "FAILURE"
    assert result(client, "app-pr/PR-110", 2) == "SUCCESS"
    assert result(client, "app-pr/PR-111", 1) == "SUCCESS"


def test_a_freestyle_pr_job_follows_the_pr_script_too(jenkins_registry: RecordingRegistry) -> None:
    emulator = JenkinsEmulator({"app-prs": "pr"}, registry=jenkins_registry, default_duration=0.05,
                               queue_delay=0.01).start()
    try:
        client = jenkins.Jenkins(emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)
        emulator.script_pr(110, ["FAILURE", "SUCCESS"])
        pull_request(emulator, 110, sha(1))
        assert result(client, "app-prs", 1) == "FAILURE"
        pull_request(emulator, 110, sha(1), action="reopened")
        assert result(client, "app-prs", 2) == "SUCCESS"
        build = client.get_build_info("app-prs", 2)
        assert build["actions"][-1]["lastBuiltRevision"]["branch"] == [{"SHA1": sha(1), "name": "origin/pr/110/head"}]
    finally:
        emulator.stop()


def test_a_script_of_the_project_goes_to_the_next_commit_any_of_its_pr_jobs_builds(
    client: jenkins.Jenkins, emulator: JenkinsEmulator
) -> None:
    emulator.script_next("app-pr", ["FAILURE", "SUCCESS"])

    pull_request(emulator, 5, sha(1))
    assert result(client, "app-pr/PR-5", 1) == "FAILURE"
    queue_id = client.build_job("app-pr/PR-5")  # a retry of the same head: red once, then green
    number = wait_for(lambda: (client.get_queue_item(queue_id).get("executable") or {}).get("number"))
    pull_request(emulator, 6, sha(2))

    assert result(client, "app-pr/PR-5", number) == "SUCCESS"
    assert result(client, "app-pr/PR-6", 1) == "SUCCESS"


def test_a_commit_script_wins_over_the_pr_script(client: jenkins.Jenkins, emulator: JenkinsEmulator) -> None:
    emulator.script_pr(110, ["FAILURE"])
    emulator.script(sha(1), ["SUCCESS"])

    pull_request(emulator, 110, sha(1))

    assert result(client, "app-pr/PR-110", 1) == "SUCCESS"
    with pytest.raises(ValueError, match="outcomes"):
        emulator.script_pr(110, ["PURPLE"])
