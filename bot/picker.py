"""The pull request picker: an `external_select` whose options are the open pull requests, searched as
people type. Shared by `/deploy` and `/pea` (any input whose element uses `element()`)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bot.grammar import pr_number
from bot.text import plain
from flows.deploy.flows import DeployFlows
from flows.errors import Refused
from flows.views import PullRequestOption

log = logging.getLogger(__name__)

ACTION_ID = "pr_pick"
SUGGESTIONS = 25
BUDGET = 2.5  # seconds: Slack gives options 3 s, after which the person sees an error


def element(placeholder: str = "Search open pull requests") -> dict[str, Any]:
    return {"type": "external_select", "action_id": ACTION_ID, "min_query_length": 0,
            "placeholder": plain(placeholder, 150)}


def option(pr: PullRequestOption) -> dict[str, Any]:
    # Slack cuts option text at 75 characters: the number and author first, the title last.
    return {"text": plain(f"#{pr.number} {pr.author}: {pr.title}", 75), "value": str(pr.number)}


def form_metadata(view: dict[str, Any]) -> dict[str, Any]:
    """What a form keeps for later in its private_metadata: the channel it was opened in, its train (if any)."""
    try:
        kept = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return kept if isinstance(kept, dict) else {}


def picked(values: dict[str, Any], block_id: str) -> int | None:
    """The pull request chosen in the input `block_id` of a submitted view, if any."""
    selected = (values.get(block_id, {}).get(ACTION_ID) or {}).get("selected_option") or {}
    value = str(selected.get("value") or "")
    return int(value) if value.isdigit() and int(value) > 0 else None


async def suggestions(deploys: DeployFlows, query: str) -> list[dict[str, Any]]:
    """Open pull requests matching `query`; when GitHub is slow or down, a typed number is still offered."""
    try:
        # The search stops itself at the budget; the outer bound is for a page fetch still under way then.
        prs = await asyncio.wait_for(deploys.search_prs(query, SUGGESTIONS, within=BUDGET - 0.5), BUDGET)
        options = [option(pr) for pr in prs]
    except (Refused, TimeoutError) as exc:
        log.warning("pull request search for %r failed: %s", query, exc)
        options = []
    number = pr_number(query.strip())
    if not options and number is not None:
        options = [{"text": plain(f"#{number}", 75), "value": str(number)}]
    return options
