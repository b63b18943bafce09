"""The pool of peas: rows, claims, releases and extensions, each in one transaction with its audit record.

Nothing here talks to an outside system: `flows.pea.flows` reads the pull request and its build
first and hands what it learnt to `claim`. Every write re-checks, inside its transaction, what
the caller checked before (a pea may have been claimed meanwhile), and a concurrent write to
the same row (the ORM `version`) makes it look again rather than overwrite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from flows.config import AppConfig, PeasConfig
from flows.deploy.service import SYSTEM, audit
from flows.errors import Refused, typed
from flows.leased import save_held
from flows.notify import Kind, Notice
from integrations.github import PullRequest
from integrations.jenkins import Build
from storage.clock import utcnow
from storage.models import Pea

T = TypeVar("T")

LEASE_ENDED = "lease"  # the actor of a release nobody asked for
MAX_REMINDER = timedelta(minutes=30)
_WRITE_ATTEMPTS = 3


class PeaState(StrEnum):
    FREE = "free"
    DEPLOYING = "deploying"
    UP = "up"
    FAILED = "failed"
    RELEASING = "releasing"  # scaling to zero; nobody holds it, anyone may claim it

    @property
    def held(self) -> bool:
        return self in HELD


HELD = frozenset({PeaState.DEPLOYING, PeaState.UP, PeaState.FAILED})


class Stale(StrEnum):
    """Why the PR on an `up` pea deserves a look: the values of `Pea.stale_reason`."""

    NEWER_BUILD = "newer build"
    CLOSED = "closed"
    MERGED = "merged"


def remind_before(lease: timedelta) -> timedelta:
    """How long before a lease ends its holder is reminded: a tenth of it, at most half an hour."""
    return min(lease / 10, MAX_REMINDER)


def peas_config(config: AppConfig) -> PeasConfig:
    if config.peas is None or not config.peas.names:
        raise Refused("Peas are not set up here: add a `peas:` section with `names` to app.yaml.")
    return config.peas


def at(moment: datetime | None) -> str:
    """A time for people: `2026-11-26 17:00 UTC`."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@dataclass(frozen=True)
class PeaView:
    """A pea as people see it: a snapshot that stays put while the row moves on."""

    name: str
    state: str
    holder: str | None
    pr_number: int | None
    pr_title: str | None
    pr_url: str | None
    head_sha: str | None
    image: str | None
    build_url: str | None
    url: str | None
    claimed_at: datetime | None  # since when it is held
    lease_expires_at: datetime | None  # until when
    state_entered_at: datetime | None
    failure_reason: str | None
    stale_reason: str | None
    newer_sha: str | None

    @classmethod
    def of(cls, pea: Pea) -> PeaView:
        return cls(**{f: getattr(pea, f) for f in cls.__dataclass_fields__})

    @property
    def held(self) -> bool:
        return PeaState(self.state).held

    @property
    def buttons(self) -> list[str]:
        """The buttons a card of this pea offers, in order."""
        state = PeaState(self.state)
        if not state.held:
            return []
        offered = ["Redeploy"] if state is PeaState.FAILED or self.stale_reason == Stale.NEWER_BUILD else []
        return [*offered, "Extend", "Release"]

    def button_value(self) -> dict[str, str]:
        """What a button carries: the pea, the state it was offered in and the claim it belongs to."""
        return {"pea": self.name, "state": self.state, "claim": self.claimed_at.isoformat() if self.claimed_at else ""}


def notice(kind: Kind, view: PeaView, text: str, **data: Any) -> Notice:
    """A notice about a pea: `data` has the pea's view, and `holder`, whom it concerns (by default its holder)."""
    data.setdefault("holder", view.holder)
    return Notice(kind, pea=view.name, text=text, data={"pea": view, **data})


@dataclass(frozen=True)
class Claimed:
    """A pea that was claimed for a deploy, and who held it before if that was someone else."""

    pea: Pea
    taken_from: str | None = None


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


async def list_peas(sessions: async_sessionmaker[AsyncSession], config: AppConfig) -> list[Pea]:
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


async def peas_of(sessions: async_sessionmaker[AsyncSession], user: str) -> list[Pea]:
    """The peas a person holds, by name."""
    async with sessions() as session:
        return list((await session.scalars(sa.select(Pea).where(Pea.holder == user).order_by(Pea.name))).all())


def known(config: AppConfig, name: str) -> str:
    """The pea's name if it is in the pool; else a refusal that lists the pool."""
    names = peas_config(config).names
    if name not in names:
        raise Refused(f"There is no pea `{typed(name)}`: choose from {', '.join(f'`{n}`' for n in names)} "
                      "(`/pea` lists them).", field="pea")
    return name


def check_may_act(config: AppConfig, pea: Pea, user: str, what: str) -> None:
    """Only the holder or an admin may deploy over, extend or release a held pea."""
    if pea.holder and pea.holder != user and not config.permissions.is_admin(user):
        raise Refused(f"`{pea.name}` is held by <@{pea.holder}> until {at(pea.lease_expires_at)}, so you "
                      f"cannot {what} it: pick a free pea from `/pea`, or ask <@{pea.holder}> to release it.",
                      field="pea")


# -- writing --------------------------------------------------------------------------------------

async def _write(sessions: async_sessionmaker[AsyncSession], config: AppConfig, name: str,
                 change: Callable[[AsyncSession, Pea], Awaitable[T]]) -> T:
    """Apply `change` to the pea in one transaction, starting again if another writer got there first."""
    for _ in range(_WRITE_ATTEMPTS):
        try:
            async with sessions() as session, session.begin():
                await ensure_peas(session, peas_config(config).names)
                pea = await session.get(Pea, name)
                if pea is None:
                    raise Refused(f"There is no pea `{name}`.")
                result = await change(session, pea)
                await session.flush()
                return result
        except StaleDataError:
            continue
    raise Refused(f"`{name}` is changing right now: look at `/pea` and try again.")


async def claim(sessions: async_sessionmaker[AsyncSession], config: AppConfig, user: str, name: str,
                pr: PullRequest, build: Build | None) -> Claimed:
    """Hold the pea for `user` and start deploying the PR's head; `build` is its build, if one exists yet."""
    peas = peas_config(config)

    async def change(session: AsyncSession, pea: Pea) -> Claimed:
        check_may_act(config, pea, user, "deploy to")
        now = utcnow()
        state = PeaState(pea.state)
        taken_from = pea.holder if state.held and pea.holder != user else None
        if not state.held or taken_from:
            pea.claimed_at = now
        pea.holder = user
        pea.state = PeaState.DEPLOYING.value
        pea.state_entered_at = now
        pea.pr_number, pea.pr_title, pea.pr_url = pr.number, pr.title, pr.url
        pea.head_sha = pr.head_sha
        pea.image = config.image_for(pr.head_sha)
        pea.build_number = build.number if build else None
        pea.build_url = build.url if build else None
        pea.build_queue_id = None
        pea.url = peas.url_of(pea.name)
        pea.lease_expires_at = now + peas.lease
        pea.reminded_at = None
        pea.failure_reason = None
        pea.task_definitions = {}
        pea.rollout_started_at = None
        pea.checked_at = None
        pea.stale_reason = None
        pea.newer_sha = None
        pea.due_at = now
        await audit(session, user, "pea_deploy", pea=pea.name,
                    detail=f"#{pr.number} {pr.head_sha[:12]}" + (f", taken from {taken_from}" if taken_from else ""),
                    pr=pr.number, head_sha=pr.head_sha, build_url=build.url if build else None)
        return Claimed(pea, taken_from)

    return await _write(sessions, config, name, change)


def released(now: datetime) -> dict[str, Any]:
    """What a release changes, asked for or at the end of the lease: nobody holds it, it goes to zero."""
    return {"state": PeaState.RELEASING.value, "state_entered_at": now, "holder": None, "lease_expires_at": None,
            "reminded_at": None, "failure_reason": None, "due_at": now}


async def release(sessions: async_sessionmaker[AsyncSession], config: AppConfig, user: str,
                  name: str) -> tuple[Pea, str]:
    """Let go of a held pea: nobody holds it any more and its services go to zero; (pea, former holder)."""

    async def change(session: AsyncSession, pea: Pea) -> tuple[Pea, str]:
        holder = pea.holder
        if not PeaState(pea.state).held or holder is None:
            raise Refused(f"`{name}` is not claimed: there is nothing to release.")
        check_may_act(config, pea, user, "release")
        for key, value in released(utcnow()).items():
            setattr(pea, key, value)
        await audit(session, user, "pea_release", pea=name, detail=f"held by {holder}")
        return pea, holder

    return await _write(sessions, config, name, change)


async def extend(sessions: async_sessionmaker[AsyncSession], config: AppConfig, user: str, name: str) -> Pea:
    """Renew the holder's claim: the lease runs for `peas.lease` from now."""
    peas = peas_config(config)

    async def change(session: AsyncSession, pea: Pea) -> Pea:
        if not PeaState(pea.state).held or pea.holder is None:
            raise Refused(f"`{name}` is not claimed: `/pea deploy {name} <pr>` claims it.")
        check_may_act(config, pea, user, "extend")
        now = utcnow()
        pea.lease_expires_at = now + peas.lease
        pea.reminded_at = None
        pea.due_at = now  # the worker works out the next reminder
        await audit(session, user, "pea_extend", pea=name, detail=f"until {at(pea.lease_expires_at)}")
        return pea

    return await _write(sessions, config, name, change)


# -- what the worker keeps ------------------------------------------------------------------------

async def save(sessions: async_sessionmaker[AsyncSession], pea: Pea, **values: Any) -> None:
    """Persist fields of a pea a worker holds, unless someone changed it since it was read."""
    await save_held(sessions, pea, **values)


def free_values(now: datetime) -> dict[str, Any]:
    """A pea scaled to zero, with nothing of its last deploy left on it."""
    return {"state": PeaState.FREE.value, "state_entered_at": now, "holder": None, "pr_number": None,
            "pr_title": None, "pr_url": None, "head_sha": None, "image": None, "build_url": None,
            "build_number": None, "build_queue_id": None, "claimed_at": None, "lease_expires_at": None,
            "reminded_at": None, "failure_reason": None, "task_definitions": {}, "rollout_started_at": None,
            "checked_at": None, "stale_reason": None, "newer_sha": None, "due_at": None}


async def record(sessions: async_sessionmaker[AsyncSession], pea: Pea, action: str, detail: str | None = None,
                 actor: str = SYSTEM, **outside_ids: Any) -> None:
    """An audit record of something the worker did to a pea, with the outside ids."""
    async with sessions() as session, session.begin():
        await audit(session, actor, action, pea=pea.name, detail=detail, **outside_ids)
