"""The scripted story of `fatcontroller demo`: the whole product on its embedded sandbox, no accounts needed.

It starts the emulators of `sandbox/` (Slack, GitHub over a real git repository, Jenkins, ECS/ECR), a
SQLite database in a temporary folder and the real bot exactly as `fatcontroller run` starts it
(`start_bot` with an `app.yaml` and the environment). Then several people type commands and click
buttons in the Slack emulator while the terminal shows what they would see in Slack. Every step checks
that things ended as expected, so the demo is also a test: it exits 1 naming the step that did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from bot.app import Bot, StartupError, start_bot
from demo.screen import Screen
from flows.config import Settings, load_config
from flows.views import DeployView, PeaView
from sandbox.slack import Message
from sandbox.world import RepoSpec, Sandbox, SandboxSpec

ALICE, BOB, CAROL, ADMIN, EMERGENCY = "U0ALICE", "U0BOB", "U0CAROL", "U0ADMIN", "U0EMERGENCY"
PROCESSES = {"web": "app-web", "worker": "app-worker"}
PEAS = ("sweet-pea", "chick-pea", "snow-pea")
ALARM = "app-5xx-rate"  # the CloudWatch alarm app's deploys are watched by (DESIGN §9)
WAIT = 30.0  # the longest any one thing in the scenario may take
STEPS = 13  # the scenario's steps (`Demo.step` blocks in `Demo.play`), for the progress line
# The second train's repository: its own Jenkins jobs, image, service and channel, in the same sandbox.
BILLING = RepoSpec(repo="acme/billing", jobs={"billing-master": "master", "billing-pr": "pr"},
                   image_repository="billing", container="billing", services={"billing-api": 2},
                   channel="C0BILLING", channel_name="billing")


class DemoFailed(Exception):
    """A step of the scenario did not end as expected."""


def check(holds: object, why: object = "a check failed") -> None:
    """A step's check (not an `assert`, which `python -O` would drop)."""
    if not holds:
        raise DemoFailed(str(why))


def app_yaml(sandbox: Sandbox) -> dict[str, Any]:
    """The `app.yaml` of two trains, app (the example's train) and billing, pointed at the sandbox, with quick
    timings."""
    app = _app_train(sandbox)
    billing = sandbox.repos[BILLING.repo]
    return {
        "permissions": app.pop("permissions"),
        "trains": {"app": app, "billing": {
            "slack": {"channel": BILLING.channel}, "github": {"repo": BILLING.repo},
            "jenkins": {"job": "billing-master", "pr_job": "billing-pr", "build_timeout": "60s"},
            "image": billing.image_template, "ecs": {"cluster": sandbox.spec.cluster, "region": "eu-west-1"},
            "processes": {"api": {"service": "billing-api", "container": "billing"}},
            "deploy": {k: v for k, v in app["deploy"].items() if k != "alarms"}}},
    }


def _app_train(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "slack": {"channel": sandbox.spec.channel},
        "github": {"repo": sandbox.spec.repo, "base_branch": sandbox.spec.base_branch},
        "jenkins": {"job": "app-master", "pr_job": "app-pr", "trigger": "webhook", "sha_parameter": "GIT_COMMIT",
                    "build_timeout": "60s"},
        "image": sandbox.image_template,
        "ecs": {"cluster": sandbox.spec.cluster, "region": "eu-west-1"},
        "processes": {name: {"service": service, "container": "app"} for name, service in PROCESSES.items()},
        "deploy": {"canary_tasks": 1, "batch_percent": 25, "canary_reminder": "10m", "confirm_timeout": "15m",
                   "rollout_timeout": "60s", "tick": "200ms", "poll": "200ms", "alarms": [ALARM]},
        "peas": {"cluster": sandbox.spec.pea_cluster, "names": list(PEAS), "service": "pea-{pea}-{process}",
                 "url": "https://{pea}.dev.acme.com", "lease": "1h"},
        "permissions": {"deployers": [], "emergency": [EMERGENCY], "admins": [ADMIN]},
    }


class Demo:
    """The scenario, played by people in the Slack emulator against the running bot."""

    def __init__(self, sandbox: Sandbox, bot: Bot, screen: Screen) -> None:
        self.sandbox, self.bot, self.screen = sandbox, bot, screen
        self.slack = sandbox.slack
        self.channel = bot.train("app").config.slack.channel
        self.clicked: set[str] = set()
        self.steps = 0

    @contextlib.asynccontextmanager
    async def step(self, title: str) -> AsyncIterator[None]:
        self.steps += 1
        self.screen.step(title)
        try:
            yield
        except (AssertionError, DemoFailed, TimeoutError) as exc:
            raise DemoFailed(f"step {self.steps} ({title}): {exc}") from None
        self.screen.step_done()

    # -- people ----------------------------------------------------------------------------------
    async def types(self, user: str, command: str, text: str = "", *, channel: str | None = None,
                    where: str = "") -> Message:
        """`user` types a command (in #deploys unless `channel` says); the ephemeral answer they get."""
        self.screen.refresh()
        self.screen.person(user, f"types {command} {text}".rstrip() + where)
        interaction = await self.slack.command(user, command, text, channel=channel)
        return await interaction.ephemeral(timeout=WAIT)

    async def clicks(self, user: str, label: str, message: Message, where: str) -> None:
        self.screen.refresh()
        self.screen.person(user, f"clicks [{label}] {where}")
        self.clicked.add(message.ts + label)
        await self.slack.click(user, label, message=message)

    async def dm(self, user: str, label: str, pr: int) -> Message:
        """The newest DM to `user` about #pr with a button `label` not clicked yet."""
        def probe() -> Message | None:
            return next((m for m in reversed(self.slack.dms(user)) if label in m.buttons
                         and f"#{pr}" in m.render() and m.ts + label not in self.clicked), None)
        return await self.slack.wait_for(probe, WAIT, what=f"a DM to {self.screen.name(user)} about #{pr} "
                                                           f"with [{label}]")

    async def dm_saying(self, user: str, text: str) -> Message:
        return await self.slack.wait_for(
            lambda: next((m for m in reversed(self.slack.dms(user)) if text in m.render()), None), WAIT,
            what=f"a DM to {self.screen.name(user)} saying {text!r}")

    def card(self, pr: int, channel: str | None = None) -> Message | None:
        return next((m for m in self.slack.messages(channel or self.channel)
                     if m.thread_ts is None and m.text.startswith(f"#{pr} ")), None)

    async def card_with(self, pr: int, label: str, channel: str | None = None) -> Message:
        return await self.slack.wait_for(
            lambda: (c := self.card(pr, channel)) is not None and label in c.buttons and c, WAIT,
            what=f"the card of #{pr} with [{label}]")

    # -- the bot's records -----------------------------------------------------------------------
    async def deploy_of(self, pr: int, train: str = "app") -> DeployView | None:
        return await self.bot.train(train).deploys.latest_of(pr)

    async def pea(self, name: str) -> PeaView | None:
        return await self.bot.train("app").peas.get(name)

    async def reaches(self, pr: int, state: str, train: str = "app") -> DeployView:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            deploy = await self.deploy_of(pr, train)
            if deploy is not None and deploy.state.value == state:
                return deploy
            if deploy is not None and deploy.finished_at is not None:
                raise DemoFailed(f"the deploy of #{pr} ended {deploy.state.value}, not {state} "
                                 f"({deploy.outcome_reason})")
            await asyncio.sleep(0.05)
        deploy = await self.deploy_of(pr, train)
        raise DemoFailed(f"the deploy of {train}'s #{pr} is {deploy.state.value if deploy else 'missing'}, not "
                         f"{state}, after {WAIT:g}s")

    async def built_ahead(self, pr: int, on: int, *, passed: bool = False) -> DeployView:
        """The queued deploy of #pr once it is built ahead on top of #on (its build started, or passed)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            deploy = await self.deploy_of(pr)
            candidate = deploy.candidate if deploy is not None else None
            if deploy is not None and deploy.state.value != "queued":
                raise DemoFailed(f"the deploy of #{pr} is {deploy.state.value}, no longer queued to be built ahead")
            if candidate is not None and candidate.green is False:
                raise DemoFailed(f"#{pr}'s build ahead, #{candidate.build_number}, ended {candidate.result}")
            if (deploy is not None and candidate is not None and candidate.sha and candidate.on == on
                    and candidate.build_number and (candidate.green or not passed)):
                return deploy
            await asyncio.sleep(0.05)
        raise DemoFailed(f"#{pr} was not built ahead on top of #{on}{' (its build passed)' if passed else ''} "
                         f"after {WAIT:g}s")

    async def no_candidate(self, pr: int) -> None:
        deadline = time.monotonic() + WAIT
        while (deploy := await self.deploy_of(pr)) is None or deploy.candidate is not None:
            if time.monotonic() > deadline:
                raise DemoFailed(f"#{pr} kept its build ahead after {WAIT:g}s")
            await asyncio.sleep(0.05)

    async def thread_saying(self, pr: int, text: str) -> Message:
        """A reply in the thread of #pr's card that says `text`."""
        def probe() -> Message | None:
            card = self.card(pr)
            return next((m for m in self.slack.thread(self.channel, card.ts) if text in m.render()), None) \
                if card is not None else None
        return await self.slack.wait_for(probe, WAIT, what=f"a reply under the card of #{pr} saying {text!r}")

    async def card_saying(self, pr: int, text: str) -> Message:
        try:
            return await self.slack.wait_for(
                lambda: (c := self.card(pr)) is not None and text in self.shown(c.render()) and c, WAIT,
                what=f"the card of #{pr} saying {text!r}")
        except AssertionError as exc:
            card = self.card(pr)
            raise DemoFailed(f"{exc}; it says {self.shown(card.render()) if card else None!r}") from None

    async def merged(self, pr: int) -> DeployView:
        """The deploy of #pr once its merge commit is known."""
        deadline = time.monotonic() + WAIT
        while (deploy := await self.deploy_of(pr)) is None or deploy.merge_sha is None:
            if deploy is not None and deploy.finished_at is not None:
                raise DemoFailed(f"the deploy of #{pr} ended {deploy.state.value} ({deploy.outcome_reason})")
            if time.monotonic() > deadline:
                raise DemoFailed(f"#{pr} was not merged after {WAIT:g}s")
            await asyncio.sleep(0.05)
        return deploy

    def shown(self, mrkdwn: str) -> str:
        """Text as Slack shows it (links by their text)."""
        return self.screen.fmt(mrkdwn).plain

    # -- the scenario ----------------------------------------------------------------------------
    async def play(self) -> None:
        github = self.sandbox.github
        banner = github.create_pr("Add a welcome banner", {"app/banner.py": "BANNER = 'Welcome aboard'\n"})
        checkout = github.create_pr("Speed up checkout", {"app/checkout.py": "FAST = True\n"}, author="bob")
        greeting = github.create_pr("Rewrite the greeting", {"app/main.py": "print('howdy')\n"}, author="carol")
        hotfix = github.create_pr("Fix the crash on empty carts", {"app/cart.py": "EMPTY_OK = True\n"},
                                  author="emergency")
        buttons = github.create_pr("Purple buttons", {"app/style.css": "button { color: purple; }\n"})
        original_main = github.files_at(self.sandbox.spec.base_branch)["app/main.py"]

        async with self.step(f"alice deploys #{banner} with the /deploy form"):
            self.screen.person(ALICE, "types /deploy")
            await self.slack.command(ALICE, "/deploy")
            await self.slack.wait_for(lambda: self.slack.current_view(ALICE), WAIT, what="the deploy form")
            self.screen.person(ALICE, "searches the pull requests for 'banner'")
            [picked] = await self.slack.suggest(ALICE, "pr_pick", "pr", "banner")
            self.screen.person(ALICE, f"picks {picked['text']['text']!r}, keeps web and worker ticked, submits")
            submitted = await self.slack.submit_view(ALICE, {"pr": {"pr_pick": picked}})
            if submitted.errors:
                raise DemoFailed(f"the form was refused: {submitted.errors}")
            check("Queued" in (await submitted.ephemeral(timeout=WAIT)).text)
            deploy = await self.deploy_of(banner)
            check(deploy is not None and deploy.processes == tuple(PROCESSES), "not both processes")

        async with self.step(f"carol and bob queue #{greeting} and #{checkout}; #{greeting} is built ahead"):
            check("Queued" in (await self.types(CAROL, "/deploy", str(greeting))).text)
            check("Queued" in (await self.types(BOB, "/deploy", f"{checkout} web worker")).text)
            # Next in line: once alice's PR is merged, carol's is merged on top of it on a branch of its own and
            # built there while #banner is deployed (`deploy.speculate: 1`: only the next one).
            await self.built_ahead(greeting, banner)
            await self.thread_saying(greeting, f"Built ahead on top of #{banner}")
            later = await self.deploy_of(checkout)
            check(later is not None and later.candidate is None, "more than the next deploy is built ahead")

        async with self.step("only the emergency list may jump the queue; the jump takes the build ahead"):
            refused = await self.types(ALICE, "/deploy", f'{buttons} --front --reason "I am in a hurry"')
            check("emergency list" in refused.text, refused.text)
            check(await self.deploy_of(buttons) is None, "a refused request was queued")
            reason = '--reason "checkout crashes on empty carts"'
            jumped = await self.types(EMERGENCY, "/deploy", f"{hotfix} --front {reason}")
            check("Queued" in jumped.text, jumped.text)
            # #hotfix lands on alice's commit now, not carol's: her build ahead goes, the jumper is built ahead
            await self.built_ahead(hotfix, banner)
            await self.no_candidate(greeting)
            await self.thread_saying(greeting, "Its build ahead was dropped")
            queue = self.shown((await self.types(BOB, "/deploy", "queue")).text).splitlines()
            order = [next((i for i, line in enumerate(queue) if f" of #{pr} " in line), -1)
                     for pr in (banner, hotfix, greeting, checkout)]
            check(order == sorted(order) and -1 not in order, f"the train is not in order: {queue}")
            check(f"built ahead on #{banner}" in queue[order[1]], f"#{hotfix} is not shown built ahead: {queue}")

        async with self.step(f"#{banner}: canaries up, alice proceeds from the card, rollout in batches, done"):
            await self.reaches(banner, "canary_check")
            await self.clicks(ALICE, "Proceed", await self.card_with(banner, "Proceed"), "on the card")
            await self.clicks(ALICE, "Done", await self.dm(ALICE, "Done", banner), "in her DM")
            deploy = await self.reaches(banner, "completed")
            self._runs(deploy.merge_sha)

        ledger = self.sandbox.repos[BILLING.repo].github.create_pr("Round invoices to the cent",
                                                                   {"billing/round.py": "CENTS = 2\n"})
        async with self.step(f"a second train: billing's #{ledger} deploys beside app's #{hotfix}"):
            asked = await self.types(ALICE, "/deploy", str(ledger), channel=self.slack.dm_channel(ALICE),
                                     where=" in her DM")
            check("which train?" in asked.text and "Nothing was changed" in asked.text, asked.text)
            queued = await self.types(ALICE, "/deploy", str(ledger), channel=BILLING.channel, where=" in #billing")
            check("Queued" in queued.text, queued.text)
            await self.reaches(ledger, "canary_check", "billing")
            app_now = await self.deploy_of(hotfix)
            check(app_now is not None and app_now.state.value != "queued", "app's train waited for billing's")
            await self.clicks(ALICE, "Proceed", await self.card_with(ledger, "Proceed", BILLING.channel),
                              "on the card in #billing")
            await self.clicks(ALICE, "Done", await self.dm(ALICE, "Done", ledger), "in her DM")
            shipped = await self.reaches(ledger, "completed", "billing")
            image = self.sandbox.repos[BILLING.repo].image(shipped.merge_sha or "")
            running = set(self.sandbox.aws.running_images(self.sandbox.spec.cluster, "billing-api"))
            check(running == {image}, f"billing-api runs {sorted(running)}, not {image}")

        async with self.step(f"#{hotfix} (emergency) lands as a fast-forward to the commit built ahead on #{banner}"):
            await self.dm(EMERGENCY, "Proceed", hotfix)
            await self.thread_saying(hotfix, "Landed (a fast-forward to the commit built ahead)")
            await self.card_saying(hotfix, f"Built ahead on #{banner}")
            # meanwhile carol's PR is built ahead again, on top of #hotfix now
            ahead = await self.built_ahead(greeting, hotfix, passed=True)
            number = ahead.candidate.build_number if ahead.candidate else None
            line = next((row for row in self.shown((await self.types(CAROL, "/deploy", "queue")).text).splitlines()
                         if f" of #{greeting} " in row), "")
            check(f"built ahead on #{hotfix} · build #{number} passed" in line, f"#{greeting} in the queue: {line!r}")
            await self.card_saying(greeting, f"Built ahead on #{hotfix} · build #{number}")
            await self.clicks(EMERGENCY, "Proceed", await self.dm(EMERGENCY, "Proceed", hotfix), "in the DM")
            await self.clicks(EMERGENCY, "Done", await self.dm(EMERGENCY, "Done", hotfix), "in the DM")
            deploy = await self.reaches(hotfix, "completed")
            candidate = deploy.candidate
            check(candidate is not None and candidate.on == banner and candidate.sha == deploy.merge_sha,
                  f"#{hotfix} did not land the commit built ahead on #{banner}")
            check(candidate is not None and deploy.build_number == candidate.build_number,
                  f"it followed build #{deploy.build_number}, not its build ahead")
            before = await self.deploy_of(banner)
            check(before is not None and self._first_parent(deploy.merge_sha) == before.merge_sha,
                  f"{self.sandbox.spec.base_branch} was not fast-forwarded to the merge made on #{banner}'s commit")
            await self.card_saying(hotfix, f"Landed as {(deploy.merge_sha or '')[:10]}")
            self._runs(deploy.merge_sha)
            completed_sha = deploy.merge_sha

        async with self.step(f"#{greeting} lands its build ahead; its canary serves errors: the alarm rolls it back "
                             "by itself, the merge is reverted"):
            await self.thread_saying(greeting, "Landed (a fast-forward to the commit built ahead)")
            # bob's PR is built ahead on top of carol's, which is in flight now
            await self.built_ahead(checkout, greeting)
            # Behind a rollback there is nothing to land: bob's PR will merge the normal way on the revert, as a
            # commit not known yet. The sandbox's Jenkins holds app-master's queue (no executor free) until that
            # commit is known and scripted, so its build, and only its, goes red once (the revert's is green).
            self.sandbox.jenkins.delay_queue("app-master", None)
            await self.dm(CAROL, "Roll back", greeting)  # at the canary gate, carol looking at her canaries
            self.screen.person(CAROL, f"looks at her canaries: the web canary answers 5xx, and CloudWatch puts {ALARM} "
                                      "in ALARM")
            self.sandbox.aws.set_alarm(ALARM, "ALARM", "Threshold Crossed: 1 datapoint [12.0] was greater than the "
                                                       "threshold (5.0)")
            deploy = await self.reaches(greeting, "rolled_back")
            check(f"alarm {ALARM} is in ALARM" in (deploy.outcome_reason or ""), deploy.outcome_reason)
            await self.dm_saying(CAROL, "is being rolled back by itself")
            self.sandbox.aws.set_alarm(ALARM, "OK", "Threshold not crossed: app's 5xx rate is back to 0.1%")
            check(deploy.landed_ahead, f"#{greeting} did not land its build ahead")
            check(deploy.revert_sha, "no revert commit recorded")
            main = github.files_at(self.sandbox.spec.base_branch)["app/main.py"]
            check(main == original_main, f"app/main.py is {main!r} after the revert")
            self._runs(completed_sha)
            # what bob's was built on is gone: his build ahead goes with it
            await self.thread_saying(checkout, "Its build ahead was dropped")
            reverted = deploy.revert_sha

        async with self.step(f"#{checkout} merges the normal way on the revert; its build fails, bob retries it"):
            merging = await self.merged(checkout)
            self.sandbox.jenkins.script(merging.merge_sha or "", ["FAILURE", "SUCCESS"])
            self.sandbox.jenkins.delay_queue("app-master", 0)  # an executor is free again
            self.sandbox.jenkins.release_queue("app-master")
            await self.reaches(checkout, "build_failed")
            await self.clicks(BOB, "Retry build", await self.dm(BOB, "Retry build", checkout), "in his DM")
            await self.clicks(BOB, "Proceed", await self.dm(BOB, "Proceed", checkout), "in his DM")
            await self.clicks(BOB, "Done", await self.dm(BOB, "Done", checkout), "in his DM")
            deploy = await self.reaches(checkout, "completed")
            check(deploy.candidate is None and not deploy.landed_ahead, "it landed a build ahead")
            check(self._first_parent(deploy.merge_sha) == reverted, "it was not merged on the revert")
            builds = self.sandbox.jenkins.build_count("app-master", deploy.merge_sha or "")
            check(builds == 2, f"the merge commit was built {builds} times, not twice")
            self._runs(deploy.merge_sha)

        async with self.step(f"alice claims sweet-pea for #{buttons}"):
            answer = await self.types(ALICE, "/pea", f"deploy sweet-pea {buttons}")
            check(f"#{buttons}" in answer.text, answer.text)
            await self.dm_saying(ALICE, "is up at https://sweet-pea.dev.acme.com")
            head = github.pr_head(buttons)
            for process in PROCESSES:
                images = self.sandbox.aws.running_images("peas", f"pea-sweet-pea-{process}")
                check(images and set(images) == {self.sandbox.image(head)}, f"pea-sweet-pea-{process}: {images}")

        async with self.step("bob lists the peas"):
            listed = (await self.types(BOB, "/pea")).render()
            line = next((row for row in listed.splitlines() if "sweet-pea" in row), "")
            check("<@U0ALICE>" in line, f"sweet-pea is not shown as alice's: {line!r}")

        async with self.step("alice releases sweet-pea"):
            await self.types(ALICE, "/pea", "release sweet-pea")
            await self.dm_saying(ALICE, "You released `sweet-pea`")
            for process in PROCESSES:
                name = f"pea-sweet-pea-{process}"

                def scaled_to_zero(service: str = name) -> bool:
                    return not self.sandbox.aws.running_images("peas", service)

                await self.slack.wait_for(scaled_to_zero, WAIT, what=f"{name} scaled to zero")
            deadline = time.monotonic() + WAIT
            while (pea := await self.pea("sweet-pea")) is None or pea.state.value != "free":
                if time.monotonic() > deadline:
                    raise DemoFailed(f"sweet-pea is {pea.state.value if pea else 'missing'}, not free")
                await asyncio.sleep(0.05)

        async with self.step("the history and the stats"):
            history = (await self.types(ADMIN, "/deploy", "history")).text
            check(f"#{greeting}" in history and "rolled back" in history, history)
            stats = (await self.types(ADMIN, "/deploy", "stats")).text
            check("3 completed" in stats, stats)

        async with self.step("every card shows how its deploy ended"):
            for pr, state in ((banner, "completed"), (hotfix, "completed"), (checkout, "completed"),
                              (greeting, "rolled back")):
                def ended(card_of: int = pr, label: str = state) -> bool:
                    card = self.card(card_of)
                    return card is not None and label in card.render()

                await self.slack.wait_for(ended, WAIT, what=f"the card of #{pr} showing {state!r}")

    def _first_parent(self, sha: str | None) -> str | None:
        """The first parent of `sha`, a commit of the base branch (None: not one of its newest)."""
        parents = {commit: parents for commit, _message, parents in
                   self.sandbox.github.log(self.sandbox.spec.base_branch, 20)}
        return next(iter(parents.get(sha or "", ())), None)

    def _runs(self, sha: str | None) -> None:
        """Every process runs the image of `sha`, and nothing else."""
        image = self.sandbox.image(sha or "")
        for service in PROCESSES.values():
            images = set(self.sandbox.aws.running_images(self.sandbox.spec.cluster, service))
            if images != {image}:
                raise DemoFailed(f"{service} runs {sorted(images)}, not {image}")

    # -- the summary -----------------------------------------------------------------------------
    async def summary(self, console: Console) -> None:
        deploys = sorted([d for train in self.bot.trains.values() for d in await train.deploys.history(limit=100)],
                         key=lambda d: d.id)
        peas = await self.bot.train("app").peas.all()
        table = Table(title="deploys", title_justify="left")
        for column in ("#", "train", "pull request", "requester", "processes", "outcome", "builds", "took"):
            table.add_column(column)
        for d in deploys:
            took = _seconds(d.started_at or d.created_at, d.finished_at)
            outcome = d.state.label + (" (emergency: jumped the queue)" if d.jump_queue else "")
            table.add_row(str(d.id), d.train, f"#{d.pr_number} {d.pr_title}", self.screen.name(d.requester),
                          ", ".join(d.processes), outcome, str(d.build_retries + 1 if d.merge_sha else 0), took)
        console.print(table)

        branch = self.sandbox.spec.base_branch
        history = Table(title=f"{branch} (newest first)", title_justify="left")
        history.add_column("commit")
        history.add_column("message")
        for sha, message, _parents in self.sandbox.github.log(branch, 6):
            history.add_row(sha[:10], message.splitlines()[0])
        console.print(history)

        services = Table(title="ECS services", title_justify="left")
        for column in ("cluster", "service", "running", "image"):
            services.add_column(column)
        spec = self.sandbox.spec
        rows = [(spec.cluster, s) for s in (*PROCESSES.values(), *BILLING.services)]
        rows += [(spec.pea_cluster, s) for s in spec.pea_services if "sweet-pea" in s]
        for cluster, name in rows:
            images = self.sandbox.aws.running_images(cluster, name)
            tags = sorted({image.rsplit(":", 1)[1][:10] for image in images})
            services.add_row(cluster, name, str(len(images)), ", ".join(tags) or "-")
        console.print(services)

        pea_table = Table(title="peas", title_justify="left")
        for column in ("pea", "state", "holder", "pull request"):
            pea_table.add_column(column)
        known = {p.name: p for p in peas}
        for name in PEAS:
            pea = known.get(name)
            holder = self.screen.name(pea.holder) if pea and pea.holder else "-"
            pea_table.add_row(name, pea.state.value if pea else "free", holder,
                              f"#{pea.pr_number}" if pea and pea.pr_number and pea.holder else "-")
        console.print(pea_table)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seconds(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.1f}s" if start and end else "-"


def demo_sandbox() -> Sandbox:
    """The demo's world, started: app's repository with its peas' services and the alarm its deploys are watched
    by, and billing's."""
    pea_services = tuple(f"pea-{pea}-{process}" for pea in PEAS for process in PROCESSES)
    sandbox = Sandbox(SandboxSpec(pea_services=pea_services, step_interval=0.4, build_duration=0.5,
                                  more=(BILLING,))).start()
    sandbox.aws.create_alarm(ALARM, reason="Threshold not crossed: app's 5xx rate is 0.1%")
    return sandbox


async def demo(keep: bool = False) -> int:
    """Play the scenario against the real bot on the sandbox; 0 when every step ended as expected."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=100)
    # The screen shows what happens: the bot's own log says only what goes wrong, through the screen.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a tick skipped while one runs is normal here
    handler = RichHandler(console=console, show_path=False)
    # Bolt warns that the token it was given is unused when the client is given too: true, and meant.
    handler.addFilter(lambda record: not record.name.startswith("slack_bolt") or record.levelno >= logging.ERROR)
    logging.getLogger().handlers[:] = [handler]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)  # aiohttp would send even 127.0.0.1 through a proxy
    started = time.monotonic()
    sandbox = demo_sandbox()
    folder = Path(tempfile.mkdtemp(prefix="fatcontroller-demo-"))
    config_path = folder / "app.yaml"
    config_path.write_text(yaml.safe_dump(app_yaml(sandbox), sort_keys=False))
    # The same start as `fatcontroller run`: app.yaml, then secrets and endpoints from the environment.
    os.environ.update({**sandbox.env(), "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'fatcontroller.db'}",
                       "FATCONTROLLER_HTTP_PORT": str(_free_port()), "FATCONTROLLER_INSTANCE": "demo"})
    console.rule("[bold]Fat Controller demo: a deploy train in Slack, on emulated GitHub, Jenkins and ECS")
    console.print(f"sandbox up: Slack {sandbox.slack.url}, GitHub {sandbox.github.url}, "
                  f"Jenkins {sandbox.jenkins.url}, AWS {sandbox.aws.url}; database and app.yaml in {folder}")
    try:
        bot = await start_bot(load_config(config_path), Settings())
    except StartupError as exc:
        console.print(f"[red]demo failed: the bot did not start: {exc}[/red]")
        sandbox.stop()
        return 1
    screen = Screen(console, sandbox.slack, bot.train("app").config.slack.channel, STEPS)
    played = Demo(sandbox, bot, screen)
    try:
        await sandbox.slack.wait_connected()
        console.print("bot connected to Slack over Socket Mode")
        async with screen.showing():
            await played.play()
        await played.summary(console)
        console.print(f"[green bold]demo finished in {time.monotonic() - started:.1f}s: "
                      f"every step ended as expected[/green bold]")
        if keep:
            from demo.prompt import talk

            await talk(played, console, config_path)
        return 0
    except DemoFailed as exc:
        console.print(f"[red bold]demo failed at {exc}[/red bold]")
        return 1
    finally:
        await bot.stop()
        sandbox.stop()
