"""The command line: check-config, db upgrade and the demo, run as a user would run them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from tests.fixtures.trains import TWO_TRAINS, two_trains

ROOT = Path(__file__).resolve().parents[2]
BROKEN = """\
slack: {channel: C1}
github: {repo: acme/app}
jenkins: {job: a, pr_job: b, build_timeout: 30}
image: registry/app:latest
ecs: {cluster: c}
processes:
  web: {container: app}
deploy: {batch_percent: 0, tick: soon}
colour: blue
"""


def fatcontroller(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_check_config_summarises_the_example_and_exits_0() -> None:
    result = fatcontroller("check-config", "--config", str(ROOT / "app.yaml"))
    assert result.returncode == 0, result.stderr
    assert "acme/app" in result.stdout
    assert "web → app-web" in result.stdout
    assert "sweet-pea" in result.stdout and "(lease 8h)" in result.stdout  # as app.yaml writes it, not 8:00:00
    assert "slack commands: /deploy, /pea" in result.stdout


def test_check_config_names_every_bad_key_and_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "app.yaml"
    broken.write_text(BROKEN)
    result = fatcontroller("check-config", "--config", str(broken))
    assert result.returncode == 2
    for problem in ("jenkins.build_timeout: 30 is not a duration",
                    "image: must contain {sha}",
                    "processes.web.service: field required",
                    "deploy.batch_percent: must be between 1 and 100",
                    "deploy.tick: 'soon' is not a duration",
                    "colour: unknown key"):
        assert problem in result.stderr


def test_check_config_summarises_every_train_of_a_trains_file_and_names_bad_keys_under_trains(
        tmp_path: Path) -> None:
    path = two_trains(tmp_path)
    result = fatcontroller("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "train app: acme/app (master)" in result.stdout and "train billing: acme/billing (master)" in result.stdout
    assert "api → billing-api" in result.stdout and "slack channel: C0BILLING" in result.stdout
    assert "slack commands: /ship, /pea" in result.stdout

    path.write_text(TWO_TRAINS.replace("{service: billing-api, container: billing}", "{container: billing}")
                    .replace("job: app-master,", "job: app-master, build_timeout: 30,"))
    result = fatcontroller("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "2 problem(s)" in result.stderr
    assert "trains.app.jenkins.build_timeout: 30 is not a duration" in result.stderr
    assert "trains.billing.processes.api.service: field required" in result.stderr


def test_run_takes_a_file_of_several_trains(tmp_path: Path) -> None:
    no_tokens = {"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": ""}
    result = fatcontroller("run", "--config", str(two_trains(tmp_path)), env=no_tokens)
    assert result.returncode == 2  # the file is fine: what is missing is the environment
    assert "SLACK_BOT_TOKEN and SLACK_APP_TOKEN not set" in result.stderr and "app.yaml" not in result.stderr


def test_check_config_on_a_missing_file_says_so() -> None:
    result = fatcontroller("check-config", "--config", "/nonexistent/app.yaml")
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_db_upgrade_creates_the_schema_and_never_prints_the_password(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fc.db'}"
    result = fatcontroller("db", "upgrade", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "fc.db").exists()

    secret = "postgresql+asyncpg://fc:hunter2-secret@127.0.0.1:1/nowhere"
    failed = fatcontroller("db", "upgrade", env={"DATABASE_URL": secret})
    assert failed.returncode == 1
    assert "cannot connect to the database" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "hunter2-secret" not in failed.stdout + failed.stderr


def test_the_demo_runs_end_to_end_and_exits_0() -> None:
    result = fatcontroller("demo", timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "every step ended as expected" in out
    # Not a terminal: a plain transcript of what people saw in Slack, then the summary.
    for seen in ("alice picks", "emergency types /deploy", "only alice sees: Only people on the emergency list",
                 "bob clicks [Retry build]", "CloudWatch puts app-5xx-rate in", "Rolling back automatically: alarm",
                 "is being rolled back by itself from canary check", "rolling out", "▓",
                 "is up at https://sweet-pea.dev.acme.com", "You released", 'Revert "Merge pull request #3',
                 "alice types /deploy 1 in her DM", "which train?", "alice types /deploy 1 in #billing",
                 "clicks [Proceed] on the card in #billing"):
        assert seen in out, seen
    assert "│ billing │" in out  # the summary's deploys of both trains
    for table in ("deploys", "master (newest first)", "ECS services", "peas"):
        assert f"\n{table}" in out, table
    assert "\x1b[" not in out  # no terminal control codes when stdout is not a terminal


def test_demo_keep_serves_the_browser_view_until_interrupted() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "bot.cli", "demo", "--keep"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, demo.kill)  # a demo that never gets there fails the test, not the suite
    watchdog.start()
    try:
        assert demo.stdout is not None
        page = next((m.group(0) for line in demo.stdout
                     if (m := re.search(r"http://127\.0\.0\.1:\d+/\?user=alice#channel/C0DEPLOYS", line))), None)
        assert page is not None, "the demo never printed the browser view's address"
        with urllib.request.urlopen(page, timeout=10) as answer:
            assert answer.status == 200 and "<title>" in answer.read().decode()
        base = page.split("/?", 1)[0]
        with urllib.request.urlopen(f"{base}/api/state?user=alice", timeout=10) as answer:
            state = json.loads(answer.read())
        assert {c["id"] for c in state["workspace"]["channels"]} == {"C0DEPLOYS", "C0BILLING"}
        assert state["workspace"]["commands"] == ["/deploy", "/pea"]
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        watchdog.cancel()
        if demo.poll() is None:
            demo.kill()
