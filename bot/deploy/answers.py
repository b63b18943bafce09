"""What `/deploy` answers: help, the queue, history, stats (one train's or every train's), the train's
subcommands and a queued request.

Every answer is ephemeral; a refusal is worded by `bot.refusals`, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.deploy import cards
from bot.grammar import QuickDeploy, Subcommand
from bot.surface import Surface
from bot.text import deploy_ref, escape, human_duration, link, schedule, shorten, user, when
from flows.config import TrainConfig
from flows.deploy.flows import DeployFlows, queues_of
from flows.deploy.machine import State
from flows.deploy.service import DeployRequest
from flows.deploy.stats import TrainStats
from flows.views import Placed, QueueView

HISTORY_SHOWN = 10


def usage(trains: Sequence[TrainConfig], command: str) -> str:
    """`/deploy help`, quoting the slash command as configured; with several trains, how to name one."""
    c = command
    several = len(trains) > 1
    config = trains[0]
    ct = f"{c} {config.name}" if several else c  # the command with the train named, where it goes first
    t = f" {config.name}" if several else ""  # a train named after a subcommand
    first = next(iter(config.processes))
    lines = [
        "*Deploy a pull request*",
        f"• `{ct}` opens a form: pick the pull request and the processes.",
        f"• `{ct} 123` queues #123 with every process; `{ct} 123 {first}` only `{first}`.",
        f'• `{ct} 123 --notes "what to watch"` adds notes to its card.',
        f'• `{ct} 123 --front --reason "why"` jumps the queue (emergency list only).',
        f'• `{ct} 123 --skip-build --reason "why"` goes on once the image exists, whatever the build says '
        "(emergency list only).",
        "*The train*",
        f"• `{c} queue{t}`: the deploy in flight and the queue, with ids and ETAs.",
        f"• `{c} cancel{t} [id]`: leave the queue (your next queued deploy, or deploy `id`).",
        f"• `{c} history{t}`: recent deploys. `{c} stats{t}`: how the train is doing.",
        f"• `{c} freeze{t} &lt;reason&gt;` and `{c} unfreeze{t}` (admins): stop and restart the train.",
    ]
    if not several:
        return "\n".join([*lines, f"Processes: {', '.join(f'`{p}`' for p in config.processes)}."])
    return "\n".join([
        *lines,
        "*Trains*: in a train's channel its name may be left out; elsewhere name it first. "
        f"`{c} queue`, `{c} history` and `{c} stats` alone show every train.",
        *(f"• `{train.name}` (<#{train.slack.channel}>): processes {', '.join(f'`{p}`' for p in train.processes)}"
          for train in trains),
    ])


# -- answers --------------------------------------------------------------------------------------

_BUILT_EMOJI = {None: ":hammer_and_wrench:", True: ":large_green_circle:", False: ":red_circle:"}


def queue_text(queue: QueueView) -> str:
    """`/deploy queue` of one train."""
    train = queue.train
    lines = []
    if train.frozen:
        lines.append(f":snowflake: The train is frozen by {user(train.frozen_by)}: {escape(train.frozen_reason)}")
    if not queue.entries:
        lines.append("The train is empty: nothing in flight, nobody queued.")
    for entry in queue.entries:
        deploy = entry.deploy
        where = (f"in flight, `{deploy.state.label}`" if entry.position == 0
                 else f"{entry.position}. {schedule(entry.eta, entry.finish)}")
        ahead = cards.built_ahead(deploy)
        lines.append(f"{where} · deploy {deploy.id} of {cards.title(deploy)} · {user(deploy.requester)}"
                     + (f" · {_BUILT_EMOJI[deploy.candidate.green if deploy.candidate else None]} {ahead}"
                        if ahead else ""))
    return "\n".join(lines)


async def history_text(deploys: DeployFlows) -> str:
    recent = await deploys.history(limit=HISTORY_SHOWN)
    if not recent:
        return "No deploy has finished yet."
    lines = [f"*The last {len(recent)} deploys*"]
    for deploy in recent:
        parts = [cards.summary(deploy)]
        if deploy.started_at:
            parts.append(f"took {human_duration(deploy.duration)}")
        if deploy.build_url:
            parts.append(link(deploy.build_url, "build"))
        if deploy.outcome_reason and deploy.state is not State.COMPLETED:
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


async def run_subcommand(surface: Surface, sub: Subcommand, user_id: str, channel: str | None) -> str:
    """The answer to a subcommand typed in `channel` (a Refused from the train, or WhichTrain, propagates)."""
    command = surface.commands.deploy
    if sub.name == "help":
        return usage([t.config for t in surface.trains.values()], command)
    if sub.name in ("queue", "history", "stats"):
        implied = surface.implied(sub.train, channel)
        shown = [implied] if implied is not None else list(surface.trains.values())
        if sub.name == "queue":
            answers = [queue_text(view) for view in await queues_of([train.deploys for train in shown])]
        else:
            answers = [await _report(sub.name, train.deploys) for train in shown]
        if len(shown) == 1:
            return answers[0]
        return "\n\n".join(f"*{escape(train.name)}* (<#{train.config.slack.channel}>)\n{answer}"
                            for train, answer in zip(shown, answers, strict=True))
    if sub.name == "cancel":
        deploy_id = int(sub.args[0]) if sub.args else None
        # a deploy's id says its train; the user's next queued deploy needs one
        train = (await surface.of_deploy(deploy_id) if deploy_id is not None and sub.train is None else None) or \
            surface.train_for(sub.train, channel, f"{command} cancel {{train}}")
        cancelled = await train.deploys.cancel(user_id, deploy_id)
        return f"Cancelled {deploy_ref(cancelled.id, cancelled.pr_number)}: it has left the queue."
    several = len(surface.trains) > 1
    if sub.name == "freeze":
        train = surface.train_for(sub.train, channel, f"{command} freeze {{train}} &lt;reason&gt;")
        await train.deploys.freeze(user_id, " ".join(sub.args))
        unfreeze = f"{command} unfreeze {train.name}" if several else f"{command} unfreeze"
        return f"The train {f'`{train.name}` ' if several else ''}is frozen: queued deploys wait until `{unfreeze}`."
    train = surface.train_for(sub.train, channel, f"{command} unfreeze {{train}}")
    await train.deploys.unfreeze(user_id)
    return f"The train {f'`{train.name}` ' if several else ''}is running again."


async def _report(name: str, deploys: DeployFlows) -> str:
    if name == "history":
        return await history_text(deploys)
    return stats_text(await deploys.stats())


def deploy_request(quick: QuickDeploy, user_id: str) -> DeployRequest:
    return DeployRequest(requester=user_id, pr_number=quick.pr, processes=quick.processes, jump_queue=quick.front,
                         skip_build=quick.skip_build, reason=quick.reason, notes=quick.notes)


def queued_text(placed: Placed, channel: str) -> str:
    """The answer to an accepted request: where it is in the queue (1: next to start), what it waits for, and
    where its card is."""
    entry, train, deploy = placed.entry, placed.train, placed.deploy
    card = f"Its card is in <#{channel}>"
    queued = f":white_check_mark: Queued deploy {deploy.id} of {cards.title(deploy)}"
    if deploy.state.terminal:  # it ended before it could be read in the queue (a PR that no longer merges)
        return f"{queued}, and it has already ended: `{deploy.state.label}`. {card}, with why."
    if entry.position == 0:
        return f"{queued}: it has started (`{deploy.state.label}`). {card}; I will message you when it needs you."
    flags = " (jumping the queue)" if deploy.jump_queue else ""
    frozen = (f" The train is frozen by {user(train.frozen_by)}: {escape(train.frozen_reason)}."
              if train.frozen else "")
    return (f"{queued}{flags}: position {entry.position}, {schedule(entry.eta, entry.finish)}.{frozen} {card}; I will "
            "message you when it needs you.")
