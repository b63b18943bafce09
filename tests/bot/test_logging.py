"""The command line's log: UTC timestamps with their zone, JSON lines with FATCONTROLLER_LOG_FORMAT=json,
secrets redacted either way, and no alembic start-up noise unless --verbose. Run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPGRADED = "upgraded the database schema from nothing to revision"
SLACK_TOKEN = "xoxb-4242-SECRETslackbot-q8Zr1"
PASSWORD = "hunter2-SECRET"
TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")


def _run(*args: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """`python -m bot.cli ARGS` (or `python -c CODE`), in a host zone far from UTC."""
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "bot.cli", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TZ": "Asia/Tokyo", **(env or {})})


def _recent_utc(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() == timedelta(0), stamp
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=2), stamp  # UTC, not the host's Tokyo time
    return when


def _json_lines(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "nothing logged"
    return [json.loads(line) for line in lines]  # every line is one whole object


def test_json_format_logs_one_object_per_line_with_utc_time_level_logger_and_message(tmp_path: Path) -> None:
    done = _run("db", "upgrade", env={"FATCONTROLLER_LOG_FORMAT": "json",
                                      "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fc.db'}"})

    assert done.returncode == 0, done.stderr
    assert done.stdout == "database schema is up to date\n"  # what the command says stays plain
    records = _json_lines(done.stderr)
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
        _recent_utc(record["time"])
    assert any(r["logger"] == "storage.migrate" and r["level"] == "INFO" and r["message"].startswith(UPGRADED)
               for r in records), records
    assert not [r for r in records if r["logger"].startswith("alembic")]


def test_text_format_stamps_each_line_in_utc_with_its_zone_and_alembic_is_quiet_unless_verbose(
        tmp_path: Path) -> None:
    done = _run("db", "upgrade", env={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fc.db'}"})

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    # The start used to print seven lines of alembic's plugins and context; now only what we did.
    assert len(lines) == 1, lines
    match = TEXT_LINE.match(lines[0])
    assert match, lines[0]
    _recent_utc(match[1])
    assert match.group(2, 3) == ("INFO", "storage.migrate") and match[4].startswith(UPGRADED)

    verbose = _run("--verbose", "db", "upgrade", env={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"})
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO alembic.runtime.migration: Running upgrade  -> 0001" in verbose.stderr


def test_a_logged_exception_is_one_json_line_with_its_traceback_and_no_secret() -> None:
    code = textwrap.dedent(f"""
        import logging
        from bot.cli import configure_logging
        configure_logging()
        log = logging.getLogger("fatcontroller.test")
        try:
            raise ConnectionError("cannot reach https://fc:{PASSWORD}@jenkins.internal/job/x")
        except ConnectionError:
            log.exception("the step failed\\nwith the token {SLACK_TOKEN}")
        log.warning("après la pluie → le beau temps")
    """)
    done = _run(code=code, env={"FATCONTROLLER_LOG_FORMAT": "json"})

    assert done.returncode == 0, done.stderr
    failed, warned = _json_lines(done.stderr)
    assert failed["level"] == "ERROR" and failed["logger"] == "fatcontroller.test"
    assert failed["message"] == "the step failed\nwith the token ***"  # multi-line, yet one line of JSON
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "ConnectionError: cannot reach https://***@jenkins.internal/job/x" in failed["exception"]
    assert SLACK_TOKEN not in done.stderr and PASSWORD not in done.stderr
    assert warned == {"time": warned["time"], "level": "WARNING", "logger": "fatcontroller.test",
                      "message": "après la pluie → le beau temps"}


def test_an_unknown_log_format_is_named_and_stops_the_command() -> None:
    done = _run("check-config", "--config", str(ROOT / "app.yaml"), env={"FATCONTROLLER_LOG_FORMAT": "xml"})

    assert done.returncode == 2
    assert done.stderr == "fatcontroller: FATCONTROLLER_LOG_FORMAT must be text or json\n"
    assert done.stdout == ""
