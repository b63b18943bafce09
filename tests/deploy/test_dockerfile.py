"""The Dockerfile, read as Docker reads it (no engine runs here to build it): the slim base, a non-root user,
the entry point and its default command, the port, and a health check that probes liveness. The health check
commands of the image and of the ECS task definition are run for real against a server answering 200, then
503, then nothing: they pass, fail, fail. And the build context keeps out what the image must not carry."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                                        if not line.lstrip().startswith("#")))
    found = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def _one(instruction: str) -> str:
    (arguments,) = [a for i, a in _instructions() if i == instruction]
    return arguments


def test_the_image_runs_the_wheel_as_a_non_root_user_on_python_3_11_slim() -> None:
    bases = [a.split()[0] for i, a in _instructions() if i == "FROM"]
    assert bases and set(bases) == {"python:3.11-slim"}
    user = _one("USER").split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: "run as non-root" checks can verify it
    assert json.loads(_one("ENTRYPOINT")) == ["fatcontroller"]
    assert json.loads(_one("CMD")) == ["run", "--config", "/etc/fatcontroller/app.yaml"]
    assert _one("EXPOSE") == "8080"
    assert any(i == "RUN" and "pip install" in a and ".whl" in a for i, a in _instructions())


def _healthcheck() -> list[str]:
    options, _, command = _one("HEALTHCHECK").partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    probe: list[str] = json.loads(command)
    return probe


def _task_healthcheck() -> list[str]:
    task_definition = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    (container,) = task_definition["containerDefinitions"]
    kind, *probe = container["healthCheck"]["command"]
    assert kind == "CMD"
    return list(probe)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def liveness() -> AsyncIterator[tuple[int, dict[str, int]]]:
    """A /healthz on a free port answering `answer["status"]`."""
    answer = {"status": 200}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": answer["status"] == 200}, status=answer["status"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, answer
    await runner.cleanup()


def _probe(command: list[str], port: int) -> int:
    assert command[0] == "python"
    # A proxy in the environment must not carry the probe away from 127.0.0.1.
    env = {**os.environ, "FATCONTROLLER_HTTP_PORT": str(port), "HTTP_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode


@pytest.mark.parametrize("command", [_healthcheck(), _task_healthcheck()], ids=["Dockerfile", "task-definition"])
async def test_the_health_check_passes_on_200_and_fails_on_503_or_no_answer(
        liveness: tuple[int, dict[str, int]], command: list[str]) -> None:
    port, answer = liveness
    assert "/healthz" in command[-1]
    # The probe blocks in a child process; the server it asks runs in this loop, so it waits in a thread.
    assert await asyncio.to_thread(_probe, command, port) == 0
    answer["status"] = 503
    assert await asyncio.to_thread(_probe, command, port) != 0
    assert await asyncio.to_thread(_probe, command, _free_port()) != 0  # nothing listens


def test_the_build_context_keeps_out_the_machine_and_the_tests_but_not_the_package() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "*.db"} <= ignored
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"],
              *(p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"])}
    assert not needed & ignored
