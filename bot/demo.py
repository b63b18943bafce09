"""`fatcontroller demo`: the product on its embedded sandbox, no accounts needed.

This is the short walk: the emulators of GitHub, Jenkins and ECS/ECR, a SQLite database in a
temporary folder, and the real engine taking one pull request through the whole train (merge,
build, canaries, Proceed, batched rollout, Done), then one rolled back at the canary gate.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flows.config import AppConfig
from flows.deploy import service
from flows.deploy.machine import State, person_transitions
from flows.deploy.service import DeployRequest
from flows.deploy.steps import Outside
from flows.engine import Engine
from flows.notify import Notice
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from sandbox.world import Sandbox, SandboxSpec
from storage.db import make_engine, make_sessionmaker
from storage.migrate import ensure_schema

console = Console(highlight=False)
DEADLINE = 60.0


class DemoFailed(Exception):
    """A step of the scenario did not end as expected."""


class ConsoleNotifier:
    """Prints every notice as the people in Slack would read it."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    async def notify(self, notice: Notice) -> None:
        elapsed = time.monotonic() - self.started
        who = f"deploy {notice.deploy_id}" if notice.deploy_id else "train"
        console.print(f"[dim]{elapsed:6.2f}s[/dim] [cyan]{who:>9}[/cyan] [bold]{notice.kind.value}[/bold] "
                      f"{notice.text}")


def _config(sandbox: Sandbox) -> AppConfig:
    return AppConfig.model_validate({
        "slack": {"channel": sandbox.spec.channel},
        "github": {"repo": sandbox.spec.repo, "base_branch": sandbox.spec.base_branch},
        "jenkins": {"job": "app-master", "pr_job": "app-pr", "build_timeout": "60s"},
        "image": sandbox.image_template,
        "ecs": {"cluster": sandbox.spec.cluster, "region": "eu-west-1"},
        "processes": {"web": {"service": "app-web", "container": "app"},
                      "worker": {"service": "app-worker", "container": "app"}},
        "deploy": {"batch_percent": 25, "tick": "250ms", "rollout_timeout": "60s"},
        "permissions": {"admins": ["U0ADMIN"], "emergency": ["U0EMERGENCY"]},
    })


async def _until(engine: Engine, deploy_id: int, *states: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        deploy = await service.get_deploy(engine.sessions, deploy_id)
        if deploy is not None and deploy.state in states:
            return deploy.state
        await asyncio.sleep(0.05)
    raise DemoFailed(f"deploy {deploy_id} did not reach {' or '.join(states)} within {DEADLINE:.0f}s")


async def _press(engine: Engine, deploy_id: int, label: str, user: str) -> None:
    deploy = await service.get_deploy(engine.sessions, deploy_id)
    assert deploy is not None
    offered = {t.button: t.event for t in person_transitions(State(deploy.state),
                                                             needs_attention=deploy.needs_attention)}
    console.print(f"[dim]        [/dim] [magenta]{user:>9}[/magenta] clicks [bold]{label}[/bold]")
    await engine.flows.act(deploy_id, deploy.state, offered[label], user)


async def demo(keep: bool = False) -> int:
    """Run the walk; 0 when every step ended as expected."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    sandbox = Sandbox(SandboxSpec(step_interval=0.05, build_duration=0.5)).start()
    os.environ.update({k: v for k, v in sandbox.env().items() if k.startswith("AWS_")})
    folder = tempfile.mkdtemp(prefix="fatcontroller-demo-")
    url = f"sqlite+aiosqlite:///{Path(folder) / 'fatcontroller.db'}"
    await ensure_schema(url)
    db = make_engine(url)
    env = sandbox.env()
    config = _config(sandbox)
    outside = Outside(
        github=GitHub(config.github.repo, config.github.base_branch, token=env["GITHUB_TOKEN"],
                      api_url=env["GITHUB_API_URL"]),
        jenkins=Jenkins(env["JENKINS_URL"], env["JENKINS_USER"], env["JENKINS_TOKEN"]),
        ecs=Ecs(region="eu-west-1", endpoint_url=env["AWS_ENDPOINT_URL"]),
    )
    engine = Engine(config, make_sessionmaker(db), outside, ConsoleNotifier(), owner="demo")
    engine.start()
    started = time.monotonic()
    try:
        console.rule("Fat Controller demo: a deploy train on emulated GitHub, Jenkins and ECS")
        happy = sandbox.github.create_pr("Add a welcome banner", {"app/banner.py": "BANNER = 'hi'\n"})
        regret = sandbox.github.create_pr("Change the greeting", {"app/main.py": "print('howdy')\n"},
                                          author="bob")
        tree_before = sandbox.github.tree_of("master")
        first = (await engine.flows.request(DeployRequest("U0ALICE", happy))).deploy
        second = (await engine.flows.request(DeployRequest("U0BOB", regret))).deploy
        await _until(engine, first.id, "canary_check")
        await _press(engine, first.id, "Proceed", "U0ALICE")
        await _until(engine, first.id, "awaiting_confirmation")
        await _press(engine, first.id, "Done", "U0ALICE")
        await _until(engine, first.id, "completed")
        await _until(engine, second.id, "canary_check")
        await _press(engine, second.id, "Roll back", "U0BOB")
        await _until(engine, second.id, "rolled_back")
        deployed = await service.get_deploy(engine.sessions, first.id)
        assert deployed is not None and deployed.merge_sha
        image = sandbox.image(deployed.merge_sha)
        for name in ("app-web", "app-worker"):
            if set(sandbox.aws.running_images("production", name)) != {image}:
                raise DemoFailed(f"{name} does not run {image}")
        if sandbox.github.files_at("master").get("app/main.py") != "print('hello')\n":
            raise DemoFailed("the rolled-back pull request's change is still on master")
        _summary(sandbox, tree_before)
        console.print(f"[green]demo finished in {time.monotonic() - started:.1f}s[/green]")
        if keep:
            console.print(f"sandbox left running: {sandbox.env()}\nPress Ctrl-C to stop.")
            await asyncio.Event().wait()
        return 0
    except DemoFailed as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        return 1
    finally:
        await engine.stop()
        await db.dispose()
        sandbox.stop()


def _summary(sandbox: Sandbox, tree_before: str) -> None:
    history = Table(title="master")
    history.add_column("commit")
    history.add_column("message")
    for sha, message, _parents in sandbox.github.log("master", 6):
        history.add_row(sha[:12], message.splitlines()[0])
    console.print(history)
    services = Table(title="ECS services (production)")
    services.add_column("service")
    services.add_column("image")
    for name in ("app-web", "app-worker"):
        images = sorted(set(sandbox.aws.running_images("production", name)))
        services.add_row(name, ", ".join(image.rsplit(":", 1)[1][:12] for image in images))
    console.print(services)
