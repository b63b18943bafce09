"""Bad input, typed or submitted, is answered ephemerally, says what was wrong and what to type, and changes
nothing: no deploy row, no merge, no build, no service touched."""

from __future__ import annotations

from tests.fixtures.bot import BotWorld

ALICE, BOB, ADMIN, EMERGENCY = "U0ALICE", "U0BOB", "U0ADMIN", "U0EMERGENCY"


async def _busy_train(world: BotWorld) -> dict[str, int]:
    """PRs in every condition a request can meet: open, closed, merged, one deploying (at the canary gate)
    and one queued behind it (Bob's)."""
    prs = {name: world.new_pr(name.title()) for name in ("open", "closed", "merged", "busy", "queued")}
    world.sandbox.github.close_pr(prs["closed"])
    github = world.bot.engine.lanes[world.bot.train().name].outside.github
    await github.merge(prs["merged"], world.sandbox.github.pr_head(prs["merged"]))
    await world.slack.command(ALICE, "/deploy", str(prs["busy"]))
    prs["busy_id"] = (await world.reaches(prs["busy"], "canary_check")).id
    await world.slack.command(BOB, "/deploy", str(prs["queued"]))
    prs["queued_id"] = (await world.reaches(prs["queued"], "queued")).id
    # built ahead (DESIGN §8): its candidate's build is under way before the cases below look at the world
    await world.card_showing(prs["queued"], "|build #")
    world.sandbox.github.flush_webhooks()
    return prs


async def test_malformed_commands_are_answered_ephemerally_and_change_nothing(world: BotWorld) -> None:
    prs = await _busy_train(world)
    pr, busy = prs["open"], prs["busy"]
    cases: list[tuple[str, str, str]] = [  # (who, text after /deploy, what the answer must say)
        (ALICE, "abc", "`abc` is not a pull request number"),
        (ALICE, "-5", "`-5` is not a pull request number"),
        (ALICE, "0", "`0` is not a pull request number"),
        (ALICE, "99999", "no pull request #99999"),
        (ALICE, f"{pr} nosuchprocess", f"Unknown process `nosuchprocess`: choose from `web`, `worker` (e.g. "
                                       f"`/deploy {pr} web`), or type `/deploy {pr}` with no process"),
        (ALICE, f"{pr} --front", "emergency list"),
        (ALICE, f'{pr} web --skip-build --reason "hurry"', "emergency list"),
        (EMERGENCY, f"{pr} --front", "need a reason"),
        (EMERGENCY, f"{pr} --skip-build --reason", "`--reason` needs text"),
        (EMERGENCY, f'{pr} --front --reason "{"r" * 600}"', "reason is 600 characters"),
        (ALICE, f'{pr} --reason "because"', "`--reason` explains an emergency option"),
        (ALICE, f'{pr} --notes "unclosed', "unclosed quote"),
        (ALICE, f"{pr} --force", "Unknown option `--force`"),
        (ALICE, f"{pr} --notes a --notes b", "given twice"),
        (ALICE, f'{pr} --notes "{"n" * 2500}"', "notes are 2500 characters"),
        (ALICE, "x" * 5000, "5000 characters"),
        (ALICE, f"{pr}\x07 web", "control characters"),
        (ALICE, "<!channel>", "`&lt;!channel&gt;` is not a pull request number"),
        (ALICE, str(prs["closed"]), "is closed"),
        (ALICE, str(prs["merged"]), "already merged"),
        (ALICE, str(prs["queued"]), f"already on the train (deploy {prs['queued_id']} of #{prs['queued']})"),
        (ALICE, "queue extra", "`/deploy queue` takes nothing after it"),
        (ALICE, "history now", "`/deploy history` takes nothing after it"),
        (ALICE, "cancel abc", "`abc` is not a deploy id"),
        (ALICE, "cancel 1 2", "`1 2` is not a deploy id"),
        (ALICE, "cancel 999", "There is no deploy 999"),
        (ALICE, "cancel", "You have no deploy in the queue"),
        (ALICE, f"cancel {prs['busy_id']}", f"Deploy {prs['busy_id']} of #{busy} is `canary check`: only a queued "
                                            "deploy can be cancelled"),
        (ALICE, f"cancel {prs['queued_id']}", f"Only <@{BOB}> or an admin can act on deploy {prs['queued_id']} of "
                                              f"#{prs['queued']}"),
        (ADMIN, "freeze", "Say why"),
        (ALICE, "freeze lunch", "Only admins"),
        (ADMIN, "unfreeze", "The train is not frozen"),
    ]
    deploys, outside = await world.deploy_count(), world.outside_state()

    wrong = []
    for who, text, expected in cases:
        typed = await world.slack.command(who, "/deploy", text)
        answer = (await typed.ephemeral()).text
        if expected not in answer or "Nothing was changed" not in answer:
            wrong.append(f"/deploy {text[:60]!r} by {who}: {answer!r}")
        if await world.deploy_count() != deploys:
            wrong.append(f"/deploy {text[:60]!r} by {who} queued a deploy")

    assert not wrong, "\n".join(wrong)
    assert len(cases) >= 20
    assert world.outside_state() == outside
    assert (await world.deploy_of(busy)).state == "canary_check"
    assert (await world.deploy_of(prs["queued"])).state == "queued"
    assert [m for m in world.slack.messages(world.channel) if m.thread_ts is None and "frozen" in m.text] == []


async def test_the_form_shows_what_is_wrong_beside_the_field_and_queues_nothing(world: BotWorld) -> None:
    pr = world.new_pr("Open one")
    closed = world.new_pr("Closed one")
    world.sandbox.github.close_pr(closed)
    await world.slack.command(ALICE, "/deploy")
    await world.slack.wait_for(lambda: world.slack.current_view(ALICE), what="the form")
    await world.slack.command(EMERGENCY, "/deploy")
    await world.slack.wait_for(lambda: world.slack.current_view(EMERGENCY), what="the form")
    picked = {"pr_pick": str(pr)}
    submissions: list[tuple[str, dict, dict[str, str]]] = [  # (who, values, field: what the error says)
        (ALICE, {}, {"pr": "Pick a pull request"}),
        (ALICE, {"pr": picked, "processes": {"processes": []}}, {"processes": "Tick at least one process"}),
        (EMERGENCY, {"pr": picked, "emergency": {"emergency": ["jump_queue"]}}, {"reason": "Say why"}),
        (ALICE, {"pr": picked, "emergency": {"emergency": ["skip_build"]}, "reason": {"reason": "hurry"}},
         {"emergency": "emergency list"}),
        (ALICE, {"pr": {"pr_pick": str(closed)}}, {"pr": "is closed"}),
        (ALICE, {"pr": {"pr_pick": "99999"}}, {"pr": "no pull request #99999"}),
    ]

    for who, values, expected in submissions:
        submitted = await world.slack.submit_view(who, values)
        assert submitted.errors is not None, f"{values} was accepted"
        assert set(submitted.errors) == set(expected), submitted.errors
        for block, text in expected.items():
            assert text in submitted.errors[block], submitted.errors
        assert world.slack.current_view(who) is not None  # the form stays open to be corrected

    assert await world.deploy_count() == 0
