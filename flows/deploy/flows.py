"""What people and the engine ask of the train, each followed by the notices it causes."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.config import AppConfig
from flows.deploy import service
from flows.deploy.machine import Event, State
from flows.deploy.service import Applied, DeployRequest, QueueEntry
from flows.notify import Kind, Notice, Notifier
from integrations.github import GitHub
from storage.models import Train

# The notice each transition's event causes (steps send the ones in between themselves).
_NOTICE_OF_EVENT: dict[Event, Kind] = {
    Event.START: Kind.YOUR_TURN,
    Event.MERGE_REFUSED: Kind.FAILED,
    Event.BUILD_RED: Kind.BUILD_FAILED,
    Event.BUILD_TIMEOUT: Kind.BUILD_FAILED,
    Event.CANARY_FAILED: Kind.ROLLING_BACK,
    Event.ROLLOUT_FAILED: Kind.ROLLING_BACK,
    Event.ROLL_BACK: Kind.ROLLING_BACK,
    Event.UNDONE: Kind.ROLLED_BACK,
    Event.DONE: Kind.COMPLETED,
    Event.CONFIRM_TIMEOUT: Kind.COMPLETED,
    Event.CANCEL: Kind.CANCELLED,
    Event.RETRIES_EXHAUSTED: Kind.NEEDS_ATTENTION,
}


class DeployFlows:
    """The train's operations for the Slack surface and the engine: validate, persist, announce, wake."""

    def __init__(self, config: AppConfig, sessions: async_sessionmaker[AsyncSession], github: GitHub,
                 notifier: Notifier, wake: Callable[[], None]) -> None:
        self.config = config
        self.sessions = sessions
        self.github = github
        self.notifier = notifier
        self.wake = wake

    async def announce(self, applied: Applied, actor: str = service.SYSTEM) -> None:
        kind = _NOTICE_OF_EVENT.get(applied.transition.event, Kind.CHANGED)
        await self.notifier.notify(Notice(
            kind, deploy_id=applied.deploy.id, text=applied.reason or applied.transition.label,
            data={"event": applied.transition.event.value, "actor": actor,
                  "from": applied.transition.source.value, "to": applied.transition.target.value},
        ))

    async def request(self, request: DeployRequest) -> QueueEntry:
        entry = await service.request_deploy(self.sessions, self.config, self.github, request)
        await self.notifier.notify(Notice(
            Kind.QUEUED, deploy_id=entry.deploy.id, text=f"#{entry.deploy.pr_number} joined the train",
            data={"position": entry.position, "eta_seconds": entry.eta.total_seconds()},
        ))
        self.wake()
        return entry

    async def act(self, deploy_id: int, offered_state: str, event: Event, user: str) -> Applied:
        """A button: `offered_state` is the state the button was shown in."""
        applied = await service.person_action(self.sessions, self.config, deploy_id, offered_state, event, user)
        await self.announce(applied, user)
        self.wake()
        return applied

    async def cancel(self, user: str, deploy_id: int | None = None) -> Applied:
        applied = await service.cancel(self.sessions, self.config, user, deploy_id)
        await self.announce(applied, user)
        self.wake()
        return applied

    async def freeze(self, user: str, reason: str) -> Train:
        train = await service.set_frozen(self.sessions, self.config, user, True, reason)
        await self.notifier.notify(Notice(Kind.FROZEN, text=reason, data={"by": user}))
        return train

    async def unfreeze(self, user: str) -> Train:
        train = await service.set_frozen(self.sessions, self.config, user, False)
        await self.notifier.notify(Notice(Kind.UNFROZEN, data={"by": user}))
        self.wake()
        return train

    async def queue(self) -> list[QueueEntry]:
        return await service.queue(self.sessions)

    async def position(self, deploy_id: int) -> QueueEntry | None:
        return next((e for e in await self.queue() if e.deploy.id == deploy_id), None)

    @staticmethod
    def buttons(state: str, needs_attention: bool) -> list[str]:
        from flows.deploy.machine import person_transitions

        return [t.button for t in person_transitions(State(state), needs_attention=needs_attention)
                if t.button]
