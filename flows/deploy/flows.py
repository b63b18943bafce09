"""The train's public API for surfaces: what people ask of it, and what they may look at, as frozen views.

Commands validate, persist (with their notices, in one transaction) and wake the engine; queries
read. Nothing here returns an ORM object or takes a session from outside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import TrainConfig
from flows.deploy import service, stats
from flows.deploy.machine import Event, State
from flows.deploy.service import DeployRequest
from flows.deploy.stats import DEFAULT_WEEKS, TrainStats, WeekStats
from flows.errors import Refused, Why
from flows.outbox import Outbox
from flows.outside import GitHubApi
from flows.views import (
    AuditView,
    DeployDetail,
    DeployView,
    HistoryPage,
    Placed,
    PullRequestOption,
    QueueView,
    TrainView,
    UndoView,
)
from integrations.outside import OutsideError
from storage.models import AuditEvent, Deploy, UndoRecord


class DeployFlows:
    """The train's operations and queries."""

    def __init__(self, config: TrainConfig, sessions: async_sessionmaker[AsyncSession], github: GitHubApi,
                 outbox: Outbox, wake: Callable[[], None]) -> None:
        self.config = config
        self.sessions = sessions
        self.github = github
        self.outbox = outbox
        self.wake = wake

    # -- commands -------------------------------------------------------------------------------
    async def request(self, request: DeployRequest) -> Placed:
        """Put a pull request on the train (Refused, with nothing changed, if it cannot go): where it went."""
        placed = await service.request_deploy(self.sessions, self.outbox, self.config, self.github, request)
        self.wake()
        return placed

    async def act(self, deploy_id: int, offered_state: str, event: Event, user: str) -> DeployView:
        """A button: `offered_state` is the state the button was shown in."""
        applied = await service.person_action(self.sessions, self.outbox, self.config, deploy_id, offered_state,
                                              event, user)
        self.wake()
        return DeployView.of(applied.deploy)

    async def cancel(self, user: str, deploy_id: int | None = None) -> DeployView:
        """Leave the queue: deploy `deploy_id`, or the user's own next queued one."""
        applied = await service.cancel(self.sessions, self.outbox, self.config, user, deploy_id)
        self.wake()
        return DeployView.of(applied.deploy)

    async def freeze(self, user: str, reason: str) -> TrainView:
        return await service.set_frozen(self.sessions, self.outbox, self.config, user, True, reason)

    async def unfreeze(self, user: str) -> TrainView:
        train = await service.set_frozen(self.sessions, self.outbox, self.config, user, False)
        self.wake()
        return train

    # -- queries --------------------------------------------------------------------------------
    async def queue(self) -> QueueView:
        """The train, the deploy in flight and the queue, each with its position and ETA."""
        [view] = await service.queues(self.sessions, [self.config])
        return view

    async def deploy(self, deploy_id: int) -> DeployView | None:
        """Deploy `deploy_id`, whichever train it is on (ids are unique across trains: its view names it)."""
        found = await service.get_deploy(self.sessions, deploy_id)
        return None if found is None else DeployView.of(found)

    async def latest_of(self, pr: int) -> DeployView | None:
        """The newest deploy of pull request `pr` on this train, if any."""
        async with self.sessions() as session:
            found = await session.scalar(sa.select(Deploy).where(Deploy.train_id == self.config.name,
                                                                 Deploy.pr_number == pr)
                                         .order_by(Deploy.id.desc()).limit(1))
            return None if found is None else DeployView.of(found)

    async def detail(self, deploy_id: int) -> DeployDetail | None:
        """A deploy with its audit trail and undo steps."""
        async with self.sessions() as session:
            deploy = await session.get(Deploy, deploy_id)
            if deploy is None:
                return None
            events = (await session.scalars(sa.select(AuditEvent).where(AuditEvent.deploy_id == deploy_id)
                                            .order_by(AuditEvent.at, AuditEvent.id))).all()
            undo = (await session.scalars(sa.select(UndoRecord).where(UndoRecord.deploy_id == deploy_id)
                                          .order_by(UndoRecord.seq))).all()
            return DeployDetail(DeployView.of(deploy), tuple(AuditView.of(e) for e in events),
                                tuple(UndoView.of(u) for u in undo))

    async def history(self, *, limit: int = 10, requester: str | None = None) -> list[DeployView]:
        """Finished deploys, newest first (only `requester`'s when given)."""
        return [DeployView.of(d) for d in await stats.recent_deploys(self.sessions, limit=limit, requester=requester,
                                                                          train_id=self.config.name)]

    async def history_page(self, *, state: State | None = None, person: str | None = None, limit: int = 25,
                           offset: int = 0) -> HistoryPage:
        """Every deploy of the train, newest first, filtered and paged (`person`: requester or PR author)."""
        return await history_of([self], state=state, person=person, limit=limit, offset=offset)

    async def stats(self) -> TrainStats:
        return await stats.train_stats(self.sessions, train_id=self.config.name)

    async def weekly(self, weeks: int = DEFAULT_WEEKS) -> tuple[WeekStats, ...]:
        """Deploy frequency, lead time, change failure rate and time to restore for each of the last `weeks` weeks."""
        return await stats.weekly_stats(self.sessions, train_id=self.config.name, weeks=weeks)

    async def counts(self) -> dict[str, int]:
        """How many deploys are in each state of the flowchart (zeros included)."""
        return await stats.count_by_state(self.sessions, self.config.name)

    async def search_prs(self, query: str, limit: int, *, within: float) -> list[PullRequestOption]:
        """Open pull requests matching `query` (a number, words of the title, an author): what GitHub gave
        within `within` seconds (the search stops then)."""
        try:
            prs = await self.github.search_open_prs(query, limit, within=within)
        except OutsideError as exc:
            raise Refused(Why.UNREACHABLE, system=exc.system, message=exc.message) from None
        return [PullRequestOption(pr.number, pr.title, pr.author) for pr in prs]

    def may_act(self, user: str, deploy: DeployView) -> bool:
        """Whether `user` may press a deploy's buttons: its requester and admins."""
        return user == deploy.requester or self.config.permissions.is_admin(user)


async def queues_of(trains: Sequence[DeployFlows]) -> list[QueueView]:
    """`queue()` of each of several trains (of one database), read together: what a view of every train shows."""
    if not trains:
        return []
    return await service.queues(trains[0].sessions, [t.config for t in trains])


async def history_of(trains: Sequence[DeployFlows], *, state: State | None = None, person: str | None = None,
                     limit: int = 25, offset: int = 0) -> HistoryPage:
    """The deploys of several trains (of one database), newest first, filtered and paged together."""
    if not trains:
        return HistoryPage((), 0, offset, limit)
    rows, total = await stats.history_page(trains[0].sessions, [t.config.name for t in trains], state=state,
                                           person=person, limit=limit, offset=offset)
    return HistoryPage(tuple(DeployView.of(d) for d in rows), total, offset, limit)
