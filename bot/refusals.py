"""The words of every refusal the domain gives (`flows.errors.Why`), in Slack mrkdwn with this app's commands.

Every fact someone typed is escaped: it is shown, never interpreted. A refusal always says what
to type instead; the caller adds "Nothing was changed."
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.text import deploy_ref, escape, quote, user, when
from flows.config import CommandsConfig
from flows.deploy.machine import State
from flows.errors import Refused, Why

# The words of one refusal, from its facts and the app's commands as configured (`slack.commands`).
Wording = Callable[[dict[str, Any], CommandsConfig], str]


def _codes(names: list[str]) -> str:
    return ", ".join(f"`{escape(n)}`" for n in names)


def _label(state: str) -> str:
    try:
        return State(state).label
    except ValueError:
        return state


def _pea_hint(facts: dict[str, Any], c: CommandsConfig) -> str:
    pea = facts.get("pea")
    return f" Deploy another one with `{c.pea} deploy {escape(pea)} &lt;pr&gt;`." if pea else ""


def _deploy(facts: dict[str, Any]) -> str:
    return deploy_ref(facts["deploy_id"], facts["pr"])


WORDS: dict[Why, Wording] = {
    Why.NOT_A_DEPLOYER: lambda f, c: "You are not on the deployers list: ask an admin to add you to "
                                     "`permissions.deployers`.",
    Why.NOT_ON_EMERGENCY_LIST: lambda f, c: "Only people on the emergency list may jump the queue or skip the build "
                                            f"check. Queue normally with `{c.deploy} &lt;pr&gt;`, or ask an admin.",
    Why.NOT_YOURS: lambda f, c: f"Only {user(f['requester'])} or an admin can act on {_deploy(f)}.",
    Why.ADMINS_ONLY: lambda f, c: f"Only admins can {f.get('what', 'do that')}.",
    Why.NOT_A_PR_NUMBER: lambda f, c: (
        f"{quote(str(f['pr']))} is not a pull request number: type "
        + (f"`{c.pea} deploy {escape(f['pea'])} 123`." if f.get("pea") else f"`{c.deploy} 123`.")),
    Why.UNKNOWN_PROCESS: lambda f, c: (f"Unknown process {quote(f['process'])}: choose from {_codes(f['choices'])} "
                                       f"(e.g. `{c.deploy} {f['pr']} {escape(f['choices'][0])}`), or type "
                                       f"`{c.deploy} {f['pr']}` with no process to deploy them all."),
    Why.REASON_REQUIRED: lambda f, c: 'Emergency options need a reason everyone can read: add `--reason "why"`.',
    Why.FREEZE_REASON_REQUIRED: lambda f, c: f'Say why: `{c.deploy} freeze "release candidate testing"`.',
    Why.TOO_LONG: lambda f, c: f"The {f['what']} {'are' if f['what'] == 'notes' else 'is'} {f['length']} characters "
                               f"long: keep {'them' if f['what'] == 'notes' else 'it'} under {f['limit']}.",
    Why.NO_SUCH_PR: lambda f, c: (f"There is no pull request #{f['pr']} in {escape(f['repo'])}: check the number"
                                  + (f" (`{c.pea} deploy {escape(f['pea'])} &lt;pr&gt;`)." if f.get("pea") else ".")),
    Why.PR_MERGED: lambda f, c: (f"#{f['pr']} is already merged: "
                                 + ("peas preview open pull requests." + _pea_hint(f, c) if f.get("pea")
                                    else "there is nothing left to deploy.")),
    Why.PR_CLOSED: lambda f, c: f"#{f['pr']} is closed: reopen it, or deploy another pull request." + _pea_hint(f, c),
    Why.PR_WRONG_BASE: lambda f, c: f"#{f['pr']} targets `{escape(f['base'])}`, not `{escape(f['expected'])}`: "
                                    "retarget it first.",
    Why.PR_FROM_FORK: lambda f, c: f"#{f['pr']} comes from a fork: push its branch to {escape(f['repo'])} to deploy "
                                   "it.",
    Why.PR_CONFLICTS: lambda f, c: f"#{f['pr']} conflicts with `{escape(f['base'])}`: merge or rebase it, then "
                                   "deploy again.",
    Why.ALREADY_QUEUED: lambda f, c: f"#{f['pr']} is already on the train ({_deploy(f)}): `{c.deploy} queue` "
                                     "shows where.",
    Why.NO_SUCH_DEPLOY: lambda f, c: f"There is no deploy {f['deploy_id']}: `{c.deploy} queue` lists them with "
                                     "their ids.",
    Why.STALE_BUTTON: lambda f, c: f"That button is from an earlier step: {_deploy(f)} is now "
                                   f"`{_label(f['state'])}`. Use the buttons on its latest message.",
    Why.NOT_POSSIBLE_NOW: lambda f, c: f"{_deploy(f).capitalize()} is `{_label(f['state'])}`: that is not possible "
                                       "now.",
    Why.NOTHING_QUEUED: lambda f, c: f"You have no deploy in the queue. `{c.deploy} queue` shows the train.",
    Why.ONLY_QUEUED_CANCEL: lambda f, c: f"{_deploy(f).capitalize()} is `{_label(f['state'])}`: only a queued "
                                         "deploy can be cancelled. Use its Roll back button instead.",
    Why.ALREADY_FROZEN: lambda f, c: f"The train is already frozen: `{c.deploy} unfreeze` starts it again.",
    Why.NOT_FROZEN: lambda f, c: "The train is not frozen.",
    Why.PEAS_NOT_SET_UP: lambda f, c: "Peas are not set up here: add a `peas:` section with `names` to app.yaml.",
    Why.NO_SUCH_PEA: lambda f, c: f"There is no pea {quote(f['pea'])}: choose from {_codes(f['choices'])} "
                                  f"(`{c.pea}` lists them).",
    Why.PEA_HELD: lambda f, c: (f"`{escape(f['pea'])}` is held by {user(f['holder'])} until "
                                f"{when(f['until'], '{date_short} {time}')}, so you cannot {f['action']} it: pick a "
                                f"free pea from `{c.pea}`, or ask {user(f['holder'])} to release it."),
    Why.PEA_BUSY: lambda f, c: f"`{escape(f['pea'])}` is changing right now: look at `{c.pea}` and try again.",
    Why.PEA_NOT_POSSIBLE_NOW: lambda f, c: f"`{escape(f['pea'])}` is {f['state']}: that is not possible now. "
                                           f"`{c.pea}` shows where it is.",
    Why.PEA_NOT_CLAIMED: lambda f, c: (
        f"`{escape(f['pea'])}` is not claimed: there is nothing to release." if f["action"] == "release"
        else f"`{escape(f['pea'])}` is not claimed: `{c.pea} deploy {escape(f['pea'])} &lt;pr&gt;` claims it."),
    Why.PEA_BUILD_RED: lambda f, c: (f"Build #{f['build']} of #{f['pr']}'s head {f['sha'][:12]} ended "
                                     f"{escape(str(f['result']).lower())} (<{f['url']}|build log>): push a fix, then "
                                     "try again."),
    Why.UNKNOWN_BUTTON: lambda f, c: f"Unknown button {quote(f['button'])}: use the buttons of the latest message.",
    Why.STALE_PEA_BUTTON: lambda f, c: (
        f"That button is from an earlier message: `{escape(f['pea'])}` is now {f['state']}, "
        + (f"held by {user(f['holder'])}" if f.get("holder") else "not claimed") + f". `{c.pea}` shows where it is."),
    Why.UNREACHABLE: lambda f, c: f"{escape(f['system'])} is not answering as it should ({escape(f['message'])}): "
                                  "try again in a minute.",
}


def word(refused: Refused, commands: CommandsConfig) -> str:
    """What a person is told about a refusal (without "Nothing was changed."), quoting `commands`."""
    return WORDS[refused.why](refused.facts, commands)
