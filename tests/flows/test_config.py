"""app.yaml and the environment: durations, key paths in errors, secrets that never print."""

from datetime import timedelta
from pathlib import Path

import pytest

from flows.config import ConfigError, Settings, load_config, parse_duration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("8h", 28800), ("1d", 86400),
                                               ("500ms", 0.5), (" 2s ", 2)])
def test_durations_are_read_with_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["90", "soon", "-5s", "0s", "5 minutes", ""])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_example_config_loads_with_the_documented_values() -> None:
    config = load_config(ROOT / "app.yaml")
    assert config.deploy.confirm_timeout == timedelta(minutes=15)
    assert config.processes["worker"].service == "app-worker"
    assert config.image_for("a" * 40).endswith(":" + "a" * 40)
    assert config.region == "eu-west-1"
    assert config.peas is not None and config.peas.service_name("snow-pea", "web") == "pea-snow-pea-web"


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
