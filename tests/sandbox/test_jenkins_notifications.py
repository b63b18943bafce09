"""The Notification plugin: the JSON it POSTs at STARTED, COMPLETED and FINALIZED, and what a failed delivery does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jenkins
import pytest
import requests
from aiohttp import web

from sandbox.jenkins import JenkinsEmulator
from sandbox.server import ThreadedServer
from tests.fixtures.jenkins import JENKINS_TOKEN, JENKINS_USER, RecordingRegistry
from tests.sandbox.test_jenkins import wait_for

SHA = "c0ffee" + "0" * 34


class Receiver(ThreadedServer):
    """An endpoint that records what it is sent and answers `status`."""

    def __init__(self) -> None:
        super().__init__("receiver")
        self.status = 202
        self.on_body: Callable[[dict[str, Any]], None] | None = None  # runs before answering
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []  # (path?query, headers, body)
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.posts.append((request.path_qs, dict(request.headers), body))
        if self.on_body is not None:
            self.on_body(body)
        return web.Response(status=self.status, text="thanks")

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for _, _, body in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    assert isinstance(server, Receiver)
    yield server
    server.stop()


@pytest.fixture
def emulator(jenkins_registry: RecordingRegistry) -> Iterator[JenkinsEmulator]:
    emulator = JenkinsEmulator({"app-master": "master", "app-pr": "multibranch"}, registry=jenkins_registry,
                               default_duration=0.1, queue_delay=0.02).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: JenkinsEmulator) -> jenkins.Jenkins:
    return jenkins.Jenkins(emulator.url, JENKINS_USER, JENKINS_TOKEN, timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_build_posts_the_plugins_json_at_started_completed_and_finalized(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, receiver: Receiver
) -> None:
    emulator.notify_to(f"{receiver.url}/hooks/jenkins", token="s3cret")

    queue_id = client.build_job("app-master", {"GIT_COMMIT": SHA})
    wait_for(lambda: len(receiver.bodies()) == 3)

    started, completed, finalized = receiver.bodies()
    assert started == {
        "name": "app-master", "display_name": "app-master", "url": "job/app-master/",
        "build": {"full_url": f"{emulator.url}/job/app-master/1/", "number": 1, "queue_id": queue_id,
                  "phase": "STARTED", "timestamp": started["build"]["timestamp"], "duration": 0,
                  "url": "job/app-master/1/", "scm": {"commit": SHA, "changes": [], "culprits": []},
                  "parameters": {"GIT_COMMIT": SHA}, "log": "", "artifacts": {}},
    }
    assert "status" not in started["build"]  # Gson leaves out what is null
    assert (completed["build"]["phase"], completed["build"]["status"]) == ("COMPLETED", "SUCCESS")
    assert (finalized["build"]["phase"], finalized["build"]["status"]) == ("FINALIZED", "SUCCESS")
    assert completed["build"]["duration"] > 0
    path, headers, _ = receiver.posts[0]
    assert path == "/hooks/jenkins?token=s3cret"  # where the plugin can carry a secret
    assert headers["Content-Type"] == "application/json;charset=UTF-8"
    assert [(n.phase, n.status, n.response) for n in emulator.notifications] == [
        ("STARTED", 202, "thanks"), ("COMPLETED", 202, "thanks"), ("FINALIZED", 202, "thanks")]


def test_by_completed_the_build_reads_as_finished_and_names_what_it_checked_out(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, receiver: Receiver
) -> None:
    seen: list[tuple[bool, str | None]] = []

    def read_back(body: dict[str, Any]) -> None:
        # blocks the receiver's loop, not the emulator's, which is waiting for the answer
        info = requests.get(f"{emulator.url}/{body['build']['url']}api/json", timeout=5).json()
        seen.append((info["building"], info["result"]))

    receiver.on_body = read_back
    emulator.notify_to(receiver.url, event="completed")
    requests.post(f"{emulator.url}/github-webhook/", headers={"X-GitHub-Event": "push"}, timeout=5,
                  json={"ref": "refs/heads/master", "after": SHA}).raise_for_status()

    wait_for(lambda: emulator.notifications)
    body = emulator.notifications[0].body

    assert [n.phase for n in emulator.notifications] == ["COMPLETED"]
    assert body["build"]["scm"] == {"url": "https://github.com/acme/app.git", "branch": "origin/master",
                                    "commit": SHA, "changes": [], "culprits": []}
    assert "parameters" not in body["build"]
    assert seen == [(False, "SUCCESS")]


def test_a_pr_job_is_named_by_its_short_name_and_told_apart_by_its_url(
    emulator: JenkinsEmulator, receiver: Receiver
) -> None:
    emulator.notify_to(receiver.url, job="app-pr", event="finalized")
    emulator.notify_to(f"{receiver.url}/masters-only", job="app-master")
    payload = {"action": "opened", "pull_request": {"number": 110, "head": {"sha": SHA},
                                                     "base": {"ref": "master", "sha": "b" * 40}}}
    requests.post(f"{emulator.url}/github-webhook/", json=payload, headers={"X-GitHub-Event": "pull_request"},
                  timeout=5).raise_for_status()

    wait_for(lambda: receiver.bodies())
    (body,) = receiver.bodies()

    assert (body["name"], body["url"]) == ("PR-110", "job/app-pr/job/PR-110/")
    assert body["build"]["full_url"] == f"{emulator.url}/job/app-pr/job/PR-110/1/"
    assert body["build"]["scm"]["branch"] == "PR-110"
    assert body["build"]["scm"]["commit"] == SHA


def test_a_delivery_that_fails_is_recorded_retried_as_the_plugin_does_and_never_stops_the_build(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, receiver: Receiver
) -> None:
    receiver.status = 500
    emulator.notify_to(f"http://127.0.0.1:{closed_port()}/hooks/jenkins", retries=1, timeout=1)
    emulator.notify_to(receiver.url, event="failed", retries=3)
    emulator.script(SHA, ["FAILURE"])

    number = emulator.start_build("app-master", SHA)
    wait_for(lambda: (b := client.get_build_info("app-master", number)) and not b["building"])
    wait_for(lambda: len(emulator.notifications) == 7)

    refused = [n for n in emulator.notifications if n.status is None]
    answered = [n for n in emulator.notifications if n.status is not None]
    assert client.get_build_info("app-master", number)["result"] == "FAILURE"
    assert [n.phase for n in refused] == ["STARTED", "STARTED", "COMPLETED", "COMPLETED", "FINALIZED", "FINALIZED"]
    assert all(n.error and "Connect" in n.error for n in refused)
    # an answer, even a 500, is a delivery: only the failed build's FINALIZED goes there, once
    assert [(n.phase, n.status) for n in answered] == [("FINALIZED", 500)]
    assert "Failed to notify endpoint" in client.get_build_console_output("app-master", number)


def test_basic_auth_in_the_endpoint_url_is_sent_as_the_plugin_sends_it(
    client: jenkins.Jenkins, emulator: JenkinsEmulator, receiver: Receiver
) -> None:
    emulator.notify_to(receiver.url.replace("http://", "http://hook:pa55@"), event="started")

    emulator.start_build("app-master", SHA)
    wait_for(lambda: receiver.posts)

    headers = receiver.posts[0][1]
    assert headers["Authorization"] == "Basic aG9vazpwYTU1"
    with pytest.raises(ValueError, match="unknown notification event"):
        emulator.notify_to(receiver.url, event="sometimes")
