"""All the outside systems at once, wired as in production, for the demo and end-to-end tests.

GitHub's webhooks start Jenkins builds; Jenkins pushes each build's image to ECR; ECS runs a
production cluster (and a cluster of preview environments) whose services already run the image
of the base branch's head. `env()` gives the environment a Fat Controller process needs to talk
to all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.aws import AwsEmulator
from sandbox.github import GitHubEmulator
from sandbox.jenkins import JenkinsEmulator
from sandbox.slack import SlackEmulator

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/{name}/0123456789abcdef"


@dataclass
class SandboxSpec:
    """What the sandbox holds; the defaults match the example `app.yaml`."""

    repo: str = "acme/app"
    base_branch: str = "master"
    jobs: Mapping[str, str] = field(default_factory=lambda: {"app-master": "master", "app-pr": "pr"})
    image_repository: str = "app"
    cluster: str = "production"
    container: str = "app"
    services: Mapping[str, int] = field(default_factory=lambda: {"app-web": 4, "app-worker": 2})
    load_balanced: tuple[str, ...] = ("app-web",)
    pea_cluster: str = "peas"
    pea_services: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()  # CloudWatch alarms, created OK (set them with `aws.set_alarm`)
    channel: str = "C0DEPLOYS"
    users: Mapping[str, str] = field(default_factory=lambda: {
        "U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0ADMIN": "admin", "U0EMERGENCY": "emergency"})
    step_interval: float = 0.05  # seconds per ECS scheduler step
    build_duration: float = 0.3  # seconds per Jenkins build
    bot_token: str = "xoxb-sandbox-bot-token"
    app_token: str = "xapp-sandbox-app-token"
    github_token: str = "ghp_sandboxtoken000000000000000000000"
    jenkins_user: str = "fatcontroller"
    jenkins_token: str = "sandbox-jenkins-api-token"


class Sandbox:
    """Starts, seeds and stops the GitHub, Jenkins, AWS and Slack emulators together."""

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        self.spec = spec or SandboxSpec()
        s = self.spec
        self.aws = AwsEmulator(step_interval=s.step_interval)
        self.jenkins = JenkinsEmulator(dict(s.jobs), registry=self.aws, image_repository=s.image_repository,
                                       default_duration=s.build_duration)
        self.github = GitHubEmulator(repo=s.repo, base_branch=s.base_branch)
        self.slack = SlackEmulator(bot_token=s.bot_token, app_token=s.app_token, users=dict(s.users),
                                   channels={s.channel: "deploys"})

    @property
    def jenkins_webhook(self) -> str:
        """Where GitHub tells Jenkins about pushes (a train with `trigger: api` has no such hook)."""
        return f"{self.jenkins.url}/github-webhook/"

    def image(self, sha: str) -> str:
        return f"{REGISTRY}/{self.spec.image_repository}:{sha}"

    @property
    def image_template(self) -> str:
        return f"{REGISTRY}/{self.spec.image_repository}:{{sha}}"

    def start(self) -> Sandbox:
        self.aws.start()
        self.jenkins.start()
        self.github.start()
        self.slack.start()
        self.github.add_webhook(self.jenkins_webhook)
        self.jenkins.scm_url = f"{self.github.root_url}/{self.spec.repo}.git"
        self.jenkins.merge_ref = self._jenkins_merge
        self._seed()
        return self

    def stop(self) -> None:
        for emulator in (self.slack, self.github, self.jenkins, self.aws):
            emulator.stop()

    def _jenkins_merge(self, _pr: int, head: str, base: str) -> str | None:
        """What GitHub Branch Source builds for a PR: `git merge <base>` on the PR head, in Jenkins' clone."""
        git = self.github.git
        if git.is_ancestor(base, head):  # already up to date
            return head
        if git.is_ancestor(head, base):  # the merge may fast-forward
            return base
        clean, tree = git.merge_tree(head, base)
        if not clean:
            return None
        return git.commit_tree(tree, [head, base], f"Merge commit '{base}' into HEAD",
                               author=("Jenkins", "nobody@nowhere", None))

    def _seed(self) -> None:
        s = self.spec
        head = self.github.branch_head()
        self.aws.push_image(s.image_repository, head)
        self.aws.create_cluster(s.cluster)
        for name, desired in s.services.items():
            self._service(s.cluster, name, head, desired, load_balanced=name in s.load_balanced)
        for alarm in s.alarms:
            self.aws.create_alarm(alarm)
        if s.pea_services:
            self.aws.create_cluster(s.pea_cluster)
            for name in s.pea_services:
                self._service(s.pea_cluster, name, head, 0, load_balanced=False)

    def _service(self, cluster: str, name: str, sha: str, desired: int, *, load_balanced: bool) -> None:
        container = {"name": self.spec.container, "image": self.image(sha), "essential": True,
                     "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                     "environment": [{"name": "SERVICE", "value": name}]}
        task_definition = self.aws.register_task_definition(
            name, [container], networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            executionRoleArn="arn:aws:iam::123456789012:role/ecs-task-execution")
        load_balancers = [{"targetGroupArn": TARGET_GROUP.format(name=name), "containerName": self.spec.container,
                           "containerPort": 8080}] if load_balanced else None
        self.aws.create_service(cluster, name, task_definition, desired=desired, load_balancers=load_balancers)

    def env(self) -> dict[str, str]:
        """The environment of a Fat Controller process pointed at this sandbox."""
        s = self.spec
        return {
            "SLACK_BOT_TOKEN": s.bot_token,
            "SLACK_APP_TOKEN": s.app_token,
            "SLACK_API_URL": self.slack.api_url,
            "GITHUB_TOKEN": s.github_token,
            "GITHUB_API_URL": self.github.url,
            "JENKINS_URL": self.jenkins.url,
            "JENKINS_USER": s.jenkins_user,
            "JENKINS_TOKEN": s.jenkins_token,
            "AWS_ENDPOINT_URL": self.aws.url,
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox-secret",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }
