"""The `/deploy` form: the train (with several, unless the channel says), pull request, processes (all ticked),
emergency options with a reason, notes.

Validated on submit: what the form can judge alone (nothing picked, no process ticked, an
emergency option without a reason) and everything the train refuses are shown beside the
field at fault (`response_action: errors`); the form stays open and nothing is queued.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot import picker
from bot.text import plain, shorten
from flows.config import TrainConfig
from flows.deploy.service import MAX_NOTES, MAX_REASON, DeployRequest

CALLBACK_ID = "deploy_request"
TRAIN = "deploy_train"  # the train picker's block and action id
PR, PROCESSES, EMERGENCY, REASON, NOTES = "pr", "processes", "emergency", "reason", "notes"
JUMP, SKIP = "jump_queue", "skip_build"
_ERROR_LENGTH = 250


def _checkbox(value: str, text: str, description: str | None = None) -> dict[str, Any]:
    box: dict[str, Any] = {"text": plain(text, 75), "value": value}
    if description:
        box["description"] = plain(description, 75)
    return box


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": plain(label, 2000),
                             "element": element, "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def train_picker(trains: Sequence[TrainConfig], chosen: TrainConfig | None) -> dict[str, Any]:
    """The train to deploy on: picking one redraws the form with its pull requests and processes."""
    options = [{"text": plain(t.name, 75), "value": t.name} for t in trains]
    select: dict[str, Any] = {"type": "static_select", "action_id": TRAIN, "placeholder": plain("Pick a train", 150),
                              "options": options}
    if chosen is not None:
        select["initial_option"] = next(o for o in options if o["value"] == chosen.name)
    return {"type": "section", "block_id": TRAIN, "text": {"type": "mrkdwn", "text": "*Train*"}, "accessory": select}


def deploy_modal(trains: Sequence[TrainConfig], config: TrainConfig | None, channel: str | None) -> dict[str, Any]:
    """The form for train `config`; with several trains, the train picker first (and only it while `config` is
    None: what the form asks depends on the train)."""
    modal: dict[str, Any] = {
        "type": "modal",  # always set: Bolt cannot route a view_submission without it
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps({"channel": channel, "train": config.name if config else None}),
        "title": plain("Deploy", 24),
        "close": plain("Cancel", 24),
        "blocks": [train_picker(trains, config)] if len(trains) > 1 else [],
    }
    if config is None:
        modal["blocks"].append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": "Pick the train first: its pull requests and processes follow."}]})
        return modal
    processes = [_checkbox(name, name, f"ECS service {p.service}") for name, p in config.processes.items()]
    modal["submit"] = plain("Queue it", 24)
    modal["blocks"] += [
        _input(PR, "Pull request", picker.element(), hint="Open pull requests: type a number, title or author."),
        _input(PROCESSES, "Processes", {"type": "checkboxes", "action_id": PROCESSES, "options": processes,
                                        "initial_options": processes}),
        _input(EMERGENCY, "Emergency", {"type": "checkboxes", "action_id": EMERGENCY, "options": [
            _checkbox(JUMP, "Jump the queue", "Go next, right behind the deploy in flight"),
            _checkbox(SKIP, "Skip the build check", "Go on as soon as the image exists"),
        ]}, optional=True, hint="Only for people on the emergency list; needs a reason."),
        _input(REASON, "Reason", {"type": "plain_text_input", "action_id": REASON, "max_length": MAX_REASON},
               optional=True, hint="Required with an emergency option; everyone sees it."),
        _input(NOTES, "Notes", {"type": "plain_text_input", "action_id": NOTES, "multiline": True,
                                "max_length": MAX_NOTES}, optional=True),
    ]
    return modal


def _value(values: dict[str, Any], block_id: str) -> Any:
    return values.get(block_id, {}).get(block_id, {})


def read_submission(view: dict[str, Any], user_id: str) -> tuple[DeployRequest | None, dict[str, str]]:
    """The request a submitted form makes, or the errors by block id that the form alone can see."""
    values = view["state"]["values"]
    pr = picker.picked(values, PR)
    processes = tuple(o["value"] for o in _value(values, PROCESSES).get("selected_options") or [])
    flags = {o["value"] for o in _value(values, EMERGENCY).get("selected_options") or []}
    reason = (_value(values, REASON).get("value") or "").strip() or None
    notes = (_value(values, NOTES).get("value") or "").strip() or None
    errors = {}
    if pr is None:
        errors[PR] = "Pick a pull request."
    if not processes:
        errors[PROCESSES] = "Tick at least one process."
    if flags and not reason:
        errors[REASON] = "Say why: emergency options need a reason everyone can read."
    if errors or pr is None:
        return None, errors
    return DeployRequest(requester=user_id, pr_number=pr, processes=processes, jump_queue=JUMP in flags,
                         skip_build=SKIP in flags, reason=reason, notes=notes), {}


def error(block_id: str | None, message: str) -> dict[str, str]:
    """A form error beside the field at fault (the pull request's, when no field is named)."""
    block = block_id if block_id in (PR, PROCESSES, EMERGENCY, REASON, NOTES) else PR
    return {block: shorten(message, _ERROR_LENGTH)}
