"""Users, tokens and permissions, as a startup doctor would find them: 401, 403 naming the permission, 404."""

from __future__ import annotations

from collections.abc import Iterator

import jenkins
import pytest
import requests

from sandbox.jenkins import JenkinsEmulator
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER, RecordingRegistry
from tests.sandbox.test_jenkins import wait_for

SHA = "c0ffee" + "0" * 34
READ = ["Overall/Read", "Job/Read"]


@pytest.fixture
def emulator(jenkins_registry: RecordingRegistry) -> Iterator[JenkinsEmulator]:
    emulator = JenkinsEmulator({"app-master": "master", "app-pr": "multibranch", "secret": "master"},
                               registry=jenkins_registry, default_duration=0.1, queue_delay=0.02).start()
    yield emulator
    emulator.stop()


def as_user(emulator: JenkinsEmulator, user: str, token: str) -> jenkins.Jenkins:
    return jenkins.Jenkins(emulator.url, user, token, timeout=5)


def test_a_user_without_overall_read_is_told_which_permission_is_missing(emulator: JenkinsEmulator) -> None:
    emulator.add_user("nobody", "t0ken", [])

    refused = requests.get(f"{emulator.url}/api/json", auth=("nobody", "t0ken"), timeout=5)
    # whoAmI needs no permission at all (python-jenkins cannot ask: it fetches a crumb first, which needs one)
    who = requests.get(f"{emulator.url}/whoAmI/api/json", auth=("nobody", "t0ken"), timeout=5).json()

    assert refused.status_code == 403
    assert refused.text == "nobody is missing the Overall/Read permission"
    assert refused.headers["X-Required-Permission"] == "hudson.model.Hudson.Read"
    assert refused.headers["X-You-Are-Authenticated-As"] == "nobody"
    assert (who["name"], who["anonymous"], who["authorities"]) == ("nobody", False, ["authenticated"])
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        as_user(emulator, "nobody", "t0ken").get_whoami()


def test_a_wrong_token_is_refused_with_401(emulator: JenkinsEmulator) -> None:
    emulator.add_user("deployer", "right")

    refused = requests.get(f"{emulator.url}/me/api/json", auth=("deployer", "wrong"), timeout=5)

    assert refused.status_code == 401
    assert refused.text == "Invalid password/token for user: deployer"
    assert as_user(emulator, "deployer", "right").get_whoami()["id"] == "deployer"


def test_job_read_decides_what_is_listed_and_whether_a_job_is_found_or_forbidden(emulator: JenkinsEmulator) -> None:
    emulator.add_user("viewer", "t", ["Overall/Read"], jobs={"app-master": ["Job/Read"], "app-pr": ["Job/Discover"]})
    viewer = as_user(emulator, "viewer", "t")

    listed = [job["name"] for job in viewer.get_jobs()]
    forbidden = requests.get(f"{emulator.url}/job/app-pr/api/json", auth=("viewer", "t"), timeout=5)

    assert listed == ["app-master"]
    assert viewer.get_job_info("app-master")["name"] == "app-master"
    assert (forbidden.status_code, forbidden.text) == (403, "viewer is missing the Job/Read permission")
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        viewer.get_job_info("secret")  # not even discoverable: as if it did not exist
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        viewer.get_job_info("no-such-job")


def test_starting_a_build_needs_job_build(emulator: JenkinsEmulator) -> None:
    emulator.add_user("viewer", "t", READ)
    emulator.add_user("builder", "t", [*READ, "Job/Build"])

    with pytest.raises(jenkins.JenkinsException, match="viewer is missing the Job/Build permission"):
        as_user(emulator, "viewer", "t").build_job("app-master", {"GIT_COMMIT": SHA})
    queue_id = as_user(emulator, "builder", "t").build_job("app-master", {"GIT_COMMIT": SHA})

    assert wait_for(lambda: emulator.started) == [("app-master", 1, SHA)]
    assert as_user(emulator, "viewer", "t").get_queue_item(queue_id)["executable"]["number"] == 1


def test_stopping_a_build_or_cancelling_a_queue_item_needs_job_cancel(emulator: JenkinsEmulator) -> None:
    emulator.add_user("builder", "t", [*READ, "Job/Build"])
    emulator.add_user("canceller", "t", [*READ, "Job/Build", "Job/Cancel"])
    builder = as_user(emulator, "builder", "t")
    emulator.script(SHA, ["HANG"])
    number = emulator.start_build("app-master", SHA)
    emulator.queue_delay = 30
    queue_id = builder.build_job("app-master", {"GIT_COMMIT": "1" * 40})

    with pytest.raises(jenkins.JenkinsException, match="builder is missing the Job/Cancel permission"):
        builder.stop_build("app-master", number)
    crumb = builder.get_info("crumbIssuer")["crumb"]
    not_cancellable = requests.post(f"{emulator.url}/queue/cancelItem", params={"id": queue_id}, timeout=5,
                                    auth=("builder", "t"), headers={"Jenkins-Crumb": crumb})
    canceller = as_user(emulator, "canceller", "t")
    canceller.stop_build("app-master", number)
    canceller.cancel_queue(queue_id)

    assert (not_cancellable.status_code, not_cancellable.text) == (422, f"Item for id ({queue_id}) is not cancellable")
    assert wait_for(lambda: canceller.get_build_info("app-master", number)["result"]) == "ABORTED"
    assert canceller.get_queue_item(queue_id)["cancelled"] is True


def test_grants_on_a_multibranch_project_cover_its_pr_jobs(emulator: JenkinsEmulator) -> None:
    emulator.add_user("pr-bot", "t", ["Overall/Read"], jobs={"app-pr": ["Job/Read", "Job/Build"]})
    payload = {"action": "opened", "pull_request": {"number": 110, "head": {"sha": SHA},
                                                     "base": {"ref": "master", "sha": "b" * 40}}}
    requests.post(f"{emulator.url}/github-webhook/", json=payload, headers={"X-GitHub-Event": "pull_request"},
                  timeout=5).raise_for_status()  # the webhook itself needs no credentials
    pr_bot = as_user(emulator, "pr-bot", "t")
    wait_for(lambda: emulator.started)

    queue_id = pr_bot.build_job("app-pr/PR-110")

    assert pr_bot.get_job_info("app-pr")["jobs"][0]["name"] == "PR-110"
    assert pr_bot.get_queue_item(queue_id)["task"]["name"] == "PR-110"
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        pr_bot.get_job_info("app-master")


def test_anonymous_access_and_unknown_users_can_be_shut_out(emulator: JenkinsEmulator) -> None:
    open_before = requests.get(f"{emulator.url}/api/json", timeout=5)
    unknown_before = as_user(emulator, JENKINS_USER, JENKINS_TOKEN).get_whoami()["id"]
    emulator.anonymous_permissions = set()
    emulator.require_known_users = True

    anonymous = requests.get(f"{emulator.url}/api/json", timeout=5)
    unknown = requests.get(f"{emulator.url}/api/json", auth=(JENKINS_USER, JENKINS_TOKEN), timeout=5)
    who = requests.get(f"{emulator.url}/whoAmI/api/json", timeout=5).json()

    assert (open_before.status_code, unknown_before) == (200, JENKINS_USER)  # the default: full access for anyone
    assert (anonymous.status_code, anonymous.text) == (403, "anonymous is missing the Overall/Read permission")
    assert unknown.status_code == 401
    assert (who["name"], who["anonymous"]) == ("anonymous", True)
    with pytest.raises(ValueError, match="unknown permissions"):
        emulator.add_user("admin", "t", ["Overall/Administer"])
