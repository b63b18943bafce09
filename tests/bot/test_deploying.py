"""Whole deploys done in Slack by typing and clicking, against the real bot and the sandbox."""

from __future__ import annotations

import copy
import itertools
import time

import sqlalchemy as sa

from flows.deploy.machine import State, person_transitions
from storage.models import AuditEvent
from tests.fixtures.bot import BotWorld

ALICE, BOB, EMERGENCY, ADMIN = "U0ALICE", "U0BOB", "U0EMERGENCY", "U0ADMIN"


async def test_the_quick_form_deploys_a_pull_request_from_queue_to_completed(world: BotWorld) -> None:
    pr = world.new_pr("Add a banner")

    typed = await world.slack.command(ALICE, "/deploy", str(pr))
    answer = await typed.ephemeral()
    assert f"#{pr}" in answer.text and "Queued" in answer.text
    started = time.time()

    canaries = await world.dm_with(ALICE, "Proceed")
    assert "Canaries are up" in canaries.text and canaries.buttons == ["Proceed", "Roll back"]
    card = await world.card_showing(pr, "canary check")
    assert card.buttons == ["Proceed", "Roll back"]

    await world.slack.click(ALICE, "Proceed", message=canaries)
    rolled_out = await world.dm_with(ALICE, "Done")
    deploy = await world.deploy_of(pr)
    assert deploy.state == State.AWAITING_CONFIRMATION.value
    image = world.sandbox.image(deploy.merge_sha or "")
    for process in world.config.processes.values():
        assert set(world.sandbox.aws.running_images("production", process.service)) == {image}

    await world.slack.click(ALICE, "Done", message=rolled_out)
    await world.reaches(pr, "completed")
    card = await world.card_showing(pr, "completed")
    assert card.buttons == []
    thread = "\n".join(m.text for m in world.slack.thread(world.channel, card.ts))
    assert deploy.merge_sha[:10] in thread and "Canaries are up" in thread and "Completed" in thread

    # One card, edited in place, never more than about once a second however often the deploy moved.
    assert [m.ts for m in world.slack.messages(world.channel) if m.thread_ts is None] == [card.ts]
    edits = [e.at for e in card.edits]
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(edits)), edits
    assert len(edits) <= (time.time() - started) / 0.9 + 1
    assert len(edits) < len(world.slack.thread(world.channel, card.ts))  # fewer edits than things that happened

    history = await (await world.slack.command(ALICE, "/deploy", "history")).ephemeral()
    assert f"#{pr}" in history.text and "completed" in history.text
    stats = await (await world.slack.command(ALICE, "/deploy", "stats")).ephemeral()
    assert "1 completed" in stats.text and "Change failure rate" in stats.text


async def test_the_form_deploys_a_pull_request_picked_from_suggestions(world: BotWorld) -> None:
    world.new_pr("Unrelated work", author="bob")
    pr = world.new_pr("Faster checkout")

    await world.slack.command(ALICE, "/deploy")
    form = await world.slack.wait_for(lambda: world.slack.current_view(ALICE), what="the deploy form")
    assert form["type"] == "modal" and form["callback_id"] == "deploy_request"
    everything = await world.slack.suggest(ALICE, "pr_pick", "pr", "")
    assert len(everything) == 2
    [picked] = await world.slack.suggest(ALICE, "pr_pick", "pr", "checkout")
    assert picked["value"] == str(pr)

    submitted = await world.slack.submit_view(ALICE, {"pr": {"pr_pick": picked},
                                                      "notes": {"notes": "watch <!channel> latency"}})
    assert submitted.errors is None and world.slack.current_view(ALICE) is None
    assert "Queued" in (await submitted.ephemeral()).text
    deploy = await world.deploy_of(pr)
    assert deploy.processes == ["web", "worker"] and deploy.notes == "watch <!channel> latency"

    card = await world.card_showing(pr, "canary check")
    assert "&lt;!channel&gt;" in card.render()
    await world.slack.click(ALICE, "Proceed", channel=world.channel)
    await world.card_showing(pr, "awaiting confirmation")
    await world.slack.click(ALICE, "Done", channel=world.channel)
    await world.reaches(pr, "completed")


async def test_a_failed_build_is_retried_with_the_retry_build_button(world: BotWorld) -> None:
    world.sandbox.jenkins.script_next(world.config.jenkins.job, ["FAILURE", "SUCCESS"])
    pr = world.new_pr("Flaky test")
    await world.slack.command(ALICE, "/deploy", str(pr))

    failed = await world.dm_with(ALICE, "Retry build")
    assert "build failed" in failed.text.lower() and failed.buttons == ["Retry build", "Roll back"]
    await world.card_showing(pr, "build failed")

    await world.slack.click(ALICE, "Retry build", message=failed)
    deploy = await world.reaches(pr, "canary_check")
    assert world.sandbox.jenkins.build_count(world.config.jenkins.job, deploy.merge_sha or "") == 2
    assert deploy.build_attempts == 1


async def test_rolling_back_at_the_canary_gate_restores_the_base_branch(world: BotWorld) -> None:
    before = world.outside_state()
    tree = world.sandbox.github.tree_of(world.config.github.base_branch)
    pr = world.new_pr("Risky change")
    await world.slack.command(ALICE, "/deploy", str(pr))

    canaries = await world.dm_with(ALICE, "Roll back")
    await world.slack.click(ALICE, "Roll back", message=canaries)

    deploy = await world.reaches(pr, "rolled_back")
    assert world.sandbox.github.tree_of(world.config.github.base_branch) == tree
    assert world.outside_state()["services"] == before["services"]
    card = await world.card_showing(pr, "rolled back")
    assert card.buttons == []
    why = await world.slack.wait_for(lambda: [m for m in world.slack.dms(ALICE) if "rolled back" in m.text],
                                     what="the rolled-back DM")
    assert deploy.revert_sha and f"#{pr}" in why[-1].text


async def test_an_emergency_deploy_jumps_the_queue_and_others_are_refused(world: BotWorld) -> None:
    in_flight, waiting, urgent, refused = (world.new_pr(t) for t in ("First", "Second", "Hotfix", "Impatient"))
    await world.slack.command(ALICE, "/deploy", str(in_flight))
    await world.reaches(in_flight, "canary_check")
    await world.slack.command(BOB, "/deploy", str(waiting))
    await world.reaches(waiting, "queued")

    jump = await world.slack.command(EMERGENCY, "/deploy", f'{urgent} --front --reason "checkout <!here> is down"')
    assert "Queued" in (await jump.ephemeral()).text
    before = await world.deploy_count()
    no = await world.slack.command(ALICE, "/deploy", f'{refused} --front --reason "me first"')
    answer = await no.ephemeral()
    assert "emergency list" in answer.text and "Nothing was changed" in answer.text
    assert await world.deploy_count() == before

    queue = (await (await world.slack.command(BOB, "/deploy", "queue")).ephemeral()).text
    lines = queue.splitlines()
    assert [next(i for i, line in enumerate(lines) if f"#{pr}<" in line or f"|#{pr}>" in line)
            for pr in (in_flight, urgent, waiting)] == [0, 1, 2]
    assert f"<@{ALICE}>" in lines[0] and f"<@{EMERGENCY}>" in lines[1] and f"<@{BOB}>" in lines[2]
    card = await world.card_showing(urgent, "Jump the queue")
    assert "checkout &lt;!here&gt; is down" in card.render()


async def test_stale_and_strangers_clicks_change_nothing_and_are_explained(world: BotWorld) -> None:
    pr = world.new_pr("Careful now")
    await world.slack.command(ALICE, "/deploy", str(pr))
    canaries = await world.dm_with(ALICE, "Proceed")
    as_alice_saw_it = copy.deepcopy(canaries)  # her client has not caught up with what happens next
    await world.card_showing(pr, "canary check")

    stranger = await world.slack.click(BOB, "Proceed", channel=world.channel)
    assert f"Only <@{ALICE}> or an admin" in (await stranger.ephemeral()).text
    assert (await world.deploy_of(pr)).state == State.CANARY_CHECK.value

    await world.slack.click(ALICE, "Proceed", message=canaries)
    await world.reaches(pr, "rolling_out", "awaiting_confirmation")
    stale = await world.slack.click(ALICE, "Proceed", message=as_alice_saw_it)
    assert "earlier step" in (await stale.ephemeral()).text

    await world.reaches(pr, "awaiting_confirmation")
    async with world.bot.engine.sessions() as session:
        proceeds = await session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                        .where(AuditEvent.action == "transition:proceed"))
        actor = await session.scalar(sa.select(AuditEvent.actor).where(AuditEvent.action == "transition:proceed"))
    assert (proceeds, actor) == (1, ALICE)
    # The canary DM's buttons are retired once its step is over.
    retired = await world.slack.wait_for(lambda: not canaries.buttons and canaries, what="the DM's buttons gone")
    assert "This step is over" in retired.render()


async def test_the_app_home_shows_the_train_and_your_buttons_only_to_you(world: BotWorld) -> None:
    pr = world.new_pr("Visible change")
    await world.slack.command(ALICE, "/deploy", str(pr))
    await world.reaches(pr, "canary_check")

    await world.slack.open_home(ALICE)
    await world.slack.open_home(BOB)
    alice = await world.slack.wait_for(lambda: "canary check" in world.slack.render(world.slack.home(ALICE) or {})
                                       and world.slack.home(ALICE), what="Alice's home showing the deploy")
    bob = await world.slack.wait_for(lambda: world.slack.home(BOB), what="Bob's home")
    assert "Running" in world.slack.render(alice) and f"#{pr}" in world.slack.render(alice)
    assert world.slack.button_labels(alice) == [t.button for t in person_transitions(State.CANARY_CHECK,
                                                                                      needs_attention=False)]
    assert world.slack.button_labels(bob) == []

    await world.slack.click(ALICE, "Proceed", in_home=True)
    await world.reaches(pr, "rolling_out", "awaiting_confirmation")
    await world.slack.wait_for(lambda: "Done" in world.slack.button_labels(world.slack.home(ALICE) or {}),
                               what="the home republished with Done")


async def test_queueing_on_a_frozen_train_says_who_froze_it_and_that_it_starts_once_unfrozen(world: BotWorld) -> None:
    """Issue 13, item 15: the answer was "position 1, starts any moment now" on a frozen train."""
    pr = world.new_pr("Waits for the thaw")
    await (await world.slack.command(ADMIN, "/deploy", 'freeze "release <!here> testing"')).ephemeral()

    answer = (await (await world.slack.command(ALICE, "/deploy", str(pr))).ephemeral()).text
    assert f"frozen by <@{ADMIN}>" in answer and "release &lt;!here&gt; testing" in answer, answer
    assert "starts when the train is unfrozen" in answer and "any moment" not in answer, answer
    card = (await world.card_showing(pr, "queued")).render()
    assert "starts when the train is unfrozen" in card and "any moment" not in card, card
    queue = (await (await world.slack.command(ALICE, "/deploy", "queue")).ephemeral()).text
    assert "starts when the train is unfrozen" in queue and "any moment" not in queue, queue
    assert (await world.deploy_of(pr)).state == State.QUEUED.value

    await world.slack.command(ADMIN, "/deploy", "unfreeze")
    await world.reaches(pr, "canary_check")


async def test_a_rollback_stuck_on_a_revert_pull_request_is_ended_by_an_admin_from_slack(world: BotWorld) -> None:
    pr = world.new_pr("Needs a reviewed revert")
    await world.slack.command(ALICE, "/deploy", str(pr))
    canaries = await world.dm_with(ALICE, "Roll back")
    world.sandbox.github.protect_branch(required_pull_request_reviews=True, required_approving_review_count=1)
    await world.slack.click(ALICE, "Roll back", message=canaries)

    stuck = await world.dm_with(ALICE, "Mark rolled back by hand")
    [revert] = [p for p in world.sandbox.github.pull_requests() if p.number != pr]
    said = stuck.render()
    assert f"/pull/{revert.number}" in said and "approving review" in said
    assert "*Mark rolled back by hand* once people have undone the rest (admins)" in said
    assert stuck.buttons == ["Retry", "Mark rolled back by hand"]
    refused = await world.slack.click(ALICE, "Mark rolled back by hand", message=stuck)
    assert "Only admins can press Mark rolled back by hand." in (await refused.ephemeral()).text

    card = await world.card_showing(pr, "Needs attention")
    assert card.buttons == ["Retry", "Mark rolled back by hand"]
    await world.slack.click(ADMIN, "Mark rolled back by hand", message=card)
    await world.reaches(pr, "rolled_back")
    card = await world.card_showing(pr, "Rolled back from")
    assert card.buttons == [] and "waits in" in card.render()
