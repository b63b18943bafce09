"""`fatcontroller doctor` as a person runs it against the sandbox, and `run` refusing to start in its words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import EXIT_CANNOT_START, run
from bot.cli import main
from bot.wiring import BOT_SCOPES
from flows.config import AppConfig
from sandbox.server import Fault
from sandbox.world import Sandbox
from tests.fixtures.bot import manifest, settings_for
from tests.fixtures.trains import two_trains_of
from tests.fixtures.world import raw_train_config, train_config

PUSH_DETAIL = "deploy-bot may not push to acme/app, so it can neither merge nor revert"
PUSH_FIX = "give deploy-bot write access to acme/app (Settings → Collaborators and teams)"


@pytest.fixture
def environment(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The process's environment pointed at the sandbox, as `fatcontroller doctor` reads it."""
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    return sandbox


def doctor(sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
           **sections: dict[str, Any]) -> tuple[int, str]:
    """Run `fatcontroller doctor --config <app.yaml>` in this process: its exit code and what it printed."""
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(raw_train_config(sandbox, **sections)))
    code = main(["doctor", "--config", str(config)])
    return code, capsys.readouterr().out


def line_of(out: str, name: str) -> tuple[str, str | None]:
    """The line of the check called `name`, and the fix printed under it (None when there is none)."""
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if line.split(None, 1)[1:] and
                 line.split(None, 1)[1].startswith(f"{name}: "))
    below = lines[index + 1].strip() if index + 1 < len(lines) else ""
    return lines[index].strip(), below.removeprefix("fix: ") if below.startswith("fix: ") else None


def test_everything_is_ok_on_the_sandbox_and_the_doctor_exits_0(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(environment, tmp_path, capsys)

    assert code == 0, out
    assert out.splitlines()[0] == "doctor: acme/app (master) → ECS cluster production"
    for system in ("GitHub", "Jenkins", "AWS", "Slack"):
        assert f"\n{system}\n" in out
    assert "problem" not in out and "warning" not in out and "fix:" not in out
    assert line_of(out, "push access") == ("ok       push access: deploy-bot may push to acme/app (merges, and "
                                           "reverts)", None)
    assert line_of(out, "build permission")[0].startswith("note     build permission: not checked:")
    assert out.rstrip().splitlines()[-1].startswith("all ") and out.rstrip().endswith(" checks ok")
    assert environment.spec.github_token not in out and environment.spec.jenkins_token not in out


def test_a_github_token_that_cannot_push_is_named_with_its_fix(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environment.github.add_token(environment.spec.github_token, push=False)

    code, out = doctor(environment, tmp_path, capsys)

    assert code == 1
    assert line_of(out, "push access") == (f"problem  push access: {PUSH_DETAIL}", PUSH_FIX)
    assert out.rstrip().endswith("1 problem in 21 checks")


def test_a_missing_jenkins_job_is_named_with_its_fix(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(environment, tmp_path, capsys, jenkins={"job": "app-main"})

    assert code == 1
    assert line_of(out, "job app-main") == (
        "problem  job app-main: no job app-main that fatcontroller can see (HTTP 404)",
        "set jenkins.job to the job that builds master, or grant fatcontroller Job/Discover and Job/Read on it")


def test_a_missing_ecs_service_is_named_with_its_fix(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processes = {"web": {"service": "app-web", "container": "app"}, "api": {"service": "app-api", "container": "app"}}
    code, out = doctor(environment, tmp_path, capsys, processes=processes)

    assert code == 1
    assert line_of(out, "service app-api") == ("problem  service app-api: no service app-api in cluster production",
                                               "set processes.api.service to the ECS service that runs api")
    assert line_of(out, "service app-web")[0].startswith("ok ")


def test_a_jenkins_user_without_job_read_is_named_with_its_fix(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = environment.spec
    environment.jenkins.add_user(spec.jenkins_user, spec.jenkins_token, ["Overall/Read", "Job/Discover"],
                                 jobs={"app-pr": ["Job/Read", "Job/Build"]})

    code, out = doctor(environment, tmp_path, capsys)

    assert code == 1
    assert line_of(out, "job app-master") == (
        "problem  job app-master: fatcontroller is missing the Job/Read permission on app-master",
        "grant fatcontroller Job/Read on app-master")
    assert line_of(out, "job app-pr")[0].startswith("ok ")


def test_a_jenkins_user_without_job_build_is_told_what_it_needs_not_passed_as_checked(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Jenkins has no read-only question for Job/Build (only starting a build tells): the doctor says so."""
    spec = environment.spec
    environment.jenkins.add_user(spec.jenkins_user, spec.jenkins_token, ["Overall/Read", "Job/Discover", "Job/Read"])

    code, out = doctor(environment, tmp_path, capsys)

    line, fix = line_of(out, "build permission")
    assert line.startswith("note     build permission: not checked: Jenkins has no read-only way to ask")
    assert "fatcontroller needs Job/Build on app-master and app-pr" in line and fix is None
    assert environment.jenkins.started == []  # no build was started to find out
    assert code == 0


def test_a_wrong_slack_token_is_refused_in_runs_words(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-wrong-app-token")

    code, out = doctor(environment, tmp_path, capsys)

    assert code == 1
    assert line_of(out, "app token") == (
        "problem  app token: Slack refused SLACK_APP_TOKEN (invalid_auth)",  # as tests/bot/test_process.py has it
        "check that it is this app's app-level token (xapp-...) with the connections:write scope")
    assert "xapp-1-wrong-app-token" not in out


def test_a_config_that_does_not_load_exits_2_like_check_config(
        environment: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "app.yaml"
    broken.write_text("slack: {channel: C1}\ncolour: blue\n")

    assert main(["doctor", "--config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "colour: unknown key" in err and "github: field required" in err


async def test_run_refuses_to_start_with_the_doctors_words(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.github.add_token(sandbox.spec.github_token, push=False)
    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")

    code = await run(AppConfig.of(train_config(sandbox)), settings)

    assert code == EXIT_CANNOT_START
    err = capsys.readouterr().err
    assert f"fatcontroller: cannot start: GitHub push access: {PUSH_DETAIL}; fix: {PUSH_FIX}" in err
    assert not sandbox.slack.connected
    assert not (tmp_path / "bot.db").exists()  # refused before the database was opened


async def test_run_names_every_problem_it_finds_at_start(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = train_config(sandbox, jenkins={"job": "app-main"},
                          processes={"web": {"service": "app-web", "container": "app"},
                                     "api": {"service": "app-api", "container": "app"}})

    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    assert await run(AppConfig.of(config), settings) == EXIT_CANNOT_START
    err = capsys.readouterr().err
    assert "cannot start: 2 problems (`fatcontroller doctor` checks everything):" in err
    assert "  Jenkins job app-main: no job app-main that fatcontroller can see (HTTP 404); fix: set jenkins.job" in err
    assert "  AWS service app-api: no service app-api in cluster production; fix: set processes.api.service" in err


async def test_run_starts_when_an_outside_system_does_not_answer_at_start(
        sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An outage is not a wrong set-up: the bot waits outside failures out itself, so it starts and says so."""
    from bot.app import start_bot

    sandbox.jenkins.faults.add(Fault(match="whoAmI", drop=True, remaining=1))

    settings = settings_for(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    bot = await start_bot(AppConfig.of(train_config(sandbox)), settings)
    try:
        await sandbox.slack.wait_connected()
    finally:
        await bot.stop()
    assert any("not checked at start: Jenkins credentials: cannot reach Jenkins" in r.getMessage()
               for r in caplog.records)


def test_the_bot_scopes_the_doctor_expects_are_the_manifests() -> None:
    assert set(BOT_SCOPES) == set(manifest()["oauth_config"]["scopes"]["bot"])


def test_the_doctor_examines_every_train_of_a_file_of_several(
        two_repo_sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in two_repo_sandbox.env().items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"trains": two_trains_of(two_repo_sandbox)}))

    code = main(["doctor", "--config", str(config)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "doctor: train app: acme/app (master) → ECS cluster production" in out
    assert "doctor: train billing: acme/billing (master) → ECS cluster production" in out
    assert "deploy-bot may push to acme/billing" in out and "problem" not in out
