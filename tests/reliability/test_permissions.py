"""Permissions are the server's to enforce, for every action, and every action allowed is audited with the
person who did it. A table of (who, what, allowed?) runs in order against the real bot with a
deployers list, an emergency list and admins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from sandbox.slack import Interaction
from sandbox.world import Sandbox
from storage.models import AuditEvent
from tests.fixtures.bot import BotWorld, start_world
from tests.fixtures.peas import PEAS

ALICE, BOB, ADMIN, EMERGENCY = "U0ALICE", "U0BOB", "U0ADMIN", "U0EMERGENCY"
REFUSED = "Nothing was changed"


@pytest.fixture
async def world(pea_sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[BotWorld]:
    bot, config = await start_world(
        pea_sandbox, tmp_path, permissions={"deployers": [ALICE, ADMIN, EMERGENCY]},
        peas={"cluster": "peas", "names": list(PEAS), "url": "https://{pea}.dev.acme.com", "lease": "1h"})
    yield BotWorld(bot, pea_sandbox, config)
    await bot.stop()


async def _audited(world: BotWorld) -> list[tuple[str, str]]:
    async with world.sessions() as session:
        return [(a.actor, a.action) for a in await session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))]


async def test_every_action_is_allowed_only_to_whom_it_should_be_and_audited_with_its_actor(world: BotWorld) -> None:
    slack = world.slack
    alices, hotfix, peas_pr = world.new_pr("Alice's"), world.new_pr("Hotfix"), world.new_pr("Bob's pea")
    await slack.wait_for(lambda: world.sandbox.jenkins.build_count("app-pr", world.sandbox.github.pr_head(peas_pr)),
                         what="the PR job's build")

    def typed(who: str, command: str, text: str) -> Callable[[], Awaitable[Interaction]]:
        return lambda: slack.command(who, command, text)

    def clicked(who: str, label: str, pr: int) -> Callable[[], Awaitable[Interaction]]:
        async def click() -> Interaction:
            return await slack.click(who, label, message=await world.card_showing(pr, label, within=20))
        return click

    async def at_gate() -> None:
        await world.reaches(hotfix, "canary_check", within=30)

    # (who, what they do, allowed, the audit action an allowed one leaves; a step to wait for first)
    table: list[tuple[str, Callable[[], Awaitable[Interaction]], bool, str, Callable[[], Awaitable[None]] | None]] = [
        (BOB, typed(BOB, "/deploy", str(alices)), False, "", None),
        (ALICE, typed(ALICE, "/deploy", f'{hotfix} --front --reason "urgent"'), False, "", None),
        (ALICE, typed(ALICE, "/deploy", f'{hotfix} --skip-build --reason "urgent"'), False, "", None),
        (EMERGENCY, typed(EMERGENCY, "/deploy", f'{hotfix} --front --reason "outage"'), True, "requested", None),
        (ALICE, typed(ALICE, "/deploy", str(alices)), True, "requested", None),
        (BOB, clicked(BOB, "Proceed", hotfix), False, "", at_gate),
        (ALICE, clicked(ALICE, "Roll back", hotfix), False, "", None),
        (ADMIN, clicked(ADMIN, "Proceed", hotfix), True, "transition:proceed", None),
        (BOB, typed(BOB, "/deploy", "freeze lunch"), False, "", None),
        (EMERGENCY, typed(EMERGENCY, "/deploy", "freeze lunch"), False, "", None),
        (ADMIN, typed(ADMIN, "/deploy", "freeze release day"), True, "freeze", None),
        (ALICE, typed(ALICE, "/deploy", "unfreeze"), False, "", None),
        (ADMIN, typed(ADMIN, "/deploy", "unfreeze"), True, "unfreeze", None),
        (BOB, typed(BOB, "/deploy", "cancel"), False, "", None),
        (BOB, typed(BOB, "/pea", f"deploy sweet-pea {peas_pr}"), True, "pea_claim", None),
        (ALICE, typed(ALICE, "/pea", "release sweet-pea"), False, "", None),
        (ALICE, typed(ALICE, "/pea", "extend sweet-pea"), False, "", None),
        (ADMIN, typed(ADMIN, "/pea", "release sweet-pea"), True, "pea_release", None),
    ]

    wrong = []
    for number, (who, act, allowed, action, first) in enumerate(table):
        if first is not None:
            await first()
        audit_before = await _audited(world)
        interaction = await act()
        try:
            answer = (await interaction.ephemeral(timeout=3)).text
        except AssertionError:  # an allowed click is answered by the card changing, not ephemerally
            answer = ""
        audit_after = await _audited(world)
        new = [row for row in audit_after[len(audit_before):] if row[0] == who]  # the bot's own work goes on
        if allowed and (REFUSED in answer or (who, action) not in new):
            wrong.append(f"row {number}: {who} was refused or not audited: {answer!r} {new}")
        if not allowed and (REFUSED not in answer or new):
            wrong.append(f"row {number}: {who} was let through: {answer!r} {new}")

    assert not wrong, "\n".join(wrong)
    people = set(world.sandbox.spec.users)
    assert all(actor in people or actor.startswith("fatcontroller") for actor, _ in await _audited(world))
