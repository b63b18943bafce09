"""The `/pea deploy` form: pick a pea (free ones first, then yours, then the others) and an open pull request."""

from __future__ import annotations

import json
from typing import Any

from bot import picker
from bot.text import plain
from flows.pea.machine import PeaState
from flows.views import PeaView

CALLBACK_ID = "pea_deploy"
PEA, PR = "pea", "pr"  # the form's input blocks


def _option(view: PeaView, user_id: str) -> dict[str, Any]:
    if not view.held:
        what = "free" if view.state is PeaState.FREE else "free (scaling down)"
    elif view.holder == user_id:
        what = f"yours, #{view.pr_number}"
    else:
        what = f"held, #{view.pr_number}"
    return {"text": plain(f"{view.name} ({what})", 75), "value": view.name}


def deploy_modal(views: list[PeaView], user_id: str, channel: str | None, train: str | None) -> dict[str, Any]:
    """The form over `views` (grouped by train when they are of several); `train`: the one the channel implies."""
    ordered = sorted(views, key=lambda v: (v.held, v.holder != user_id))
    trains = list(dict.fromkeys(v.train for v in views))
    select: dict[str, Any] = {"type": "static_select", "action_id": PEA, "placeholder": plain("Pick a pea", 150)}
    if len(trains) > 1:
        select["option_groups"] = [{"label": plain(name, 75),
                                    "options": [_option(v, user_id) for v in ordered if v.train == name]}
                                   for name in trains]
    else:
        select["options"] = [_option(v, user_id) for v in ordered]
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps({"channel": channel, "train": train}),
        "title": plain("Deploy to a pea", 24),
        "submit": plain("Deploy", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": PEA, "label": plain("Pea", 2000), "element": select},
            {"type": "input", "block_id": PR, "label": plain("Pull request", 2000), "element": picker.element(),
             "hint": plain("Open pull requests of the pea's train: type a number, title or author.", 2000)},
        ],
    }


def chosen_pea(values: dict[str, Any]) -> str | None:
    """The pea picked in the form so far (or on submission), if any."""
    return ((values.get(PEA, {}).get(PEA) or {}).get("selected_option") or {}).get("value")


def read_submission(view: dict[str, Any]) -> tuple[str | None, int | None, dict[str, str]]:
    """The pea and pull request a submitted form asks for, and the errors by block id the form alone can see."""
    values = view["state"]["values"]
    pea = chosen_pea(values)
    pr = picker.picked(values, PR)
    errors = {**({PEA: "Pick a pea."} if not pea else {}), **({PR: "Pick a pull request."} if pr is None else {})}
    return pea, pr, errors
