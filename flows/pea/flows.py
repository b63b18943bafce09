"""The pool's public API for surfaces: claim and deploy, redeploy, extend, release, the buttons, and views.

A refused request is a `Refused` (a reason code and its facts) and changes nothing. The pull
request and its build are read before anything is written, so a bad PR never claims a pea.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import TrainConfig
from flows.errors import Refused, Why
from flows.notices import Notice, PeaDeploying, PeaExtended, PeaReleased, PeaTakenOver
from flows.outbox import Outbox
from flows.outside import Outside, ask
from flows.pea import service
from flows.pea.machine import BUTTONS, PeaEvent, PeaState
from flows.views import PeaView
from integrations.github import PullRequest
from integrations.jenkins import Build
from integrations.outside import NotFound, OutsideError
from storage.clock import utcnow
from storage.models import Pea


class PeaFlows:
    """The pool's operations and queries."""

    def __init__(self, config: TrainConfig, sessions: async_sessionmaker[AsyncSession], outside: Outside,
                 outbox: Outbox, wake: Callable[[], None]) -> None:
        self.config = config
        self.sessions = sessions
        self.outside = outside
        self.outbox = outbox
        self.wake = wake

    def _view(self, pea: Pea) -> PeaView:
        return PeaView.of(pea, self.config.name)

    # -- queries --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The pool's names (none when peas are not set up)."""
        return list(self.config.peas.names) if self.config.peas else []

    async def all(self) -> list[PeaView]:
        """Every pea of the pool, in the order of `peas.names`."""
        return [self._view(p) for p in await service.list_peas(self.sessions, self.config)]

    async def peas_of(self, user: str) -> list[PeaView]:
        """The peas `user` holds (for the App Home)."""
        return [self._view(p) for p in await service.peas_of(self.sessions, self.config, user)]

    async def get(self, name: str) -> PeaView | None:
        found = await service.get_pea(self.sessions, name)
        return None if found is None else self._view(found)

    # -- commands -------------------------------------------------------------------------------
    async def deploy(self, user: str, pea: str, pr: int, *, again: bool = False) -> PeaView:
        """Claim `pea` (or keep holding it) and deploy the head of pull request `pr` to it (`again`: its
        Redeploy button)."""
        name = service.known(self.config, pea)
        current = await service.get_pea(self.sessions, name)
        if current is not None:
            service.check_may_act(self.config, current, user, "deploy to")
        if pr <= 0:
            raise Refused(Why.NOT_A_PR_NUMBER, field="pr", pr=str(pr), pea=name)
        pull = await self._open_pr(name, pr)
        build = await self._build_of(name, pull)
        peas = service.peas_config(self.config)

        async def change(session: AsyncSession, row: Pea) -> tuple[PeaView, tuple[Notice, ...]]:
            service.check_may_act(self.config, row, user, "deploy to")
            now = utcnow()
            state = PeaState(row.state)
            taken_from = row.holder if state.held and row.holder != user else None
            event = (PeaEvent.REDEPLOY if again else PeaEvent.DEPLOY) if state.held else PeaEvent.CLAIM
            values = {
                "holder": user, "pr_number": pull.number, "pr_title": pull.title, "pr_url": pull.url,
                "pr_base": pull.base_ref, "head_sha": pull.head_sha,  # its image: what its green build built
                "build_number": build.number if build else None, "build_url": build.url if build else None,
                "url": peas.url_of(row.name), "claim_expires_at": now + peas.lease,
                "claimed_at": now if not state.held or taken_from else row.claimed_at, "reminded_at": None,
            }
            detail = f"#{pull.number} {pull.head_sha[:12]}" + (f", taken from {taken_from}" if taken_from else "")
            service.take(session, row, event, user, reason=detail, values=values, now=now)
            notices: tuple[Notice, ...] = (PeaDeploying(row.name, self.config.name, user, user, pull.number,
                                                        pull.head_sha, build.number if build else None),)
            if taken_from:
                notices = (PeaTakenOver(row.name, self.config.name, taken_from, user, pull.number), *notices)
            return self._view(row), notices

        view = await service.write(self.sessions, self.outbox, self.config, name, change)
        self.wake()
        return view

    async def redeploy(self, user: str, pea: str) -> PeaView:
        """Deploy the current head of the pea's pull request again (after a failure or a newer build)."""
        name = service.known(self.config, pea)
        current = await service.get_pea(self.sessions, name)
        if current is None or not PeaState(current.state).held or current.pr_number is None:
            raise Refused(Why.PEA_NOT_CLAIMED, field="pea", pea=name, action="redeploy")
        return await self.deploy(user, name, current.pr_number, again=True)

    async def release(self, user: str, pea: str) -> PeaView:
        """Free a held pea; its services are scaled to zero."""
        name = service.known(self.config, pea)

        async def change(session: AsyncSession, row: Pea) -> tuple[PeaView, tuple[Notice, ...]]:
            holder = row.holder
            if not PeaState(row.state).held or holder is None:
                raise Refused(Why.PEA_NOT_CLAIMED, field="pea", pea=name, action="release")
            service.check_may_act(self.config, row, user, "release")
            service.take(session, row, PeaEvent.RELEASE, user, reason=f"held by {holder}")
            return self._view(row), (PeaReleased(name, self.config.name, holder, user),)

        view = await service.write(self.sessions, self.outbox, self.config, name, change)
        self.wake()
        return view

    async def extend(self, user: str, pea: str) -> PeaView:
        """Renew the claim: it runs for `peas.lease` from now."""
        name = service.known(self.config, pea)
        peas = service.peas_config(self.config)

        async def change(session: AsyncSession, row: Pea) -> tuple[PeaView, tuple[Notice, ...]]:
            if not PeaState(row.state).held or row.holder is None:
                raise Refused(Why.PEA_NOT_CLAIMED, field="pea", pea=name, action="extend")
            service.check_may_act(self.config, row, user, "extend")
            until = utcnow() + peas.lease
            # The worker works out the next reminder at once.
            service.take(session, row, PeaEvent.EXTEND, user, reason=f"until {until:%Y-%m-%d %H:%M} UTC",
                         values={"claim_expires_at": until, "reminded_at": None})
            return self._view(row), (PeaExtended(name, self.config.name, row.holder, until),)

        view = await service.write(self.sessions, self.outbox, self.config, name, change)
        self.wake()
        return view

    async def press(self, user: str, button: str, value: Mapping[str, object]) -> PeaView:
        """A button: `value` names the pea, the state it was offered in and the claim it belongs to.

        A button belongs to the claim it was offered for: once the pea was released (and maybe claimed
        again) it does nothing. `Redeploy` is also bound to the state it was offered in.
        """
        if button not in BUTTONS:
            raise Refused(Why.UNKNOWN_BUTTON, button=button)
        name = service.known(self.config, str(value.get("pea", "")))
        current = await self.get(name)
        if current is None:
            raise Refused(Why.NO_SUCH_PEA, field="pea", pea=name, choices=self.names)
        claim = value.get("claim")
        if (claim is not None and claim != current.claim) or (
                button == "Redeploy" and value.get("state") != current.state.value):
            raise Refused(Why.STALE_PEA_BUTTON, pea=name, state=current.state.value, holder=current.holder)
        if button == "Extend":
            return await self.extend(user, name)
        if button == "Release":
            return await self.release(user, name)
        return await self.redeploy(user, name)

    # -- checks against the outside world ---------------------------------------------------------
    async def _open_pr(self, name: str, number: int) -> PullRequest:
        repo = self.config.github.repo
        try:
            pr = await ask(lambda: self.outside.github.get_pr(number))
        except NotFound:
            raise Refused(Why.NO_SUCH_PR, field="pr", pr=number, repo=repo, pea=name) from None
        except OutsideError as exc:
            raise Refused(Why.UNREACHABLE, field="pr", system=exc.system, message=exc.message) from None
        if pr.merged:
            raise Refused(Why.PR_MERGED, field="pr", pr=number, pea=name)
        if pr.state != "open":
            raise Refused(Why.PR_CLOSED, field="pr", pr=number, pea=name)
        if pr.from_fork:
            raise Refused(Why.PR_FROM_FORK, field="pr", pr=number, repo=repo, pea=name)
        return pr

    async def _build_of(self, name: str, pr: PullRequest) -> Build | None:
        """The PR job's build of the head, if one exists yet (if not, the pea waits for it); refused when red."""
        jobs = self.config.jenkins
        try:
            build = await ask(lambda: self.outside.jenkins.find_build(jobs.pr_job_of(pr.number), pr.head_sha))
        except OutsideError as exc:
            # a per-PR job the multibranch project has not made yet (a new PR) has no build yet: the pea waits
            if not (jobs.per_pr and isinstance(exc, NotFound)):
                raise Refused(Why.UNREACHABLE, field="pr", system=exc.system, message=exc.message) from None
            build = None
        if build is not None and build.red:
            raise Refused(Why.PEA_BUILD_RED, field="pr", pea=name, pr=pr.number, sha=pr.head_sha, build=build.number,
                          result=build.result or "red", url=build.url)
        return build
