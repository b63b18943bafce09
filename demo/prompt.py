"""`fatcontroller demo --keep`: the sandbox and the bot stay up, and people's actions are typed at a prompt."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from demo.scenario import ALICE, Demo
from sandbox.browser import serve_browser
from sandbox.slack import Message, render

ANSWER = 10.0  # how long the prompt waits for the bot's answer before it goes on (the answer shows when it comes)


async def talk(demo: Demo, console: Console, app_config: Path) -> None:
    """`--keep`: serve the browser view, say how to reach everything, then take people's actions from stdin
    until Ctrl-C."""
    port = os.environ.get("FATCONTROLLER_HTTP_PORT")
    prompt = Prompt(demo, console)
    view = serve_browser(demo.sandbox)
    try:
        await _talk(prompt, app_config, port, f"{view.url}/?user=alice#channel/{demo.sandbox.spec.channel}")
    finally:
        view.stop()


class Problem(Exception):
    """Something typed at the prompt that cannot be done, said plainly."""


class Prompt:
    """The lines typed at `demo --keep`'s prompt, each acted on as a person would in Slack (`act`)."""

    def __init__(self, demo: Demo, console: Console) -> None:
        self.demo, self.console, self.slack = demo, console, demo.slack
        demo.screen.whole_dms = True  # the same screen, what it has shown kept
        commands = demo.bot.config.slack.commands
        self.deploy, self.pea = commands.deploy, commands.pea
        self.slack.commands = {self.deploy, self.pea}  # so that Slack answers a mistyped one at once, as it does

    @property
    def people(self) -> list[str]:
        return list(self.slack.users.values())

    def open_example(self) -> int:
        """A pull request opened for the examples to work as typed; its number."""
        number = self.demo.sandbox.github.create_pr("Purple hats", {"app/purple_hats.py": "HATS = 'purple'\n"})
        self.console.print(f"alice opened pull request #{number} 'Purple hats', so that the examples below work as "
                           "typed.", markup=False)
        return number

    def help(self, pr: int | None = None) -> str:
        n = str(pr) if pr is not None else "<number>"
        return (
            f"Act as someone in Slack by typing a line here (people: {', '.join(self.people)}):\n"
            f"  pr Purple hats            opens a pull request (as alice) and says its number\n"
            f"  alice {self.deploy} {n:<13}queues pull request #{n}; bob {self.deploy} queue   shows the train\n"
            f"  alice {self.deploy} help        every command (also: queue, history, stats, cancel)\n"
            f"  carol {self.pea} deploy chick-pea {n}   claims a pea;   bob {self.pea}   lists them\n"
            f"  alice {self.deploy}             opens the form; then fill it and submit it with\n"
            f"  alice submit pr={n} processes=web,worker   (field=value..., quote values with spaces)\n"
            f"  alice close               closes the form\n"
            f"  alice click Proceed       presses the newest [Proceed] alice can see (form, cards, DMs, home)\n"
            f"  alice home                opens alice's App Home and shows it\n"
            f"  help                      this again\n"
            "Press Ctrl-C to stop.")

    async def act(self, line: str) -> None:
        """One typed line, acted on; what cannot be done is said plainly, and the prompt goes on."""
        try:
            await self._act(line)
        except Problem as exc:
            self.console.print(Text(str(exc), style="red"))
        except Exception as exc:  # a typed line never stops the prompt
            self.console.print(Text(f"that did not work: {_plain(exc)}", style="red"))
        self.demo.screen.refresh()

    async def _act(self, line: str) -> None:
        line = line.strip()
        words = line.split(maxsplit=2)  # the rest stays as typed: quotes matter to /deploy's options
        if not words:
            return
        if words[0] in ("help", "?"):
            self.console.print(self.help(), markup=False)
            return
        if words[0] == "pr":
            title = line.split(maxsplit=1)[1] if len(words) > 1 else "A change"
            number = self.demo.sandbox.github.create_pr(
                title, {f"app/{title.replace(' ', '_').lower()}.py": "x = 1\n"})
            self.demo.screen.person(ALICE, f"opens pull request #{number} {title!r}")
            return
        user = self._person(words[0])
        what = words[1] if len(words) > 1 else ""
        rest = words[2] if len(words) == 3 else ""
        if what.startswith("/"):
            await self._command(user, what, rest)
        elif what == "click" and rest:
            await self._click(user, rest)
        elif what == "home":
            await self._home(user)
        elif what == "submit":
            await self._submit(user, rest)
        elif what == "close":
            if self.slack.current_view(user) is None:
                raise Problem(f"{self.slack.users[user]} has no form open")
            self.demo.screen.person(user, "closes the form")
            await self.slack.close_view(user)
        else:
            raise Problem(f"{line!r}: not something the prompt knows. {self.help()}")

    def _person(self, word: str) -> str:
        for uid, name in self.slack.users.items():
            if word in (name, uid):
                return uid
        raise Problem(f"{word!r} is nobody here: a line starts with one of {', '.join(self.people)} (or `pr`, "
                      "`help`)")

    async def _command(self, user: str, command: str, text: str) -> None:
        self.demo.screen.person(user, f"types {command} {text}".rstrip())
        seen, view = len(self.slack.ephemerals(user)), _view_id(self.slack.current_view(user))
        interaction = await self.slack.command(user, command, text)
        if interaction.answered_by_slack:
            return

        def answered() -> bool:
            return len(self.slack.ephemerals(user)) > seen or _view_id(self.slack.current_view(user)) != view

        if not await _within(answered, ANSWER):
            self.console.print(f"(no answer from the bot within {ANSWER:g}s: it shows here when it comes)")
        self.demo.screen.refresh()
        if _view_id(self.slack.current_view(user)) not in (None, view):
            self._show_form(user)

    async def _click(self, user: str, label: str) -> None:
        label = label.strip().strip("[]")
        name = self.slack.users[user]
        surface = next((s for s in self.surfaces(user) if label in self.slack.button_labels(s[1])), None)
        if surface is None:
            offered = ", ".join(f"[{b}]" for b in dict.fromkeys(self.buttons_seen(user))) or "none"
            raise Problem(f"{name} sees no [{label}] button. The buttons {name} can see, newest first: {offered}")
        where, target = surface
        self.demo.screen.person(user, f"clicks [{label}]" + {"modal": " in the form", "home": " in the App Home"}
                                .get(where, ""))
        view, publishes = _view_id(self.slack.current_view(user)), self._publishes(user)
        if where == "modal":
            await self.slack.click(user, label, in_modal=True)
        elif where == "home":
            await self.slack.click(user, label, in_home=True)
        elif isinstance(target, Message):
            await self.slack.click(user, label, message=target)
        self.demo.screen.refresh()
        if _view_id(self.slack.current_view(user)) not in (None, view):
            self._show_form(user)
        if where == "home" and await _within(lambda: self._publishes(user) > publishes, 1.0):
            self._show_home(user)

    def surfaces(self, user: str) -> list[tuple[str, Message | dict]]:
        """What the person can see buttons on, in the order a click looks: the open form (it is in front of
        everything), then the messages of every channel, their DM and their ephemeral answers, newest first, and
        last their App Home (a tab of its own)."""
        messages = [m for channel in [*self.slack.channels, self.slack.dm_channel(user)]
                    for m in self.slack.messages(channel)] + self.slack.ephemerals(user)
        messages.sort(key=lambda m: m.seq, reverse=True)
        modal, home = self.slack.current_view(user), self.slack.home(user)
        return [*([("modal", modal)] if modal else []), *(("message", m) for m in messages),
                *([("home", home)] if home else [])]

    def buttons_seen(self, user: str) -> list[str]:
        """The labels of every button the person can see, in the order `click` looks for one."""
        return [label for _, s in self.surfaces(user) for label in self.slack.button_labels(s)]

    def _publishes(self, user: str) -> int:
        """How many times the bot has published the person's App Home."""
        return sum(c.args.get("user_id") == user for c in self.slack.api_calls("views.publish"))

    async def _home(self, user: str) -> None:
        self.demo.screen.person(user, "opens the app's Home tab")
        publishes = self._publishes(user)
        await self.slack.open_home(user)
        if not await _within(lambda: self._publishes(user) > publishes, ANSWER):
            raise Problem(f"the bot published no App Home for {self.slack.users[user]} within {ANSWER:g}s")
        self._show_home(user)

    def _show_home(self, user: str) -> None:
        home = self.slack.home(user)
        if home is not None:
            self.console.print(Panel(self.demo.screen.fmt(render(home), urls=True),
                                     title=f"{self.slack.users[user]}'s App Home", title_align="left", expand=False))

    def _show_form(self, user: str) -> None:
        """The modal on the person's screen: its title, its fields with their options, and how to fill it."""
        view = self.slack.current_view(user)
        if view is None:
            return
        name = self.slack.users[user]
        lines = Text()
        for block in view.get("blocks", []):
            field = _field(block)
            if field is None:
                lines.append_text(self.demo.screen.fmt(render([block]), urls=True))
                lines.append("\n")
                continue
            element, label, optional = field
            lines.append(f"{label}{'' if optional else ' (required)'}", style="bold")
            lines.append(f"   {block['block_id']}=" + _kind(element) + "\n")
            hint = (block.get("hint") or {}).get("text")
            if hint:
                lines.append(f"    {hint}\n", style="dim")
        buttons = [b for b in (_text(view.get("submit")), _text(view.get("close"))) if b]
        lines.append(f"[{'] ['.join(buttons)}]\n" if buttons else "")
        lines.append(f"Fill and send it: {name} submit field=value ... (e.g. {name} submit pr=<number>); "
                     f"{name} close closes it.", style="italic")
        self.console.print(Panel(lines, title=f"{name}'s screen: {_text(view.get('title'))}", title_align="left",
                                 expand=False))

    async def _submit(self, user: str, args: str) -> None:
        view = self.slack.current_view(user)
        name = self.slack.users[user]
        if view is None:
            raise Problem(f"{name} has no form open: `{name} {self.deploy}` opens the deploy form")
        fields = {b["block_id"]: f[0] for b in view.get("blocks", []) if (f := _field(b)) is not None}
        try:
            pairs = shlex.split(args)
        except ValueError as exc:
            raise Problem(f"{args!r}: {exc}") from None
        values: dict[str, dict[str, Any]] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in fields:
                raise Problem(f"{pair!r} is not a field of the form: type field=value, the fields being "
                              f"{', '.join(fields)}")
            element = fields[key]
            values[key] = {element["action_id"]: await self._value(user, key, element, value)}
        self.demo.screen.person(user, f"submits the form {args}".rstrip())
        seen = len(self.slack.ephemerals(user))
        submitted = await self.slack.submit_view(user, values)
        if submitted.errors:
            said = "; ".join(f"{field}: {error}" for field, error in submitted.errors.items())
            raise Problem(f"the form was not sent, it says: {said}")
        await _within(lambda: len(self.slack.ephemerals(user)) > seen, ANSWER)
        self.demo.screen.refresh()
        if self.slack.current_view(user) is not None:
            self._show_form(user)

    async def _value(self, user: str, key: str, element: dict, value: str) -> Any:
        kind = element["type"]
        if kind == "external_select":  # a search, as a person types into it; its matching option
            options = await self.slack.suggest(user, element["action_id"], key, value)
            picked = [o for o in options if o.get("value") == value or _text(o.get("text")).startswith(f"#{value} ")]
            found = picked or options
            if len(found) != 1:
                offered = "; ".join(_text(o.get("text")) for o in options) or "nothing"
                raise Problem(f"searching {key} for {value!r} offers {offered}: type one of them exactly")
            return found[0]
        if kind in ("static_select", "radio_buttons"):
            return _pick(element, value, key)
        if kind in ("checkboxes", "multi_static_select"):
            return [_pick(element, v, key) for v in value.split(",") if v]
        return value


def _text(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else str(obj or "")


def _view_id(view: dict | None) -> str | None:
    return view.get("id") if view else None


def _field(block: dict) -> tuple[dict, str, bool] | None:
    """(element, label, optional) of a block a person fills in: an input, or a section's select."""
    if block.get("type") == "input" and block.get("element"):
        return block["element"], _text(block.get("label")), bool(block.get("optional"))
    accessory = block.get("accessory") or {}
    if block.get("type") == "section" and accessory.get("type", "").endswith("select"):
        return accessory, _text(block.get("text")).strip("*"), True
    return None


def _options(element: dict) -> list[dict]:
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options += group.get("options", [])
    return options


def _kind(element: dict) -> str:
    kind = element.get("type", "")
    options = [o.get("value", "") for o in _options(element)]
    initial = [o.get("value", "") for o in element.get("initial_options", [])]
    if element.get("initial_option"):
        initial = [element["initial_option"].get("value", "")]
    if kind == "external_select":
        return f"<search text>   (a search: {_text(element.get('placeholder')) or 'type to search'})"
    if kind in ("checkboxes", "multi_static_select"):
        shown = f"<{','.join(options)}>   (any of them, comma-separated)"
    elif options:
        shown = f"<{'|'.join(options)}>   (one of them)"
    else:
        shown = "<text>"
    return shown + (f"   now: {','.join(initial)}" if initial else "")


def _pick(element: dict, value: str, key: str) -> dict:
    for option in _options(element):
        if value.lower() in (str(option.get("value", "")).lower(), _text(option.get("text")).lower()):
            return option
    raise Problem(f"{key}={value}: not one of {', '.join(str(o.get('value')) for o in _options(element))}")


def _plain(exc: Exception) -> str:
    """An error as a person would want it said: the emulator's own details left out."""
    said = str(exc) or type(exc).__name__
    for internal in ("; the directory has", "; buttons present", "; options:", "; its inputs", "; channels:"):
        said = said.split(internal)[0]
    return said


async def _within(done: Any, seconds: float) -> bool:
    """Whether `done()` comes true within `seconds` (polled, as the screen is)."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _talk(prompt: Prompt, app_config: Path, port: str | None, page: str) -> None:
    demo, console = prompt.demo, prompt.console
    sandbox, spec = demo.sandbox, demo.sandbox.spec
    ecs = (f"boto3.client('ecs', endpoint_url='{sandbox.aws.url}', region_name='eu-west-1', "
           "aws_access_key_id='sandbox', aws_secret_access_key='sandbox')")
    console.print(Panel.fit(
        f"In a browser    {page}   (the emulated Slack and the outside world: click, type, watch)\n"
        f"Slack Web API   {sandbox.slack.api_url}\n"
        f"GitHub REST     {sandbox.github.url}\n"
        f"Jenkins         {sandbox.jenkins.url}\n"
        f"AWS (ECS, ECR)  {sandbox.aws.url}\n"
        f"the bot         http://127.0.0.1:{port}/healthz  http://127.0.0.1:{port}/metrics\n"
        f"app.yaml        {app_config}",
        title="the sandbox and the bot are still running", title_align="left"), markup=False)
    for command in (
        f"curl -s -H 'Authorization: token {spec.github_token}' {sandbox.github.url}/repos/{spec.repo}/pulls",
        f"curl -sg -u {spec.jenkins_user}:{spec.jenkins_token} "
        f"'{sandbox.jenkins.url}/job/app-master/api/json?tree=builds[number,result]'",
        f'.venv/bin/python -c "import boto3; print({ecs}.describe_services(cluster=\'{spec.cluster}\', '
        f'services=[\'app-web\'])[\'services\'][0][\'taskDefinition\'])"',
    ):
        console.print(command, markup=False, soft_wrap=True)
    console.print(prompt.help(prompt.open_example()), markup=False)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    stdin = asyncio.StreamReader()
    transport: asyncio.BaseTransport | None = None
    fd = -1
    # Read stdin without a thread, so a pending read never holds up the exit; through a copy of its descriptor,
    # which the transport closes at the end, leaving sys.stdin open for whoever reads it next.
    with contextlib.suppress(ValueError, OSError):  # stdin closed, or a regular file: nothing to read, keep serving
        fd = sys.stdin.fileno()
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), pipe)
        except (ValueError, OSError):
            pipe.close()
            raise

    async def act_on_lines() -> None:
        while transport is not None and (line := (await stdin.readline()).decode()):
            await prompt.act(line)

    demo.screen.live_mode = False  # a live view would fight with what is typed
    async with demo.screen.showing():
        actor = asyncio.create_task(act_on_lines())
        await stopping.wait()
        actor.cancel()
        await asyncio.gather(actor, return_exceptions=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    if transport is not None:
        transport.close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)  # the terminal is the shell's again (the copy shared its non-blocking mode)
    console.print("stopping")
