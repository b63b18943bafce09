"""How the domain tells people what happened, without knowing about Slack.

`flows` reports every notable moment as a `Notice`; the Slack side (`bot`) implements
`Notifier` and decides what becomes a card edit, a thread reply or a direct message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Kind(StrEnum):
    QUEUED = "queued"  # joined the train: position and ETA in data
    YOUR_TURN = "your_turn"
    MERGED = "merged"
    BUILD_STARTED = "build_started"
    BUILD_PASSED = "build_passed"
    BUILD_FAILED = "build_failed"
    CANARIES_UP = "canaries_up"
    CANARY_REMINDER = "canary_reminder"
    ROLLOUT_PROGRESS = "rollout_progress"  # data: {process: (running, desired)}
    ROLLED_OUT = "rolled_out"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"
    CHANGED = "changed"  # anything else that changes the card (a retry, a state entered)
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    PEA_CHANGED = "pea_changed"
    PEA_UP = "pea_up"
    PEA_FAILED = "pea_failed"
    PEA_LEASE_ENDING = "pea_lease_ending"
    PEA_RELEASED = "pea_released"
    PEA_STALE = "pea_stale"  # newer green build, or the PR closed/merged: data says which


@dataclass(frozen=True)
class Notice:
    kind: Kind
    deploy_id: int | None = None
    pea: str | None = None
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    async def notify(self, notice: Notice) -> None:
        """Deliver a notice; must not raise for delivery failures (log them instead)."""


class NullNotifier:
    """Tells no one: for tools that run the engine without a Slack surface."""

    async def notify(self, notice: Notice) -> None:
        return None
