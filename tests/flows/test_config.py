"""app.yaml and the environment: durations, key paths in errors, secrets that never print."""

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from flows.config import (
    ConfigError,
    Settings,
    TrainConfig,
    format_duration,
    load_config,
    parse_duration,
    train_name_of,
)
from tests.fixtures.trains import TWO_TRAINS, two_trains

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("8h", 28800), ("1d", 86400),
                                               ("500ms", 0.5), (" 2s ", 2)])
def test_durations_are_read_with_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "shown"), [("90s", "90s"), ("15m", "15m"), ("8h", "8h"), ("1d", "1d"),
                                             ("500ms", "500ms"), ("1.5h", "90m"), ("60s", "1m"), ("36h", "36h"),
                                             ("0.25ms", "0.25ms")])
def test_durations_are_shown_the_way_app_yaml_writes_them(text: str, shown: str) -> None:
    assert format_duration(parse_duration(text)) == shown
    assert parse_duration(shown) == parse_duration(text)


@pytest.mark.parametrize("text", ["90", "soon", "-5s", "0s", "5 minutes", ""])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_example_config_loads_with_the_documented_values() -> None:
    config = load_config(ROOT / "app.yaml").trains["app"]
    assert config.deploy.confirm_timeout == timedelta(minutes=15)
    assert config.processes["worker"].service == "app-worker"
    assert config.image_for("a" * 40).endswith(":" + "a" * 40)
    assert config.region == "eu-west-1"
    assert config.peas is not None and config.peas.service_name("snow-pea", "web") == "pea-snow-pea-web"


@pytest.mark.parametrize(("ecs", "image", "region"), [
    ({}, "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:{sha}", "us-east-1"),
    ({"region": "eu-central-1"}, "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:{sha}", "eu-central-1"),
    ({}, "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:{sha}", "cn-north-1"),
    ({}, "ghcr.io/acme/app:{sha}", None),  # AWS's own configuration decides, or the facade guesses and says so
])
def test_the_region_is_ecs_region_else_that_of_the_images_registry(ecs: dict[str, str], image: str,
                                                                   region: str | None) -> None:
    raw = yaml.safe_load((ROOT / "app.yaml").read_text())
    raw["ecs"] = {"cluster": "production", **ecs}
    raw["image"] = image

    assert TrainConfig.model_validate(raw).region == region


def test_invalid_yaml_and_a_non_mapping_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "app.yaml"
    bad.write_text("slack: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_secrets_from_the_environment_never_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_verysecret")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://fc:hunter2@db/fc")
    settings = Settings()
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("xoxb-very-secret", "ghp_verysecret", "hunter2"):
        assert secret not in shown
    assert settings.github_token is not None and settings.github_token.get_secret_value() == "ghp_verysecret"


def with_pr_job(tmp_path: Path, pr_job: str) -> Path:
    """The example app.yaml with `jenkins.pr_job` set to `pr_job`."""
    example = (ROOT / "app.yaml").read_text()
    assert "  pr_job: app-pr " in example
    path = tmp_path / "app.yaml"
    path.write_text(example.replace("  pr_job: app-pr ", f"  pr_job: '{pr_job}' "))
    return path


def test_a_pr_job_with_pr_names_one_job_per_pull_request(tmp_path: Path) -> None:
    jobs = load_config(with_pr_job(tmp_path, "app-pr/PR-{pr}")).trains["app"].jenkins

    assert jobs.per_pr and jobs.pr_job_of(110) == "app-pr/PR-110"
    assert [jobs.pr_of_job(job) for job in ("app-pr/PR-110", "app-pr/PR-x", "app-pr", "app-master",
                                            "other/app-pr/PR-7")] == [110, None, None, None, None]


def test_a_pr_job_without_pr_is_one_job_for_every_pull_request() -> None:
    jobs = load_config(ROOT / "app.yaml").trains["app"].jenkins

    assert not jobs.per_pr and jobs.pr_job_of(110) == "app-pr" and jobs.pr_of_job("app-pr") is None


@pytest.mark.parametrize("pr_job", ["app-pr/PR-{number}", "app-pr/PR-{}", "app-pr/PR-{pr", "app-pr/PR-{pr:04}",
                                    "{branch}/PR-{pr}"])
def test_a_pr_job_with_another_placeholder_is_refused_naming_the_key(tmp_path: Path, pr_job: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(with_pr_job(tmp_path, pr_job))

    assert refused.value.errors == [f"jenkins.pr_job: {pr_job!r}: only {{pr}} (the pull request's number) may be "
                                    "in braces, e.g. app-pr/PR-{pr} for a multibranch project"]


def test_a_file_without_trains_is_one_train_named_after_its_repository() -> None:
    app = load_config(ROOT / "app.yaml")

    assert list(app.trains) == ["app"] and app.trains["app"].name == "app"
    assert app.slack.commands == app.trains["app"].slack.commands
    assert [train_name_of(r) for r in ("acme/app", "acme/App_Site", "acme/9lives", "acme/billing.api")] == [
        "app", "app-site", "train-9lives", "billing-api"]


def test_trains_take_the_default_permissions_unless_they_have_their_own_and_the_app_s_commands(
        tmp_path: Path) -> None:
    app = load_config(two_trains(tmp_path))

    assert list(app.trains) == ["app", "billing"]
    assert app.trains["app"].permissions.admins == ["U0ADMIN"]
    assert app.trains["app"].permissions.emergency == ["U0EMERGENCY"]
    assert app.trains["billing"].permissions.admins == ["U0BILLING"]  # replaced, not merged
    assert app.trains["billing"].permissions.emergency == []
    assert {t.slack.commands.deploy for t in app.trains.values()} == {"/ship"}
    assert app.trains["billing"].name == "billing" and app.trains["billing"].github.base_branch == "master"


def test_every_problem_under_trains_is_named_by_its_key_path(tmp_path: Path) -> None:
    broken = (TWO_TRAINS.replace("{api: {service: billing-api, container: billing}}", "{api: {container: billing}}")
              .replace("deploy: {batch_percent: 25}", "deploy: {tick: 2}"))
    with pytest.raises(ConfigError) as refused:
        load_config(two_trains(tmp_path, broken))

    assert refused.value.errors == ["trains.app.deploy.tick: 2 is not a duration: write it like 90s, 15m or 8h",
                                    "trains.billing.processes.api.service: field required"]


@pytest.mark.parametrize(("change", "problem"), [
    (("billing:", "Billing:"), "trains.Billing: a train's name is a lowercase letter, then up to 30 lowercase "
                               "letters, digits and dashes"),
    (("billing:", "queue:"), "trains.queue: 'queue' is a word of the commands; name the train otherwise"),
    (("repo: acme/billing", "repo: acme/app"), "trains.billing.github: acme/app (master) is already train app's: "
                                               "two trains cannot merge into one branch"),
    (("    permissions: {admins: [U0BILLING]}", "    permissions: {admins: [U0BILLING]}\n"
      "    peas: {cluster: peas, names: [chick-pea, lima-bean]}"),
     "trains.billing.peas.names: chick-pea is also a pea of train app: pea names are unique across trains"),
])
def test_trains_must_be_told_apart(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(two_trains(tmp_path, TWO_TRAINS.replace(*change)))

    assert refused.value.errors == [problem]


def test_another_branch_of_one_repository_is_another_train(tmp_path: Path) -> None:
    text = TWO_TRAINS.replace("repo: acme/billing}", "repo: acme/app, base_branch: release}")
    assert load_config(two_trains(tmp_path, text)).trains["billing"].github.repo == "acme/app"


def test_the_example_s_commented_form_of_several_trains_is_a_valid_file(tmp_path: Path) -> None:
    lines = (ROOT / "app.yaml").read_text().splitlines()
    start = lines.index("# slack: {commands: {deploy: /deploy, pea: /pea}}")
    (tmp_path / "trains.yaml").write_text("\n".join(line.removeprefix("# ") for line in lines[start:]))

    app = load_config(tmp_path / "trains.yaml")

    assert list(app.trains) == ["app", "billing"]
    assert app.trains["billing"].permissions.admins == ["U0BILLING"]
    assert app.trains["app"].permissions.admins == ["U0ADMIN"]
    assert app.web is not None and {t.web for t in app.trains.values()} == {app.web}


def test_web_url_is_the_dashboard_s_base_for_every_train_s_deploy_pages(tmp_path: Path) -> None:
    example = (ROOT / "app.yaml").read_text()
    assert "# web:\n#   url: https://deploys.acme.com\n" in example
    path = tmp_path / "app.yaml"
    path.write_text(example.replace("# web:\n#   url: https://deploys.acme.com\n",
                                    "web:\n  url: https://deploys.acme.com/\n"))
    app = load_config(path)

    assert app.web is not None and app.web.deploy_page(42) == "https://deploys.acme.com/deploys/42"
    assert app.trains["app"].web == app.web
    assert load_config(ROOT / "app.yaml").trains["app"].web is None  # no dashboard URL: cards link no page
    path.write_text(example.replace("# web:\n#   url: https://deploys.acme.com\n", "web:\n  url: deploys\n"))
    with pytest.raises(ConfigError, match=r"web\.url: must be an http"):
        load_config(path)
