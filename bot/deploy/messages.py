"""The words of a deploy's notices: the reply in the card's thread, and the requester's direct message.

Pure functions of a notice and the deploy as it is now (`DeployView`). Whether the requester is
told of a transition is the transition table's `tells_requester`; the buttons of a DM are the
ones the table offers in the state it is about.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.deploy.cards import alarm_line, canary_health, what_to_press
from bot.text import escape, eta, human_duration, link, shorten, user
from flows.config import TrainConfig, format_duration
from flows.deploy.machine import Event, State
from flows.links import commit_url
from flows.notices import (
    AlarmsRead,
    BranchUpdating,
    BuildPassed,
    BuildRetried,
    BuildStarted,
    CanaryReminder,
    CandidateBuildFailed,
    CandidateBuilding,
    CandidateDropped,
    DeployNotice,
    HeadFollowed,
    Merged,
    Moved,
    RevertByHand,
    RevertPullRequest,
    YoureNext,
)
from flows.views import DeployView, TargetView

# Person transitions that do not change the card's state much: the thread says who pressed what.
PRESSED = {Event.RETRY_BUILD: "Retry build", Event.RETRY: "Retry", Event.PROCEED: "Proceed"}
LONG = 1500


@dataclass(frozen=True)
class DirectMessage:
    """A DM to the requester: its text, and the state whose buttons it offers (with needs attention or not)."""

    text: str
    offered: State | None = None
    needs_attention: bool = False


def _why(notice: Moved, deploy: DeployView) -> str:
    return escape(shorten(notice.reason or deploy.outcome_reason or "", LONG))


def _build(deploy: DeployView, number: int | None, url: str | None) -> str:
    return link(url or deploy.build_url, f"#{number}" if number else "log")


def thread_reply(notice: DeployNotice, deploy: DeployView, config: TrainConfig) -> str | None:
    """What the card's thread says about `notice`, if anything."""
    if isinstance(notice, Merged):
        verb = "Landed (a fast-forward to the commit built ahead)" if deploy.landed_ahead else "Merged"
        return f"{verb} as {link(commit_url(deploy.pr_url, notice.sha), notice.sha[:10])}."
    if isinstance(notice, CandidateBuilding):
        on = f"on top of #{notice.on}" if notice.on is not None else f"on `{config.github.base_branch}`"
        return (f":building_construction: Built ahead {on} while it waits: build "
                f"{_build(deploy, notice.number, notice.url)} started.")
    if isinstance(notice, CandidateBuildFailed):
        return f":red_circle: Its build ahead, {_build(deploy, notice.number, notice.url)}, ended {notice.result}."
    if isinstance(notice, CandidateDropped):
        return f":wastebasket: Its build ahead was dropped ({escape(notice.why)}); its branch is deleted."
    if isinstance(notice, AlarmsRead):
        return f":bar_chart: Alarms: {alarm_line(notice.states, config)}."
    if isinstance(notice, BuildRetried):
        what = "Its build ahead" if notice.ahead else "Build"
        return (f":repeat: {what} {_build(deploy, notice.number, notice.url)} was red: started again by itself "
                f"(`jenkins.build_retries`).")
    if isinstance(notice, BranchUpdating):
        return (f":arrows_counterclockwise: `{config.github.base_branch}` requires pull requests to be up to date: "
                f"updating #{deploy.pr_number}, then waiting for its checks.")
    if isinstance(notice, HeadFollowed):
        return f":arrows_counterclockwise: {_followed(notice, deploy, config)}"
    if isinstance(notice, RevertPullRequest):
        if not notice.merged:
            return None  # said with the needs-attention reply that comes with it
        return (f":leftwards_arrow_with_hook: `{config.github.base_branch}` takes changes only through pull requests: "
                f"reverted through {link(notice.url, 'a revert pull request')}.")
    if isinstance(notice, BuildStarted):
        return f":hammer_and_wrench: Build {_build(deploy, notice.number, notice.url)} started."
    if isinstance(notice, BuildPassed):
        return f":large_green_circle: Build {_build(deploy, notice.number, notice.url)} passed."
    if isinstance(notice, RevertByHand):
        where = f" {link(notice.manual_url, 'the merge commit')}" if notice.manual_url else ""
        detail = escape(shorten(notice.detail, LONG))
        return f":warning: Needs attention: revert #{deploy.pr_number} by hand: {detail}{where}"
    if isinstance(notice, Moved):
        return _moved_reply(notice, deploy, config)
    return None


def _followed(notice: HeadFollowed, deploy: DeployView, config: TrainConfig) -> str:
    commit = link(commit_url(deploy.pr_url, notice.new), notice.new[:10])
    if notice.updated:
        return f"#{deploy.pr_number} was updated with `{config.github.base_branch}`: merging {commit}."
    return (f"#{deploy.pr_number} moved since it was queued (from {notice.old[:10]}): merging its newest commit, "
            f"{commit}.")


def _revert_waits(deploy: DeployView) -> str:
    if deploy.revert_status != "pull_request" or not deploy.revert_pull_request:
        return ""
    return f" ({link(deploy.revert_pull_request, 'the revert pull request')})"


def _moved_reply(notice: Moved, deploy: DeployView, config: TrainConfig) -> str | None:
    event, by = notice.event, f" by {user(notice.actor)}" if notice.by_person else ""
    why = _why(notice, deploy)
    if event is Event.START:
        return f":arrow_forward: Now deploying: merging #{deploy.pr_number} into `{config.github.base_branch}`."
    if event in (Event.BUILD_RED, Event.BUILD_TIMEOUT):
        log = f" ({link(deploy.build_url, 'build log')})" if deploy.build_url else ""
        return f":x: The build failed: {why}{log}. {user(deploy.requester)} can *Retry build* or *Roll back*."
    if event is Event.CANARIES_UP:
        names = ", ".join(f"`{escape(t.canary)}`" for t in deploy.targets if t.canary)
        return f":hatching_chick: Canaries are up: {names}. Waiting for {user(deploy.requester)}."
    if event is Event.BAKED:
        return f":white_check_mark: {why.capitalize()}: rolling out."
    if event is Event.ROLLOUT_DONE:
        return (f":rocket: Rolled out to {', '.join(f'`{p}`' for p in deploy.processes)}; canaries removed. "
                f"Completes by itself in {format_duration(config.deploy.confirm_timeout)} unless someone rolls it "
                "back.")
    if notice.target is State.COMPLETED:
        how = " (nobody objected within the confirm timeout)" if event is Event.CONFIRM_TIMEOUT else by
        return f":white_check_mark: Completed in {human_duration(deploy.duration)}{how}."
    if notice.target is State.ROLLING_BACK and notice.source is not State.ROLLING_BACK:
        return f":rewind: Rolling back{by or ' automatically'}" + (f": {why}" if why and not by else ".")
    if event is Event.UNDONE:
        return f":leftwards_arrow_with_hook: Rolled back in {human_duration(deploy.duration)}" + (
            f": {why}" if why else ".")
    if event is Event.MERGE_REFUSED:
        return f":x: Failed: {why}"
    if event is Event.CANCEL:
        return f":no_entry_sign: Cancelled{by}."
    if event is Event.MARK_ROLLED_BACK:
        return (f":leftwards_arrow_with_hook: Marked rolled back by hand{by}: what was left is recorded as undone by "
                "people.")
    if event.parks:
        return f":warning: Needs attention: {escape(shorten(notice.reason or '', LONG))}{_revert_waits(deploy)}"
    if notice.by_person and event in PRESSED:
        return f"{user(notice.actor)} pressed *{PRESSED[event]}*."
    return None


def _canary_traffic(deploy: DeployView) -> str:
    """The canaries, and the traffic they take: none of Service Connect's for one that is only a client there."""
    def names(targets: list[TargetView], attribute: str) -> str:
        return ", ".join(f"`{escape(getattr(t, attribute) or '')}`" for t in targets)

    full = [t for t in deploy.targets if t.canary and not t.canary_client_only]
    clients = [t for t in deploy.targets if t.canary and t.canary_client_only]
    said = [f"{names(full, 'canary')}, taking real traffic"] if full else []
    if clients:
        its, canary = ("its", "the canary is a client") if len(clients) == 1 else ("their", "the canaries are clients")
        said.append(f"{names(clients, 'canary')}, taking no Service Connect traffic (only {names(clients, 'service')} "
                    f"may publish {its} endpoints there: {canary} only)")
    return "; ".join(said)


def gate_status(deploy: DeployView, config: TrainConfig) -> str | None:
    """What a DM at the canary gate keeps current while the requester decides (DESIGN §9): each canary's tasks and
    healthy targets, and each watched alarm's state, linked to the AWS console."""
    if deploy.state is not State.CANARY_CHECK:
        return None
    health = canary_health(deploy, config)
    lines = [f"{health}."] if health else []
    if deploy.alarms:
        lines.append(f"Alarms: {alarm_line(deploy.alarms, config)} (watched until it is done: one in ALARM rolls it "
                     "back by itself).")
    return "\n".join(lines) or None


def direct_message(notice: DeployNotice, deploy: DeployView, config: TrainConfig) -> DirectMessage | None:
    """The DM the requester gets about `notice`, if any."""
    title = f"#{deploy.pr_number} {escape(shorten(deploy.pr_title or '', 150))}"
    if isinstance(notice, CanaryReminder):
        bake = (f" (they proceed by themselves {eta(notice.bake_left)} if they stay healthy)"
                if notice.bake_left is not None else "")
        return DirectMessage(f":bell: *Reminder*: the canaries of {title} are waiting for you{bake}. *Proceed* or "
                             "*Roll back*?", State.CANARY_CHECK)
    if isinstance(notice, HeadFollowed):
        return DirectMessage(f":arrows_counterclockwise: {_followed(notice, deploy, config)}")
    if isinstance(notice, YoureNext):
        return DirectMessage(f":steam_locomotive: *You're next*: {title} starts {eta(notice.starts_in)} (the deploy "
                             "ahead is rolling out). I will message you when it needs you.")
    if isinstance(notice, CandidateBuildFailed):
        return DirectMessage(f":red_circle: *Your build failed while waiting*: {title} was built ahead, and build "
                             f"{_build(deploy, notice.number, notice.url)} ended {notice.result}. Fix it before your "
                             "turn (a push to the pull request builds it again), or leave the queue; as it is, it "
                             "will not be merged.", State.QUEUED)
    if isinstance(notice, RevertByHand):
        where = f" ({link(notice.manual_url, 'merge commit')})" if notice.manual_url else ""
        return DirectMessage(f":warning: *{title} needs you*: revert #{deploy.pr_number} by hand: "
                             f"{escape(shorten(notice.detail, LONG))}{where}")
    if not isinstance(notice, Moved) or not notice.transition.tells_requester:
        return None
    event, card = notice.event, f"<#{config.slack.channel}>"
    reason = _why(notice, deploy)
    if event is Event.ALARM:
        return DirectMessage(f":rotating_light: *{title} is being rolled back by itself* from "
                             f"`{notice.source.label}`: {reason}. Follow it in {card}.")
    if event is Event.BAKED:
        return DirectMessage(f":white_check_mark: *{title} {reason}*: its canaries stayed healthy, so it is "
                             f"rolling out everywhere. Follow it in {card}.")
    if event is Event.START:
        return DirectMessage(f":arrow_forward: *Your turn*: {title} is being merged and deployed. Follow it in "
                             f"{card}.")
    if event in (Event.BUILD_RED, Event.BUILD_TIMEOUT):
        return DirectMessage(f":x: *The build failed* for {title}: {reason}.\n*Retry build* starts it again; "
                             "*Roll back* reverts the merge.", State.BUILD_FAILED)
    if event is Event.CANARIES_UP:
        return DirectMessage(f":hatching_chick: *Canaries are up* for {title}: {_canary_traffic(deploy)}.\n"
                             "Check them, then *Proceed* to roll out everywhere or *Roll back*.", State.CANARY_CHECK)
    if event is Event.ROLLOUT_DONE:
        return DirectMessage(f":rocket: *Rolled out*: {title} runs on every process. Check production, then press "
                             f"*Done* (it completes by itself in {format_duration(config.deploy.confirm_timeout)}), "
                             "or *Roll back*.", State.AWAITING_CONFIRMATION)
    if event.parks:
        offered = deploy.offered(notice.source, needs_attention=True)
        return DirectMessage(f":warning: *{title} needs attention* in `{notice.source.label}`: "
                             f"{escape(shorten(notice.reason or '', LONG))}{_revert_waits(deploy)}\n"
                             f"{what_to_press(offered, sentence=True)}.", notice.source, needs_attention=True)
    if event is Event.MARK_ROLLED_BACK:
        return DirectMessage(f":leftwards_arrow_with_hook: *{title} was marked rolled back by hand* by "
                             f"{user(notice.actor)}.")
    if event is Event.UNDONE:
        return DirectMessage(f":leftwards_arrow_with_hook: *{title} was rolled back*: {reason or 'on request'}.")
    return DirectMessage(f":x: *{title} failed*: {reason}. Nothing was changed.")
