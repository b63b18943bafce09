"""Block Kit for a deploy: its card, its buttons, one-line summaries.

The buttons always come from the transition table (`person_transitions`), each carrying the
deploy's id and the state it was offered in, so a click from an older message is recognised.
Everything people typed (titles, reasons, notes) is escaped: it is shown, never interpreted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.text import (
    context,
    escape,
    human_duration,
    link,
    plain,
    schedule,
    section,
    shorten,
    user,
    when,
)
from flows.config import TrainConfig
from flows.deploy.machine import WATCHED, Event, State, Transition
from flows.flowchart import Actor
from flows.links import alarm_url, commit_url, service_url
from flows.views import DeployView, QueueEntry, TrainView

ACTION_PREFIX = "deploy_"

EMOJI = {
    State.QUEUED: ":hourglass_flowing_sand:", State.MERGING: ":twisted_rightwards_arrows:",
    State.BUILDING: ":hammer_and_wrench:", State.BUILD_FAILED: ":x:", State.CANARYING: ":hatching_chick:",
    State.CANARY_CHECK: ":bird:", State.ROLLING_OUT: ":rocket:", State.AWAITING_CONFIRMATION: ":eyes:",
    State.ROLLING_BACK: ":rewind:", State.COMPLETED: ":white_check_mark:",
    State.ROLLED_BACK: ":leftwards_arrow_with_hook:", State.FAILED: ":x:", State.CANCELLED: ":no_entry_sign:",
}
_STYLE = {Event.PROCEED: "primary", Event.DONE: "primary", Event.RETRY_BUILD: "primary", Event.RETRY: "primary",
          Event.ROLL_BACK: "danger"}
# What a button asks before it acts: title, text, and the two answers (the confirm says what happens).
_CONFIRM = {
    Event.ROLL_BACK: ("Roll back?", "The services go back to what they ran before, the canaries are removed and the "
                                    "merge is reverted.", "Roll back", "Not now"),
    Event.MARK_ROLLED_BACK: ("Mark rolled back by hand?", "Only once people have undone what is left (see the "
                             "thread): the deploy ends as rolled back and the train moves on. Admins only.",
                             "Mark rolled back", "Not now"),
    Event.CANCEL: ("Leave the queue?", "The deploy is cancelled and its place given up; you can queue it again later.",
                   "Leave the queue", "Keep my place"),
}
BAR_WIDTH = 8


def action_id(event: Event) -> str:
    """The fixed action id of a button kind: `deploy_proceed`, `deploy_roll_back`, ..."""
    return ACTION_PREFIX + event.value


@dataclass(frozen=True)
class ButtonValue:
    deploy_id: int
    state: State


def button_value(deploy_id: int, state: State | str) -> str:
    return json.dumps({"deploy": deploy_id, "state": State(state).value}, separators=(",", ":"))


def parse_button_value(value: Any) -> ButtonValue:
    """The deploy and state a button was made for; ValueError for anything we did not make."""
    try:
        data = json.loads(value)
        deploy_id, state = data["deploy"], State(data["state"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"not a deploy button value: {value!r}") from exc
    if not isinstance(deploy_id, int) or isinstance(deploy_id, bool) or deploy_id <= 0:
        raise ValueError(f"not a deploy id: {deploy_id!r}")
    return ButtonValue(deploy_id, state)


def actions(deploy: DeployView, state: State | None = None, *, needs_attention: bool | None = None,
            block_id: str | None = None) -> dict[str, Any] | None:
    """The buttons a person may press in `state` (the deploy's own by default), or None when there are none."""
    state = state or deploy.state
    elements = []
    for transition in deploy.offered(state, needs_attention=needs_attention):
        button: dict[str, Any] = {"type": "button", "action_id": action_id(transition.event),
                                  "text": plain(transition.button or transition.label, 75),
                                  "value": button_value(deploy.id, state)}
        if transition.event in _STYLE:
            button["style"] = _STYLE[transition.event]
        if transition.event in _CONFIRM:
            title, text, confirm, deny = _CONFIRM[transition.event]
            button["confirm"] = {"title": plain(title, 100), "text": plain(text, 300), "confirm": plain(confirm, 30),
                                 "deny": plain(deny, 30)}
        elements.append(button)
    if not elements:
        return None
    return {"type": "actions", "block_id": block_id or f"deploy{deploy.id}_actions", "elements": elements}


# What a button needing attention is for, after its name.
_WHEN = {Event.RETRY: " once it is fixed", Event.MARK_ROLLED_BACK: " once people have undone the rest"}


def what_to_press(offered: list[Transition], *, sentence: bool = False) -> str:
    """The buttons of a deploy needing attention, in words: `press *Retry* once it is fixed, or *Roll back*`
    (`Press ...` to start a sentence)."""
    names = [f"*{t.button}*{_WHEN.get(t.event, '')}" + (" (admins)" if t.actor is Actor.ADMIN else "")
             for t in offered]
    words = "press " + ", or ".join(names) if names else "ask an admin"
    return words[0].upper() + words[1:] if sentence else words


def title(deploy: DeployView) -> str:
    """`#123 Title` with the number linking to the pull request (mrkdwn)."""
    return f"*{link(deploy.pr_url, f'#{deploy.pr_number}')}* {escape(shorten(deploy.pr_title or '', 150))}"


def summary(deploy: DeployView) -> str:
    """One line: `#123 Title` by requester, state (for lists)."""
    state = deploy.state
    attention = " :warning: needs attention" if deploy.needs_attention else ""
    return f"{title(deploy)} · {user(deploy.requester)} · {EMOJI[state]} `{state.label}`{attention}"


def fallback_text(deploy: DeployView) -> str:
    """The notification text of a card: no markup beyond what Slack shows in a notification."""
    return f"#{deploy.pr_number} {escape(shorten(deploy.pr_title or '', 100))}: {deploy.state.label}"


def progress_bar(running: int, desired: int, width: int = BAR_WIDTH) -> str:
    """`▓▓▓▓░░░░ 2/4`."""
    filled = width if desired <= 0 else round(width * min(running, desired) / desired)
    return "▓" * filled + "░" * (width - filled) + f" {running}/{desired}"


def _timeline(deploy: DeployView) -> str:
    return " → ".join(f"{state.label} {when(at)}" for state, at in deploy.state_times)


def shown(deploy: DeployView, entry: QueueEntry | None) -> DeployView:
    """The deploy a card shows: the one read with its place in the queue, when there is one. A deploy read
    queued may have started by the time the queue was read; shown as read first, it would claim a place
    (position 0) it no longer has."""
    return entry.deploy if entry is not None else deploy


def queue_line(entry: QueueEntry | None, train: TrainView | None) -> str:
    """What a queued card says about its place in the queue (1: next to start) and a frozen train."""
    line = f" · position {entry.position} · {schedule(entry.eta, entry.finish)}" if entry is not None else ""
    if train is not None and train.frozen:
        line += f"\n:snowflake: The train is frozen by {user(train.frozen_by)}: {escape(train.frozen_reason)}"
    return line


def _status(deploy: DeployView, entry: QueueEntry | None, train: TrainView | None) -> list[str]:
    state = deploy.state
    lines = [f"{EMOJI[state]} *{state.label}*"]
    if state is State.QUEUED:
        lines[0] += queue_line(entry, train)
    reason = escape(shorten(deploy.outcome_reason or "", 1500))
    if state is State.COMPLETED:
        lines.append(f"Completed in {human_duration(deploy.duration)}.")
    elif state is State.ROLLED_BACK:
        since = f" from `{deploy.rollback_from.label}`" if deploy.rollback_from else ""
        lines.append(f"Rolled back{since}" + (f": {reason}" if reason else "."))
    elif state in (State.FAILED, State.BUILD_FAILED, State.ROLLING_BACK) and reason:
        lines.append(f"Why: {reason}")
    revert_pr = link(deploy.revert_pull_request, "its pull request") if deploy.revert_pull_request else ""
    if deploy.revert_status == "manual":
        lines.append(":warning: The merge could not be reverted automatically: revert it by hand "
                     "(see the thread).")
    elif deploy.revert_status == "pull_request":
        lines.append(f":warning: The revert waits in {revert_pr} for people to merge it.")
    elif deploy.revert_sha:
        through = f" through {revert_pr}" if revert_pr else ""
        lines.append(f"Reverted by {link(commit_url(deploy.pr_url, deploy.revert_sha), deploy.revert_sha[:10])}"
                     f"{through}.")
    if deploy.needs_attention:
        what = escape(shorten(deploy.attention or "an outside system failed", 1500))
        lines.append(f":warning: *Needs attention*: {what} — {what_to_press(deploy.offered())}.")
    return lines


def built_ahead(deploy: DeployView) -> str | None:
    """`built ahead on #12 · build #34 passed` for a queued deploy built ahead (DESIGN §8), with the build link;
    `built ahead on #12` once it landed (its build is then the deploy's own)."""
    candidate = deploy.candidate
    if candidate is None or candidate.sha is None or not (deploy.state is State.QUEUED or deploy.landed_ahead):
        return None
    on = f" on #{candidate.on}" if candidate.on is not None else ""
    said = f"built ahead{on}"
    if deploy.state is State.QUEUED and candidate.build_url:
        build = link(candidate.build_url, f"build #{candidate.build_number}")
        ended = {None: "running", True: "passed", False: f"ended {candidate.result}"}[candidate.green]
        said += f" · {build} {ended}"
    if candidate.retries:
        said += f" (started again by itself {_times(candidate.retries)})"
    return said


_ALARM_EMOJI = {"OK": ":large_green_circle:", "ALARM": ":red_circle:", "INSUFFICIENT_DATA": ":white_circle:"}


def alarm_line(states: tuple[tuple[str, str], ...], config: TrainConfig | None = None) -> str:
    """`🟢 app-5xx-rate OK · ⚪ app-p99 INSUFFICIENT_DATA`: each watched alarm and its state (DESIGN §9), each
    name a link to the alarm in the AWS console when `config` says the region."""
    def name_of(name: str) -> str:
        url = alarm_url(config, name) if config is not None else None
        return link(url, name) if url else f"`{escape(name)}`"
    return " · ".join(f"{_ALARM_EMOJI.get(state, ':grey_question:')} {name_of(name)} {state}"
                      for name, state in states)


def canary_health(deploy: DeployView, config: TrainConfig | None = None) -> str | None:
    """`web canary 1/1 running, 1 healthy target · worker canary 1/1 running` while the canaries are up, each
    canary a link to its service in the AWS console when `config` says the region."""
    if deploy.state not in (State.CANARYING, State.CANARY_CHECK):
        return None
    said = []
    for target in deploy.targets:
        if target.canary_health is None:
            continue
        running, desired, healthy = target.canary_health
        targets = "" if healthy is None else f", {healthy} healthy target{'s' if healthy != 1 else ''}"
        url = service_url(config, target.canary) if config is not None and target.canary else None
        said.append(f"{link(url, f'{target.process} canary')} {running}/{desired} running{targets}")
    return " · ".join(said) or None


def _alarms(deploy: DeployView, config: TrainConfig | None) -> str | None:
    if not deploy.alarms or deploy.state not in WATCHED:
        return None
    return f"Alarms: {alarm_line(deploy.alarms, config)}"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _facts(deploy: DeployView, page: str | None = None) -> list[str]:
    facts = [f"Requested by {user(deploy.requester)}",
             f"Processes: {', '.join(f'`{p}`' for p in deploy.processes)}"]
    ahead = built_ahead(deploy)
    if ahead:
        facts.append(ahead[0].upper() + ahead[1:])
    if deploy.build_url:
        again = f" (started again {_times(deploy.build_retries)})" if deploy.build_retries else ""
        facts.append(f"Build: {link(deploy.build_url, f'#{deploy.build_number}' if deploy.build_number else 'log')}"
                     f"{again}")
    if deploy.merge_sha:
        verb = "Landed as" if deploy.landed_ahead else "Merged as"
        facts.append(f"{verb} {link(commit_url(deploy.pr_url, deploy.merge_sha), deploy.merge_sha[:10])}")
    if page:
        facts.append(link(page, "Dashboard"))
    return facts


def _emergency(deploy: DeployView) -> str | None:
    flags = [name for name, on in (("Jump the queue", deploy.jump_queue),
                                   ("Skip the build check", deploy.skip_build)) if on]
    if not flags:
        return None
    return (f":rotating_light: *Emergency*: {', '.join(flags)} — "
            f"reason: {escape(shorten(deploy.emergency_reason or '', 500))}")


def _progress(deploy: DeployView) -> str | None:
    if deploy.state is not State.ROLLING_OUT:
        return None
    if not any(t.desired is not None for t in deploy.targets):
        return None
    width = max(len(t.process) for t in deploy.targets)
    lines = [f"{t.process.ljust(width)}  "
             + (progress_bar(t.running or 0, t.desired) if t.desired is not None else "starting…")
             for t in deploy.targets]
    return "```" + "\n".join(lines) + "```"


def card_blocks(deploy: DeployView, *, entry: QueueEntry | None = None, train: TrainView | None = None,
                with_buttons: bool = True, page: str | None = None,
                config: TrainConfig | None = None) -> list[dict[str, Any]]:
    """The deploy's card: what, who, where it is (with its timeline), links and the buttons valid now (`entry`:
    its place in a read of the queue; `page`: its page on the dashboard; `config`: its train's, for links to the
    AWS console)."""
    deploy = shown(deploy, entry)
    prefix = f"deploy{deploy.id}"
    blocks = [section(f"{title(deploy)}\n" + "\n".join(_status(deploy, entry, train)), block_id=f"{prefix}_head")]
    emergency = _emergency(deploy)
    if emergency:
        blocks.append(section(emergency, block_id=f"{prefix}_emergency"))
    progress = _progress(deploy)
    if progress:
        blocks.append(section(progress, block_id=f"{prefix}_progress"))
    health = "\n".join(line for line in (canary_health(deploy, config), _alarms(deploy, config)) if line)
    if health:
        blocks.append(section(health, block_id=f"{prefix}_health"))
    if deploy.notes:
        blocks.append(section(f"_Notes:_ {escape(shorten(deploy.notes, 1000))}", block_id=f"{prefix}_notes"))
    blocks.append(context(" · ".join(_facts(deploy, page)), _timeline(deploy)) | {"block_id": f"{prefix}_facts"})
    buttons = actions(deploy) if with_buttons else None
    if buttons:
        blocks.append(buttons)
    return blocks
