"""What the dashboard shows of the domain's frozen views: plain JSON, readable times and durations, and the links
of outside ids (pull request, commits, builds, task definitions, services).

Pure functions of views and of the train's configuration; nothing here reads a database or a secret.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from flows.config import TrainConfig
from flows.deploy.machine import State
from flows.links import commit_url, service_url, task_definition_url
from flows.views import AuditView, DeployView

# The happy path a deploy walks, for its progress ("step 4 of 7").
PATH = (State.QUEUED, State.MERGING, State.BUILDING, State.CANARYING, State.CANARY_CHECK, State.ROLLING_OUT,
        State.AWAITING_CONFIRMATION, State.COMPLETED)
_COMMIT_KEYS = frozenset({"merge_sha", "revert_sha", "head_sha", "sha", "candidate_sha"})
_URL_KEYS = frozenset({"build_url", "manual_url", "pull_request", "url"})
_TASK_DEFINITION_KEYS = frozenset({"task_definition", "copied_from", "old_td", "new_td"})


def iso(at: datetime | None) -> str | None:
    """A naive-UTC (or aware) time as ISO 8601 in UTC with a `Z`, as JSON and `<time datetime>` carry it."""
    if at is None:
        return None
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return aware.isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_text(at: datetime | None) -> str:
    """A time as people read it before the page's script puts it in their own zone."""
    return "—" if at is None else (at if at.tzinfo is None else at.astimezone(UTC)).strftime("%Y-%m-%d %H:%M UTC")


def human(took: timedelta | None) -> str:
    """A duration in its two largest units: `45s`, `3m 20s`, `2h 5m`, `3d 4h`; `—` for none."""
    if took is None:
        return "—"
    seconds = max(int(took.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    first = next((i for i, (value, _) in enumerate(parts) if value), len(parts) - 1)
    return " ".join(f"{value}{unit}" for value, unit in parts[first:first + 2] if value or first == len(parts) - 1)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


_PLAIN = (str, int, float, bool, type(None))


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def jsonable(value: Any) -> Any:
    """A view (a frozen dataclass) and what it holds as JSON: times in ISO UTC, durations in seconds, enums as
    their values, pairs as lists."""
    if isinstance(value, _PLAIN) and not isinstance(value, Enum):  # most values: answered first, it is polled
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: jsonable(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# -- links --------------------------------------------------------------------------------------

def outside_link(key: str, value: Any, deploy: DeployView, config: TrainConfig) -> str | None:
    """Where an outside id of the audit trail (or an undo step) leads, if anywhere."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value)
    if key == "pr" and deploy.pr_url:
        return deploy.pr_url
    if key in _COMMIT_KEYS:
        return commit_url(deploy.pr_url, text)
    if key in _URL_KEYS and text.startswith(("https://", "http://")):
        return text
    if key in _TASK_DEFINITION_KEYS:
        return task_definition_url(text)
    if key == "service":
        return service_url(config, text)
    return None


def linked_ids(pairs: Sequence[tuple[str, Any]], deploy: DeployView, config: TrainConfig) -> list[dict[str, Any]]:
    """Outside ids as `{key, value, url}`, the value shown as text (a structure as compact JSON-ish text)."""
    return [{"key": key, "value": value if isinstance(value, str | int | float) else _compact(value),
             "url": outside_link(key, value, deploy, config)} for key, value in pairs]


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_compact(v) for v in value)
    return str(value)


# -- a deploy's story ------------------------------------------------------------------------

def step_of(deploy: DeployView) -> tuple[int, int]:
    """How far along the happy path the deploy is: (step, of); a state off it counts where it came from."""
    state = deploy.rollback_from if deploy.state in (State.ROLLING_BACK, State.ROLLED_BACK) else deploy.state
    if state is State.BUILD_FAILED:
        state = State.BUILDING
    last = len(PATH) - 1
    if state in PATH:
        return PATH.index(state), last
    return 0, last


def timeline(deploy: DeployView, now: datetime) -> list[dict[str, Any]]:
    """Each state the deploy entered, in order, with when and for how long (the current one: so far)."""
    times = list(deploy.state_times)
    rows = []
    for index, (state, entered) in enumerate(times):
        following = times[index + 1][1] if index + 1 < len(times) else None
        current = following is None and not state.terminal
        took = (following - entered) if following else (now - entered if current else None)
        rows.append({"state": state.value, "label": state.label, "at": entered, "took": took,
                     "current": current, "terminal": state.terminal})
    return rows


def audit_rows(audit: Sequence[AuditView], deploy: DeployView, config: TrainConfig) -> list[dict[str, Any]]:
    return [{"at": event.at, "actor": event.actor, "action": event.action, "detail": event.detail,
             "ids": linked_ids(event.outside_ids, deploy, config)} for event in audit]


def deploy_links(deploy: DeployView, config: TrainConfig) -> list[dict[str, str | None]]:
    """The deploy's own outside ids, linked: its pull request, head, build, merge and revert commits."""
    links: list[dict[str, str | None]] = [{"label": "Pull request", "text": f"#{deploy.pr_number}",
                                           "url": deploy.pr_url}]
    if deploy.pr_head_sha:
        links.append({"label": "Head", "text": deploy.pr_head_sha[:12],
                      "url": commit_url(deploy.pr_url, deploy.pr_head_sha)})
    if deploy.build_url or deploy.build_number:
        links.append({"label": "Build", "text": f"#{deploy.build_number}" if deploy.build_number else "log",
                      "url": deploy.build_url})
    if deploy.merge_sha:
        links.append({"label": "Landed as" if deploy.landed_ahead else "Merge commit", "text": deploy.merge_sha[:12],
                      "url": commit_url(deploy.pr_url, deploy.merge_sha)})
    if deploy.image:
        links.append({"label": "Image", "text": deploy.image, "url": None})
    if deploy.revert_sha:
        links.append({"label": "Revert commit", "text": deploy.revert_sha[:12],
                      "url": commit_url(deploy.pr_url, deploy.revert_sha)})
    if deploy.revert_pull_request:
        links.append({"label": "Revert pull request", "text": deploy.revert_pull_request,
                      "url": deploy.revert_pull_request})
    return links


def deploy_json(deploy: DeployView) -> dict[str, Any]:
    """A deploy as the JSON API gives it: the view, with its page and progress."""
    step, of = step_of(deploy)
    return {**jsonable(deploy), "page": f"/deploys/{deploy.id}", "label": deploy.state.label,
            "terminal": deploy.state.terminal, "step": step, "steps": of}
