"""One Slack app serving two trains (DESIGN §6), through the emulators: which train a command is for, each
train's cards in its own channel, freezing one while the other deploys, the form's train picker, permissions
replaced per train, a pea of each train."""

from __future__ import annotations

import pytest

from tests.fixtures.trains import BILLING_ADMIN, PEAS, TwoTrainWorld

ALICE, ADMIN = "U0ALICE", "U0ADMIN"
DEPLOYS, BILLING = "C0DEPLOYS", "C0BILLING"


async def answer(world: TwoTrainWorld, user: str, text: str, channel: str | None = None) -> str:
    """What `user` is told after typing `/deploy <text>` in `channel` (None: their DM with the app)."""
    typed = await world.slack.command(user, "/deploy", text, channel=channel or world.slack.dm_channel(user))
    return (await typed.ephemeral()).text


async def test_a_command_goes_to_its_channel_s_train_or_the_train_it_names(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    app_pr, billing_pr, named_pr = (world.new_pr("app", "Banner"), world.new_pr("billing", "Invoices"),
                                    world.new_pr("billing", "Refunds"))

    assert "Queued" in await answer(world, ALICE, str(app_pr), DEPLOYS)
    assert "Queued" in await answer(world, ALICE, str(billing_pr), BILLING)
    assert "Queued" in await answer(world, ALICE, f"billing {named_pr}", DEPLOYS)  # a name given wins

    assert (await world.bot.train("app").deploys.latest_of(app_pr)) is not None
    assert {e.deploy.pr_number for e in (await world.bot.train("billing").deploys.queue()).entries} == {
        billing_pr, named_pr}
    # each train merges in its own repository and posts its cards in its own channel
    await world.card_in(DEPLOYS, app_pr, "canary check")
    await world.card_in(BILLING, billing_pr, "canary check")
    assert world.app.github.writes["merges"] == 1 and world.billing.github.writes["merges"] == 1
    assert not any("Invoices" in m.text or "Refunds" in m.text for m in world.slack.messages(DEPLOYS))
    assert not any("Banner" in m.text for m in world.slack.messages(BILLING))


async def test_a_command_typed_where_no_train_is_implied_asks_which_and_changes_nothing(
        two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    pr = world.new_pr("billing", "Taxes")

    asked = await answer(world, ALICE, str(pr))
    assert "which train?" in asked and "`/deploy app " in asked and "`/deploy billing " in asked
    assert "Nothing was changed" in asked
    assert "freeze app &lt;reason&gt;" in await answer(world, ADMIN, "freeze")
    for train in ("app", "billing"):
        assert (await world.bot.train(train).deploys.queue()).entries == ()

    assert "Queued" in await answer(world, ALICE, f"billing {pr}")  # named in the DM, it goes
    await world.state_of("billing", pr, "merging", "building", "canarying", "canary_check")
    everything = await answer(world, ALICE, "queue")
    assert "*app*" in everything and "*billing*" in everything and f"#{pr}" in everything


@pytest.mark.parametrize("two_train_bot", [{"billing_channel": DEPLOYS}], indirect=True)
async def test_in_a_channel_two_trains_share_a_command_must_name_its_train(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    pr = world.new_pr("billing", "Shared")

    asked = await answer(world, ALICE, str(pr), DEPLOYS)
    assert "Several trains share this channel: which train?" in asked and "Nothing was changed" in asked
    assert (await world.bot.train("billing").deploys.queue()).entries == ()
    assert "Queued" in await answer(world, ALICE, f"billing {pr}", DEPLOYS)
    await world.card_in(DEPLOYS, pr, "Shared")


async def test_freezing_one_train_leaves_the_other_deploying(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    assert "is frozen" in await answer(world, BILLING_ADMIN, "freeze billing release week", DEPLOYS)
    frozen_pr, app_pr = world.new_pr("billing", "Waits"), world.new_pr("app", "Goes")

    assert "frozen" in await answer(world, ALICE, str(frozen_pr), BILLING)
    assert "Queued" in await answer(world, ALICE, str(app_pr), DEPLOYS)
    await world.state_of("app", app_pr, "canary_check")
    assert await world.state_of("billing", frozen_pr, "queued") == "queued"
    assert any("frozen" in m.text for m in world.slack.messages(BILLING))
    assert not any("frozen" in m.text for m in world.slack.messages(DEPLOYS))


async def test_a_train_s_own_permissions_replace_the_defaults(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    refused = await answer(world, ADMIN, "freeze billing not yours", BILLING)
    assert "Only admins" in refused and "Nothing was changed" in refused
    assert not (await world.bot.train("billing").deploys.queue()).train.frozen
    assert "is frozen" in await answer(world, ADMIN, "freeze app yours", DEPLOYS)  # the default admins still


async def test_the_form_asks_for_the_train_first_and_follows_the_choice(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    world.new_pr("app", "Not this one")
    pr = world.new_pr("billing", "Ledger")
    await world.slack.command(ALICE, "/deploy", "", channel=world.slack.dm_channel(ALICE))
    form = await world.slack.wait_for(lambda: world.slack.current_view(ALICE), what="the deploy form")
    assert [b["block_id"] for b in form["blocks"]] == ["deploy_train", form["blocks"][1]["block_id"]]
    assert not form.get("submit")  # nothing to queue until a train is picked

    await world.slack.choose(ALICE, "billing", in_modal=True)
    form = await world.slack.wait_for(lambda: (v := world.slack.current_view(ALICE)) and v.get("submit") and v,
                                      what="the billing form")
    processes = next(b for b in form["blocks"] if b["block_id"] == "processes")
    assert [o["value"] for o in processes["element"]["options"]] == ["api"]
    offered = await world.slack.suggest(ALICE, "pr_pick", "pr", "")
    assert [o["value"] for o in offered] == [str(pr)]  # billing's pull requests only

    submitted = await world.slack.submit_view(ALICE, {"pr": {"pr_pick": offered[0]}})
    assert submitted.errors is None
    assert (await world.bot.train("billing").deploys.latest_of(pr)) is not None


async def test_each_train_s_pea_deploys_a_pull_request_of_its_own_repository(two_train_bot: TwoTrainWorld) -> None:
    world = two_train_bot
    for train, pea in PEAS.items():
        pr = world.new_pr(train, f"Preview {train}")  # each repository numbers its own pull requests
        typed = await world.slack.command(ALICE, "/pea", f"deploy {pea} {pr}", channel=world.slack.dm_channel(ALICE))
        assert f"Deploying #{pr} to `{pea}`" in (await typed.ephemeral()).text
        await world.slack.wait_for(lambda p=pea: any(f"{p} is up" in m.text for m in world.slack.dms(ALICE)),
                                   30, what=f"{pea} up")
    listing = await (await world.slack.command(ALICE, "/pea", "", channel=world.slack.dm_channel(ALICE))).ephemeral()
    assert "*app*" in listing.text and "*billing*" in listing.text
