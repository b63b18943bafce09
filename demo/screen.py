"""What the people of the demo would see in Slack, on the terminal: a live view, or a plain transcript."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from rich.console import Console, Group
from rich.emoji import Emoji
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from sandbox.slack import Message, SlackEmulator

_EMOJI = {":large_green_circle:": "🟢", ":white_circle:": "⚪"}
# <url|text> or <!date^...|fallback>; <@user>, <#channel>, <!here>; *bold*; :emoji:; `code`
_MRKDWN = re.compile(r"<([^<>|]+)\|([^<>]+)>|<([@#!])?([^<>]+)>|(?<![\w*])\*([^*\n]+)\*(?![\w*])"
                     r"|(:[a-z_]+:)|`([^`\n]+)`|(?<![\w_])_([^_\n]+)_(?![\w_])")


def unescape(mrkdwn: str) -> str:
    """Slack's three escapes (`&lt;`, `&gt;`, `&amp;`), as Slack shows them."""
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def terminal_text(mrkdwn: str, users: dict[str, str], channels: dict[str, str], *, urls: bool = False) -> Text:
    """Slack mrkdwn as Slack shows it: links by their text (and their address after it with `urls`, since a
    terminal cannot click them), people and channels by name, times, emoji, bold, escapes undone."""
    text = Text()
    at = 0
    mrkdwn = mrkdwn.replace("```", "")
    for match in _MRKDWN.finditer(mrkdwn):
        text.append(unescape(mrkdwn[at:match.start()]))
        at = match.end()
        link, label, sigil, target, bold, emoji, code, italic = match.groups()
        if link is not None:
            # <!date^...|fallback> shows the fallback's time; <@U1|name> the person; <url|text> shows the text
            shown = label.split(" ")[1] if link.startswith("!date") and " " in label else unescape(label)
            if link[:1] in "@#":
                names = users if link[0] == "@" else channels
                shown = f"{link[0]}{names.get(link[1:], shown.lstrip('@#'))}"
            text.append(shown, style="underline" if not link.startswith(("!", "@", "#")) else "bold")
            if urls and not link.startswith(("!", "@", "#")) and unescape(link) != shown:
                text.append(f" ({unescape(link)})", style="dim")
        elif target is not None:
            names = {"@": users, "#": channels}.get(sigil or "", {})
            text.append(f"{sigil or ''}{names.get(target, unescape(target))}" if sigil != "!" else f"@{target}",
                        style="bold")
        elif bold is not None:
            inner = terminal_text(bold, users, channels, urls=urls)
            inner.stylize("bold")
            text.append_text(inner)
        elif emoji is not None:
            text.append(_EMOJI.get(emoji) or Emoji.replace(emoji))
        elif code is not None:
            text.append(unescape(code), style="cyan")
        else:
            text.append(unescape(italic), style="italic")
    text.append(unescape(mrkdwn[at:]))
    return text


def _first_line(message: Message) -> str:
    rendered = message.render()
    return rendered.splitlines()[0] if rendered else message.text


class Screen:
    """What the people would see in Slack, on the terminal: a live view on a terminal, a transcript otherwise."""

    def __init__(self, console: Console, slack: SlackEmulator, channel: str, steps: int) -> None:
        self.console, self.slack, self.channel = console, slack, channel
        self.live_mode = console.is_terminal
        self.started = time.monotonic()
        self.shown: dict[tuple[str, str], str] = {}  # (where, ts) -> what was last shown
        self.looks: dict[str, tuple] = {}  # card ts -> its state line, buttons and whether it has progress bars
        self.log: deque[Text] = deque(maxlen=14)
        self.cards: dict[str, str] = {}  # ts -> rendered card, the latest edited last
        self.dm_lines: deque[Text] = deque(maxlen=8)
        self.progress = Progress(TextColumn("[bold]scenario"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("starting", total=steps)
        self.live: Live | None = None
        # At `demo --keep`'s prompt a DM is shown whole under its first line, as Slack shows all of it: the person
        # at the prompt has to read it to act on it. The scripted story keeps to first lines.
        self.whole_dms = False

    def name(self, user: str) -> str:
        return self.slack.users.get(user, user)

    def fmt(self, mrkdwn: str, *, urls: bool = False) -> Text:
        return terminal_text(mrkdwn, self.slack.users, self.slack.channels, urls=urls)

    def _emit(self, line: Text, block: Text | None = None, title: str = "") -> None:
        stamp = Text(f"{time.monotonic() - self.started:5.1f}s ", style="dim")
        if self.live_mode:
            line = stamp + line
            line.no_wrap, line.overflow = True, "ellipsis"  # one line each, so the newest stay in view
            self.log.append(line)
        else:
            self.console.print(stamp + line)
            if block is not None:
                self.console.print(Panel(block, title=title, title_align="left", expand=False))

    def step(self, title: str) -> None:
        """A new step of the scenario starts."""
        self.progress.update(self.task, description=title)
        if not self.live_mode:
            self.refresh()  # what the last step did comes under its own header, not this one's
            self.console.rule(f"[bold]{title}", align="left")

    def step_done(self) -> None:
        self.progress.advance(self.task)

    def person(self, user: str, did: str) -> None:
        self._emit(Text.assemble((f"{self.name(user)} ", "bold magenta"), did))

    def refresh(self) -> None:
        """Show every card, thread reply, DM and ephemeral answer that appeared or changed since last time."""
        for message in self.slack.messages(self.channel):
            if message.thread_ts is None:
                self._card(message)
            else:
                self._changed(message, "thread", lambda m, _: Text("  ↳ ", style="dim") + self.fmt(m.text))
        for user in self.slack.users:
            for message in self.slack.dms(user):
                self._changed(message, "dm", lambda m, edited, u=user: self._dm(u, m, edited))
            for message in self.slack.ephemerals(user):
                self._ephemeral(user, message)
        if self.live is not None:
            self.live.update(self.layout())

    def _changed(self, message: Message, where: str, line: Any) -> None:
        rendered = message.render()
        key = (where, message.channel + message.ts)
        if self.shown.get(key) == rendered:
            return
        first = line(message, key in self.shown)
        self.shown[key] = rendered
        if where == "dm" and self.whole_dms and "\n" in rendered.strip():
            to = next((u for u in self.slack.users if self.slack.dm_channel(u) == message.channel), "")
            self._emit(first, self.fmt(rendered, urls=True), f"DM to {self.name(to)}")
        else:
            self._emit(first)

    def _ephemeral(self, user: str, message: Message) -> None:
        """An answer only `user` sees: its first line, and the whole of it (links with their addresses) when it has
        more, as Slack shows all of it."""
        rendered = message.render()
        key = ("ephemeral", message.channel + message.ts)
        if self.shown.get(key) == rendered:
            return
        self.shown[key] = rendered
        line = Text(f"only {self.name(user)} sees: ", style="yellow") + self.fmt(_first_line(message))
        whole = self.fmt(rendered, urls=True) if "\n" in rendered.strip() else None
        self._emit(line, whole, f"only {self.name(user)} sees")

    def _dm(self, user: str, message: Message, edited: bool) -> Text:
        text = Text(f"DM to {self.name(user)}{' (edited)' if edited else ''}: ", style="cyan")
        text += self.fmt(_first_line(message))
        if message.buttons:
            text.append("  " + " ".join(f"[{b}]" for b in message.buttons), style="bold")
        shown = text.copy()
        shown.no_wrap, shown.overflow = True, "ellipsis"
        self.dm_lines.append(shown)
        return text

    def _card(self, message: Message) -> None:
        rendered = message.render()
        key = ("card", message.ts)
        if self.shown.get(key) == rendered:
            return
        lines = rendered.splitlines()
        # The whole card when its state, buttons or progress change; one line when only the wording does
        status = lines[1] if len(lines) > 1 else ""
        look = (status.split(" · ")[0], tuple(message.buttons), "▓" in rendered)
        whole = self.looks.get(message.ts) != look or look[2]
        line = Text(f"#deploys {'card edited' if message.ts in self.looks else 'new card'}: ", style="green")
        line += self.fmt(_first_line(message))
        if not whole or self.live_mode:
            line += Text(" — ") + self.fmt(status)
        self.shown[key], self.looks[message.ts] = rendered, look
        self.cards.pop(message.ts, None)
        self.cards[message.ts] = rendered
        self._emit(line, self.fmt(rendered) if whole else None, "#deploys")

    def layout(self) -> Layout:
        cards = [Panel(self.fmt(card), title="#deploys", title_align="left") for card in list(self.cards.values())[-2:]]
        top = Layout()
        top.split_row(Layout(Group(*reversed(cards)), name="channel", ratio=3),
                      Layout(Panel(Group(*self.dm_lines), title="direct messages", title_align="left"), ratio=2))
        root = Layout()
        root.split_column(top, Layout(Panel(Group(*self.log), title="what happens", title_align="left"), size=16),
                          Layout(self.progress, size=1))
        return root

    async def watch(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        """Keep the screen up to date while the block runs."""
        if self.live_mode:
            self.live = Live(self.layout(), console=self.console, refresh_per_second=8, screen=False)
            self.live.start()
        watcher = asyncio.create_task(self.watch())
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self.refresh()
            if self.live is not None:
                self.live.stop()
                self.live = None


