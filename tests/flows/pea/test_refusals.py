"""Bad input and strangers' attempts get an answer that says what to do instead, and change nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.refusals import word
from flows.config import CommandsConfig
from flows.engine import LEASE_TTL
from flows.errors import Refused, Why
from flows.notices import PeaReleased, PeaTakenOver
from flows.outbox import Outbox
from flows.pea.flows import PeaFlows
from flows.pea.machine import PeaEvent
from flows.pea.service import NotInTable, take
from sandbox.world import Sandbox
from tests.fixtures.peas import MANUAL_JOB, Pool, pool_config
from tests.fixtures.storage import Database
from tests.fixtures.world import ADMIN, OTHER, REQUESTER, outside_for

STRANGER = "U0CAROL"


async def _world(pool: Pool) -> dict[str, Any]:
    """Everything a refused request must leave alone: the peas, notices, services. (Not the rows' versions:
    the worker keeps looking at the held pea's PR meanwhile.)"""
    await pool.drained()
    peas = [await pool.pea(v.name) for v in await pool.flows.all()]
    return {
        "peas": [(p.name, p.state, p.holder, p.claimed_at, p.pr_number, p.head_sha, p.image, p.claim_expires_at,
                  dict(p.task_definitions), p.failure_reason) for p in peas],
        "notices": len(pool.notifier.notices),
        "updates": pool.sandbox.aws.calls.count("ecs:UpdateService"),
    }


@asynccontextmanager
async def refused(pool: Pool, why: Why, *words: str) -> AsyncIterator[None]:
    """The block is refused for `why`, worded (in Slack) with `words`, and the pool and its services are as before."""
    before = await _world(pool)
    with pytest.raises(Refused) as caught:
        yield
    assert caught.value.why is why, caught.value
    message = word(caught.value, CommandsConfig())
    for expected in words:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert await _world(pool) == before


@pytest.fixture
async def held(pool: Pool) -> Pool:
    """sweet-pea is up, held by the requester."""
    pr, _ = await pool.ready_pr("Mine")
    await pool.flows.deploy(REQUESTER, "sweet-pea", pr)
    await pool.reaches("sweet-pea", "up")
    return pool


# -- strangers ------------------------------------------------------------------------------------

async def test_a_stranger_cannot_deploy_over_extend_or_release_someone_elses_pea(held: Pool) -> None:
    pr, _ = await held.ready_pr("Theirs")
    async with refused(held, Why.PEA_HELD, "held by <@U0ALICE>", "/pea"):
        await held.flows.deploy(STRANGER, "sweet-pea", pr)
    async with refused(held, Why.PEA_HELD, "held by <@U0ALICE>"):
        await held.flows.extend(STRANGER, "sweet-pea")
    async with refused(held, Why.PEA_HELD, "held by <@U0ALICE>"):
        await held.flows.release(STRANGER, "sweet-pea")
    async with refused(held, Why.PEA_HELD, "held by <@U0ALICE>"):
        await held.flows.redeploy(STRANGER, "sweet-pea")
    value = await held.button_value("sweet-pea")
    for button in ("Extend", "Release", "Redeploy"):
        async with refused(held, Why.PEA_HELD, "<@U0ALICE>"):
            await held.flows.press(STRANGER, button, value)


async def test_an_admin_may_release_a_pea_held_by_someone_else(held: Pool) -> None:
    await held.flows.release(ADMIN, "sweet-pea")

    notice = await held.told(PeaReleased, "sweet-pea")
    assert notice.holder == REQUESTER and notice.by == ADMIN
    await held.reaches("sweet-pea", "free")


async def test_an_admin_deploying_over_a_held_pea_takes_it_over_and_the_holder_is_told(held: Pool) -> None:
    pr, sha = await held.ready_pr("Hotfix preview")

    await held.flows.deploy(ADMIN, "sweet-pea", pr)

    notice = await held.told(PeaTakenOver, "sweet-pea")
    assert notice.holder == REQUESTER and notice.by == ADMIN
    up = await held.reaches("sweet-pea", "up")
    assert (up.holder, up.pr_number) == (ADMIN, pr)
    await held.runs("sweet-pea", held.sandbox.image(sha))


async def test_someone_else_may_claim_a_free_pea_while_another_is_held(held: Pool) -> None:
    pr, _ = await held.ready_pr("Theirs")
    claimed = await held.flows.deploy(OTHER, "chick-pea", pr)
    assert claimed.holder == OTHER


# -- bad input ------------------------------------------------------------------------------------

async def test_an_unknown_pea_is_refused_with_the_pool_listed(held: Pool) -> None:
    pr, _ = await held.ready_pr()
    for attempt in (held.flows.deploy(REQUESTER, "green-pea", pr), held.flows.release(REQUESTER, "green-pea"),
                    held.flows.extend(REQUESTER, "green-pea"), held.flows.redeploy(REQUESTER, "green-pea")):
        async with refused(held, Why.NO_SUCH_PEA, "no pea `green-pea`", "`sweet-pea`", "`chick-pea`", "`snow-pea`"):
            await attempt


async def test_a_pull_request_that_does_not_exist_is_refused(held: Pool) -> None:
    async with refused(held, Why.NO_SUCH_PR, "no pull request #999", "acme/app"):
        await held.flows.deploy(REQUESTER, "chick-pea", 999)
    async with refused(held, Why.NOT_A_PR_NUMBER, "not a pull request number", "/pea deploy chick-pea 123"):
        await held.flows.deploy(REQUESTER, "chick-pea", 0)


async def test_a_closed_or_merged_pull_request_is_refused(held: Pool) -> None:
    closed, _ = await held.ready_pr("Abandoned")
    held.sandbox.github.close_pr(closed)
    merged, merged_sha = await held.ready_pr("Shipped")
    await held.outside.github.merge(merged, merged_sha)
    async with refused(held, Why.PR_CLOSED, f"#{closed} is closed", "/pea deploy chick-pea &lt;pr&gt;"):
        await held.flows.deploy(REQUESTER, "chick-pea", closed)
    async with refused(held, Why.PR_MERGED, f"#{merged} is already merged"):
        await held.flows.deploy(REQUESTER, "chick-pea", merged)


async def test_a_pull_request_from_a_fork_is_refused(held: Pool) -> None:
    fork = held.sandbox.github.create_pr("From afar", {"app/far.py": "x = 1\n"}, author="mallory", from_fork=True)
    async with refused(held, Why.PR_FROM_FORK, "fork"):
        await held.flows.deploy(REQUESTER, "chick-pea", fork)


async def test_a_pull_request_whose_build_is_red_is_refused(make_pool: Callable[..., Pool]) -> None:
    pool = make_pool(jenkins={"pr_job": MANUAL_JOB})
    pr = pool.new_pr("Broken")
    sha = pool.sandbox.github.pr_head(pr)
    pool.sandbox.jenkins.script(sha, ["FAILURE"])
    pool.sandbox.jenkins.start_build(MANUAL_JOB, sha)
    await pool.built(pr, MANUAL_JOB, green=False)
    async with refused(pool, Why.PEA_BUILD_RED, "ended failure", "push a fix"):
        await pool.flows.deploy(REQUESTER, "sweet-pea", pr)


async def test_releasing_or_extending_a_free_pea_is_refused(held: Pool) -> None:
    async with refused(held, Why.PEA_NOT_CLAIMED, "`chick-pea` is not claimed", "nothing to release"):
        await held.flows.release(REQUESTER, "chick-pea")
    async with refused(held, Why.PEA_NOT_CLAIMED, "`chick-pea` is not claimed", "/pea deploy chick-pea &lt;pr&gt;"):
        await held.flows.extend(REQUESTER, "chick-pea")
    async with refused(held, Why.PEA_NOT_CLAIMED, "`chick-pea` is not claimed", "/pea deploy chick-pea &lt;pr&gt;"):
        await held.flows.redeploy(REQUESTER, "chick-pea")


async def test_a_button_from_an_earlier_claim_does_nothing(held: Pool) -> None:
    old = await held.button_value("sweet-pea")
    await held.flows.release(REQUESTER, "sweet-pea")
    await held.reaches("sweet-pea", "free")
    pr, _ = await held.ready_pr("Again")
    await held.flows.deploy(REQUESTER, "sweet-pea", pr)
    await held.reaches("sweet-pea", "up")

    for button in ("Extend", "Release", "Redeploy"):
        async with refused(held, Why.STALE_PEA_BUTTON, "earlier message", "/pea"):
            await held.flows.press(REQUESTER, button, old)
    assert re.fullmatch(r"\d{4}-.*", old["claim"])


async def test_peas_without_a_peas_section_are_refused(pea_sandbox: Sandbox, sqlite_database: Database) -> None:
    config = pool_config(pea_sandbox).model_copy(update={"peas": None})
    outbox = Outbox(sqlite_database.sessions, ["slack"], owner="test", lease_ttl=LEASE_TTL)
    flows = PeaFlows(config, sqlite_database.sessions, outside_for(pea_sandbox), outbox, lambda: None)
    for attempt in (flows.all(), flows.deploy(REQUESTER, "sweet-pea", 1)):
        with pytest.raises(Refused) as caught:
            await attempt
        assert caught.value.why is Why.PEAS_NOT_SET_UP
        assert "add a `peas:` section" in word(caught.value, CommandsConfig())


async def test_a_change_the_pea_flowchart_lacks_is_refused_and_changes_nothing(held: Pool) -> None:
    before = await held.pea("chick-pea")
    async with held.database.sessions() as session, session.begin():
        row = await session.get_one(type(before), "chick-pea")
        for event in (PeaEvent.UP, PeaEvent.RELEASE, PeaEvent.EXTEND, PeaEvent.SCALED_TO_ZERO, PeaEvent.REDEPLOY):
            with pytest.raises(NotInTable):
                take(session, row, event, REQUESTER)
    after = await held.pea("chick-pea")
    assert (after.state, after.version, after.holder) == (before.state, before.version, before.holder) == (
        "free", before.version, None)
