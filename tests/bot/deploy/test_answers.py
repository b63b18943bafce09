"""What `/deploy <pr>` answers once the request is accepted: its place (1 is next), what it waits for, its card."""

from __future__ import annotations

from datetime import timedelta

from bot.deploy.answers import queue_text, queued_text
from flows.deploy.machine import State
from flows.views import Placed, QueueEntry, QueueView
from tests.fixtures.views import FROZEN, RUNNING, deploy


def test_the_next_deploy_is_position_1_and_says_when_it_starts() -> None:
    text = queued_text(Placed(QueueEntry(deploy(State.QUEUED), 1, timedelta(minutes=12)), RUNNING), "C0DEPLOYS")

    assert "Queued deploy 7 of *<https://github.com/acme/app/pull/12|#12>* Add a banner" in text
    assert "position 1, starts in about 12 min" in text and "<#C0DEPLOYS>" in text


def test_on_a_frozen_train_it_says_who_froze_it_why_and_that_it_starts_once_unfrozen() -> None:
    text = queued_text(Placed(QueueEntry(deploy(State.QUEUED), 1, None), FROZEN), "C0DEPLOYS")

    assert "position 1, starts when the train is unfrozen" in text
    assert "frozen by <@U0ADMIN>: release &lt;!here&gt; testing" in text and "any moment" not in text


def test_a_deploy_that_started_before_it_was_read_in_the_queue_says_so_not_position_0() -> None:
    started = deploy(State.MERGING)
    text = queued_text(Placed(QueueEntry(started, 0, timedelta(0)), RUNNING), "C0DEPLOYS")

    assert "position" not in text and "it has started (`merging`)" in text


def test_a_deploy_that_ended_before_it_was_read_says_how_it_ended() -> None:
    failed = deploy(State.FAILED, outcome_reason="#12 conflicts with master")
    text = queued_text(Placed(QueueEntry(failed, 0, timedelta(0)), RUNNING), "C0DEPLOYS")

    assert "position" not in text and "it has already ended: `failed`" in text


def test_the_queue_shows_which_queued_deploys_are_built_ahead_and_whether_green() -> None:
    in_flight = deploy(State.CANARY_CHECK, id=6, pr_number=11, merge_sha="m" * 40)
    green = deploy(State.QUEUED, candidate_sha="c" * 40, candidate_base="m" * 40, candidate_on=11,
                   candidate_build_number=34, candidate_build_url="https://jenkins.acme.com/job/app-master/34/",
                   candidate_result="SUCCESS", candidate_retries=0)
    red = deploy(State.QUEUED, id=8, pr_number=13, candidate_sha="d" * 40, candidate_base="c" * 40, candidate_on=12,
                 candidate_build_number=35, candidate_build_url="https://jenkins.acme.com/job/app-master/35/",
                 candidate_result="FAILURE", candidate_retries=0)
    text = queue_text(QueueView(RUNNING, (QueueEntry(in_flight, 0, timedelta(0), timedelta(minutes=2)),
                                          QueueEntry(green, 1, timedelta(minutes=2), timedelta(minutes=8)),
                                          QueueEntry(red, 2, timedelta(minutes=8), timedelta(minutes=14)))))
    first, second = text.splitlines()[1:]
    assert ":large_green_circle: built ahead on #11" in first and "build #34> passed" in first
    assert "starts in about 2 min, done in about 8 min" in first
    assert ":red_circle: built ahead on #12" in second and "build #35> ended FAILURE" in second
