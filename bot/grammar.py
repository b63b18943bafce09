"""The command grammar of `/deploy` and `/pea`, parsed in one place into typed commands.

`/deploy [train] <pr> [process ...] [--front] [--skip-build] [--reason "..."] [--notes "..."]`, options
anywhere after the pull request number, no process meaning all of them; `/deploy <subcommand> [train] ...`;
a train's name, where one is given, is the first word after the command (DESIGN §6).
`/pea`, `/pea deploy <pea> <pr>`, `/pea release|extend <pea>`, `/pea help`. `--reason` explains
an emergency option, so it is refused without `--front` or `--skip-build` (context goes in
`--notes`). Anything that cannot be understood is a `BadInput` that quotes it and says what to type.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field

from bot.text import has_control_characters, quote

MAX_DEPLOY_TEXT = 3000
MAX_PEA_TEXT = 200
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
    train: str | None = None  # the train named, if one was


@dataclass(frozen=True)
class Subcommand:
    name: str
    args: tuple[str, ...] = field(default_factory=tuple)
    train: str | None = None


@dataclass(frozen=True)
class Form:
    """`/deploy` with nothing else (or only a train's name): the form."""

    train: str | None = None


@dataclass(frozen=True)
class PeaCommand:
    name: str  # list, deploy, release, extend, help or form
    pea: str | None = None
    pr: int | None = None


def pr_number(token: str) -> int | None:
    """The pull request number in `123` or `#123`, if that is what it is."""
    match = _PR.fullmatch(token)
    return int(match.group(1)) if match is not None and int(match.group(1)) > 0 else None


def _words(text: str, limit: int, example: str) -> list[str]:
    """The words of a command's text (quotes group words); BadInput for what cannot be read."""
    if len(text) > limit:
        raise BadInput(f"That is {len(text)} characters: keep it under {limit} "
                       "(long notes belong in the pull request).")
    if has_control_characters(text):
        raise BadInput(f"{quote(text)} contains control characters: type it again as plain text.")
    try:
        return shlex.split(text)
    except ValueError:
        raise BadInput(f"{quote(text)} has an unclosed quote: close every quote, e.g. {example}.") from None


# -- /deploy --------------------------------------------------------------------------------------

def _subcommand(command: str, name: str, args: list[str], raw: str, trains: Collection[str]) -> Subcommand:
    train = args.pop(0).lower() if args and args[0].lower() in trains else None
    if name in _NO_ARGUMENTS and args:
        raise BadInput(f"`{command} {name}` takes nothing after it, but you typed {quote(raw)}: "
                       f"type `{command} {name}`.")
    if name == "cancel":
        if len(args) > 1 or (args and _DEPLOY_ID.fullmatch(args[0]) is None):
            raise BadInput(f"{quote(' '.join(args))} is not a deploy id: type `{command} cancel` for your next "
                           f"queued deploy, or `{command} cancel 42` (ids are in `{command} queue`).")
    return Subcommand(name, tuple(args), train)


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


def parse_deploy(text: str, command: str = "/deploy", trains: Collection[str] = ()) -> QuickDeploy | Subcommand | Form:
    """What `/deploy <text>` asks for, `trains` being the names a first word may give. Raises BadInput."""
    text = text.strip()
    example = f'`{command} 123 --front --reason "hotfix for the checkout"`'
    tokens = _words(text, MAX_DEPLOY_TEXT, example) if text else []
    train = tokens.pop(0).lower() if tokens and tokens[0].lower() in trains else None
    if not tokens:
        return Form(train)
    first = tokens[0].lower()
    if first in SUBCOMMANDS:
        if train is not None:
            raise BadInput(f"The train's name goes after `{first}`: type `{command} {first} {train}`.")
        return _subcommand(command, first, tokens[1:], text, trains)
    pr = pr_number(tokens[0])
    if pr is None:
        named = f", a train ({', '.join(f'`{t}`' for t in trains)})" if trains and train is None else ""
        raise BadInput(f"{quote(tokens[0])} is not a pull request number{named} or a command. Type `{command} 123` "
                       f"to deploy #123, `{command}` for the form, or `{command} help`.")
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
                       values.get("--notes"), train)


# -- /pea -----------------------------------------------------------------------------------------

def parse_pea(text: str, command: str = "/pea") -> PeaCommand:
    """What `/pea <text>` asks for. Raises BadInput."""
    text = text.strip()
    words = _words(text, MAX_PEA_TEXT, f"`{command} deploy sweet-pea 123`")
    if not words:
        return PeaCommand("list")
    name, args = words[0].lower(), words[1:]
    if name in ("list", "help") and not args:
        return PeaCommand(name)
    if name == "deploy":
        if not args:
            return PeaCommand("form")
        if len(args) != 2:
            raise BadInput(f"{quote(text)} is not `deploy &lt;pea&gt; &lt;pr&gt;`: type e.g. "
                           f"`{command} deploy sweet-pea 123`, or `{command} deploy` for the form.")
        pr = pr_number(args[1])
        if pr is None:
            raise BadInput(f"{quote(args[1])} is not a pull request number: type e.g. "
                           f"`{command} deploy {quote(args[0])[1:-1]} 123`.")
        return PeaCommand("deploy", args[0], pr)
    if name in ("release", "extend"):
        if len(args) != 1:
            raise BadInput(f"Name one pea: `{command} {name} sweet-pea`.")
        return PeaCommand(name, args[0])
    raise BadInput(f"{quote(text)} is not a `{command}` command: type `{command}` for the list, "
                   f"`{command} deploy &lt;pea&gt; &lt;pr&gt;`, `{command} release &lt;pea&gt;`, "
                   f"`{command} extend &lt;pea&gt;` or `{command} help`.")
