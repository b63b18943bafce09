"""`fatcontroller demo --keep`'s prompt, typed at as a newcomer would (issue 18, point 5): whole ephemeral answers,
the deploy form shown, filled and submitted, an App Home, the printed examples working as typed, a mistyped
command answered at once, and errors said plainly. The prompt's line handler runs against the demo's own sandbox
and the real bot (the scripted story is not played: the prompt needs none of it)."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from bot.app import start_bot
from demo.prompt import Prompt
from demo.scenario import STEPS, Demo, app_yaml, demo_sandbox
from demo.screen import Screen
from flows.config import Settings, load_config


class Typed:
    """The prompt, and what it printed."""

    def __init__(self, prompt: Prompt, out: io.StringIO) -> None:
        self.prompt, self.out = prompt, out

    async def line(self, line: str) -> str:
        """Type one line; what the prompt printed for it."""
        start = len(self.out.getvalue())
        await self.prompt.act(line)
        return self.out.getvalue()[start:]


@pytest.fixture
async def typed(aws_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Typed]:
    sandbox = demo_sandbox()
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(app_yaml(sandbox), sort_keys=False))
    for name, value in {**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                        "FATCONTROLLER_HTTP_PORT": "0", "FATCONTROLLER_INSTANCE": "prompt"}.items():
        monkeypatch.setenv(name, str(value))
    bot = await start_bot(load_config(config), Settings())
    out = io.StringIO()
    console = Console(file=out, width=120, highlight=False, force_terminal=False)
    screen = Screen(console, sandbox.slack, bot.train("app").config.slack.channel, STEPS)
    screen.live_mode = False
    try:
        await sandbox.slack.wait_connected()
        yield Typed(Prompt(Demo(sandbox, bot, screen), console), out)
    finally:
        await bot.stop()
        sandbox.stop()


async def test_ephemeral_answers_are_shown_whole_and_rendered(typed: Typed) -> None:
    said = await typed.line("alice /deploy help")
    assert "only alice sees: Deploy a pull request" in said
    for line in ("/deploy app 123 --notes \"what to watch\"", "/deploy queue app", "billing (#billing)"):
        assert line in said, said
    said = await typed.line("bob /pea")
    assert "sweet-pea · free" in said and "snow-pea · free" in said, said
    assert "&lt;" not in said and "<#C0" not in said and "*" not in said


async def test_the_printed_examples_work_as_typed_and_the_form_can_be_filled(typed: Typed) -> None:
    typed.out.truncate(0)
    number = typed.prompt.open_example()
    help_text = typed.prompt.help(number)
    assert f"alice /deploy {number} " in help_text and f"alice submit pr={number}" in help_text
    said = await typed.line(f"carol /pea deploy chick-pea {number}")
    assert f"#{number}" in said and "There is no pull request" not in said, said

    other = typed.prompt.demo.sandbox.github.create_pr("Green socks", {"app/socks.py": "GREEN = 1\n"})
    said = await typed.line("alice /deploy")
    assert "alice's screen: Deploy" in said and "Pull request (required)" in said, said
    assert "processes=<web,worker>" in said and "alice submit field=value" in said, said
    said = await typed.line(f"alice submit pr={other} processes=web")
    assert "Queued" in said, said
    deploy = await typed.prompt.demo.deploy_of(other)
    assert deploy is not None and deploy.processes == ("web",)
    said = await typed.line("alice submit pr=1")
    assert "alice has no form open" in said, said


async def test_an_app_home_is_opened_and_shown(typed: Typed) -> None:
    said = await typed.line("alice home")
    assert "alice's App Home" in said and "Deploy trains" in said and "Your peas" in said, said
    assert "#deploys" in said, said


async def test_a_mistyped_command_is_answered_at_once(typed: Typed) -> None:
    started = time.monotonic()
    said = await typed.line("alice /deply 6")
    assert time.monotonic() - started < 2, "the prompt waited on a command the app does not have"
    assert "only alice sees: /deply is not a valid command" in said, said


async def test_errors_say_plainly_who_can_be_typed_and_what_went_wrong(typed: Typed) -> None:
    said = await typed.line("dave /deploy queue")
    assert "'dave' is nobody here" in said and "alice, bob, carol" in said, said
    assert "{" not in said and "U0ALICE" not in said
    said = await typed.line("alice click Proceed")
    assert "alice sees no [Proceed] button" in said and "first line" not in said, said
    said = await typed.line("alice dances")
    assert "not something the prompt knows" in said and "alice home" in said, said
    said = await typed.line("alice /deploy")
    said = await typed.line("alice submit colour=red")
    assert "'colour=red' is not a field of the form" in said and "pr, processes" in said, said
