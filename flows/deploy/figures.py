"""A finished deploy's four durations, fixed when it finishes, so `/deploy stats` only counts and sorts.

Exact to the microsecond, from the deploy's own times (see `flows.deploy.stats` for what each means);
None where a figure does not apply to how the deploy ended. Kept on the row by a mapper hook, so every
way a deploy row is written (a transition, a test's fixture) keeps them in step with its times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.deploy.machine import State
from storage.models import Deploy

FIGURES = ("lead_time_us", "queue_wait_us", "deploy_duration_us", "time_to_roll_back_us")


def _micros(later: datetime | None, earlier: datetime | None) -> int | None:
    if later is None or earlier is None:
        return None
    return (later - earlier) // timedelta(microseconds=1)


def figures_of(values: dict[str, Any]) -> dict[str, int | None]:
    """The durations of a deploy given its columns (`state`, `finished_at`, ...); all None until it finished."""
    finished = values.get("finished_at")
    if finished is None:
        return dict.fromkeys(FIGURES)
    completed = values.get("state") == State.COMPLETED.value
    rolled_back = values.get("state") == State.ROLLED_BACK.value
    # A deploy that never entered awaiting_confirmation counts as in production when it finished.
    in_production = values.get("in_production_at") or finished
    return {
        "lead_time_us": _micros(in_production, values.get("pr_created_at")) if completed else None,
        "queue_wait_us": _micros(values.get("started_at"), values.get("created_at")),
        "deploy_duration_us": _micros(finished, values.get("started_at")) if completed else None,
        "time_to_roll_back_us": _micros(finished, values.get("rolling_back_at")) if rolled_back else None,
    }


@sa.event.listens_for(Deploy, "before_insert")
@sa.event.listens_for(Deploy, "before_update")
def _keep_figures(_mapper: Any, _connection: Any, deploy: Deploy) -> None:
    columns = ("state", "finished_at", "in_production_at", "pr_created_at", "started_at", "created_at",
               "rolling_back_at")
    for name, value in figures_of({c: getattr(deploy, c) for c in columns}).items():
        if getattr(deploy, name) != value:
            setattr(deploy, name, value)
