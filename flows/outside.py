"""The outside systems as the domain needs them: small interfaces that deploys and peas share.

`integrations` implements them (GitHub through PyGithub, Jenkins through python-jenkins, ECS and
ECR through boto3); `Outside` is the set a process runs with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from integrations.ecs import Progress, ServiceState
from integrations.github import MergeMethod, MergeResult, PullRequest, RevertResult
from integrations.jenkins import Build
from integrations.outside import TransientError

T = TypeVar("T")


class Closing(Protocol):
    def close(self) -> None:
        """Let the client's threads go (after the process's last call)."""


class GitHubApi(Closing, Protocol):
    async def search_open_prs(self, text: str = "", limit: int = 25, *, within: float = 10.0) -> list[PullRequest]: ...
    async def get_pr(self, number: int) -> PullRequest: ...
    async def merge(self, number: int, head_sha: str) -> MergeResult: ...
    async def update_branch(self, number: int, head_sha: str) -> None: ...
    async def find_merge(self, number: int) -> str | None: ...
    async def revert_merge(self, merge_sha: str, number: int, method: MergeMethod = "merge") -> RevertResult: ...


class JenkinsApi(Closing, Protocol):
    async def find_build(self, job: str, sha: str, *, limit: int = 50) -> Build | None: ...
    async def in_queue(self, job: str) -> bool: ...
    async def start_build(self, job: str, sha: str) -> int: ...
    async def build_from_queue(self, queue_id: int) -> tuple[str, int] | None: ...
    async def get_build(self, job: str, number: int, *, sha: str | None = None) -> Build: ...


class EcsApi(Closing, Protocol):
    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, ServiceState | None]: ...
    async def describe_service(self, cluster: str, service: str) -> ServiceState | None: ...
    async def register_once(self, task_definition: str, container: str, image: str, *, key: str, value: str,
                            tags: Mapping[str, str] | None = None) -> str: ...
    async def deregister_task_definition(self, task_definition: str, *, tagged: str | None = None) -> bool: ...
    async def deregister_copies(self, task_definition: str, key: str, value: str) -> list[str]: ...
    async def create_canary(self, cluster: str, service: str, canary: str, task_definition: str,
                            count: int) -> bool: ...
    async def canaries_ready(self, cluster: str, canaries: Mapping[str, str], count: int) -> dict[str, Progress]: ...
    async def delete_service(self, cluster: str, service: str) -> None: ...
    async def rolling_update(self, cluster: str, service: str, task_definition: str, batch_percent: int) -> None: ...
    async def rollout_progress(self, cluster: str, service: str, task_definition: str) -> Progress: ...
    async def rollouts_progress(self, cluster: str, task_definitions: dict[str, str]) -> dict[str, Progress]: ...
    async def deployment_configuration(self, cluster: str, service: str) -> dict[str, Any]: ...
    async def restore_deployment_configuration(self, cluster: str, service: str,
                                               config: Mapping[str, Any]) -> bool: ...
    async def restore(self, cluster: str, service: str, task_definition: str) -> None: ...
    async def scale(self, cluster: str, service: str, desired: int) -> None: ...
    async def point_service(self, cluster: str, service: str, task_definition: str, desired: int) -> None: ...
    async def image_exists(self, image: str) -> bool: ...


ASK_ATTEMPTS = 3
ASK_PAUSE = 0.25  # seconds


async def ask(call: Callable[[], Awaitable[T]], *, attempts: int = ASK_ATTEMPTS, pause: float = ASK_PAUSE) -> T:
    """A read on behalf of someone waiting for an answer (a request being checked): a passing failure is tried
    again a couple of times at once rather than refused. Steps never do this: the schedule tries them again."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except TransientError:
            if attempt == attempts:
                raise
            await asyncio.sleep(pause * attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Outside:
    """The outside systems a step may talk to."""

    github: GitHubApi
    jenkins: JenkinsApi
    ecs: EcsApi

    def close(self) -> None:
        for system in (self.github, self.jenkins, self.ecs):
            system.close()
