"""Block Kit for a pea: its line (state, holder, PR, commit, since and until, URL), the list, its buttons.

The buttons come from the pea transition table (`PeaView.offered`), each carrying the pea, the
state it was offered in and the claim it belongs to, so a click from an older message is recognised.
"""

from __future__ import annotations

import json
from typing import Any

from bot.text import context, escape, link, plain, section, shorten, user, when
from flows.links import commit_url
from flows.pea.machine import BUTTONS, PeaState, Stale
from flows.views import PeaView

ACTIONS = {label: f"pea_{label.lower()}" for label in BUTTONS}  # Extend -> pea_extend, ...
EMOJI = {PeaState.FREE: ":white_circle:", PeaState.DEPLOYING: ":hourglass_flowing_sand:",
         PeaState.UP: ":large_green_circle:", PeaState.FAILED: ":x:", PeaState.RELEASING: ":arrow_down:"}
SINCE = "{date_short} {time}"


def pea_line(view: PeaView) -> str:
    """One line about a pea: state, holder, PR, commit, since and until, URL, what is wrong."""
    state = view.state
    head = f"{EMOJI[state]} *{escape(view.name)}*"
    if state is PeaState.FREE:
        return f"{head} · free"
    if state is PeaState.RELEASING:
        return f"{head} · being scaled to zero" + (f" · {escape(shorten(view.failure_reason, 300))}"
                                                   if view.failure_reason else "")
    sha = view.head_sha or ""
    commit = link(commit_url(view.pr_url, sha), sha[:8])
    if view.built_sha and view.built_sha != sha:  # Jenkins' merge lives in its workspace only: no link
        commit += f" merged with {escape(view.pr_base or 'its base')} as {view.built_sha[:8]}"
    parts = [head, f"`{state.value}`", user(view.holder),
             link(view.pr_url, shorten(f"#{view.pr_number} {view.pr_title or ''}".strip(), 80)), commit,
             f"since {when(view.claimed_at, SINCE)}",
             f"until {when(view.claim_expires_at, SINCE)}"]
    if view.url:
        parts.append(view.url if state is PeaState.UP else f"{view.url} (once up)")
    line = " · ".join(parts)
    if state is PeaState.FAILED and view.failure_reason:
        line += f"\n:x: {escape(shorten(view.failure_reason, 500))}"
    if view.stale_reason:
        line += f"\n:eyes: #{view.pr_number} " + (
            f"has a newer build ({(view.newer_sha or '')[:8]}): *Redeploy* to run it"
            if view.stale_reason is Stale.NEWER_BUILD else f"was {view.stale_reason.value}")
    return line


def list_text(views: list[PeaView]) -> str:
    free = sum(1 for v in views if not v.held)
    return "\n".join([f"*Peas* ({free} of {len(views)} free)", *(pea_line(v) for v in views)])


def button_value(view: PeaView) -> str:
    """What a button carries: the pea, the state it was offered in and the claim it belongs to."""
    return json.dumps({"pea": view.name, "state": view.state.value, "claim": view.claim}, separators=(",", ":"))


def pea_actions(view: PeaView) -> dict[str, Any] | None:
    """The buttons valid for the pea as it is, or None."""
    elements = []
    for transition in view.offered():
        label = transition.button or ""
        button: dict[str, Any] = {"type": "button", "action_id": ACTIONS[label], "text": plain(label, 75),
                                  "value": button_value(view)}
        if label == "Redeploy":
            button["style"] = "primary"
        if label == "Release":
            button["confirm"] = {"title": plain("Release?", 100),
                                 "text": plain(f"{view.name} is scaled to zero and freed for others.", 300),
                                 "confirm": plain("Release", 30), "deny": plain("Keep it", 30)}
        elements.append(button)
    return {"type": "actions", "block_id": f"pea_{view.name}_actions", "elements": elements} if elements else None


def pea_blocks(view: PeaView, headline: str | None = None) -> list[dict[str, Any]]:
    blocks = [section(headline), context(pea_line(view))] if headline else [section(pea_line(view))]
    actions = pea_actions(view)
    return [*blocks, actions] if actions else blocks
