"""How often a waiting step looks: rarely while what it waits for cannot be over, often near its usual end."""

from __future__ import annotations

from datetime import timedelta

from flows.waiting import FINE, LONGEST, SETTLING, UNKNOWN_LONGEST, next_look, settling_look

POLL = timedelta(seconds=5)


def looks(expected: timedelta | None, until: timedelta) -> list[timedelta]:
    """When a step waiting from 0 to `until` looks, following `next_look`."""
    at, seen = timedelta(0), []
    while at < until:
        at += next_look(at, expected, POLL)
        seen.append(at)
    return seen


def test_a_ten_minute_build_that_ends_on_time_costs_well_under_sixty_looks_and_is_seen_within_two_seconds() -> None:
    expected = timedelta(minutes=10)
    seen = looks(expected, expected)
    assert len(seen) <= 60
    assert seen[-1] - expected < timedelta(seconds=2.1)


def test_around_the_usual_end_it_looks_every_poll_divided_by_the_fine_factor() -> None:
    expected = timedelta(minutes=10)
    assert next_look(expected - timedelta(seconds=5), expected, POLL) == POLL / FINE
    assert next_look(expected + timedelta(seconds=10), expected, POLL) == POLL / FINE
    assert next_look(expected + timedelta(minutes=5), expected, POLL) == POLL  # later than usual


def test_far_from_the_end_it_waits_longer_but_never_past_the_window_or_a_minute() -> None:
    expected = timedelta(hours=1)
    assert next_look(timedelta(0), expected, POLL) == LONGEST
    window = expected * 0.05
    near = expected - window - timedelta(seconds=3)
    assert next_look(near, expected, POLL) == timedelta(seconds=3)  # lands at the window's start


def test_without_history_it_looks_every_poll_at_first_then_less_often() -> None:
    assert next_look(timedelta(seconds=10), None, POLL) == POLL
    assert next_look(timedelta(minutes=2), None, POLL) == timedelta(seconds=20)
    assert next_look(timedelta(minutes=30), None, POLL) == UNKNOWN_LONGEST
    assert len(looks(None, timedelta(minutes=10))) <= 40


def test_a_settling_rollout_is_looked_at_more_often_than_every_second_at_first_and_cheaply_through_a_long_drain(
) -> None:
    assert settling_look(timedelta(0), POLL) == POLL / SETTLING < timedelta(seconds=1)
    assert settling_look(timedelta(minutes=4), POLL) == POLL
    at, seen = timedelta(0), 0
    while at < timedelta(minutes=5):  # the default deregistration delay of a target group
        at += settling_look(at, POLL)
        seen += 1
    assert seen <= 100  # a tool polling every second looks 300 times
