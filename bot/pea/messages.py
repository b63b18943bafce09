"""The words of a pea's notices: the direct message to the person a notice concerns.

Pure functions of a notice and the pea as it is now. Progress (`PeaNotice.progress`) edits that
person's latest message about the pea in place; anything that needs them is a new message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.pea.cards import SINCE, pea_blocks, pea_line
from bot.text import context, escape, link, section, shorten, user, when
from flows.notices import (
    PeaBuildFound,
    PeaBuildRequested,
    PeaDeploying,
    PeaExtended,
    PeaFailed,
    PeaLeaseEnding,
    PeaNotice,
    PeaReleased,
    PeaReopened,
    PeaStale,
    PeaStarting,
    PeaTakenOver,
    PeaUp,
)
from flows.pea.machine import Stale
from flows.views import PeaView

_HEADLINE = {PeaUp: ":large_green_circle:", PeaFailed: ":x:", PeaLeaseEnding: ":bell:", PeaStale: ":eyes:",
             PeaReleased: ":arrow_down:", PeaTakenOver: ":arrow_down:"}


@dataclass(frozen=True)
class PeaMessage:
    """A direct message about a pea: to whom, its notification text, its headline and its blocks."""

    to: str
    text: str
    headline: str
    blocks: list[dict[str, Any]]
    progress: bool  # edits their latest message rather than being a new one
    final: bool  # the last message of their claim: the pea is not theirs any more


def _short(sha: str | None) -> str:
    return (sha or "")[:12]


def _running(notice: PeaStarting | PeaUp) -> str:
    """Which commit the pea runs: the head, or what Jenkins built of it merged with the PR's base."""
    if notice.built and notice.built != notice.sha:
        return (f"#{notice.pr} merged with {escape(notice.base or 'its base')}: {_short(notice.built)} "
                f"(head {_short(notice.sha)})")
    return f"the head {_short(notice.sha)}"


def headline(notice: PeaNotice, view: PeaView) -> str | None:
    """What happened, in one line (None: nothing to tell anyone)."""
    name = f"`{escape(notice.pea)}`"
    if isinstance(notice, PeaDeploying):
        waiting = f"build #{notice.build_number}" if notice.build_number else f"the build of {_short(notice.sha)}"
        return f"Deploying #{notice.pr} ({_short(notice.sha)}) to {name}: waiting for {waiting}"
    if isinstance(notice, PeaBuildRequested):
        return (f"No build of {_short(notice.sha)} started by itself: started one on `{escape(notice.job)}`, "
                "waiting for it")
    if isinstance(notice, PeaTakenOver):
        return f"{user(notice.by)} took {name} over to deploy #{notice.pr}"
    if isinstance(notice, PeaExtended):
        return f"{name} is yours until {when(notice.until, SINCE)}"
    if isinstance(notice, PeaBuildFound):
        return f"Waiting for {link(notice.url, f'build #{notice.number}')} of {_short(notice.sha)}"
    if isinstance(notice, PeaStarting):
        return f"Starting {name} on {_running(notice)}"
    if isinstance(notice, PeaUp):
        title = escape(shorten(view.pr_title or "", 150))
        up = f"{name} is up at {notice.url}: #{notice.pr} {title}, running {_running(notice)}"
        return up + (f"\n<{notice.url}|Open {escape(notice.pea)}>" if notice.url else "")
    if isinstance(notice, PeaFailed):
        log = f" ({link(view.build_url, 'build log')})" if view.build_url else ""
        return f"Deploying #{view.pr_number} to {name} failed: {escape(shorten(notice.reason, 2000))}{log}"
    if isinstance(notice, PeaLeaseEnding):
        return f"Your claim on {name} ends at {when(notice.until, SINCE)}: Extend it or Release it"
    if isinstance(notice, PeaStale):
        if notice.why is Stale.NEWER_BUILD:
            return f"#{notice.pr} has a newer green build ({_short(notice.sha)}): Redeploy {name} to run it"
        return f"#{notice.pr} was {notice.why.value}: release {name} if you are done with it"
    if isinstance(notice, PeaReopened):
        return f"#{notice.pr} is open again"
    if isinstance(notice, PeaReleased):
        if notice.by is None:
            return f"Your claim on {name} ended: it is being scaled to zero"
        by = "You" if notice.by == notice.holder else user(notice.by)
        return f"{by} released {name}: it is being scaled to zero"
    return None


def pea_message(notice: PeaNotice, view: PeaView) -> PeaMessage | None:
    """The DM `notice` makes for the person it concerns (None when it concerns nobody)."""
    line = headline(notice, view)
    if notice.holder is None or line is None:
        return None
    shown = f"{_HEADLINE.get(type(notice), ':seedling:')} {shorten(line, 2500)}"
    # a pea that is no longer theirs shows them no buttons
    blocks = pea_blocks(view, shown) if view.holder == notice.holder else [section(shown), context(pea_line(view))]
    plain = shorten(line.replace("`", "").replace("*", ""), 300)
    return PeaMessage(notice.holder, plain, shown, blocks, progress=notice.progress,
                      final=isinstance(notice, PeaReleased | PeaTakenOver))
