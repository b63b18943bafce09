"""`/deploy`: the form, the quick form and the train's subcommands.

Quick form: `/deploy <pr> [process ...] [--front] [--skip-build] [--reason "..."] [--notes "..."]`,
options anywhere after the pull request number, no process meaning all of them. `--reason`
explains an emergency option, so it is refused without `--front` or `--skip-build` (context
goes in `--notes`). Every answer is ephemeral; bad input is quoted back with what to type
instead, and changes nothing.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import cards
from bot.modals import open_deploy_modal
from bot.surface import Surface, tell
from bot.text import escape, eta, has_control_characters, human_duration, link, quote, shorten, user, when
from flows.deploy import service
from flows.deploy.machine import State
from flows.deploy.service import DeployRequest
from flows.deploy.stats import TrainStats, duration, recent_deploys, train_stats
from flows.errors import Refused
from integrations.outside import OutsideError

log = logging.getLogger(__name__)

COMMAND = "/deploy"
MAX_TEXT = 3000
HISTORY_SHOWN = 10
_DEPLOY_ID = re.compile(r"[0-9]{1,18}")  # what a database integer holds; isdigit() also passes "²"
_PR = re.compile(r"#?([0-9]{1,9})")  # ASCII digits: int() also reads "١٢"
_OPTIONS = ("--front", "--skip-build", "--reason", "--notes")
_NO_ARGUMENTS = ("queue", "history", "stats", "unfreeze", "help")
SUBCOMMANDS = (*_NO_ARGUMENTS, "cancel", "freeze")


class BadInput(Exception):
    """What was typed cannot be understood; the message quotes it and says what to type."""


@dataclass(frozen=True)
class QuickDeploy:
    pr: int
    processes: tuple[str, ...] = ()
    front: bool = False
    skip_build: bool = False
    reason: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Subcommand:
    name: str
    args: tuple[str, ...] = field(default_factory=tuple)


def usage(processes: list[str]) -> str:
    return "\n".join([
        "*Deploy a pull request*",
        "• `/deploy` opens a form: pick the pull request and the processes.",
        "• `/deploy 123` queues #123 with every process; `/deploy 123 web` only `web`.",
        '• `/deploy 123 --notes "what to watch"` adds notes to its card.',
        '• `/deploy 123 --front --reason "why"` jumps the queue (emergency list only).',
        '• `/deploy 123 --skip-build --reason "why"` goes on once the image exists, whatever the build says '
        "(emergency list only).",
        "*The train*",
        "• `/deploy queue`: the deploy in flight and the queue, with ids and ETAs.",
        "• `/deploy cancel [id]`: leave the queue (your next queued deploy, or deploy `id`).",
        "• `/deploy history`: recent deploys. `/deploy stats`: how the train is doing.",
        "• `/deploy freeze <reason>` and `/deploy unfreeze` (admins): stop and restart the train.",
        f"Processes: {', '.join(f'`{p}`' for p in processes)}.",
    ])


def _pr_number(token: str) -> int:
    match = _PR.fullmatch(token)
    if match is None or int(match.group(1)) == 0:
        raise BadInput(f"{quote(token)} is not a pull request number or a command. Type `/deploy 123` to deploy "
                       "#123, `/deploy` for the form, or `/deploy help`.")
    return int(match.group(1))


def _subcommand(name: str, args: list[str], raw: str) -> Subcommand:
    if name in _NO_ARGUMENTS and args:
        raise BadInput(f"`/deploy {name}` takes nothing after it, but you typed {quote(raw)}: type `/deploy {name}`.")
    if name == "cancel":
        if len(args) > 1 or (args and _DEPLOY_ID.fullmatch(args[0]) is None):
            raise BadInput(f"{quote(' '.join(args))} is not a deploy id: type `/deploy cancel` for your next queued "
                           "deploy, or `/deploy cancel 42` (ids are in `/deploy queue`).")
    return Subcommand(name, tuple(args))


def _option_value(name: str, tokens: list[str], i: int, inline: str | None) -> tuple[str, int]:
    """The value of `--reason`/`--notes` (as `--reason "x"` or `--reason=x`) and the next token's index."""
    if inline is not None:
        value, after = inline, i + 1
    elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
        value, after = tokens[i + 1], i + 2
    else:
        value, after = "", i + 1
    if not value.strip():
        raise BadInput(f'`{name}` needs text after it, in quotes: `{name} "hotfix for the checkout"`.')
    return value.strip(), after


def parse(text: str) -> QuickDeploy | Subcommand | None:
    """What `/deploy <text>` asks for; None for the form. Raises BadInput."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise BadInput(f"That is {len(text)} characters: keep `/deploy` under {MAX_TEXT} "
                       "(long notes belong in the pull request).")
    if has_control_characters(text):
        raise BadInput(f"{quote(text)} contains control characters: type it again as plain text.")
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise BadInput(f'{quote(text)} has an unclosed quote: close every quote, e.g. '
                       '`/deploy 123 --front --reason "hotfix for the checkout"`.') from None
    if not tokens:
        return None
    first = tokens[0].lower()
    if first in SUBCOMMANDS:
        return _subcommand(first, tokens[1:], text)
    pr = _pr_number(tokens[0])
    processes: list[str] = []
    flags = {"--front": False, "--skip-build": False}
    values: dict[str, str] = {}
    i = 1
    while i < len(tokens):
        token = tokens[i]
        name, _, inline = token.partition("=")
        if name in flags and not inline:
            flags[name] = True
            i += 1
        elif name in ("--reason", "--notes"):
            if name in values:
                raise BadInput(f"`{name}` is given twice: give it once, in quotes.")
            values[name], i = _option_value(name, tokens, i, inline if "=" in token else None)
        elif token.startswith("-"):
            raise BadInput(f"Unknown option {quote(token)}: the options are {', '.join(f'`{o}`' for o in _OPTIONS)}"
                           ' (e.g. `--reason "why"`).')
        else:
            processes.append(token)
            i += 1
    if "--reason" in values and not (flags["--front"] or flags["--skip-build"]):
        raise BadInput('`--reason` explains an emergency option: add `--front` or `--skip-build`, or put context '
                       'in `--notes "..."` instead.')
    return QuickDeploy(pr, tuple(processes), flags["--front"], flags["--skip-build"], values.get("--reason"),
                       values.get("--notes"))


# -- answers --------------------------------------------------------------------------------------

async def queue_text(surface: Surface) -> str:
    train = await service.train_status(surface.sessions)
    entries = await surface.flows.queue()
    lines = []
    if train.frozen:
        lines.append(f":snowflake: The train is frozen by {user(train.frozen_by)}: {escape(train.frozen_reason)}")
    if not entries:
        lines.append("The train is empty: nothing in flight, nobody queued.")
    for entry in entries:
        deploy = entry.deploy
        where = (f"in flight, `{State(deploy.state).label}`" if entry.position == 0
                 else f"{entry.position}. starts {eta(entry.eta)}")
        lines.append(f"{where} · {cards.title(deploy)} · {user(deploy.requester)} · deploy {deploy.id}")
    return "\n".join(lines)


async def history_text(surface: Surface) -> str:
    recent = await recent_deploys(surface.sessions, limit=HISTORY_SHOWN)
    if not recent:
        return "No deploy has finished yet."
    lines = [f"*The last {len(recent)} deploys*"]
    for deploy in recent:
        parts = [cards.summary(deploy)]
        if deploy.started_at:
            parts.append(f"took {human_duration(duration(deploy))}")
        if deploy.build_url:
            parts.append(link(deploy.build_url, "build"))
        if deploy.outcome_reason and deploy.state != State.COMPLETED.value:
            parts.append(escape(shorten(deploy.outcome_reason, 120)))
        parts.append(when(deploy.finished_at, "{date_short} {time}"))
        lines.append(" · ".join(parts))
    return "\n".join(lines)


def stats_text(stats: TrainStats) -> str:
    days = round((stats.until - stats.since).total_seconds() / 86400)
    rate = "n/a" if stats.change_failure_rate is None else f"{stats.change_failure_rate:.0%}"
    return "\n".join([
        f"*The train over the last {days} days*",
        f"• Deploys: {stats.completed} completed, {stats.rolled_back} rolled back, {stats.failed} failed, "
        f"{stats.cancelled} cancelled",
        f"• Frequency: {stats.per_day:.1f} a day, {stats.per_week:.1f} a week "
        f"({stats.last_day} in the last day, {stats.last_week} in the last week)",
        f"• Median lead time (pull request opened → production): {human_duration(stats.lead_time)}",
        f"• Median queue wait: {human_duration(stats.queue_wait)}",
        f"• Median deploy duration: {human_duration(stats.deploy_duration)}",
        f"• Change failure rate (rolled back ÷ completed + rolled back): {rate}",
        f"• Median time to roll back: {human_duration(stats.time_to_roll_back)}",
    ])


async def run_subcommand(surface: Surface, sub: Subcommand, user_id: str) -> str:
    """The answer to a subcommand (a Refused from the train propagates)."""
    if sub.name == "help":
        return usage(list(surface.config.processes))
    if sub.name == "queue":
        return await queue_text(surface)
    if sub.name == "history":
        return await history_text(surface)
    if sub.name == "stats":
        return stats_text(await train_stats(surface.sessions))
    if sub.name == "cancel":
        applied = await surface.flows.cancel(user_id, int(sub.args[0]) if sub.args else None)
        return f"Cancelled deploy {applied.deploy.id} (#{applied.deploy.pr_number}): it has left the queue."
    if sub.name == "freeze":
        await surface.flows.freeze(user_id, " ".join(sub.args))
        return "The train is frozen: queued deploys wait until `/deploy unfreeze`."
    await surface.flows.unfreeze(user_id)
    return "The train is running again."


async def request_deploy(surface: Surface, quick: QuickDeploy, user_id: str) -> str:
    request = DeployRequest(requester=user_id, pr_number=quick.pr, processes=quick.processes,
                            jump_queue=quick.front, skip_build=quick.skip_build, reason=quick.reason,
                            notes=quick.notes)
    try:
        entry = await surface.flows.request(request)
    except OutsideError as exc:
        return (f"Nothing was queued: GitHub did not answer about #{quick.pr} ({escape(str(exc))}). "
                "Try again in a minute.")
    return cards.queued_text(entry, surface.config.slack.channel)


def register(app: AsyncApp, surface: Surface) -> None:
    @app.command(COMMAND)
    async def handle_deploy_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond,
                                    client: AsyncWebClient) -> None:
        await ack()
        user_id = command["user_id"]
        try:
            parsed = parse(command.get("text") or "")
            if parsed is None:
                await open_deploy_modal(client, command["trigger_id"], surface.config, command.get("channel_id"))
                return
            if isinstance(parsed, Subcommand):
                answer = await run_subcommand(surface, parsed, user_id)
            else:
                answer = await request_deploy(surface, parsed, user_id)
        except BadInput as exc:
            answer = f"{exc}\nNothing was changed. `/deploy help` lists what you can type."
        except Refused as exc:
            answer = f"{exc}\nNothing was changed."
        await tell(client, user_id, answer, respond=respond)
