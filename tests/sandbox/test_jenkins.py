"""The Jenkins emulator speaks the API the way python-jenkins expects it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import jenkins
import pytest
import requests

from sandbox.jenkins import JenkinsEmulator, parse_tree, select
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER

T = TypeVar("T")
SHA = "c0ffee" + "0" * 34


@pytest.fixture
def client(jenkins_emulator: JenkinsEmulator) -> jenkins.Jenkins:
    return jenkins.Jenkins(jenkins_emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)


def wait_for(probe: Callable[[], T | None], within: float = 5.0) -> T:
    deadline = time.monotonic() + within
    while not (value := probe()):
        assert time.monotonic() < deadline, "not so in time"
        time.sleep(0.02)
    return value


def test_it_reports_its_version_and_the_authenticated_user(client: jenkins.Jenkins) -> None:
    assert client.get_version() == "2.440"
    assert client.get_whoami()["id"] == JENKINS_USER
    assert {job["name"] for job in client.get_jobs()} == {"app-master", "app-pr"}


def test_a_queued_build_says_why_it_waits_then_names_its_build(
    client: jenkins.Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.queue_delay = 0.3
    queue_id = client.build_job("app-master", {"GIT_COMMIT": SHA})

    waiting = client.get_queue_item(queue_id)
    assert waiting["why"].startswith("In the quiet period")
    assert "executable" not in waiting
    assert client.get_job_info("app-master")["inQueue"] is True

    executable = wait_for(lambda: client.get_queue_item(queue_id).get("executable"))
    assert executable == {"_class": "hudson.model.FreeStyleBuild", "number": 1,
                          "url": f"{jenkins_emulator.url}/job/app-master/1/"}
    info = client.get_job_info("app-master")
    assert (info["inQueue"], info["nextBuildNumber"], info["lastBuild"]["number"]) == (False, 2, 1)


def test_identical_requests_waiting_in_the_queue_are_folded_into_one(
    client: jenkins.Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    jenkins_emulator.queue_delay = 0.2
    first = client.build_job("app-master", {"GIT_COMMIT": SHA})
    again = client.build_job("app-master", {"GIT_COMMIT": SHA})
    other = client.build_job("app-master", {"GIT_COMMIT": "1" * 40})

    assert first == again != other
    wait_for(lambda: len(jenkins_emulator.started) == 2)


def test_job_info_lists_builds_newest_first_in_full_only_when_asked(
    client: jenkins.Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    for n in range(3):
        jenkins_emulator.start_build("app-master", f"{n:040x}")

    shallow = client.get_job_info("app-master")
    deep = client.get_job_info("app-master", depth=1)

    assert [b["number"] for b in shallow["builds"]] == [3, 2, 1]
    assert set(shallow["builds"][0]) == {"_class", "number", "url"}
    assert deep["builds"][0]["building"] is True
    assert deep["builds"][2]["actions"][-1]["lastBuiltRevision"]["SHA1"] == f"{0:040x}"


def test_a_tree_query_keeps_only_the_named_fields_and_range(jenkins_emulator: JenkinsEmulator) -> None:
    for n in range(3):
        jenkins_emulator.start_build("app-master", f"{n:040x}", params={"GIT_COMMIT": f"{n:040x}"})

    answer = requests.get(f"{jenkins_emulator.url}/job/app-master/api/json",
                          params={"tree": "builds[number,actions[parameters[value]]]{1,2},nextBuildNumber"},
                          timeout=5).json()

    assert answer["nextBuildNumber"] == 4
    assert [b["number"] for b in answer["builds"]] == [2]
    assert set(answer["builds"][0]) == {"_class", "number", "actions"}
    parameters = answer["builds"][0]["actions"][0]["parameters"]
    assert parameters == [{"_class": "hudson.model.StringParameterValue", "value": f"{1:040x}"}]


def test_tree_ranges_follow_jenkins_syntax() -> None:
    data = {"items": [{"n": i, "x": i} for i in range(5)]}

    assert select(data, parse_tree("items[n]{3}")) == {"items": [{"n": 3}]}
    assert select(data, parse_tree("items[n]{,2}")) == {"items": [{"n": 0}, {"n": 1}]}
    assert select(data, parse_tree("items[x]{3,}")) == {"items": [{"x": 3}, {"x": 4}]}


def test_the_build_endpoint_builds_the_head_of_the_jobs_branch(
    client: jenkins.Jenkins, jenkins_emulator: JenkinsEmulator
) -> None:
    form = {"payload": json.dumps({"ref": "refs/heads/master", "after": SHA})}
    requests.post(f"{jenkins_emulator.url}/github-webhook/", data=form,
                  headers={"X-GitHub-Event": "push"}, timeout=5).raise_for_status()
    # the same build still waiting in the queue would absorb the next request
    wait_for(lambda: jenkins_emulator.started)

    queue_id = client.build_job("app-master")
    number = wait_for(lambda: (client.get_queue_item(queue_id).get("executable") or {}).get("number"))

    build = client.get_build_info("app-master", number)
    assert number == 2
    assert build["actions"][-1]["lastBuiltRevision"]["SHA1"] == SHA
    assert jenkins_emulator.build_count("app-master", SHA) == 2


def test_a_deleted_branch_a_tag_or_a_closed_pull_request_starts_nothing(
    jenkins_emulator: JenkinsEmulator,
) -> None:
    hooks = [("ping", {"zen": "Keep it logically awesome."}),
             ("push", {"ref": "refs/heads/master", "after": "0" * 40}),
             ("push", {"ref": "refs/tags/v1", "after": SHA}),
             ("pull_request", {"action": "closed", "pull_request": {"number": 1, "head": {"sha": SHA}}}),
             # a sentinel: once it has started, anything queued before it would have too
             ("push", {"ref": "refs/heads/master", "after": "1" * 40})]
    for event, payload in hooks:
        requests.post(f"{jenkins_emulator.url}/github-webhook/", json=payload,
                      headers={"X-GitHub-Event": event}, timeout=5).raise_for_status()

    wait_for(lambda: jenkins_emulator.started)
    assert jenkins_emulator.started == [("app-master", 1, "1" * 40)]
