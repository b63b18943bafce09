"""The deploy card: state label, escaped text, progress bars and only the buttons the flowchart allows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.deploy import cards
from flows.deploy.machine import BUTTON_EVENTS, State, person_transitions
from flows.views import QueueEntry
from sandbox.slack import button_labels, render
from tests.fixtures.views import RUNNING, deploy


@pytest.mark.parametrize("state", list(State))
def test_a_card_shows_the_pr_the_state_label_and_only_the_buttons_of_that_state(state: State) -> None:
    blocks = cards.card_blocks(deploy(state))

    text = render(blocks)
    assert "#12" in text and state.label in text
    assert button_labels(blocks) == [t.button for t in person_transitions(state, needs_attention=False)]


def test_a_deploy_that_needs_attention_says_what_failed_and_offers_retry_and_roll_back() -> None:
    blocks = cards.card_blocks(deploy(State.ROLLING_OUT, needs_attention=True,
                                      attention="ECS: UpdateService: ThrottlingException (after 12 attempts)"))

    assert "Needs attention" in render(blocks) and "ThrottlingException" in render(blocks)
    assert button_labels(blocks) == ["Retry", "Roll back"]


def test_what_people_typed_is_shown_not_interpreted() -> None:
    blocks = cards.card_blocks(deploy(pr_title="Fix <!channel> & <@U0BOB>", jump_queue=True,
                                      emergency_reason="<!here> checkout is down", notes="ping <!everyone>"))

    text = json.dumps(blocks)
    for mention in ("<!channel>", "<!here>", "<!everyone>", "<@U0BOB>"):
        assert mention not in text
    assert "&lt;!here&gt; checkout is down" in render(blocks)
    assert "Jump the queue" in render(blocks)


def test_the_rollout_shows_a_progress_bar_per_process() -> None:
    blocks = cards.card_blocks(deploy(State.ROLLING_OUT, targets={"web": {"counts": [2, 4]},
                                                                  "worker": {"counts": [2, 2]}}))

    text = render(blocks)
    assert "web     ▓▓▓▓░░░░ 2/4" in text
    assert "worker  ▓▓▓▓▓▓▓▓ 2/2" in text


def test_each_button_carries_its_deploy_and_the_state_it_was_offered_in() -> None:
    buttons = cards.actions(deploy(State.AWAITING_CONFIRMATION))
    assert buttons is not None

    done = next(b for b in buttons["elements"] if b["text"]["text"] == "Done")
    assert done["action_id"] == "deploy_done"
    assert cards.parse_button_value(done["value"]) == cards.ButtonValue(7, State.AWAITING_CONFIRMATION)


@pytest.mark.parametrize("value", [None, "", "7", "{}", '{"deploy": "7", "state": "queued"}',
                                   '{"deploy": 7, "state": "launched"}', '{"deploy": -1, "state": "queued"}',
                                   '{"deploy": true, "state": "queued"}', "[1, 2]"])
def test_a_button_value_we_did_not_make_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        cards.parse_button_value(value)


def test_every_person_transition_has_a_button_kind() -> None:
    offered = {t.event for state in State for attention in (False, True)
               for t in person_transitions(state, needs_attention=attention, skip_build=True)}
    assert offered == set(BUTTON_EVENTS)


def test_a_queued_card_shows_its_place_counting_from_1_for_the_next_deploy() -> None:
    queued = deploy(State.QUEUED)
    blocks = cards.card_blocks(queued, entry=QueueEntry(queued, 1, timedelta(minutes=12)), train=RUNNING)

    assert "*queued* · position 1 · starts in about 12 min" in render(blocks)


def test_a_card_read_just_as_its_deploy_started_shows_it_started_not_position_0() -> None:
    """Issue 13, item 16: the deploy was read queued, then the queue (a moment later) had it in flight, and the
    new card said `position 0 · starts any moment now` while the answer had said `position 1`."""
    read_first = deploy(State.QUEUED)
    started = deploy(State.MERGING, state_times={"queued": "2024-06-28T12:00:00", "merging": "2024-06-28T12:00:01"})

    blocks = cards.card_blocks(read_first, entry=QueueEntry(started, 0, timedelta(0)), train=RUNNING)

    text = render(blocks)
    assert "position 0" not in text and "merging" in text and "Cancel" not in button_labels(blocks), text


def test_leaving_the_queue_and_rolling_back_ask_first_in_plain_words() -> None:
    [cancel] = (cards.actions(deploy(State.QUEUED)) or {})["elements"]
    assert cancel["text"]["text"] == "Cancel"
    assert (cancel["confirm"]["confirm"]["text"], cancel["confirm"]["deny"]["text"]) == ("Leave the queue",
                                                                                           "Keep my place")
    roll_back = next(b for b in (cards.actions(deploy(State.CANARY_CHECK)) or {})["elements"]
                     if b["text"]["text"] == "Roll back")
    assert "newest first" not in roll_back["confirm"]["text"]["text"]
    assert roll_back["confirm"]["confirm"]["text"] == "Roll back"


BUILT_AHEAD = {"candidate_sha": "c" * 40, "candidate_base": "b" * 40, "candidate_on": 11,
               "candidate_build_number": 34, "candidate_build_url": "https://jenkins.acme.com/job/app-master/34/",
               "candidate_retries": 0}


@pytest.mark.parametrize(("result", "said"), [(None, "running"), ("SUCCESS", "passed"),
                                               ("FAILURE", "ended FAILURE")])
def test_a_queued_deploy_built_ahead_says_on_which_deploy_with_its_build_link_and_how_it_went(
        result: str | None, said: str) -> None:
    queued = deploy(State.QUEUED, **BUILT_AHEAD, candidate_result=result)
    text = json.dumps(cards.card_blocks(queued, entry=QueueEntry(queued, 1, timedelta(minutes=3),
                                                                 timedelta(minutes=20)), train=RUNNING))
    assert "Built ahead on #11" in text and f"<https://jenkins.acme.com/job/app-master/34/|build #34> {said}" in text
    assert "starts in about 3 min, done in about 20 min" in text


def test_a_deploy_that_landed_its_candidate_says_built_ahead_and_landed_and_a_retried_build_says_so() -> None:
    landed = deploy(State.CANARY_CHECK, **(BUILT_AHEAD | {"candidate_retries": 1}), candidate_result="SUCCESS",
                    merge_sha="c" * 40, build_number=34, build_url="https://jenkins.acme.com/job/app-master/34/",
                    build_attempts=1)
    text = render(cards.card_blocks(landed))
    assert "Built ahead on #11" in text and "Landed as" in text and "Merged as" not in text
    assert "(started again once)" in text


def test_a_candidate_that_conflicted_or_was_dropped_says_nothing_of_building_ahead() -> None:
    conflicted = deploy(State.QUEUED, candidate_base="b" * 40)
    assert "Built ahead" not in render(cards.card_blocks(conflicted))


def test_a_card_links_the_deploy_s_dashboard_page_when_there_is_one() -> None:
    page = "https://deploys.acme.com/deploys/7"
    assert f"<{page}|Dashboard>" in json.dumps(cards.card_blocks(deploy(State.BUILDING), page=page))
    assert "Dashboard" not in json.dumps(cards.card_blocks(deploy(State.BUILDING)))
