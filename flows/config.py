"""`app.yaml` (validated, with errors that name the key) and the environment.

The file holds one train (the form of the first release: its sections at the top level) or several,
under `trains:` with `permissions` defaults beside them (DESIGN §6). Either way it loads as an
`AppConfig` of named `TrainConfig`s; a single-train file's train is named after its repository.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.ecs import ecr_region

PR_PLACEHOLDER = "{pr}"  # in `jenkins.pr_job`: the pull request's number
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`90s`, `15m`, `8h`, `1d`, `500ms` → timedelta; bare numbers are refused, units are not guessed."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration: write it like 90s, 15m or 8h")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`: a duration as app.yaml writes it (`8h`, `90s`, `500ms`), in the largest
    unit that keeps it a whole number, so what people are shown is what they can type back."""
    micros = value // timedelta(microseconds=1)
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1_000_000)
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros / 1000:g}ms"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandsConfig(_Section):
    deploy: str = Field("/deploy", description="The train's slash command, as named in the Slack manifest.")
    pea: str = Field("/pea", description="The peas' slash command, as named in the Slack manifest.")

    @field_validator("deploy", "pea")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError("must be a slash command like /deploy (lowercase, at most 32 characters)")
        return value


class SlackConfig(_Section):
    channel: str = Field(description="Channel id for queue announcements and deploy cards.")
    commands: CommandsConfig = Field(default_factory=CommandsConfig,
                                     description="The slash commands' names; they must match the manifest.")


class GitHubConfig(_Section):
    repo: str = Field(description="owner/name of the repository whose pull requests are deployed.")
    base_branch: str = Field("master", description="The branch pull requests are merged into.")
    merge_method: Literal["merge", "squash", "rebase"] = Field(
        "merge", description="How pull requests are merged; the repository must allow it (a rollback reverts what "
                             "landed: the merge commit, the squash commit, or every rebased commit).")
    report: bool = Field(True, description=(
        "Report deploys on GitHub (DESIGN §10): a Deployment on the commit that landed, with statuses as it moves, "
        "and comments on the pull request when it is merged, deployed or rolled back; each pea deploy is a "
        "Deployment of environment pea/<name>. Needs a token that may write deployments and issues."))
    environment: str = Field("production", min_length=1, max_length=255,
                             description="The GitHub environment deploys are reported in.")

    @field_validator("repo")
    @classmethod
    def _owner_and_name(cls, value: str) -> str:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            raise ValueError("must be owner/name, e.g. acme/app")
        return value


class JenkinsConfig(_Section):
    job: str = Field(description="The job that builds the base branch.")
    pr_job: str = Field(description="The job that builds pull request heads (for peas); with {pr}, one job per "
                                    "pull request, e.g. app-pr/PR-{pr} in a multibranch project.")
    trigger: Literal["webhook", "api"] = Field(
        "webhook", description="webhook: GitHub starts builds; api: Fat Controller starts them."
    )
    sha_parameter: str = Field("GIT_COMMIT", description="Build parameter that carries the commit SHA.")
    build_timeout: Duration = Field(timedelta(minutes=30), description="How long a build may take.")
    build_start_wait: Duration = Field(
        timedelta(minutes=1),
        description="How long to wait for a build GitHub's webhook should start before starting it through the API.")
    build_retries: int = Field(0, ge=0, le=3, description=(
        "How many times a red build (of a candidate built ahead, or of a landed commit) is started again by "
        "itself before anyone is asked: for flaky builds."))

    @field_validator("pr_job")
    @classmethod
    def _only_the_pr_placeholder(cls, value: str) -> str:
        others = value.replace(PR_PLACEHOLDER, "")
        if "{" in others or "}" in others:
            raise ValueError(f"{value!r}: only {PR_PLACEHOLDER} (the pull request's number) may be in braces, "
                             "e.g. app-pr/PR-{pr} for a multibranch project")
        return value

    @property
    def per_pr(self) -> bool:
        """`pr_job` names one job per pull request (a multibranch project's `PR-{pr}`), not one for all."""
        return PR_PLACEHOLDER in self.pr_job

    def pr_job_of(self, pr: int) -> str:
        """The job that builds pull request `pr`."""
        return self.pr_job.replace(PR_PLACEHOLDER, str(pr))

    def pr_of_job(self, job: str) -> int | None:
        """The pull request a per-PR job builds (`app-pr/PR-110` -> 110); None for any other job."""
        first, *rest = (re.escape(part) for part in self.pr_job.split(PR_PLACEHOLDER))
        if not rest:
            return None
        match = re.fullmatch(first + "(?P<pr>[0-9]+)" + "(?P=pr)".join(rest), job)
        return int(match["pr"]) if match else None


def _alarm_names(names: list[str]) -> list[str]:
    """CloudWatch alarm names as DescribeAlarms takes them: 1 to 255 characters, no control characters."""
    bad = [n for n in names if not 1 <= len(n) <= 255 or not n.isprintable() or n != n.strip()]
    if bad:
        raise ValueError(f"not a CloudWatch alarm name: {bad[0]!r} (1 to 255 printable characters, no spaces "
                         "around it)")
    if len(set(names)) != len(names):
        raise ValueError("an alarm is named twice")
    return names


class ProcessConfig(_Section):
    service: str = Field(description="The ECS service that runs this process.")
    container: str = Field(description="The container in its task definition whose image is replaced.")
    alarms: list[str] = Field(default_factory=list, description=(
        "CloudWatch alarms watched for this process too, from its canaries up until the deploy ends (DESIGN §9)."))

    _valid_alarms = field_validator("alarms")(_alarm_names)


class EcsConfig(_Section):
    cluster: str = Field(description="The ECS cluster of the train's services.")
    region: str | None = Field(None, description="AWS region; default: the image's ECR registry's, else AWS's own "
                                                 "configuration (AWS_REGION, AWS_DEFAULT_REGION, the profile).")


class DeployConfig(_Section):
    canary_tasks: int = Field(1, ge=1, le=50, description="Tasks per canary service.")
    batch_percent: int = Field(25, description="Share of desired tasks replaced per rollout batch.")
    canary_reminder: Duration = Field(timedelta(minutes=10), description="Poke the requester after this.")
    confirm_timeout: Duration = Field(timedelta(minutes=15), description="Auto-complete after this.")
    rollout_timeout: Duration = Field(timedelta(minutes=30), description="Roll back a rollout slower than this.")
    tick: Duration = Field(timedelta(seconds=2), description="The job loop's interval.")
    poll: Duration = Field(
        timedelta(seconds=5),
        description="How often a waiting step looks at the outside world (more often when the wait should end).")
    speculate: int = Field(1, ge=0, le=5, description=(
        "How many queued deploys behind the one in flight are built ahead, on top of it, and land as a "
        "fast-forward to exactly the commit that was built (DESIGN §8). 0: none."))
    alarms: list[str] = Field(default_factory=list, description=(
        "CloudWatch alarms watched for every process from the canaries up until the deploy ends: one in ALARM "
        "rolls the deploy back by itself; ECS watches them too during the rolling update (DESIGN §9)."))
    canary_bake: Duration | None = Field(None, description=(
        "The canaries up and every watched alarm OK for this long: the deploy proceeds by itself (DESIGN §9)."))

    _valid_alarms = field_validator("alarms")(_alarm_names)

    @field_validator("batch_percent")
    @classmethod
    def _percent(cls, value: int) -> int:
        if not 1 <= value <= 100:
            raise ValueError("must be between 1 and 100")
        return value


class PeasConfig(_Section):
    cluster: str = Field(description="The ECS cluster of the preview environments.")
    names: list[str] = Field(default_factory=list, description="The pool of pea names.")
    service: str = Field("pea-{pea}-{process}", description="Service name pattern.")
    url: str = Field("https://{pea}.example.com", description="URL pattern of a pea.")
    lease: Duration = Field(timedelta(hours=8), description="How long a claim lasts.")

    @field_validator("names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", n)]
        if bad:
            raise ValueError(f"pea names are lowercase letters, digits and dashes: {', '.join(bad)}")
        if len(set(names)) != len(names):
            raise ValueError("pea names must be unique")
        return names

    @field_validator("service")
    @classmethod
    def _service_pattern(cls, value: str) -> str:
        if "{pea}" not in value or "{process}" not in value:
            raise ValueError("must contain {pea} and {process}")
        return value

    def service_name(self, pea: str, process: str) -> str:
        return self.service.format(pea=pea, process=process)

    def url_of(self, pea: str) -> str:
        return self.url.format(pea=pea)


class PermissionsConfig(_Section):
    deployers: list[str] = Field(default_factory=list, description="Who may deploy; empty: everyone.")
    emergency: list[str] = Field(default_factory=list, description="Who may jump the queue or skip builds.")
    admins: list[str] = Field(default_factory=list, description="Who may freeze and act on any deploy.")

    def may_deploy(self, user: str) -> bool:
        return not self.deployers or user in self.deployers or user in self.admins

    def may_use_emergency(self, user: str) -> bool:
        return user in self.emergency

    def is_admin(self, user: str) -> bool:
        return user in self.admins


class WebConfig(_Section):
    url: str = Field(description="The dashboard's public base URL (e.g. https://deploys.acme.com): every deploy card "
                                 "and DM links the deploy's page under it.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http:// or https:// URL with no query, e.g. https://deploys.acme.com")
        return value.rstrip("/")

    def deploy_page(self, deploy_id: int) -> str:
        """The dashboard's page of deploy `deploy_id`."""
        return f"{self.url}/deploys/{deploy_id}"


TRAIN_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
# The first word after /deploy is a train's name or one of these: a train cannot be called like them.
RESERVED_NAMES = frozenset({"queue", "history", "stats", "unfreeze", "help", "cancel", "freeze", "deploy", "pea",
                            "claim", "release", "extend", "list", "all"})


def train_name_of(repo: str) -> str:
    """The name a single-train file's train gets: its repository's (`acme/App_Site` → `app-site`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", repo.rsplit("/", 1)[-1].lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"train-{name}".rstrip("-")
    return name[:31].rstrip("-")


class TrainConfig(_Section):
    """One train: its channel, repository, Jenkins jobs, image, services, settings, peas and permissions."""

    name: str = Field("", description="The train's name, used in commands (set from its key under `trains:`, or "
                                      "from the repository for a single-train file).")
    slack: SlackConfig
    github: GitHubConfig
    jenkins: JenkinsConfig
    image: str = Field(description="Image URI with {sha} for the commit, e.g. ...ecr...amazonaws.com/app:{sha}.")
    ecs: EcsConfig
    processes: dict[str, ProcessConfig] = Field(description="What /deploy offers, each an ECS service.")
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    peas: PeasConfig | None = None
    permissions: PermissionsConfig = Field(default_factory=PermissionsConfig)
    # One dashboard serves every train: in the `trains:` form it is set from the file's top-level `web:`.
    web: WebConfig | None = Field(None, description="The web dashboard (DESIGN §10); none: cards link no page.")

    @model_validator(mode="before")
    @classmethod
    def _named(cls, raw: Any) -> Any:
        """A train given without a name (a single-train file, a test's config) is named after its repository."""
        if isinstance(raw, dict) and not raw.get("name") and isinstance(raw.get("github"), dict) \
                and isinstance(raw["github"].get("repo"), str):
            return {**raw, "name": train_name_of(raw["github"]["repo"])}
        return raw

    @field_validator("image")
    @classmethod
    def _image_has_sha(cls, value: str) -> str:
        if "{sha}" not in value:
            raise ValueError("must contain {sha}, where the commit SHA goes")
        return value

    @field_validator("processes")
    @classmethod
    def _some_processes(cls, processes: dict[str, ProcessConfig]) -> dict[str, ProcessConfig]:
        if not processes:
            raise ValueError("name at least one process")
        bad = [n for n in processes if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,30}", n)]
        if bad:
            raise ValueError(f"process names are lowercase letters, digits, - and _: {', '.join(bad)}")
        return processes

    @model_validator(mode="after")
    def _distinct_services(self) -> TrainConfig:
        services = [p.service for p in self.processes.values()]
        if len(set(services)) != len(services):
            raise ValueError("two processes name the same service")
        return self

    def image_for(self, sha: str) -> str:
        return self.image.replace("{sha}", sha)

    def alarms_of(self, processes: Sequence[str]) -> list[str]:
        """The alarms a deploy of `processes` watches: the train's, then each process's own, each once."""
        names = [*self.deploy.alarms, *(name for p in processes for name in self.processes[p].alarms)]
        return list(dict.fromkeys(names))

    @property
    def region(self) -> str | None:
        """`ecs.region`, else the region of the image's ECR registry (None: AWS's own configuration decides)."""
        return self.ecs.region or ecr_region(self.image)


class ConfigError(Exception):
    """`app.yaml` is missing, unreadable or invalid; `errors` are lines like `deploy.tick: ...`."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))


_MESSAGES = {"missing": "field required", "extra_forbidden": "unknown key"}


def _describe(error: ErrorDetails, *, single: bool = False) -> list[str]:
    """The lines of one validation error, each `key.path: what is wrong`; in a single-train file the path is
    the file's own (`deploy.tick`, not `trains.app.deploy.tick`)."""
    loc = [str(part) for part in error["loc"]]
    if single and loc[:1] == ["trains"]:
        loc = loc[2:]
    message = _MESSAGES.get(error["type"], error["msg"])
    message = message.removeprefix("Value error, ")
    if error["type"] not in _MESSAGES and message:
        message = message[0].lower() + message[1:]
    if not loc and message.startswith("trains"):  # the cross-train checks name their own keys
        return message.split(_JOINED)
    return [f"{'.'.join(loc) or '(top level)'}: {message}"]


class AppSlackConfig(_Section):
    commands: CommandsConfig = Field(default_factory=CommandsConfig,
                                     description="The slash commands' names; they must match the manifest.")


class AppConfig(_Section):
    """The whole of `app.yaml`: every train, by name (in the file's order)."""

    trains: dict[str, TrainConfig] = Field(description="The trains, by name.")
    permissions: PermissionsConfig = Field(default_factory=PermissionsConfig,
                                           description="Defaults for every train; a train's own block replaces them.")
    slack: AppSlackConfig = Field(default_factory=AppSlackConfig, description="What one Slack app serves: its "
                                                                              "commands (each train has its channel).")
    web: WebConfig | None = Field(None, description="The web dashboard of every train (DESIGN §10).")

    @model_validator(mode="after")
    def _trains_apart(self) -> AppConfig:
        problems = []
        if not self.trains:
            problems.append("trains: name at least one train")
        for name in self.trains:
            if not TRAIN_NAME.fullmatch(name):
                problems.append(f"trains.{name}: a train's name is a lowercase letter, then up to 30 lowercase "
                                "letters, digits and dashes")
            elif name in RESERVED_NAMES:
                problems.append(f"trains.{name}: {name!r} is a word of the commands; name the train otherwise")
        seen_repos: dict[tuple[str, str], str] = {}
        seen_peas: dict[str, str] = {}
        for name, train in self.trains.items():
            where = (train.github.repo.lower(), train.github.base_branch)
            if where in seen_repos:
                problems.append(f"trains.{name}.github: {train.github.repo} ({train.github.base_branch}) is already "
                                f"train {seen_repos[where]}'s: two trains cannot merge into one branch")
            seen_repos.setdefault(where, name)
            for pea in train.peas.names if train.peas else ():
                if pea in seen_peas:
                    problems.append(f"trains.{name}.peas.names: {pea} is also a pea of train {seen_peas[pea]}: pea "
                                    "names are unique across trains")
                seen_peas.setdefault(pea, name)
        if problems:
            raise ValueError(_JOINED.join(problems))
        return self

    @classmethod
    def of(cls, *trains: TrainConfig) -> AppConfig:
        """The configuration of these trains, as a file of them would give (for callers that build trains in
        code: tests, benchmarks); the commands are the first train's."""
        return cls(trains={t.name: t for t in trains}, slack=AppSlackConfig(commands=trains[0].slack.commands),
                   web=trains[0].web)


_JOINED = "\n"  # several problems found together by one validator, one per line


def _as_trains(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw file in the `trains:` form: a single-train file becomes one train named after its repository;
    every train gets its name, the default permissions unless it has its own, and the app's commands."""
    if "trains" not in raw:
        repo = raw.get("github", {}).get("repo") if isinstance(raw.get("github"), dict) else None
        name = train_name_of(repo) if isinstance(repo, str) else "train"
        commands = raw.get("slack", {}).get("commands") if isinstance(raw.get("slack"), dict) else None
        return {"trains": {name: {**raw, "name": raw.get("name", name)}},
                **({"slack": {"commands": commands}} if commands is not None else {}),
                **({"web": raw["web"]} if "web" in raw else {})}
    trains = raw["trains"]
    if not isinstance(trains, dict):
        return raw  # validation says what is wrong
    defaults = raw.get("permissions")
    commands = raw.get("slack", {}).get("commands") if isinstance(raw.get("slack"), dict) else None
    shaped = {}
    for name, train in trains.items():
        if not isinstance(train, dict):
            shaped[name] = train
            continue
        train = {"name": name, **train}
        if "permissions" not in train and defaults is not None:
            train["permissions"] = defaults
        if commands is not None and isinstance(train.get("slack"), dict):
            train["slack"] = {**train["slack"], "commands": commands}
        if "web" in raw:  # one dashboard for every train: a train has no `web:` of its own
            train["web"] = raw["web"]
        shaped[name] = train
    return {**raw, "trains": shaped}


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read and validate `app.yaml`; every problem is reported at once, each with its key path."""
    path = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, ["(top level): expected a mapping of sections"])
    try:
        return AppConfig.model_validate(_as_trains(raw))
    except ValidationError as exc:
        raise ConfigError(path, [line for e in exc.errors() for line in _describe(e, single="trains" not in raw)])\
            from None


def revealed(secret: SecretStr | None) -> str | None:
    """A secret's value, for the client that needs it (never for a log or a message)."""
    return secret.get_secret_value() if secret is not None else None


class Settings(BaseSettings):
    """Secrets and endpoints, from the environment only (never from app.yaml, never printed)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    config_path: str = Field(
        "app.yaml", validation_alias=AliasChoices("FATCONTROLLER_CONFIG"), description="Path of app.yaml."
    )
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    github_token: SecretStr | None = Field(None, validation_alias="GITHUB_TOKEN")
    github_api_url: str = Field("https://api.github.com", validation_alias="GITHUB_API_URL")
    jenkins_url: str | None = Field(None, validation_alias="JENKINS_URL")
    jenkins_user: str | None = Field(None, validation_alias="JENKINS_USER")
    jenkins_token: SecretStr | None = Field(None, validation_alias="JENKINS_TOKEN")
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///fatcontroller.db"), validation_alias="DATABASE_URL",
        description="SQLAlchemy async URL; may carry a password, so it is a secret.",
    )
    http_port: int = Field(
        8080, validation_alias="FATCONTROLLER_HTTP_PORT",
        description="Port of /healthz, /metrics, /hooks/jenkins and the web dashboard (0: off)."
    )
    hook_token: SecretStr | None = Field(
        None, validation_alias="FATCONTROLLER_HOOK_TOKEN",
        description="When set, /hooks/jenkins requires it (X-Fatcontroller-Token header or ?token=).",
    )
    web_password: SecretStr | None = Field(
        None, validation_alias="FATCONTROLLER_WEB_PASSWORD",
        description="When set, the web dashboard's pages and JSON ask for it (HTTP basic auth, any user name); "
                    "/healthz, /readyz, /metrics and /hooks/jenkins stay open.",
    )
    instance: str | None = Field(
        None, validation_alias="FATCONTROLLER_INSTANCE", description="This copy's name in work leases."
    )
    lease_seconds: float = Field(
        30.0, gt=0, validation_alias="FATCONTROLLER_LEASE_SECONDS",
        description="How long a copy holds work it is doing; a dead copy's work passes on after this.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias="FATCONTROLLER_LOG_FORMAT",
        description="text: one readable line per record; json: one JSON object per line (time, level, logger, "
                    "message, exception), for a log collector. Timestamps are UTC either way.",
    )
