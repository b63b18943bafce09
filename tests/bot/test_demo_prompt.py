"""`fatcontroller demo --keep`'s prompt, typed at as a newcomer would (issue 18, point 5): whole ephemeral answers
and DMs, the deploy form shown, filled and submitted, an App Home, the README's examples working as typed, a mistyped
command answered at once, errors said plainly, and a transcript that reads as Slack shows it.

Most tests run the prompt's line handler against the demo's own sandbox and the real bot without the scripted story
(the prompt needs none of it). The last ones share one run of the story itself (`played`, about 30 s), as
`demo --keep` plays it before the prompt: the README's examples are typed after it, as written there; its transcript
is read; and every Block Kit payload the bot sent meanwhile is rendered by the browser sandbox's renderer in headless
Chromium, none with an "unsupported" marker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from bot.app import Bot, start_bot
from demo.prompt import Prompt
from demo.scenario import ALICE, STEPS, Demo, app_yaml, demo_sandbox
from demo.screen import Screen
from flows.config import Settings, load_config
from sandbox.slack import ApiCall
from sandbox.world import Sandbox
from tests.fixtures.browser import assert_renders_everything

README = Path(__file__).resolve().parents[2] / "README.md"


class Typed:
    """The prompt, and what it printed."""

    def __init__(self, prompt: Prompt, out: io.StringIO) -> None:
        self.prompt, self.out = prompt, out

    async def line(self, line: str) -> str:
        """Type one line; what the prompt printed for it."""
        start = len(self.out.getvalue())
        await self.prompt.act(line)
        return self.out.getvalue()[start:]


async def demo_bot(sandbox: Sandbox, folder: Path, env: pytest.MonkeyPatch, instance: str) -> Bot:
    """The real bot on the demo's app.yaml and the sandbox's environment, as `fatcontroller demo` starts it."""
    config = folder / "app.yaml"
    config.write_text(yaml.safe_dump(app_yaml(sandbox), sort_keys=False))
    for name, value in {**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bot.db'}",
                        "FATCONTROLLER_HTTP_PORT": "0", "FATCONTROLLER_INSTANCE": instance}.items():
        env.setenv(name, str(value))
    return await start_bot(load_config(config), Settings())


@pytest.fixture
async def typed(aws_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Typed]:
    sandbox = demo_sandbox()
    bot = await demo_bot(sandbox, tmp_path, monkeypatch, "prompt")
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


async def test_a_click_presses_the_newest_button_and_shows_the_app_home_only_when_pressed_there(typed: Typed) -> None:
    github = typed.prompt.demo.sandbox.github
    first = github.create_pr("Red socks", {"app/red.py": "RED = 1\n"}, author="bob")
    number = github.create_pr("Green socks", {"app/socks.py": "GREEN = 1\n"})
    await typed.line("alice home")  # her Home is published again whenever her deploys change
    assert "Queued" in await typed.line(f"bob /deploy {first}")
    assert "Queued" in await typed.line(f"alice /deploy {number}")  # behind bob's: it can be cancelled
    await typed.prompt.demo.card_with(number, "Cancel")
    assert typed.prompt.buttons_seen(ALICE)[0] == "Cancel"
    said = await typed.line("alice click Cancel")
    assert "alice clicks [Cancel]" in said and "in the App Home" not in said, said
    await typed.prompt.demo.card_saying(number, "cancelled")  # alice's card, the newest [Cancel], not bob's
    later = await typed.line("bob /deploy queue")  # the screen is shown again: her Home is not in it
    assert "─ alice's App Home" not in said + later, "a click on the card showed the App Home"


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


# -- after the scripted story, as `demo --keep` runs it ----------------------------------------------------------------

# The story and the lines below share one worker with the browser modules: the payload walk needs Chromium, and one
# run of the story serves every test here.
after_the_story = pytest.mark.xdist_group("browser")
NOTES = "<!channel> watch the purple"  # typed by a person: shown as typed, never a mention


def readme_examples() -> list[str]:
    """The lines the README says `demo --keep` reads, in its order and as written there."""
    paragraph = next(p for p in README.read_text().split("\n\n") if "demo --keep" in p and "`alice " in p)
    return [line for line in re.findall(r"`([^`]+)`", paragraph) if "demo --keep" not in line]


@dataclass
class Played:
    """One run of the scripted story, then lines typed at the prompt."""

    story: str = ""  # the transcript of the story, as a terminal that is not one shows it
    titles: list[str] = field(default_factory=list)  # its steps, in order
    example: int = 0  # the pull request the prompt opened for the examples
    prompt: str = ""  # what the prompt printed, from the examples on
    typed: list[tuple[str, int, int]] = field(default_factory=list)  # (line, where in `prompt` its answer starts, ends)
    calls: list[ApiCall] = field(default_factory=list)  # every Web API call the bot made, story and prompt

    def said(self, line: str) -> str:
        """What the prompt printed while acting on `line` (its answer: the prompt waits for it)."""
        return next(self.prompt[start:end] for typed, start, end in self.typed if typed == line)

    def after(self, line: str) -> str:
        """Everything printed from `line` on (what the bot does after its answer shows as it comes)."""
        return next(self.prompt[start:] for typed, start, _ in self.typed if typed == line)


async def _play_then_type(folder: Path, played: Played) -> None:
    sandbox = demo_sandbox()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                env.delenv(name, raising=False)
            bot = await demo_bot(sandbox, folder, env, "played")
        out = io.StringIO()
        console = Console(file=out, width=120, highlight=False, force_terminal=False)
        screen = Screen(console, sandbox.slack, bot.train("app").config.slack.channel, STEPS)
        screen.live_mode = False
        step = screen.step

        def titled(title: str) -> None:
            played.titles.append(title)
            step(title)

        screen.step = titled  # type: ignore[method-assign]
        demo = Demo(sandbox, bot, screen)
        try:
            await sandbox.slack.wait_connected()
            async with screen.showing():
                await demo.play()
            played.story = out.getvalue()
            prompt = Prompt(demo, console)
            started = len(out.getvalue())
            played.example = prompt.open_example()

            async def type_line(line: str) -> None:
                start = len(out.getvalue())
                await prompt.act(line)
                played.typed.append((line, start - started, len(out.getvalue()) - started))

            async def sees(user: str, label: str) -> None:  # a person waits to see the button before clicking it
                await sandbox.slack.wait_for(lambda: label in prompt.buttons_seen(user), 30, what=f"[{label}]")

            async with screen.showing():  # as `demo --keep` shows what happens while it reads lines
                for line in readme_examples():
                    if line.endswith(" click Proceed"):
                        await sees(ALICE, "Proceed")
                    await type_line(line)
                await type_line(f'alice /deploy 7 --notes "{NOTES}"')
                for line in ("bob /deploy queue", "admin /deploy history", "admin /deploy stats"):
                    await type_line(line)
                await sees(ALICE, "Done")
                await type_line("alice click Done")
                await demo.reaches(played.example, "completed")
                await demo.card_saying(played.example, "completed")
            played.prompt = out.getvalue()[started:]
        finally:
            await bot.stop()
    finally:
        sandbox.stop()
        played.calls = sandbox.slack.api_calls()


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Played:
    """The story played once, on a loop of its own in a thread (beside Playwright's, which is not asyncio's)."""
    result = Played()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _play_then_type(tmp_path_factory.mktemp("played"), result)).result(timeout=240)
    return result


@after_the_story
def test_the_readme_examples_work_as_typed_after_the_story(played: Played) -> None:
    examples = readme_examples()
    assert examples[0] == f"alice /deploy {played.example}", f"the README's example is not the PR opened: {examples}"
    assert [line for line, _, _ in played.typed[:len(examples)]] == examples
    for line, start, end in played.typed:
        said = played.prompt[start:end]
        for wrong in ("There is no pull request", "not something the prompt knows", "that did not work", "{'",
                      "no answer from the bot", "first line"):
            assert wrong not in said, f"{line!r} printed {said!r}"
    number = played.example
    assert f"only alice sees: ✅ Queued deploy 6 of #{number} Purple hats" in played.said(f"alice /deploy {number}")
    proceeded = played.said("alice click Proceed")
    assert "alice clicks [Proceed]" in proceeded and "alice's App Home" not in proceeded, proceeded
    assert "@alice pressed Proceed" in played.after("alice click Proceed")
    assert "alice opens pull request #7 'Purple buttons'" in played.said("pr Purple buttons")
    form = played.said("alice /deploy")
    assert "alice's screen: Deploy" in form and "Pull request (required)" in form, form
    # #6 is being deployed by now: the form says so, in the bot's words
    refused = played.said(f"alice submit pr={number} processes=web")
    assert f"the form was not sent, it says: pr: #{number} is already merged" in refused, refused
    home = played.said("alice home")
    assert "alice's App Home" in home and "Deploy trains" in home and f"#{number}" in home, home


@after_the_story
def test_answers_and_dms_are_shown_whole_after_the_story(played: Played) -> None:
    queue = played.said("bob /deploy queue")
    assert "only bob sees: in flight, rolling out · deploy 6 of #6 Purple hats" in queue, queue
    assert "1. starts any moment now, done any moment now · deploy 7 of #7" in queue, queue  # its second line
    history = played.said("admin /deploy history")
    for pr in (1, 2, 3, 4):
        assert f"#{pr} (http://" in history, f"#{pr} is missing from the history: {history}"
    assert "rolled back" in history and "alarm app-5xx-rate is in ALARM" in history, history
    stats = played.said("admin /deploy stats")
    assert "Deploys: 3 completed, 1 rolled back" in stats and "Change failure rate" in stats, stats
    proceeded = played.after(f"alice /deploy {played.example}")
    # the canary DM whole: its first line, and the whole of it with its health and alarms under it
    assert "DM to alice: 🐣 Canaries are up for #6" in proceeded, proceeded
    whole = proceeded[proceeded.index("─ DM to alice"):]
    assert "Canaries are up for #6" in whole and "app-5xx-rate" in whole and "[Proceed] [Roll back]" in whole, whole
    done = played.after("alice click Done")
    assert "alice clicks [Done]" in done and "✅ completed" in done, done


@after_the_story
def test_the_transcript_reads_as_slack_shows_it_its_steps_in_order(played: Played) -> None:
    story = "\n" + played.story
    assert len(played.titles) == STEPS
    at = [story.find(f"\n{title} ─") for title in played.titles]  # each a rule of its own, in the story's order
    assert -1 not in at and at == sorted(at), f"the step headers are missing or out of order: {played.titles}"

    def under(title: str) -> str:
        index = played.titles.index(title)
        return story[at[index]:at[index + 1] if index + 1 < len(at) else len(story)]

    # what a step waited for is shown under its own header, not the next one's
    assert "only alice sees: ✅ Queued deploy 1 of #1" in under(played.titles[0])
    assert "only alice sees: Only people on the emergency list" in under(played.titles[2])
    assert "only bob sees: Peas (3 of 3 free)" not in story  # sweet-pea is alice's then
    assert "only bob sees: Peas (" in under("bob lists the peas")
    assert "only admin sees: The last" in under("the history and the stats")
    # Slack's escapes undone, as Slack shows them: the bot escaped the `<!channel>` a person typed in notes
    noted = played.after(f'alice /deploy 7 --notes "{NOTES}"')
    assert any("&lt;!channel&gt; watch the purple" in str(c.args) for c in played.calls)
    assert f"Notes: {NOTES}" in noted and "@channel" not in noted, noted
    for transcript in (story, played.prompt):
        assert "&lt;" not in transcript and "&gt;" not in transcript and "&amp;" not in transcript


@after_the_story
def test_every_block_kit_payload_the_bot_sent_in_the_demo_renders(played: Played, block_kit: Any) -> None:
    started = time.monotonic()
    payloads = assert_renders_everything(block_kit, played.calls)
    methods = {method for method, _ in payloads}
    # cards and their edits, DMs, the form, App Homes (ephemeral answers are mrkdwn text, without blocks)
    for method in ("chat.postMessage", "chat.update", "views.open", "views.publish"):
        assert method in methods, f"the story sent no blocks by {method}: {sorted(methods)}"
    assert len(payloads) > 100, len(payloads)
    assert time.monotonic() - started < 10
