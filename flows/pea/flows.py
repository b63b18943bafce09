"""What people ask of the peas (for the Slack surface): validate, persist, notify, wake the worker.

Every refusal is a `Refused` whose message says what was wrong and what to type instead; a
refused request changes nothing. The pull request and its build are read before anything is
written, so a bad PR never claims a pea.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import AppConfig
from flows.deploy.steps import Outside
from flows.errors import Refused
from flows.notify import Kind, Notifier
from flows.pea import service
from flows.pea.service import PeaState, PeaView, at
from integrations.github import PullRequest
from integrations.jenkins import Build
from integrations.outside import NotFound, OutsideError

BUTTONS = ("Extend", "Release", "Redeploy")


class PeaFlows:
    """The pool's operations: list, deploy (claim), redeploy, extend, release, and the card buttons."""

    def __init__(self, config: AppConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside,
                 notifier: Notifier, wake: Callable[[], None]) -> None:
        self.config = config
        self.sessions = sessions
        self.outside = outside
        self.notifier = notifier
        self.wake = wake

    async def list(self) -> list[PeaView]:
        """Every pea of the pool, in the order of `peas.names`."""
        return [PeaView.of(p) for p in await service.list_peas(self.sessions, self.config)]

    async def peas_of(self, user: str) -> list[PeaView]:
        """The peas `user` holds (for the App Home)."""
        return [PeaView.of(p) for p in await service.peas_of(self.sessions, user)]

    async def deploy(self, user: str, pea: str, pr: int) -> PeaView:
        """Claim `pea` (or keep holding it) and deploy the head of pull request `pr` to it."""
        name = service.known(self.config, pea)
        current = await service.get_pea(self.sessions, name)
        if current is not None:
            service.check_may_act(self.config, current, user, "deploy to")
        if pr <= 0:
            raise Refused(f"`{pr}` is not a pull request number: type `/pea deploy {name} 123`.", field="pr")
        pull = await self._open_pr(name, pr)
        build = await self._build_of(pull)
        claimed = await service.claim(self.sessions, self.config, user, name, pull, build)
        view = PeaView.of(claimed.pea)
        if claimed.taken_from:
            await self._tell(Kind.PEA_RELEASED, view, f"<@{user}> took `{name}` over to deploy #{pull.number}",
                             holder=claimed.taken_from, actor=user)
        waiting = f"build {build.number}" if build else "its build"
        await self._tell(Kind.PEA_CHANGED, view, f"Deploying #{pull.number} ({pull.head_sha[:12]}) to `{name}`: "
                                                 f"waiting for {waiting}", actor=user)
        self.wake()
        return view

    async def redeploy(self, user: str, pea: str) -> PeaView:
        """Deploy the current head of the pea's pull request again (after a failure or a newer build)."""
        name = service.known(self.config, pea)
        current = await service.get_pea(self.sessions, name)
        if current is None or not PeaState(current.state).held or current.pr_number is None:
            raise Refused(f"`{name}` is not claimed: `/pea deploy {name} <pr>` claims it and deploys a PR.")
        return await self.deploy(user, name, current.pr_number)

    async def release(self, user: str, pea: str) -> PeaView:
        """Free a held pea; its services are scaled to zero."""
        name = service.known(self.config, pea)
        released, holder = await service.release(self.sessions, self.config, user, name)
        view = PeaView.of(released)
        by = "You" if user == holder else f"<@{user}>"
        await self._tell(Kind.PEA_RELEASED, view, f"{by} released `{name}`: it is being scaled to zero",
                         holder=holder, actor=user)
        self.wake()
        return view

    async def extend(self, user: str, pea: str) -> PeaView:
        """Renew the claim: the lease runs for `peas.lease` from now."""
        name = service.known(self.config, pea)
        view = PeaView.of(await service.extend(self.sessions, self.config, user, name))
        await self._tell(Kind.PEA_CHANGED, view, f"`{name}` is yours until {at(view.lease_expires_at)}", actor=user)
        self.wake()
        return view

    async def press(self, user: str, button: str, value: dict[str, Any]) -> PeaView:
        """A card's button; `value` is the `PeaView.button_value()` it was offered with.

        A button belongs to the claim it was offered for: once the pea was released (and maybe
        claimed again) it does nothing. `Redeploy` is also bound to the state it was offered in.
        """
        if button not in BUTTONS:
            raise Refused(f"Unknown button `{button}`.")
        name = service.known(self.config, str(value.get("pea", "")))
        current = await service.get_pea(self.sessions, name)
        if current is None:
            raise Refused(f"There is no pea `{name}`.")
        view = PeaView.of(current)
        claim = value.get("claim")
        if (claim is not None and claim != view.button_value()["claim"]) or (
                button == "Redeploy" and value.get("state") != view.state):
            held = f"held by <@{view.holder}>" if view.holder else "not claimed"
            raise Refused(f"That button is from an earlier message: `{name}` is now {view.state}, {held}. "
                          "`/pea` shows where it is.")
        if button == "Extend":
            return await self.extend(user, name)
        if button == "Release":
            return await self.release(user, name)
        return await self.redeploy(user, name)

    # -- checks against the outside world ---------------------------------------------------------
    async def _open_pr(self, name: str, number: int) -> PullRequest:
        repo = self.config.github.repo
        try:
            pr = await self.outside.github.get_pr(number)
        except NotFound:
            raise Refused(f"There is no pull request #{number} in {repo}: check the number "
                          f"(`/pea deploy {name} <pr>`).", field="pr") from None
        except OutsideError as exc:
            raise self._unreachable(exc) from None
        if pr.merged:
            raise Refused(f"#{number} is already merged: peas preview open pull requests. "
                          f"Deploy another one with `/pea deploy {name} <pr>`.", field="pr")
        if pr.state != "open":
            raise Refused(f"#{number} is closed: reopen it, or deploy another one with `/pea deploy {name} <pr>`.",
                          field="pr")
        if pr.from_fork:
            raise Refused(f"#{number} comes from a fork: push its branch to {repo} to deploy it to a pea.", field="pr")
        return pr

    async def _build_of(self, pr: PullRequest) -> Build | None:
        """The PR job's build of the head; refused when there is none to wait for, or it is red."""
        job = self.config.jenkins.pr_job
        try:
            build = await self.outside.jenkins.find_build(job, pr.head_sha)
        except OutsideError as exc:
            raise self._unreachable(exc) from None
        if build is None and self.config.jenkins.trigger == "webhook":
            raise Refused(f"Jenkins has no build of #{pr.number}'s head {pr.head_sha[:12]} on `{job}` yet: "
                          "wait until it starts (or push to the PR to start one), then try again.", field="pr")
        if build is not None and build.red:
            raise Refused(f"Build {build.number} of #{pr.number}'s head {pr.head_sha[:12]} ended "
                          f"{(build.result or 'red').lower()} ({build.url}): push a fix, then try again.", field="pr")
        return build

    @staticmethod
    def _unreachable(exc: OutsideError) -> Refused:
        return Refused(f"{exc.system} is not answering as it should ({exc.message}): nothing changed, "
                       "try again in a minute.", field="pr")

    async def _tell(self, kind: Kind, view: PeaView, text: str, **data: Any) -> None:
        await self.notifier.notify(service.notice(kind, view, text, **data))
