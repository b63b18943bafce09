"""`fatcontroller doctor`: every credential and permission a configured train needs, checked and worded.

`examine` asks each outside system what the train's credentials may do there, through the small
protocols below (the facades of `integrations` implement them, the Slack surface implements
`SlackChecks`), and returns a `Report`: one `Check` per thing needed, each ok, a warning (the train
runs, some of what it does changes or fails) or a problem (it cannot work), with the fix in one
sentence naming the setting, scope or permission to change. Nothing is written anywhere and nothing is
printed here. `fast=True` is the subset `run` checks before it takes work: the GitHub token, its
repository and push access, Jenkins and the two jobs, the ECS cluster and the train's services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from flows.config import TrainConfig
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from integrations.outside import NotFound, OutsideError, TransientError

GITHUB, JENKINS, AWS, SLACK = "GitHub", "Jenkins", "AWS", "Slack"
SYSTEMS = (GITHUB, JENKINS, AWS, SLACK)
NO_SHA = "0" * 40  # stands for `{sha}` where an image URI is only parsed
_MERGE_WORDS = {"merge": "merge commits", "squash": "squash merging", "rebase": "rebase merging"}
_MERGE_SETTINGS = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}
_REACH = {GITHUB: "check GITHUB_API_URL and the network", JENKINS: "check JENKINS_URL and the network",
          AWS: "check the AWS region (ecs.region), AWS_ENDPOINT_URL and the network",
          SLACK: "check SLACK_API_URL and the network"}


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"  # the train runs, but something it does changes or fails
    PROBLEM = "problem"  # the train cannot work like this


@dataclass(frozen=True)
class Check:
    """One thing the train needs, as found; `fix` says in one sentence what to change when it is not ok."""

    system: str
    name: str
    status: Status
    detail: str
    fix: str | None = None
    checked: bool = True  # False: an ok that could not be verified (`detail` says why and what is needed)
    transient: bool = False  # the outside system did not answer: the same check may pass later

    @property
    def words(self) -> str:
        """The check in one line, as `run` says it when it refuses to start."""
        return f"{self.system} {self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.PROBLEM)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.WARNING)

    @property
    def exit_code(self) -> int:
        """0 when nothing is a problem (warnings included), 1 otherwise."""
        return 1 if self.problems else 0


@dataclass(frozen=True)
class SlackAnswer:
    """What Slack said to one token."""

    ok: bool
    error: str | None = None  # Slack's error code (invalid_auth...), or why it could not be asked
    unset: bool = False  # the variable holds no token
    unreachable: bool = False
    who: str | None = None  # auth.test: the bot user and its workspace
    scopes: tuple[str, ...] | None = None  # the x-oauth-scopes header; None when Slack did not send it


class GitHubChecks(Protocol):
    repo: str
    base_branch: str

    @property
    def api_url(self) -> str: ...
    async def access(self) -> GitHub.Access: ...
    async def branch_rules(self) -> GitHub.BranchRules: ...


class JenkinsChecks(Protocol):
    url: str

    async def access(self) -> Jenkins.Access: ...
    async def job_access(self, job: str) -> Jenkins.JobAccess: ...


class EcsChecks(Protocol):
    region: str

    def credentials_refused(self, error: OutsideError) -> bool: ...
    async def cluster_status(self, cluster: str) -> str | None: ...
    async def service_access(self, cluster: str, services: list[str], *,
                             task_definitions: bool = True) -> dict[str, Ecs.ServiceAccess]: ...
    async def image_repository(self, image: str) -> Ecs.ImageRepository | None: ...


class AlarmChecks(Protocol):
    async def check_access(self) -> None: ...


class SlackChecks(Protocol):
    api_url: str
    expected_scopes: tuple[str, ...]  # the bot scopes of manifest.yaml

    async def bot_token(self) -> SlackAnswer: ...
    async def app_token(self) -> SlackAnswer: ...


@dataclass(frozen=True)
class Systems:
    """The outside systems to examine; None where there is nothing to ask (JENKINS_URL unset, no Slack)."""

    github: GitHubChecks
    jenkins: JenkinsChecks | None
    ecs: EcsChecks
    cloudwatch: AlarmChecks | None = None
    slack: SlackChecks | None = None


async def examine(config: TrainConfig, systems: Systems, *, fast: bool = False,
                  within: float | None = None) -> Report:
    """Every check of `config`'s train (`fast`: only those `run` makes at start), each outside system asked
    at the same time; a system that has not answered within `within` seconds gets one transient problem."""
    full = not fast
    asks: list[tuple[str, Callable[[], Awaitable[list[Check]]]]] = [
        (GITHUB, lambda: _github(config, systems.github, full)),
        (JENKINS, lambda: _jenkins(config, systems.jenkins, full)),
        (AWS, lambda: _aws(config, systems.ecs, systems.cloudwatch, full)),
    ]
    if full and systems.slack is not None:
        slack = systems.slack
        asks.append((SLACK, lambda: _slack(slack)))

    async def bounded(system: str, ask: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
        try:
            return await asyncio.wait_for(ask(), within)
        except TimeoutError:
            return [Check(system, "answer", Status.PROBLEM, f"no answer within {within:g}s", _REACH[system],
                          transient=True)]

    found = await asyncio.gather(*(bounded(system, ask) for system, ask in asks))
    return Report(tuple(check for checks in found for check in checks))


def _failed(system: str, name: str, error: OutsideError, fix: str) -> Check:
    """An outside error as a problem: a transient one says how to reach the system, else `fix`."""
    if isinstance(error, TransientError):
        return Check(system, name, Status.PROBLEM, f"no answer ({error.message})", _REACH[system], transient=True)
    return Check(system, name, Status.PROBLEM, error.message, fix)


# -- GitHub ------------------------------------------------------------------------------------------------
async def _github(config: TrainConfig, github: GitHubChecks, full: bool) -> list[Check]:
    repo, base = config.github.repo, config.github.base_branch

    def check(name: str, status: Status, detail: str, fix: str | None = None, checked: bool = True) -> Check:
        return Check(GITHUB, name, status, detail, fix, checked)

    try:
        access = await github.access()
    except OutsideError as error:
        if error.status == 401:
            return [check("token", Status.PROBLEM, "GitHub refused GITHUB_TOKEN (HTTP 401)",
                          "set GITHUB_TOKEN to a valid token of the bot's GitHub user (it is missing, expired "
                          "or revoked)")]
        if isinstance(error, TransientError):
            return [Check(GITHUB, "token", Status.PROBLEM, f"cannot reach GitHub at {github.api_url} "
                          f"({error.message})", _REACH[GITHUB], transient=True)]
        return [_failed(GITHUB, "token", error, f"check that GITHUB_TOKEN may read {repo}")]
    who = access.login or "the token"
    classic = access.scopes is not None
    if classic:
        scopes = ", ".join(access.scopes or ()) or "none"
        kind = f"a classic token with the scopes {scopes}"
    else:
        kind = "a fine-grained or app token (no scopes: its permissions on the repository count)"
    checks = [check("token", Status.OK, f"valid, {kind}" + (f", for {access.login}" if access.login else ""))]

    lacks_repo = classic and "repo" not in (access.scopes or ())
    if not access.visible:
        fix = ("add the repo scope to GITHUB_TOKEN (a classic token sees a private repository only with it)"
               if lacks_repo else f"check github.repo, and give GITHUB_TOKEN access to {repo} (fine-grained: "
                                  "add the repository to the token; classic: the repo scope)")
        return [*checks, check(f"repository {repo}", Status.PROBLEM, f"{repo} is not visible to {who} (HTTP 404)",
                               fix)]
    checks.append(check(f"repository {repo}", Status.OK, "visible"))

    if lacks_repo:
        checks.append(check("push access", Status.PROBLEM, f"the classic token lacks the repo scope, so it cannot "
                            f"merge into or push to {repo}", "add the repo scope to GITHUB_TOKEN"))
    elif not access.permissions.get("push"):
        fix = (f"give {who} write access to {repo} (Settings → Collaborators and teams)" if classic else
               f"give GITHUB_TOKEN Contents: Read and write and Pull requests: Read and write on {repo}")
        checks.append(check("push access", Status.PROBLEM,
                            f"{who} may not push to {repo}, so it can neither merge nor revert", fix))
    else:
        checks.append(check("push access", Status.OK, f"{who} may push to {repo} (merges, and reverts)"))
    if not full:
        return checks

    if classic and "workflow" not in (access.scopes or ()):
        checks.append(check("workflow scope", Status.WARNING,
                            "GITHUB_TOKEN lacks the workflow scope: a pull request that changes .github/workflows/ "
                            "can be neither merged nor reverted", "add the workflow scope to GITHUB_TOKEN"))
    elif classic:
        checks.append(check("workflow scope", Status.OK, "granted: pull requests that change .github/workflows/ "
                            "can be merged and reverted"))
    else:
        checks.append(check("workflow scope", Status.OK, "not checked: GitHub does not show a fine-grained or app "
                            "token's Workflows permission; grant it (Read and write) so that pull requests that "
                            "change .github/workflows/ can be merged and reverted", checked=False))

    checks.append(_merge_method(config, access))
    try:
        rules = await github.branch_rules()
    except OutsideError as error:
        return [*checks, _failed(GITHUB, f"base branch {base}", error, f"check that GITHUB_TOKEN may read {repo}")]
    if not rules.exists:
        default = f" (the repository's default is {access.default_branch})" if access.default_branch else ""
        return [*checks, check(f"base branch {base}", Status.PROBLEM, f"no branch {base} in {repo}",
                               f"set github.base_branch to the branch pull requests are merged into{default}")]
    checks.append(check(f"base branch {base}", Status.OK, "exists"))
    return [*checks, *_protection(config, access, rules)]


def _merge_method(config: TrainConfig, access: GitHub.Access) -> Check:
    repo = config.github.repo
    method = config.github.merge_method
    name = f"merge method {method}"
    allowed = access.merge_methods.get(method)
    if allowed is None:
        return Check(GITHUB, name, Status.OK, f"not checked: GitHub did not say whether {repo} allows "
                     f"{_MERGE_WORDS.get(method, method)} (it tells tokens with push or admin access)", checked=False)
    if allowed:
        return Check(GITHUB, name, Status.OK, f"{repo} allows {_MERGE_WORDS[method]}")
    others = [m for m, ok in access.merge_methods.items() if ok]
    setting = _MERGE_SETTINGS[method]
    if others:
        fix = (f"set github.merge_method to one {repo} allows ({', '.join(others)}), or turn on {setting} in its "
               "settings")
    else:
        fix = f"turn on {setting} in the settings of {repo}"
    return Check(GITHUB, name, Status.PROBLEM, f"{repo} does not allow {_MERGE_WORDS[method]}, "
                 f"and the train merges with {method}", fix)


def _protection(config: TrainConfig, access: GitHub.Access, rules: GitHub.BranchRules) -> list[Check]:
    base, method = config.github.base_branch, config.github.merge_method
    name = f"protection of {base}"
    if not rules.protected:
        return [Check(GITHUB, name, Status.OK, f"{base} is not protected")]
    if rules.refused is not None:
        return [Check(GITHUB, name, Status.WARNING,
                      f"{base} is protected, and GITHUB_TOKEN may not read its rules ({rules.refused}); if they "
                      "require pull requests or signed commits, a rollback's revert goes through a revert pull "
                      "request, and if they require up-to-date branches a queued pull request is updated first",
                      "to have the rules checked, let the token read the repository's administration "
                      "(fine-grained: Administration: Read-only; classic: a user with admin rights)")]
    checks: list[Check] = []
    who = access.login or "the token"
    if rules.linear_history and method == "merge":
        checks.append(Check(GITHUB, name, Status.PROBLEM, f"{base} requires a linear history, which refuses merge "
                            "commits", "set github.merge_method to squash or rebase"))
    bypassed = (not rules.enforce_admins and access.permissions.get("admin", False)) or (
        access.login is not None and access.login in rules.bypass)
    needs = [what for what, needed in (("changes through pull requests", rules.pull_requests and not bypassed),
                                       ("signed commits", rules.signatures and not bypassed)) if needed]
    if needs:
        fix = (f"let {who} bypass the pull request rule of {base} (Allow specified actors to bypass required pull "
               "requests) for direct reverts, or expect reverts by pull request" if rules.pull_requests and not
               bypassed else f"expect reverts by pull request (GitHub signs what it merges), or turn off "
                             f"'Require signed commits' on {base}")
        checks.append(Check(GITHUB, f"revert into {base}", Status.WARNING,
                            f"{base} requires {' and '.join(needs)}: a rollback cannot push its revert commit, so the "
                            "revert goes through a revert pull request", fix))
    if rules.up_to_date:
        checks.append(Check(GITHUB, f"up-to-date rule of {base}", Status.WARNING,
                            f"{base} requires pull requests to be up to date before they merge: one that is behind "
                            "at its turn is updated and built again first, which makes its deploy slower",
                            f"turn off 'Require branches to be up to date before merging' on {base} for a quicker "
                            "train, or expect that wait"))
    if not checks:
        checks.append(Check(GITHUB, name, Status.OK, f"{base} is protected; nothing in its rules changes how the "
                            "train merges or reverts"))
    return checks


# -- Jenkins -----------------------------------------------------------------------------------------------
async def _jenkins(config: TrainConfig, jenkins: JenkinsChecks | None, full: bool) -> list[Check]:
    jobs = config.jenkins
    if jenkins is None:
        return [Check(JENKINS, "URL", Status.PROBLEM, "JENKINS_URL is not set",
                      "set JENKINS_URL to the Jenkins that runs jenkins.job and jenkins.pr_job")]
    try:
        access = await jenkins.access()
    except OutsideError as error:
        if error.status == 401:
            return [Check(JENKINS, "credentials", Status.PROBLEM, "Jenkins refused JENKINS_USER and JENKINS_TOKEN "
                          "(HTTP 401)", "set JENKINS_USER to the bot's Jenkins user and JENKINS_TOKEN to one of its "
                          "API tokens (user → Configure → API Token)")]
        if isinstance(error, TransientError):
            return [Check(JENKINS, "credentials", Status.PROBLEM, f"cannot reach Jenkins at {jenkins.url} "
                          f"({error.message})", _REACH[JENKINS], transient=True)]
        return [_failed(JENKINS, "credentials", error, "check JENKINS_URL, JENKINS_USER and JENKINS_TOKEN")]
    user = access.user
    if access.denied is not None:
        return [Check(JENKINS, "credentials", Status.PROBLEM, f"{user} is missing the {access.denied} permission",
                      f"grant {user} {access.denied} in Jenkins (Manage Jenkins → Security)")]
    if access.anonymous:
        checks = [Check(JENKINS, "credentials", Status.WARNING, "the bot reaches Jenkins as anonymous "
                        "(JENKINS_USER is not set)", "set JENKINS_USER and JENKINS_TOKEN to a user with Overall/Read, "
                        "Job/Read and Job/Build on the two jobs")]
    else:
        checks = [Check(JENKINS, "credentials", Status.OK, f"accepted, as {user}")]
    for key, job, builds in (("jenkins.job", jobs.job, config.github.base_branch),
                             ("jenkins.pr_job", jobs.pr_job, "pull request heads")):
        checks.append(await _job(jenkins, user, key, job, builds))
    if full:
        checks.append(Check(JENKINS, "build permission", Status.OK,
                            f"not checked: Jenkins has no read-only way to ask whether a user may build; {user} needs "
                            f"Job/Build on {jobs.job} and {jobs.pr_job} (a build the bot starts says "
                            "'missing the Job/Build permission' if not)", checked=False))
    return checks


async def _job(jenkins: JenkinsChecks, user: str, key: str, job: str, builds: str) -> Check:
    """`job` exists and `user` may read it; for a pattern with `{pr}`, the multibranch project before `/`."""
    target, project = job, ""
    if "{pr}" in job:
        head, slash, _ = job.partition("/")
        if not slash or "{pr}" in head:
            return Check(JENKINS, f"job {job}", Status.OK, f"not checked: {job} names one job per pull request, with "
                         "no project to look at", checked=False)
        target, project = head, f"multibranch project {head} (its jobs: {job}): "
    name = f"job {target}"
    try:
        found = await jenkins.job_access(target)
    except OutsideError as error:
        return _failed(JENKINS, name, error, f"check {key} and the permissions of {user} on {target}")
    if not found.exists:
        return Check(JENKINS, name, Status.PROBLEM, f"{project}no job {target} that {user} can see (HTTP 404)",
                     f"set {key} to the job that builds {builds}, or grant {user} Job/Discover and Job/Read on it")
    if found.denied is not None:
        return Check(JENKINS, name, Status.PROBLEM, f"{project}{user} is missing the {found.denied} permission on "
                     f"{target}", f"grant {user} {found.denied} on {target}")
    if project and found.kind and not any(word in found.kind for word in ("MultiBranch", "Folder")):
        return Check(JENKINS, name, Status.PROBLEM, f"{target} is a {found.kind.rsplit('.', 1)[-1]}, not a "
                     f"multibranch project or folder, so {job} names no job",
                     f"set {key} to the pull requests' job, or to a multibranch project's pattern like "
                     "<project>/PR-{pr}")
    if found.buildable is False:
        return Check(JENKINS, name, Status.PROBLEM, f"{project}{target} is disabled", f"enable {target} in Jenkins")
    return Check(JENKINS, name, Status.OK, f"{project}exists, {user} may read it")


# -- AWS ---------------------------------------------------------------------------------------------------
async def _aws(config: TrainConfig, ecs: EcsChecks, cloudwatch: AlarmChecks | None, full: bool) -> list[Check]:
    cluster = config.ecs.cluster
    unknown = "ecs:DescribeClusters"
    try:
        status: str | None = await ecs.cluster_status(cluster)
        refused = None
    except OutsideError as error:
        if ecs.credentials_refused(error):
            return [Check(AWS, "credentials", Status.PROBLEM, f"AWS refused the credentials ({error.message})",
                          "give the bot AWS credentials through the standard chain (an instance or task role, "
                          "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")]
        if isinstance(error, TransientError):
            return [_failed(AWS, f"cluster {cluster}", error, "")]
        # the README's policy grants it for this check only, and a policy without it still runs the train: its
        # services say whether the cluster exists
        status, refused = unknown, error.message
    checks = [Check(AWS, "credentials", Status.OK, f"accepted (region {ecs.region})")]
    name = f"cluster {cluster}"
    fix = "set ecs.cluster (and ecs.region) to the cluster of the train's services"
    if status is None:
        return [*checks, Check(AWS, name, Status.PROBLEM, f"no ECS cluster {cluster} in {ecs.region}", fix)]
    if status not in ("ACTIVE", unknown):
        return [*checks, Check(AWS, name, Status.PROBLEM, f"cluster {cluster} is {status}", fix)]

    processes = config.processes
    try:
        services = await ecs.service_access(cluster, [p.service for p in processes.values()], task_definitions=full)
    except NotFound:
        return [*checks, Check(AWS, name, Status.PROBLEM, f"no ECS cluster {cluster} in {ecs.region}", fix)]
    except OutsideError as error:
        return [*checks, _failed(AWS, f"services of {cluster}", error,
                                 f"allow ecs:DescribeServices on the services of cluster {cluster} "
                                 f"(service/{cluster}/*)")]
    if refused is not None:
        checks.append(Check(AWS, name, Status.OK, f"exists (its services answer); its status is not checked: "
                            f"{refused} (the train does not need ecs:DescribeClusters)", checked=False))
    else:
        checks.append(Check(AWS, name, Status.OK, "ACTIVE"))
    for process, wanted in processes.items():
        checks.append(_service(cluster, process, wanted.service, wanted.container, services[wanted.service], full))
    if not full:
        return checks

    checks.append(await _repository(config, ecs))
    roles = sorted({role for s in services.values() for role in s.roles})
    if roles:
        checks.append(Check(AWS, "iam:PassRole", Status.OK, f"not checked: the bot must be allowed iam:PassRole on "
                            f"{', '.join(roles)} (to ecs-tasks.amazonaws.com) to register new task definition "
                            "revisions; AWS answers that only through iam:SimulatePrincipalPolicy, which the bot is "
                            "not given (a deploy's RegisterTaskDefinition says so if it is missing)", checked=False))
    elif all(s.task_definition and not s.unreadable for s in services.values()):
        checks.append(Check(AWS, "iam:PassRole", Status.OK, "the task definitions name no execution or task role: "
                            "nothing to pass"))
    if config.peas is not None:
        checks.extend(await _peas(config, ecs))
    if cloudwatch is not None:
        checks.append(await _alarms(config, cloudwatch))
    return checks


def _service(cluster: str, process: str, service: str, container: str, found: Ecs.ServiceAccess,
             full: bool) -> Check:
    name = f"service {service}"
    fix = f"set processes.{process}.service to the ECS service that runs {process}"
    if found.status is None:
        return Check(AWS, name, Status.PROBLEM, f"no service {service} in cluster {cluster}", fix)
    if found.status != "ACTIVE":
        return Check(AWS, name, Status.PROBLEM, f"service {service} is {found.status} (being deleted)", fix)
    task_definition = (found.task_definition or "").rsplit("/", 1)[-1]
    if not full:
        return Check(AWS, name, Status.OK, f"ACTIVE, on {task_definition}")
    if found.unreadable is not None:
        return Check(AWS, name, Status.PROBLEM, f"cannot describe its task definition {task_definition} "
                     f"({found.unreadable})", "allow ecs:DescribeTaskDefinition (on Resource \"*\": it supports no "
                     "resource-level permissions)")
    if container not in found.containers:
        return Check(AWS, name, Status.PROBLEM, f"{task_definition} has no container {container} (it has "
                     f"{', '.join(found.containers) or 'none'})",
                     f"set processes.{process}.container to the container whose image a deploy changes")
    return Check(AWS, name, Status.OK, f"ACTIVE, on {task_definition}, container {container}")


async def _repository(config: TrainConfig, ecs: EcsChecks) -> Check:
    image = config.image_for(NO_SHA)
    try:
        found = await ecs.image_repository(image)
    except OutsideError as error:
        return _failed(AWS, "image repository", error, "allow ecr:DescribeImages on the image's repository")
    if found is None:
        return Check(AWS, "image repository", Status.OK, f"not checked: {config.image} is not an ECR image URI",
                     checked=False)
    name = f"image repository {found.name}"
    arn = f"arn:aws:ecr:{found.region}:{found.registry}:repository/{found.name}"
    if found.refused is not None:
        return Check(AWS, name, Status.PROBLEM, f"AWS would not say whether it exists ({found.refused})",
                     f"allow ecr:DescribeImages on {arn}")
    if not found.exists:
        return Check(AWS, name, Status.PROBLEM, f"no ECR repository {found.name} in registry {found.registry} "
                     f"({found.region})", "set image to the repository the builds push to, or create it")
    return Check(AWS, name, Status.OK, "exists, and its images can be looked up (ecr:DescribeImages)")


async def _peas(config: TrainConfig, ecs: EcsChecks) -> list[Check]:
    peas = config.peas
    if peas is None:  # a train without peas has nothing here to check
        return []
    name = f"pea cluster {peas.cluster}"
    wanted = [peas.service_name(pea, process) for pea in peas.names for process in config.processes]
    try:
        found = await ecs.service_access(peas.cluster, wanted, task_definitions=False) if wanted else {}
    except NotFound:
        return [Check(AWS, name, Status.PROBLEM, f"no ECS cluster {peas.cluster} in {ecs.region}",
                      "set peas.cluster to the cluster of the preview environments' services")]
    except OutsideError as error:
        return [_failed(AWS, name, error, f"allow ecs:DescribeServices on the services of cluster {peas.cluster} "
                                          f"(service/{peas.cluster}/*)")]
    missing = [service for service in wanted if found[service].status != "ACTIVE"]
    if missing:
        return [Check(AWS, name, Status.PROBLEM, f"{len(missing)} of {len(wanted)} pea services are missing: "
                      f"{', '.join(missing)}", f"create one ECS service per pea and process in {peas.cluster}, named "
                      f"by peas.service ({peas.service}), or change peas.names or peas.service")]
    return [Check(AWS, name, Status.OK, f"its {len(wanted)} pea services exist")]


async def _alarms(config: TrainConfig, cloudwatch: AlarmChecks) -> Check:
    name = "CloudWatch alarms"
    watched = bool(getattr(config.deploy, "alarms", None)) or any(
        getattr(p, "alarms", None) for p in config.processes.values())
    try:
        await cloudwatch.check_access()
    except TransientError as error:
        return _failed(AWS, name, error, "")
    except OutsideError as error:
        fix = "allow cloudwatch:DescribeAlarms to the bot's AWS role"
        if watched:
            return Check(AWS, name, Status.PROBLEM, error.message, fix)
        return Check(AWS, name, Status.WARNING, f"{error.message}; needed once deploy.alarms or "
                     "processes.<name>.alarms are set", fix)
    return Check(AWS, name, Status.OK, "cloudwatch:DescribeAlarms is allowed")


# -- Slack -------------------------------------------------------------------------------------------------
async def _slack(slack: SlackChecks) -> list[Check]:
    # the same words as `run` when it refuses a token (bot.app)
    bot, app = await slack.bot_token(), await slack.app_token()
    checks = [_token(slack, "bot token", "SLACK_BOT_TOKEN", "bot token (xoxb-...)", bot)]
    if bot.ok and bot.scopes is None:
        checks.append(Check(SLACK, "bot scopes", Status.OK, "not checked: Slack did not report the token's scopes "
                            f"(no x-oauth-scopes header); the app needs {', '.join(slack.expected_scopes)}",
                            checked=False))
    elif bot.ok and bot.scopes is not None:
        missing = [s for s in slack.expected_scopes if s not in bot.scopes]
        if missing:
            checks.append(Check(SLACK, "bot scopes", Status.PROBLEM, f"the bot token lacks {', '.join(missing)}",
                                f"add {', '.join(missing)} to the app's bot token scopes (OAuth & Permissions, as in "
                                "manifest.yaml) and reinstall the app"))
        else:
            checks.append(Check(SLACK, "bot scopes", Status.OK, ", ".join(slack.expected_scopes)))
    checks.append(_token(slack, "app token", "SLACK_APP_TOKEN",
                         "app-level token (xapp-...) with the connections:write scope", app))
    return checks


def _token(slack: SlackChecks, name: str, variable: str, kind: str, answer: SlackAnswer) -> Check:
    if answer.unset:
        return Check(SLACK, name, Status.PROBLEM, f"{variable} is not set",
                     "see manifest.yaml and the README to create the app")
    if answer.unreachable:
        return Check(SLACK, name, Status.PROBLEM, f"cannot reach Slack at {slack.api_url} ({answer.error})",
                     _REACH[SLACK], transient=True)
    if not answer.ok:
        return Check(SLACK, name, Status.PROBLEM, f"Slack refused {variable} ({answer.error})",
                     f"check that it is this app's {kind}")
    return Check(SLACK, name, Status.OK, f"valid{f', {answer.who}' if answer.who else ''}")
