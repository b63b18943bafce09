"""All the outside systems at once, wired as in production, for the demo and end-to-end tests.

GitHub's webhooks start Jenkins builds; Jenkins pushes each build's image to ECR; ECS runs a
production cluster (and a cluster of preview environments) whose services already run the image
of the base branch's head. `env()` gives the environment a Fat Controller process needs to talk
to all of it.

`SandboxSpec.more` adds deployable repositories (one train each): each has its GitHub repository and
Jenkins jobs (an emulator of each, `sandbox.repos[repo]`), its image, services and channel, in the one
AWS and the one Slack; one GitHub URL and one Jenkins URL (`sandbox.front`) serve all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.aws import AwsEmulator
from sandbox.front import Front
from sandbox.github import API_PREFIX, GitHubEmulator
from sandbox.jenkins import JenkinsEmulator
from sandbox.slack import SlackEmulator

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/{name}/0123456789abcdef"


@dataclass(frozen=True)
class RepoSpec:
    """Another deployable repository of the sandbox: its Jenkins jobs, image, services and Slack channel."""

    repo: str
    jobs: Mapping[str, str]
    image_repository: str
    container: str
    services: Mapping[str, int]
    channel: str
    channel_name: str
    load_balanced: tuple[str, ...] = ()
    pea_services: tuple[str, ...] = ()  # in the sandbox's pea cluster


@dataclass(frozen=True)
class Repo:
    """One repository's world: its spec and its GitHub and Jenkins emulators."""

    spec: RepoSpec
    github: GitHubEmulator
    jenkins: JenkinsEmulator

    def image(self, sha: str) -> str:
        return f"{REGISTRY}/{self.spec.image_repository}:{sha}"

    @property
    def image_template(self) -> str:
        return f"{REGISTRY}/{self.spec.image_repository}:{{sha}}"


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
    more: tuple[RepoSpec, ...] = ()  # further deployable repositories, a train each

    @property
    def first(self) -> RepoSpec:
        """The sandbox's own repository, as the others are described."""
        return RepoSpec(self.repo, self.jobs, self.image_repository, self.container, self.services, self.channel,
                        "deploys", self.load_balanced, self.pea_services)


class Sandbox:
    """Starts, seeds and stops the GitHub, Jenkins, AWS and Slack emulators together."""

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        self.spec = spec or SandboxSpec()
        s = self.spec
        self.aws = AwsEmulator(step_interval=s.step_interval)
        # Queue ids a million apart: one Jenkins front serves every repository's jobs.
        self.repos = {r.repo: Repo(r, GitHubEmulator(repo=r.repo, base_branch=s.base_branch),
                                   JenkinsEmulator(dict(r.jobs), registry=self.aws, image_repository=r.image_repository,
                                                   default_duration=s.build_duration,
                                                   first_queue_id=1 + n * 1_000_000))
                      for n, r in enumerate((s.first, *s.more))}
        first = self.repos[s.repo]
        self.github, self.jenkins = first.github, first.jenkins
        self.slack = SlackEmulator(bot_token=s.bot_token, app_token=s.app_token, users=dict(s.users),
                                   channels={r.channel: r.channel_name for r in (s.first, *s.more)})
        self.front: dict[str, Front] = {}
        if s.more:
            self.front = {"github": Front("github-front", self._github_of), "jenkins": Front("jenkins-front",
                                                                                              self._jenkins_of)}

    def _github_of(self, _method: str, path: str) -> str:
        """The emulator of the repository a GitHub API path names (`/api/v3/repos/<owner>/<name>/...`)."""
        parts = path.removeprefix(API_PREFIX).split("/")
        repo = "/".join(parts[2:4]) if len(parts) > 3 and parts[1] == "repos" else None
        found = next((r for name, r in self.repos.items() if repo and name.lower() == repo.lower()), None)
        return (found or self.repos[self.spec.repo]).github.root_url

    def _jenkins_of(self, _method: str, path: str) -> str:
        """The emulator that has the job a Jenkins path names, or (a queue item) whose queue ids it is in."""
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "job":
            found = next((r for r in self.repos.values() if parts[2] in r.spec.jobs), None)
            if found is not None:
                return found.jenkins.url
        if len(parts) > 3 and parts[1:3] == ["queue", "item"] and parts[3].isdigit():
            return list(self.repos.values())[min(int(parts[3]) // 1_000_000, len(self.repos) - 1)].jenkins.url
        return self.jenkins.url

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
        for repo in self.repos.values():
            repo.jenkins.start()
            repo.github.start()
            repo.github.add_webhook(f"{repo.jenkins.url}/github-webhook/")
            repo.jenkins.scm_url = f"{repo.github.root_url}/{repo.spec.repo}.git"
            repo.jenkins.merge_ref = functools.partial(self._jenkins_merge, repo.github)
        for front in self.front.values():
            front.start()
        self.slack.start()
        self._seed()
        return self

    def stop(self) -> None:
        for emulator in (self.slack, *self.front.values(),
                         *(e for r in self.repos.values() for e in (r.github, r.jenkins)), self.aws):
            emulator.stop()

    @staticmethod
    def _jenkins_merge(github: GitHubEmulator, _pr: int, head: str, base: str) -> str | None:
        """What GitHub Branch Source builds for a PR: `git merge <base>` on the PR head, in Jenkins' clone."""
        git = github.git
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
        self.aws.create_cluster(s.cluster)
        for alarm in s.alarms:
            self.aws.create_alarm(alarm)
        if any(r.spec.pea_services for r in self.repos.values()):
            self.aws.create_cluster(s.pea_cluster)
        for repo in self.repos.values():
            r, head = repo.spec, repo.github.branch_head()
            self.aws.push_image(r.image_repository, head)
            for name, desired in r.services.items():
                self._service(repo, s.cluster, name, head, desired, load_balanced=name in r.load_balanced)
            for name in r.pea_services:
                self._service(repo, s.pea_cluster, name, head, 0, load_balanced=False)

    def _service(self, repo: Repo, cluster: str, name: str, sha: str, desired: int, *, load_balanced: bool) -> None:
        container = {"name": repo.spec.container, "image": repo.image(sha), "essential": True,
                     "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                     "environment": [{"name": "SERVICE", "value": name}]}
        task_definition = self.aws.register_task_definition(
            name, [container], networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            executionRoleArn="arn:aws:iam::123456789012:role/ecs-task-execution")
        load_balancers = [{"targetGroupArn": TARGET_GROUP.format(name=name), "containerName": repo.spec.container,
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
            "GITHUB_API_URL": (self.front["github"].url + API_PREFIX) if self.front else self.github.url,
            "JENKINS_URL": self.front["jenkins"].url if self.front else self.jenkins.url,
            "JENKINS_USER": s.jenkins_user,
            "JENKINS_TOKEN": s.jenkins_token,
            "AWS_ENDPOINT_URL": self.aws.url,
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox-secret",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }
