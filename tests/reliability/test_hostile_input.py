"""A corpus of hostile input sent through the real bot on the Slack emulator: typed commands, forged or
replayed buttons, tampered form submissions. Each is answered ephemerally, quoting what was wrong, and
changes nothing: no deploy, pea claim or audit row, no GitHub write, no build, no ECS change. What people
type that is accepted (reasons, notes, titles) is shown escaped: no mention or link survives onto a card."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.slack import Interaction
from sandbox.world import Sandbox
from storage.models import AuditEvent, Deploy, Pea
from tests.fixtures.bot import BotWorld, start_world
from tests.fixtures.peas import PEAS

ALICE, BOB, ADMIN, EMERGENCY = "U0ALICE", "U0BOB", "U0ADMIN", "U0EMERGENCY"
REFUSED = "Nothing was changed"
# Mentions and links Slack would act on; none may reach a message the bot posts from someone's input.
LIVE_MARKUP = ("<!channel>", "<!here>", "<!everyone>", "<@U0CAROL>", "<https://evil", "<!subteam^")
INJECTION = "<!channel> <!here> <@U0CAROL> <https://evil.example/x|click here> <!subteam^S0ADMINS>"
READ_ONLY_AWS = ("Describe", "List", "GetAuthorizationToken", "BatchGetImage")


@pytest.fixture
async def world(pea_sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The real bot on the sandbox with a train and a pool of peas."""
    bot, config = await start_world(pea_sandbox, tmp_path, peas={
        "cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"})
    yield BotWorld(bot, pea_sandbox, config)
    await bot.stop()


async def _everything(world: BotWorld) -> dict[str, Any]:
    """The bot's database and the outside world, as far as a refused request must leave them alone."""
    async with world.bot.engine.sessions() as session:
        deploys = (await session.execute(sa.select(Deploy.id, Deploy.state, Deploy.requester))).all()
        peas = (await session.execute(sa.select(Pea.name, Pea.state, Pea.holder, Pea.pr_number,
                                                Pea.claim_expires_at))).all()
        audit = await session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    github, aws = world.sandbox.github, world.sandbox.aws
    return {
        "deploys": sorted(deploys), "peas": sorted(peas), "audit": audit,
        "git": [github.branch_head(), github.log(n=50)],
        "builds": {job: len(world.sandbox.jenkins.builds(job)) for job in ("app-master", "app-pr")},
        "ecs_writes": [c for c in aws.calls if not c.split(":")[1].startswith(READ_ONLY_AWS)],
    }


async def _hostile_world(world: BotWorld) -> dict[str, Any]:
    """PRs in every condition (open, closed, merged, from a fork, conflicting, on another base), Alice's
    deploy at the canary gate, Bob's queued behind it, and Alice holding sweet-pea."""
    github = world.sandbox.github
    prs: dict[str, Any] = {name: world.new_pr(name.title()) for name in ("open", "closed", "merged", "busy",
                                                                          "queued", "pea")}
    prs["fork"] = github.create_pr("From a fork", {"app/fork.py": "x = 1\n"}, author="mallory", from_fork=True)
    prs["other_base"] = github.create_pr("Elsewhere", {"app/else.py": "x = 1\n"}, base="release")
    prs["conflict"] = github.create_pr("Conflicting", {"README.md": "theirs\n"})
    github.push({"README.md": "ours\n"}, message="Someone else's change")
    github.close_pr(prs["closed"])
    ours = world.bot.engine.lanes[world.bot.train().name].outside.github
    await ours.merge(prs["merged"], github.pr_head(prs["merged"]))
    await world.slack.command(ALICE, "/deploy", str(prs["busy"]))
    prs["busy_id"] = (await world.reaches(prs["busy"], "canary_check")).id
    await world.slack.command(BOB, "/deploy", str(prs["queued"]))
    prs["queued_id"] = (await world.reaches(prs["queued"], "queued")).id
    await world.slack.wait_for(lambda: world.sandbox.jenkins.build_count("app-pr", github.pr_head(prs["pea"])),
                               what="the PR job's build")
    await world.slack.command(ALICE, "/pea", f"deploy sweet-pea {prs['pea']}")
    await world.slack.wait_for(lambda: next((m for m in world.slack.dms(ALICE) if "is up at" in m.render()), None),
                               20, what="sweet-pea up for Alice")
    github.flush_webhooks()
    return prs


def _command_cases(prs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(who, command, text, what the answer must say)."""
    pr = prs["open"]
    return [
        (ALICE, "/deploy", "12abc", "`12abc` is not a pull request number"),
        (ALICE, "/deploy", "1.5", "`1.5` is not a pull request number"),
        (ALICE, "/deploy", "0x1F", "`0x1F` is not a pull request number"),
        (ALICE, "/deploy", "+7", "`+7` is not a pull request number"),
        (ALICE, "/deploy", "##12", "`##12` is not a pull request number"),
        (ALICE, "/deploy", "9999999999", "`9999999999` is not a pull request number"),
        (ALICE, "/deploy", "🚀", "`🚀` is not a pull request number"),
        (ALICE, "/deploy", "\u202e21", "is not a pull request number"),
        (ALICE, "/deploy", f"\u200b{pr}", "is not a pull request number"),
        (ALICE, "/deploy", f"{pr}\x00", "control characters"),
        (ALICE, "/deploy", f"{pr} \x1b[31mweb", "control characters"),
        (ALICE, "/deploy", "<@U0CAROL>", "`&lt;@U0CAROL&gt;` is not a pull request number"),
        (ALICE, "/deploy", "<https://evil.example|click>", "is not a pull request number"),
        (ALICE, "/deploy", f"{pr} <!channel>", "Unknown process `&lt;!channel&gt;`"),
        (ALICE, "/deploy", f"{pr} WEB", "Unknown process `WEB`"),
        (ALICE, "/deploy", f"{pr} web {'w' * 300}", "Unknown process"),
        (ALICE, "/deploy", f"{pr} --front=yes", "Unknown option"),
        (ALICE, "/deploy", f"{pr} \u2014front", "Unknown process"),
        (ALICE, "/deploy", f"{pr} --notes", "`--notes` needs text"),
        (ALICE, "/deploy", f'{pr} --reason "<!channel>"', "`--reason` explains an emergency option"),
        (ALICE, "/deploy", f'{pr} --skip-build --reason "<!here>"', "emergency list"),
        (ALICE, "/deploy", "1 " * 2000, "characters"),
        (ALICE, "/deploy", str(prs["fork"]), "comes from a fork"),
        (ALICE, "/deploy", str(prs["conflict"]), "conflicts"),
        (ALICE, "/deploy", str(prs["other_base"]), "targets `release`"),
        (ALICE, "/deploy", f"{prs['closed']} web", "is closed"),
        (ALICE, "/deploy", str(prs["queued"]), "already on the train"),
        (ALICE, "/deploy", str(prs["busy"]), "is already merged"),
        (ALICE, "/deploy", "cancel <!channel>", "is not a deploy id"),
        (ALICE, "/deploy", "cancel -1", "`-1` is not a deploy id"),
        (ALICE, "/deploy", "cancel 99999999999999999999", "is not a deploy id"),
        (ALICE, "/deploy", "freeze <!channel> lunch", "Only admins"),
        (ALICE, "/deploy", "unfreeze", "Only admins"),
        (BOB, "/deploy", f"cancel {prs['busy_id']}", "only a queued deploy can be cancelled"),
        (ALICE, "/pea", "deploy chick-pea", "is not `deploy &lt;pea&gt; &lt;pr&gt;`"),
        (ALICE, "/pea", f"deploy chick-pea {pr} {pr}", "is not `deploy &lt;pea&gt; &lt;pr&gt;`"),
        (ALICE, "/pea", f"deploy <!channel> {pr}", "no pea `&lt;!channel&gt;`"),
        (ALICE, "/pea", f"deploy ../../etc/passwd {pr}", "no pea `../../etc/passwd`"),
        (ALICE, "/pea", f"deploy CHICK-PEA {pr}", "no pea `CHICK-PEA`"),
        (ALICE, "/pea", f"deploy chick-pea {prs['fork']}", "comes from a fork"),
        (ALICE, "/pea", f"deploy chick-pea {prs['closed']}", "is closed"),
        (ALICE, "/pea", "deploy chick-pea 99999", "no pull request #99999"),
        (ALICE, "/pea", f"deploy chick-pea {pr}\x07", "control characters"),
        (ALICE, "/pea", "x" * 5000, "characters"),
        (ALICE, "/pea", "release green-pea", "no pea `green-pea`"),
        (BOB, "/pea", "release sweet-pea", "<@U0ALICE>"),
        (BOB, "/pea", "extend sweet-pea", "<@U0ALICE>"),
        (BOB, "/pea", f"deploy sweet-pea {pr}", "<@U0ALICE>"),
        (ALICE, "/pea", "release chick-pea", "`chick-pea` is not claimed"),
        (ALICE, "/pea", "<@U0CAROL>", "is not a `/pea` command"),
    ]


def _click_cases(prs: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(who, button on Alice's card at the canary gate, keys of the action forged, what the answer must say)."""
    busy, queued = prs["busy_id"], prs["queued_id"]
    value = json.dumps({"deploy": busy, "state": "canary_check"}, separators=(",", ":"))
    return [
        (BOB, "Proceed", {}, f"Only <@{ALICE}> or an admin"),
        (BOB, "Roll back", {}, f"Only <@{ALICE}> or an admin"),
        (ALICE, "Proceed", {"value": json.dumps({"deploy": queued, "state": "canary_check"})},
         f"Only <@{BOB}> or an admin"),
        (ALICE, "Proceed", {"value": json.dumps({"deploy": busy, "state": "awaiting_confirmation"})},
         "from an earlier step"),
        (ALICE, "Roll back", {"value": json.dumps({"deploy": busy, "state": "queued"})}, "from an earlier step"),
        (ALICE, "Proceed", {"value": json.dumps({"deploy": 99999, "state": "canary_check"})}, "no deploy 99999"),
        (ALICE, "Proceed", {"value": "garbage"}, "not valid any more"),
        (ALICE, "Proceed", {"value": ""}, "not valid any more"),
        (ALICE, "Proceed", {"value": "{}"}, "not valid any more"),
        (ALICE, "Proceed", {"value": "null"}, "not valid any more"),
        (ALICE, "Proceed", {"value": json.dumps({"deploy": "1; DROP TABLE deploys", "state": "canary_check"})},
         "not valid any more"),
        (ALICE, "Proceed", {"value": json.dumps({"deploy": busy, "state": "exploded"})}, "not valid any more"),
        (ALICE, "Proceed", {"value": value + "x" * 1900}, "not valid any more"),
        (ALICE, "Proceed", {"action_id": "deploy_done"}, "not possible now"),
        (ALICE, "Proceed", {"action_id": "deploy_self_destruct"}, "not valid any more"),
        (ALICE, "Proceed", {"action_id": "pea_release"}, "not valid any more"),
        (ALICE, "Proceed", {"action_id": "pea_release", "value": json.dumps({"pea": "green-pea"})}, "no pea"),
        (BOB, "Proceed", {"action_id": "pea_release", "value": json.dumps({"pea": "sweet-pea"})}, "<@U0ALICE>"),
        (BOB, "Proceed", {"action_id": "pea_extend", "value": json.dumps({"pea": "sweet-pea"})}, "<@U0ALICE>"),
        (ALICE, "Proceed", {"action_id": "pea_extend", "value": json.dumps({"pea": "chick-pea"})}, "not claimed"),
    ]


def _view_cases(form: dict) -> list[tuple[str, dict, dict]]:
    """(what was tampered with, the view submitted, its values)."""
    unknown = copy.deepcopy(form)
    unknown["callback_id"] = "deploy_everything_now"
    extra = copy.deepcopy(form)
    extra["blocks"].append({"type": "input", "block_id": "requester", "label": {"type": "plain_text", "text": "As"},
                            "element": {"type": "plain_text_input", "action_id": "requester"}})
    metadata = copy.deepcopy(form)
    metadata["private_metadata"] = '{"requester": "U0ADMIN", "skip_build": true}'
    return [("an unknown callback id", unknown, {}), ("every field left empty", form, {}),
            ("an extra field", extra, {"requester": {"requester": ADMIN}}),
            ("forged private metadata", metadata, {})]


async def _answer(interaction: Interaction) -> str:
    """The ephemeral answer to an interaction, or a note that none came."""
    try:
        return (await interaction.ephemeral(timeout=3.0)).text
    except AssertionError:
        return "(no answer)"


async def test_the_corpus_is_refused_ephemerally_and_changes_nothing(world: BotWorld) -> None:
    prs = await _hostile_world(world)
    before = await _everything(world)
    commands, clicks = _command_cases(prs), _click_cases(prs)
    card = world.card(prs["busy"])
    assert card is not None
    wrong: list[str] = []

    for who, command, text, expected in commands:
        answer = await _answer(await world.slack.command(who, command, text))
        if expected not in answer or REFUSED not in answer:
            wrong.append(f"{command} {text[:60]!r} by {who}: {answer!r}")
    for who, label, forged, expected in clicks:
        answer = await _answer(await world.slack.click(who, label, message=card, forge=forged))
        if expected not in answer:
            wrong.append(f"{label} forged {str(forged)[:80]} by {who}: {answer!r}")
    await world.slack.command(ALICE, "/deploy")
    form = await world.slack.wait_for(lambda: world.slack.current_view(ALICE), what="the form")
    views = _view_cases(form)
    for what, view, values in views:
        submitted = await world.slack.submit_view(ALICE, values, view=view)
        if not submitted.errors and not world.slack.ephemerals(ALICE)[-1:]:
            wrong.append(f"a submission with {what} was accepted silently")

    assert not wrong, "\n".join(wrong)
    assert len(commands) + len(clicks) + len(views) >= 60
    assert await _everything(world) == before
    for message in world.slack.ephemerals(ALICE) + world.slack.ephemerals(BOB):
        assert not any(markup in message.text for markup in LIVE_MARKUP), message.text


async def test_mentions_and_links_in_titles_reasons_and_notes_are_shown_escaped(world: BotWorld) -> None:
    pr = world.sandbox.github.create_pr(f"{INJECTION} title", {"app/inject.py": "x = 1\n"})
    await world.slack.command(EMERGENCY, "/deploy", f'{pr} --front --reason "{INJECTION}" --notes "{INJECTION}"')
    await world.reaches(pr, "canary_check")
    await world.slack.command(ADMIN, "/deploy", f"freeze {INJECTION}")
    await world.card_showing(pr, "canary check")
    await world.slack.command(ALICE, "/deploy", "queue")

    posted = [m for channel in (world.channel, world.slack.dm_channel(EMERGENCY))
              for m in world.slack.messages(channel)] + world.slack.ephemerals(ALICE)
    card = world.card(pr)
    assert card is not None and "&lt;!channel&gt;" in json.dumps(card.blocks)
    assert card.render().count("&lt;@U0CAROL&gt;") >= 3  # title, reason and notes
    for message in posted:
        shown = message.text + json.dumps(message.blocks) + "".join(e.text + json.dumps(e.blocks)
                                                                  for e in message.edits)
        assert not any(markup in shown for markup in LIVE_MARKUP), (message.text, message.blocks)
