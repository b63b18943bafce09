"""The pool of peas: rows, and every change of a pea's state, each in one transaction with its audit record.

`apply` is the one function that writes a pea's state: it takes a transition of the table
(`flows.pea.machine`), applies what that transition resets, the caller's values, the audit
record and the notices, together. Nothing here talks to an outside system: `flows.pea.flows`
reads the pull request and its build first. Every write re-checks, inside its transaction, what
the caller checked before (a pea may have been claimed meanwhile), and a concurrent write to the
same row (the ORM `version`) makes it look again rather than overwrite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from flows.config import PeasConfig, TrainConfig
from flows.deploy.service import audit
from flows.errors import Refused, Superseded, Why
from flows.notices import SYSTEM, Notice
from flows.outbox import Outbox
from flows.pea.machine import PeaEvent, PeaState, PeaTransition, Reset, Stale, guard_holds, transition_for
from storage.clock import utcnow
from storage.models import Pea

T = TypeVar("T")

MAX_REMINDER = timedelta(minutes=30)
_WRITE_ATTEMPTS = 3

# What each reset of the table clears, defined once.
_CLEARED_DEPLOY: dict[str, Any] = {
    "pr_number": None, "pr_title": None, "pr_url": None, "pr_base": None, "head_sha": None, "built_sha": None,
    "image": None, "build_url": None,
    "build_number": None, "build_queue_id": None, "failure_reason": None, "task_definitions": {},
    "rollout_started_at": None, "checked_at": None, "stale_reason": None, "newer_sha": None,
}
_CLEARED_CLAIM: dict[str, Any] = {"holder": None, "claimed_at": None, "claim_expires_at": None, "reminded_at": None}
RESETS: dict[Reset, dict[str, Any]] = {
    Reset.DEPLOY: _CLEARED_DEPLOY,
    Reset.RELEASE: {**_CLEARED_CLAIM, "failure_reason": None},
    Reset.FREE: {**_CLEARED_DEPLOY, **_CLEARED_CLAIM},
}
# States the worker looks at at once when entered; the others wait for their holder's lease to end.
_ACT_AT_ONCE = frozenset({PeaState.DEPLOYING, PeaState.UP, PeaState.FAILED, PeaState.RELEASING})


def remind_before(lease: timedelta) -> timedelta:
    """How long before a claim ends its holder is reminded: a tenth of the lease, at most half an hour."""
    return min(lease / 10, MAX_REMINDER)


def peas_config(config: TrainConfig) -> PeasConfig:
    if config.peas is None or not config.peas.names:
        raise Refused(Why.PEAS_NOT_SET_UP)
    return config.peas


def newer_build(pea: Pea) -> bool:
    return pea.stale_reason == Stale.NEWER_BUILD.value


# -- the one way a pea's state changes --------------------------------------------------------------

class NotInTable(Exception):
    """A change the pea flowchart does not have was asked for: it is refused, and nothing changes."""


def take(session: AsyncSession, pea: Pea, event: PeaEvent, actor: str, *, reason: str | None = None,
         values: Mapping[str, Any] | None = None, now: datetime | None = None) -> PeaTransition:
    """Take one transition of the table on a pea loaded in `session`, with its audit record (no flush)."""
    source = PeaState(pea.state)
    transition = transition_for(source, event)
    if transition is None or not guard_holds(transition.guard, newer_build=newer_build(pea)):
        raise NotInTable(f"pea {pea.name} is {source.value}: the flowchart has no {event.value} from there")
    now = now or utcnow()
    changes: dict[str, Any] = {**(RESETS[transition.reset] if transition.reset else {}), **(values or {})}
    if transition.target is not source or transition.reset is not None:
        changes.setdefault("state_entered_at", now)
    changes["state"] = transition.target.value
    changes.setdefault("due_at", now if transition.target in _ACT_AT_ONCE else None)
    for name, value in changes.items():
        setattr(pea, name, value)
    audit(session, actor, f"pea_{event.value}", pea=pea.name,
          detail=f"{source.value} → {transition.target.value}" + (f": {reason}" if reason else ""),
          image=pea.image)
    return transition


async def apply(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, pea: Pea, event: PeaEvent, *,
                actor: str = SYSTEM, reason: str | None = None, values: Mapping[str, Any] | None = None,
                notices: Callable[[Pea], tuple[Notice, ...]] = lambda _pea: ()) -> Pea:
    """A worker's transition of a pea it holds (unless the pea changed since it was read), with its notices,
    which are made from the pea as it is after the change."""
    try:
        async with sessions() as session, session.begin():
            current = await session.get(Pea, pea.name)
            if current is None or current.version != pea.version:
                raise Superseded(f"pea {pea.name} changed")
            take(session, current, event, actor, reason=reason, values=values)
            await outbox.write(session, *notices(current))
            await session.flush()
    except StaleDataError as exc:
        raise Superseded(f"pea {pea.name} changed") from exc
    outbox.wake()
    return current


# -- reading --------------------------------------------------------------------------------------

async def ensure_peas(session: AsyncSession, names: list[str]) -> None:
    """Insert the rows of the configured peas that are missing (safe when two replicas start at once)."""
    if not names:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    await session.execute(
        insert(Pea).values([{"name": name, "state": PeaState.FREE.value, "task_definitions": {},
                             "version": 1, "updated_at": now, "state_entered_at": now} for name in names])
        .on_conflict_do_nothing(index_elements=["name"])
    )


async def list_peas(sessions: async_sessionmaker[AsyncSession], config: TrainConfig) -> list[Pea]:
    """Every configured pea, in the order of `peas.names`."""
    names = peas_config(config).names
    async with sessions() as session:
        found = {p.name: p for p in (await session.scalars(sa.select(Pea).where(Pea.name.in_(names)))).all()}
    if len(found) < len(names):  # a pea new to the config: its row is made on first sight
        async with sessions() as session, session.begin():
            await ensure_peas(session, names)
            found = {p.name: p for p in (await session.scalars(sa.select(Pea).where(Pea.name.in_(names)))).all()}
    return [found[name] for name in names]


async def get_pea(sessions: async_sessionmaker[AsyncSession], name: str) -> Pea | None:
    async with sessions() as session:
        return await session.get(Pea, name)


async def peas_of(sessions: async_sessionmaker[AsyncSession], config: TrainConfig, user: str) -> list[Pea]:
    """The peas of the train's pool a person holds, by name."""
    names = list(config.peas.names) if config.peas else []
    async with sessions() as session:
        return list((await session.scalars(sa.select(Pea).where(Pea.holder == user, Pea.name.in_(names))
                                           .order_by(Pea.name))).all())


def known(config: TrainConfig, name: str) -> str:
    """The pea's name if it is in the pool; else a refusal that lists the pool."""
    names = peas_config(config).names
    if name not in names:
        raise Refused(Why.NO_SUCH_PEA, field="pea", pea=name, choices=list(names))
    return name


def check_may_act(config: TrainConfig, pea: Pea, user: str, action: str) -> None:
    """Only the holder or an admin may deploy over, extend or release a held pea."""
    if pea.holder and pea.holder != user and not config.permissions.is_admin(user):
        raise Refused(Why.PEA_HELD, field="pea", pea=pea.name, holder=pea.holder, until=pea.claim_expires_at,
                      action=action)


# -- a person's changes -----------------------------------------------------------------------------

async def write(sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: TrainConfig, name: str,
                change: Callable[[AsyncSession, Pea], Awaitable[tuple[T, tuple[Notice, ...]]]]) -> T:
    """Apply a person's `change` to the pea in one transaction with the notices it returns, starting again
    if another writer got there first."""
    for _ in range(_WRITE_ATTEMPTS):
        try:
            async with sessions() as session, session.begin():
                await ensure_peas(session, peas_config(config).names)
                pea = await session.get(Pea, name)
                if pea is None:
                    raise Refused(Why.NO_SUCH_PEA, field="pea", pea=name, choices=list(peas_config(config).names))
                try:
                    result, notices = await change(session, pea)
                except NotInTable:
                    raise Refused(Why.PEA_NOT_POSSIBLE_NOW, field="pea", pea=name, state=pea.state) from None
                await outbox.write(session, *notices)
                await session.flush()
            outbox.wake()
            return result
        except (StaleDataError, Superseded):
            continue
    raise Refused(Why.PEA_BUSY, field="pea", pea=name)
