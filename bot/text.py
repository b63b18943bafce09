"""Slack text: escaping people's words for mrkdwn, quoting bad input, durations and dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def escape(text: str | None) -> str:
    """Text shown as typed: `<!channel>` or `<@U123>` in a reason is displayed, never triggered."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(text: str, limit: int = 80) -> str:
    """Someone's input, escaped and shortened, in backticks: for "`abc` is not a number"."""
    shown = shorten(_CONTROL.sub("?", text).replace("`", "'").replace("\n", " "), limit)
    return f"`{escape(shown)}`"


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def plain(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object, cut to Slack's limit for where it goes."""
    return {"type": "plain_text", "text": shorten(text, limit), "emoji": True}


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(shorten(text, 3000)), **extra}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(shorten(t, 2000)) for t in texts if t]}


def link(url: str | None, label: str) -> str:
    """A mrkdwn link with an escaped label (just the label when there is no URL)."""
    return f"<{url}|{escape(label)}>" if url else escape(label)


def user(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "someone"


def deploy_ref(deploy_id: int, pr: int) -> str:
    """How every message names a deploy: `deploy 6 of #5` (the id `/deploy cancel` takes, and its pull request)."""
    return f"deploy {deploy_id} of #{pr}"


def human_duration(value: timedelta | float | None) -> str:
    """`45s`, `4m 12s`, `2h 5m`, `3d 4h`."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def eta(value: timedelta | None) -> str:
    """When a queued deploy starts, after "starts": `any moment now`, `in about 12 min`; None is a frozen train's
    (nothing starts until it is unfrozen)."""
    if value is None:
        return "when the train is unfrozen"
    if value.total_seconds() < 30:
        return "any moment now"
    return f"in about {max(round(value.total_seconds() / 60), 1)} min"


def schedule(start: timedelta | None, finish: timedelta | None) -> str:
    """`starts in about 5 min, done in about 25 min` (a frozen train's: `starts when the train is unfrozen`)."""
    said = f"starts {eta(start)}"
    return said + (f", done {eta(finish)}" if start is not None and finish is not None else "")


def when(moment: datetime | str | None, style: str = "{time_secs}") -> str:
    """A time every reader sees in their own time zone (Slack date formatting), UTC as the fallback."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return f"<!date^{int(aware.timestamp())}^{style}|{aware:%Y-%m-%d %H:%M:%S} UTC>"
