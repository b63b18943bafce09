"""What the benchmarks share: the sandbox and a train pointed at it, the real bot, percentiles, JSON output."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.app import Bot, start_bot
from flows.config import AppConfig, Settings, TrainConfig
from sandbox.slack import Message
from sandbox.world import Sandbox, SandboxSpec
from storage.models import Deploy

ADMIN, EMERGENCY = "U0ADMIN", "U0EMERGENCY"


def people(count: int) -> dict[str, str]:
    """`count` developers (U0001: dev1, ...) plus an admin and someone on the emergency list."""
    return {f"U{n:04d}": f"dev{n}" for n in range(1, count + 1)} | {ADMIN: "admin", EMERGENCY: "emergency"}


def config_for(sandbox: Sandbox, processes: dict[str, Any] | None = None, **sections: dict[str, Any]) -> TrainConfig:
    """The example app.yaml pointed at the sandbox; `sections` override keys of its sections, `processes`
    replaces the example's."""
    spec = sandbox.spec
    raw: dict[str, Any] = {
        "slack": {"channel": spec.channel},
        "github": {"repo": spec.repo, "base_branch": spec.base_branch},
        "jenkins": {"job": "app-master", "pr_job": "app-pr", "build_timeout": "60s"},
        "image": sandbox.image_template,
        "ecs": {"cluster": spec.cluster, "region": "eu-west-1"},
        "processes": {"web": {"service": "app-web", "container": "app"},
                      "worker": {"service": "app-worker", "container": "app"}},
        "deploy": {"batch_percent": 50, "rollout_timeout": "120s"},
        "permissions": {"emergency": [EMERGENCY], "admins": [ADMIN]},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    if processes is not None:
        raw["processes"] = processes
    return TrainConfig.model_validate(raw)


def quiet() -> None:
    """No proxies for the emulators on 127.0.0.1, and only errors in the log."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # connections cut while the emulators stop


def start_sandbox(spec: SandboxSpec) -> Sandbox:
    sandbox = Sandbox(spec).start()
    os.environ.update({k: v for k, v in sandbox.env().items() if k.startswith("AWS_")})
    return sandbox


async def start_bot_on(sandbox: Sandbox, config: TrainConfig, **environment: Any) -> Bot:
    """The real bot, on a fresh SQLite database in a temporary directory, connected to the sandbox; `environment`
    adds or overrides variables of its settings (e.g. `FATCONTROLLER_HTTP_PORT`, 0 by default: no HTTP server)."""
    workdir = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    values: dict[str, Any] = {**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
                              "FATCONTROLLER_HTTP_PORT": 0, **environment}
    bot = await start_bot(AppConfig.of(config), Settings(**values))
    await sandbox.slack.wait_connected()
    return bot


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for the bot's HTTP server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 < share ≤ 1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float]:
    """count, p50, p99 and max of `values`."""
    return {"count": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": max(values)}


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    """Write the figures to `path` when given (that is how `python -m bench` collects them)."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=1, default=str))


def dm_with(sandbox: Sandbox, user: str, label: str) -> Message | None:
    """The newest DM to `user` with a button `label`."""
    return next((m for m in reversed(sandbox.slack.dms(user)) if label in m.buttons), None)


async def finished_deploy(bot: Bot, pr: int) -> Deploy | None:
    """The deploy of #pr once it has finished."""
    async with bot.engine.sessions() as session:
        deploy = await session.scalar(sa.select(Deploy).where(Deploy.pr_number == pr))
    return deploy if deploy is not None and deploy.finished_at is not None else None
