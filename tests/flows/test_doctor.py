"""The doctor's checks and words (`flows.doctor.examine`) against the emulators, through the real facades."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flows.config import TrainConfig
from flows.doctor import Check, Report, SlackAnswer, Systems, examine
from integrations.cloudwatch import CloudWatch
from integrations.ecs import Ecs
from integrations.github import GitHub
from integrations.jenkins import Jenkins
from integrations.outside import CallPolicy
from sandbox.world import Sandbox, SandboxSpec
from tests.fixtures.world import train_config

POLICY = CallPolicy(timeout=10.0)
SCOPES = ("chat:write", "chat:write.public", "commands", "im:write")


class FakeSlack:
    """What Slack answers the two tokens, as told (the emulator never sends x-oauth-scopes)."""

    api_url = "https://slack.example/api/"
    expected_scopes: tuple[str, ...] = SCOPES

    def __init__(self, bot: SlackAnswer | None = None, app: SlackAnswer | None = None) -> None:
        self.bot = bot or SlackAnswer(ok=True, who="fatcontroller in Acme", scopes=SCOPES)
        self.app = app or SlackAnswer(ok=True)

    async def bot_token(self) -> SlackAnswer:
        return self.bot

    async def app_token(self) -> SlackAnswer:
        return self.app


class Examiner:
    """`examine` on the sandbox, with the facades built as `bot.wiring` builds them (any token, user or Slack)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._facades: list[GitHub | Jenkins | Ecs | CloudWatch] = []

    async def __call__(self, config: TrainConfig, *, token: str | None = None, jenkins_token: str | None = None,
                       slack: FakeSlack | None = None, fast: bool = False) -> Report:
        env = self.sandbox.env()
        github = GitHub(config.github.repo, config.github.base_branch, token=token or env["GITHUB_TOKEN"],
                        api_url=env["GITHUB_API_URL"], policy=POLICY, timeout=5.0)
        jenkins = Jenkins(env["JENKINS_URL"], env["JENKINS_USER"], jenkins_token or env["JENKINS_TOKEN"],
                          policy=POLICY, timeout=5.0)
        ecs = Ecs(region="eu-west-1", endpoint_url=env["AWS_ENDPOINT_URL"], policy=POLICY, timeout=5.0)
        cloudwatch = CloudWatch(region="eu-west-1", endpoint_url=env["AWS_ENDPOINT_URL"], policy=POLICY, timeout=5.0)
        self._facades += [github, jenkins, ecs, cloudwatch]
        return await examine(config, Systems(github, jenkins, ecs, cloudwatch, slack or FakeSlack()), fast=fast)

    def close(self) -> None:
        for facade in self._facades:
            facade.close()


@pytest.fixture
def doctor(sandbox: Sandbox) -> Iterator[Examiner]:
    examiner = Examiner(sandbox)
    yield examiner
    examiner.close()


def named(report: Report, system: str, name: str) -> Check:
    found = [c for c in report.checks if c.system == system and c.name == name]
    assert len(found) == 1, f"{system} {name}: {[c.words for c in report.checks]}"
    return found[0]


def only_problems(report: Report) -> list[str]:
    return [c.words for c in report.problems]


async def test_every_check_is_ok_on_the_sandbox(sandbox: Sandbox, doctor: Examiner) -> None:
    report = await doctor(train_config(sandbox))

    assert report.exit_code == 0 and not report.warnings, [c.words for c in report.checks if c.status != "ok"]
    names = {(c.system, c.name) for c in report.checks}
    assert {("GitHub", "token"), ("GitHub", "push access"), ("GitHub", "merge method merge"),
            ("GitHub", "base branch master"), ("GitHub", "protection of master"), ("Jenkins", "credentials"),
            ("Jenkins", "job app-master"), ("Jenkins", "job app-pr"), ("AWS", "cluster production"),
            ("AWS", "service app-web"), ("AWS", "service app-worker"), ("AWS", "image repository app"),
            ("AWS", "CloudWatch alarms"), ("Slack", "bot token"), ("Slack", "bot scopes"),
            ("Slack", "app token")} <= names
    # what cannot be verified is said so, never passed off as checked
    unverified = {c.name: c.detail for c in report.checks if not c.checked}
    assert set(unverified) == {"build permission", "iam:PassRole"}
    assert "Job/Build on app-master and app-pr" in unverified["build permission"]
    assert "iam:PassRole on arn:aws:iam::123456789012:role/ecs-task-execution" in unverified["iam:PassRole"]


async def test_the_fast_part_asks_only_what_run_needs_at_start(sandbox: Sandbox, doctor: Examiner) -> None:
    report = await doctor(train_config(sandbox), fast=True)

    assert report.exit_code == 0
    assert [(c.system, c.name) for c in report.checks] == [
        ("GitHub", "token"), ("GitHub", "repository acme/app"), ("GitHub", "push access"),
        ("Jenkins", "credentials"), ("Jenkins", "job app-master"), ("Jenkins", "job app-pr"),
        ("AWS", "credentials"), ("AWS", "cluster production"), ("AWS", "service app-web"),
        ("AWS", "service app-worker")]
    assert "ecs:DescribeTaskDefinition" not in sandbox.aws.calls


async def test_a_revoked_github_token_is_one_problem_naming_the_variable(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.revoke_token(sandbox.spec.github_token)

    report = await doctor(train_config(sandbox))

    assert only_problems(report)[0] == ("GitHub token: GitHub refused GITHUB_TOKEN (HTTP 401); fix: set GITHUB_TOKEN "
                                        "to a valid token of the bot's GitHub user (it is missing, expired or revoked)")
    assert [c.name for c in report.checks if c.system == "GitHub"] == ["token"]


async def test_a_classic_token_without_the_repo_scope_cannot_see_the_private_repository(
        sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.add_token("ghp_noscopes", scopes=[])

    check = named(await doctor(train_config(sandbox), token="ghp_noscopes"), "GitHub", "repository acme/app")

    assert check.status == "problem"
    assert check.detail == "acme/app is not visible to deploy-bot (HTTP 404)"
    assert check.fix is not None and check.fix.startswith("add the repo scope to GITHUB_TOKEN")


async def test_a_classic_token_without_the_workflow_scope_is_a_warning(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.add_token("ghp_noworkflow", scopes=["repo"])

    report = await doctor(train_config(sandbox), token="ghp_noworkflow")

    check = named(report, "GitHub", "workflow scope")
    assert check.status == "warning" and check.fix == "add the workflow scope to GITHUB_TOKEN"
    assert ".github/workflows/" in check.detail
    assert report.exit_code == 0  # a warning: the train runs


async def test_a_fine_grained_token_relies_on_its_permissions(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.add_token("github_pat_readonly", push=False)

    report = await doctor(train_config(sandbox), token="github_pat_readonly")

    assert "a fine-grained or app token" in named(report, "GitHub", "token").detail
    push = named(report, "GitHub", "push access")
    assert push.status == "problem"
    assert push.fix == ("give GITHUB_TOKEN Contents: Read and write and Pull requests: Read and write on acme/app")
    workflow = named(report, "GitHub", "workflow scope")
    assert workflow.status == "ok" and not workflow.checked  # the API does not show it


async def test_a_merge_method_the_repository_refuses_is_a_problem(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.settings(allow_merge_commit=False)

    check = named(await doctor(train_config(sandbox)), "GitHub", "merge method merge")

    assert check.status == "problem"
    assert check.detail == "acme/app does not allow merge commits, and the train merges with merge"
    assert check.fix is not None and "allow_merge_commit" in check.fix


async def test_a_missing_base_branch_names_the_setting(sandbox: Sandbox, doctor: Examiner) -> None:
    check = named(await doctor(train_config(sandbox, github={"base_branch": "main"})), "GitHub", "base branch main")

    assert (check.status, check.detail) == ("problem", "no branch main in acme/app")
    assert check.fix == ("set github.base_branch to the branch pull requests are merged into (the repository's "
                         "default is master)")


async def test_protection_that_sends_the_revert_through_a_pull_request_is_a_warning(
        sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.protect_branch(required_pull_request_reviews=True, required_signatures=True, strict=True)
    sandbox.github.add_token("ghp_admin", admin=True)

    report = await doctor(train_config(sandbox), token="ghp_admin")

    revert = named(report, "GitHub", "revert into master")
    assert revert.status == "warning"
    assert revert.detail.startswith("master requires changes through pull requests and signed commits")
    assert "revert pull request" in revert.detail
    assert named(report, "GitHub", "up-to-date rule of master").status == "warning"
    assert report.exit_code == 0


async def test_a_login_allowed_to_bypass_the_pull_request_rule_reverts_directly(
        sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.protect_branch(required_pull_request_reviews=True, bypass=["deploy-bot"])
    sandbox.github.add_token("ghp_admin", admin=True)

    report = await doctor(train_config(sandbox), token="ghp_admin")

    assert named(report, "GitHub", "protection of master").status == "ok"


async def test_protection_the_token_cannot_read_is_said_so(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.protect_branch(required_pull_request_reviews=True)
    sandbox.github.add_token("ghp_writer")  # push, not admin: reading branch protection needs admin

    check = named(await doctor(train_config(sandbox), token="ghp_writer"), "GitHub", "protection of master")
    assert check.status == "warning"
    assert "GITHUB_TOKEN may not read its rules (HTTP 403: Must have admin rights to Repository.)" in check.detail
    assert check.fix is not None and "Administration: Read-only" in check.fix


async def test_a_linear_history_refuses_the_trains_merge_commits(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.protect_branch(required_linear_history=True)

    check = named(await doctor(train_config(sandbox)), "GitHub", "protection of master")

    assert (check.status, check.detail) == ("problem", "master requires a linear history, which refuses merge "
                                                       "commits")


async def test_wrong_jenkins_credentials_name_both_variables(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.jenkins.add_user(sandbox.spec.jenkins_user, "the-right-token")

    report = await doctor(train_config(sandbox))

    assert [c.words for c in report.checks if c.system == "Jenkins"] == [
        "Jenkins credentials: Jenkins refused JENKINS_USER and JENKINS_TOKEN (HTTP 401); fix: set JENKINS_USER to "
        "the bot's Jenkins user and JENKINS_TOKEN to one of its API tokens (user → Configure → API Token)"]


async def test_a_jenkins_user_without_overall_read_is_named(sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.jenkins.add_user(sandbox.spec.jenkins_user, sandbox.spec.jenkins_token, [])

    check = named(await doctor(train_config(sandbox)), "Jenkins", "credentials")

    assert check.words == ("Jenkins credentials: fatcontroller is missing the Overall/Read permission; fix: grant "
                           "fatcontroller Overall/Read in Jenkins (Manage Jenkins → Security)")


async def test_a_pr_pattern_on_a_plain_job_names_no_job(sandbox: Sandbox, doctor: Examiner) -> None:
    config = train_config(sandbox, jenkins={"pr_job": "app-pr/PR-{pr}"})

    check = named(await doctor(config), "Jenkins", "job app-pr")

    assert check.status == "problem"
    assert check.detail == "app-pr is a FreeStyleProject, not a multibranch project or folder, so app-pr/PR-{pr} " \
                           "names no job"


@pytest.fixture
def multibranch_sandbox(aws_credentials: None) -> Iterator[Sandbox]:
    world = Sandbox(SandboxSpec(jobs={"app-master": "master", "app-pr": "multibranch"})).start()
    yield world
    world.stop()


async def test_a_pr_pattern_checks_its_multibranch_project(multibranch_sandbox: Sandbox) -> None:
    examiner = Examiner(multibranch_sandbox)
    try:
        report = await examiner(train_config(multibranch_sandbox, jenkins={"pr_job": "app-pr/PR-{pr}"}))
    finally:
        examiner.close()

    check = named(report, "Jenkins", "job app-pr")
    assert (check.status, check.detail) == ("ok", "multibranch project app-pr (its jobs: app-pr/PR-{pr}): exists, "
                                                  "fatcontroller may read it")


async def test_a_wrong_container_is_named_with_its_setting(sandbox: Sandbox, doctor: Examiner) -> None:
    config = train_config(sandbox, processes={"web": {"service": "app-web", "container": "nginx"}})

    check = named(await doctor(config), "AWS", "service app-web")

    assert check.words == ("AWS service app-web: app-web:1 has no container nginx (it has app); fix: set "
                           "processes.web.container to the container whose image a deploy changes")


async def test_a_missing_cluster_and_image_repository(sandbox: Sandbox, doctor: Examiner) -> None:
    report = await doctor(train_config(sandbox, ecs={"cluster": "staging"}))
    assert only_problems(report) == ["AWS cluster staging: no ECS cluster staging in eu-west-1; fix: set ecs.cluster "
                                     "(and ecs.region) to the cluster of the train's services"]

    image = sandbox.image_template.replace("/app:", "/shop:")
    check = named(await doctor(train_config(sandbox, image=image)), "AWS", "image repository shop")
    assert (check.status, check.detail) == ("problem", "no ECR repository shop in registry 123456789012 (eu-west-1)")


async def test_peas_without_their_cluster_or_services(sandbox: Sandbox, doctor: Examiner) -> None:
    peas: dict[str, Any] = {"cluster": "peas", "names": ["sweet-pea"]}
    check = named(await doctor(train_config(sandbox, peas=peas)), "AWS", "pea cluster peas")
    assert (check.status, check.detail) == ("problem", "no ECS cluster peas in eu-west-1")

    sandbox.aws.create_cluster("peas")
    check = named(await doctor(train_config(sandbox, peas=peas)), "AWS", "pea cluster peas")
    assert check.detail == "2 of 2 pea services are missing: pea-sweet-pea-web, pea-sweet-pea-worker"
    assert check.fix is not None and "peas.service (pea-{pea}-{process})" in check.fix


async def test_slack_tokens_and_scopes(sandbox: Sandbox, doctor: Examiner) -> None:
    slack = FakeSlack(bot=SlackAnswer(ok=True, scopes=("chat:write", "commands")),
                      app=SlackAnswer(ok=False, error="invalid_auth"))

    report = await doctor(train_config(sandbox), slack=slack)

    assert [c.words for c in report.checks if c.system == "Slack" and c.status != "ok"] == [
        "Slack bot scopes: the bot token lacks chat:write.public, im:write; fix: add chat:write.public, im:write to "
        "the app's bot token scopes (OAuth & Permissions, as in manifest.yaml) and reinstall the app",
        # the words `run` refuses a token with (tests/bot/test_process.py)
        "Slack app token: Slack refused SLACK_APP_TOKEN (invalid_auth); fix: check that it is this app's app-level "
        "token (xapp-...) with the connections:write scope"]


class Silent:
    """A GitHub that never answers."""

    repo, base_branch, api_url = "acme/app", "master", "https://github.example/api/v3"

    async def access(self) -> GitHub.Access:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async def branch_rules(self) -> GitHub.BranchRules:
        raise AssertionError("not reached")


@pytest.fixture
async def ecs(sandbox: Sandbox) -> AsyncIterator[Ecs]:
    facade = Ecs(region="eu-west-1", endpoint_url=sandbox.aws.url, policy=POLICY, timeout=5.0)
    yield facade
    facade.close()


async def test_a_system_that_does_not_answer_in_time_is_a_transient_problem(sandbox: Sandbox, ecs: Ecs) -> None:
    report = await examine(train_config(sandbox), Systems(Silent(), None, ecs), fast=True, within=0.2)

    github = [c for c in report.checks if c.system == "GitHub"]
    assert [(c.name, c.detail, c.transient) for c in github] == [("answer", "no answer within 0.2s", True)]
    assert named(report, "Jenkins", "URL").words == ("Jenkins URL: JENKINS_URL is not set; fix: set JENKINS_URL to "
                                                     "the Jenkins that runs jenkins.job and jenkins.pr_job")
    assert named(report, "AWS", "cluster production").status == "ok"


async def test_an_unprotected_branch_is_ok_for_a_token_that_may_not_read_protection(
        sandbox: Sandbox, doctor: Examiner) -> None:
    sandbox.github.add_token("ghp_writer")  # push, not admin

    check = named(await doctor(train_config(sandbox), token="ghp_writer"), "GitHub", "protection of master")

    assert (check.status, check.detail) == ("ok", "master is not protected")
