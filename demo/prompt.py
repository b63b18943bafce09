"""`fatcontroller demo --keep`: the sandbox and the bot stay up, and people's actions are typed at a prompt."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from demo.scenario import ALICE, Demo
from sandbox.browser import serve_browser


async def talk(demo: Demo, console: Console, app_config: Path) -> None:
    """`--keep`: serve the browser view, say how to reach everything, then take people's actions from stdin
    until Ctrl-C."""
    sandbox, spec, port = demo.sandbox, demo.sandbox.spec, os.environ.get("FATCONTROLLER_HTTP_PORT")
    commands = demo.bot.config.slack.commands
    sandbox.slack.commands = {commands.deploy, commands.pea}  # so that Slack answers a mistyped one, as it does
    view = serve_browser(sandbox)
    try:
        await _talk(demo, console, app_config, port, f"{view.url}/?user=alice#channel/{spec.channel}")
    finally:
        view.stop()


async def _talk(demo: Demo, console: Console, app_config: Path, port: str | None, page: str) -> None:
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
    console.print(
        "Act as someone in Slack by typing a line here (people: alice, bob, carol, admin, emergency):\n"
        "  pr Purple hats           opens a pull request (as alice) and says its number\n"
        "  alice /deploy 6          bob /deploy queue          carol /pea deploy chick-pea 6\n"
        "  alice click Proceed      presses the newest [Proceed] alice can see\n"
        "Press Ctrl-C to stop.", markup=False)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    stdin = asyncio.StreamReader()
    try:  # read stdin without a thread, so a pending read never holds up the exit
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    except (ValueError, OSError):  # stdin is a regular file or closed: nothing to read, keep serving
        transport = None

    async def act_on_lines() -> None:
        while transport is not None and (line := (await stdin.readline()).decode()):
            try:
                await _act(demo, line)
            except (AssertionError, ValueError) as exc:
                console.print(f"[red]{exc}[/red]")

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
        os.set_blocking(sys.stdin.fileno(), True)  # the terminal is the shell's again
    console.print("stopping")


async def _act(demo: Demo, line: str) -> None:
    """One typed line: `pr <title>`, `<person> /command text` or `<person> click <label>`."""
    line = line.strip()
    words = line.split(maxsplit=2)  # the rest stays as typed: quotes matter to /deploy's options
    if not words:
        return
    if words[0] == "pr":
        title = line.split(maxsplit=1)[1] if len(words) > 1 else "A change"
        number = demo.sandbox.github.create_pr(title, {f"app/{title.replace(' ', '_').lower()}.py": "x = 1\n"})
        demo.screen.person(ALICE, f"opens pull request #{number} {title!r}")
        return
    user = demo.slack.user_id(words[0])
    if len(words) == 3 and words[1] == "click":
        demo.screen.person(user, f"clicks [{words[2]}]")
        await demo.slack.click(user, words[2])
    elif len(words) >= 2 and words[1].startswith("/"):
        demo.screen.person(user, "types " + " ".join(words[1:]))
        await demo.slack.command(user, words[1], words[2] if len(words) == 3 else "")
    else:
        raise ValueError("type `pr <title>`, `<person> /command text` or `<person> click <label>`")


