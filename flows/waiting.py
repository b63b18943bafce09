"""How often a waiting step looks at the outside world: rarely while what it waits for cannot be over yet,
often when it should be about to end.

Production builds and rollouts take minutes. Looking every `deploy.poll` throughout would cost a
Jenkins call every few seconds of a ten-minute build; looking rarely would notice its end late. So
a step that knows how long the thing usually takes (the median of the train's recent ones) waits
in halving steps until shortly before that, looks every `poll / FINE` around it, and every `poll`
once it is later than usual. Without history, it looks every `poll` at first and then less often,
a sixth of the time it has waited so far. A hook (Jenkins' notification) wakes it at once anyway.

A rollout whose new tasks all run only waits for the old ones to drain: at once without a load
balancer, after the target group's deregistration delay (five minutes by default) with one. So it
is looked at every `poll / SETTLING` at first (more often than a tool polling every second, for
the first half minute), then less often, a tenth of the time it has settled so far, up to `poll`.
"""

from __future__ import annotations

from datetime import timedelta

FINE = 4  # near the expected end, look this many times as often as `poll`
NEAR = 0.05  # the window around the expected end, as a share of it (at least 3 polls either side)
LONGEST = timedelta(seconds=60)  # never wait longer than this between looks
UNKNOWN_LONGEST = timedelta(seconds=30)  # without history, never longer than this
SETTLING = 10  # a rollout whose new tasks all run is looked at this many times as often as `poll` at first


def next_look(elapsed: timedelta, expected: timedelta | None, poll: timedelta) -> timedelta:
    """How long to wait before looking again at something that usually takes `expected` and has been going
    for `elapsed` (with no history, every `poll`)."""
    if expected is None:
        return min(UNKNOWN_LONGEST, max(poll, elapsed / 6))
    window = max(3 * poll, expected * NEAR)
    remaining = expected - elapsed
    if abs(remaining) <= window:
        return poll / FINE
    if remaining < -window:
        return poll  # later than usual: it may end any time now
    # Halve the time left before the window, but never past its start.
    return min(LONGEST, max(poll, (remaining - window) / 2), remaining - window)


def settling_look(settled: timedelta, poll: timedelta) -> timedelta:
    """How long to wait before looking again at a rollout whose new tasks have all run for `settled`."""
    return min(poll, max(poll / SETTLING, settled / 10))
