"""The `fatcontroller` command line: run, demo, check-config, doctor, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from flows.config import AppConfig, ConfigError, Settings, TrainConfig, format_duration, load_config

if TYPE_CHECKING:  # flows.doctor loads every client's library: only `doctor` needs it
    from flows.doctor import Report

EXIT_BAD_CONFIG = 2
LOG_FORMAT_VARIABLE = "FATCONTROLLER_LOG_FORMAT"
# Libraries that log their routine at INFO: their own loggers say what matters only from WARNING on, unless
# --verbose. APScheduler logs every tick; alembic its plugins and its context at every start.
QUIET_LOGGERS = ("apscheduler", "alembic")


_redactor: Callable[[str], str] | None = None


def _redact(text: str) -> str:
    """Secrets are kept out of messages where they are made; this also catches a traceback that quotes one."""
    global _redactor
    if _redactor is None:
        # Imported at the first record, not at start: bot.wiring loads every client (~1 s), which
        # `check-config` never needs.
        try:
            from bot.wiring import redact
        except ImportError:  # a record logged while bot.wiring itself is being imported: no client exists yet
            return text
        _redactor = redact
    return _redactor(text)


def _utc(created: float) -> str:
    """`2026-12-01T10:00:00.123Z`: one zone whatever the host's, so the lines of several copies sort together."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`<UTC time> LEVEL logger: message`, with anything that looks like a credential redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return _redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and exception (the traceback)
    or stack when there is one; a multi-line message stays on its line, escaped. Redacted like the text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _utc(record.created), "level": record.levelname, "logger": record.name,
                                "message": _redact(record.getMessage())}
        if record.exc_info:
            line["exception"] = _redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = _redact(record.exc_text)
        if record.stack_info:
            line["stack"] = _redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _log_format() -> str:
    """FATCONTROLLER_LOG_FORMAT, read through Settings; SystemExit(2) naming it when it is neither text nor json.
    Another variable that is wrong is left for the command that needs it to report."""
    try:
        return Settings().log_format
    except ValidationError as exc:
        if any(LOG_FORMAT_VARIABLE in error["loc"] for error in exc.errors()):
            print(f"fatcontroller: {LOG_FORMAT_VARIABLE} must be text or json", file=sys.stderr)
            raise SystemExit(EXIT_BAD_CONFIG) from None
        return "text"


def configure_logging(verbose: bool = False, log_format: str | None = None) -> None:
    """Log records to stderr as text or JSON lines (`log_format`, default FATCONTROLLER_LOG_FORMAT), at DEBUG
    with `verbose`, else at INFO with the QUIET_LOGGERS at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if (log_format or _log_format()) == "json" else TextFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _summary(app: AppConfig) -> str:
    """What check-config found: every train, then what the one Slack app serves."""
    lines = [line for train in app.trains.values() for line in _train_summary(train)]
    # Slack sends the app only the commands its manifest declares: the names here must be those.
    commands = app.slack.commands
    lines.append(f"slack commands: {commands.deploy}, {commands.pea} (as in the manifest's slash_commands)")
    return "\n".join(lines)


def _train_summary(config: TrainConfig) -> list[str]:
    lines = [
        f"train {config.name}: {config.github.repo} ({config.github.base_branch}) → ECS cluster {config.ecs.cluster}",
        f"  builds: Jenkins {config.jenkins.job} (PRs: {config.jenkins.pr_job}), trigger {config.jenkins.trigger}",
        f"  image: {config.image}",
        "  processes:",
        *(f"    {name} → {p.service} (container {p.container})" for name, p in config.processes.items()),
    ]
    if config.peas and config.peas.names:
        lines.append(f"  peas on {config.peas.cluster}: {', '.join(config.peas.names)} "
                     f"(lease {format_duration(config.peas.lease)})")
    lines.append(f"  slack channel: {config.slack.channel}")
    return lines


def _load(path: str | None) -> AppConfig:
    return load_config(path or Settings().config_path)


def _bad_config(exc: ConfigError) -> int:
    """Every problem of an app.yaml that does not load, on stderr; the exit code that says so."""
    print(f"{exc.path}: {len(exc.errors)} problem(s)", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        return _bad_config(exc)
    print(_summary(config))
    print("config ok")
    return 0


def _doctor_text(config: TrainConfig, report: Report, *, named: bool = False) -> str:
    """The report, system by system: each check's status, name and what was found, and the fix under it
    (`named`: headed by the train's name, in a file of several)."""
    from flows.doctor import SYSTEMS, Status

    train = f"train {config.name}: " if named else ""
    lines = [f"doctor: {train}{config.github.repo} ({config.github.base_branch}) → ECS cluster {config.ecs.cluster}"]
    for system in SYSTEMS:
        checks = [c for c in report.checks if c.system == system]
        if checks:
            lines.append(system)
        for check in checks:
            label = "note" if check.status is Status.OK and not check.checked else check.status.value
            lines.append(f"  {label:<8} {check.name}: {check.detail}")
            if check.fix:
                lines.append(f"  {'':<8} fix: {check.fix}")
    problems, warnings = len(report.problems), len(report.warnings)
    if problems or warnings:
        counts = [f"{problems} problem{'s' * (problems != 1)}"] if problems else []
        counts += [f"{warnings} warning{'s' * (warnings != 1)}"] if warnings else []
        lines.append(f"{' and '.join(counts)} in {len(report.checks)} checks")
    else:
        lines.append(f"all {len(report.checks)} checks ok")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.wiring import doctor

    try:
        trains = list(_load(args.config).trains.values())
    except ConfigError as exc:
        return _bad_config(exc)

    async def examine_all() -> list[Report]:
        settings = Settings()
        return list(await asyncio.gather(*(doctor(config, settings) for config in trains)))

    reports = asyncio.run(examine_all())
    print("\n\n".join(_doctor_text(config, report, named=len(trains) > 1)
                       for config, report in zip(trains, reports, strict=True)))
    return max(report.exit_code for report in reports)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.wiring import WiringError, upgrade_database

    try:
        asyncio.run(upgrade_database(Settings()))
    except WiringError as exc:
        print(f"db upgrade failed: {exc}", file=sys.stderr)
        return 1
    print("database schema is up to date")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bot.app import run

    try:
        config = _load(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{exc.path}: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return asyncio.run(run(config, Settings()))


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.verbose:  # the demo's screen says what happens; importing the product would log its set-up
        logging.disable(logging.INFO)
    from demo.scenario import demo

    return asyncio.run(demo(keep=args.keep))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fatcontroller", description="A Slack-first deploy train for AWS ECS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the Slack app and its job loop")
    run.add_argument("--config", help="path of app.yaml (default: $FATCONTROLLER_CONFIG or ./app.yaml)")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="the whole system on the embedded sandbox")
    demo.add_argument("--keep", action="store_true", help="leave the sandbox and the bot running afterwards")
    demo.set_defaults(handler=cmd_demo)

    check = sub.add_parser("check-config", help="validate app.yaml and summarise the train")
    check.add_argument("--config", help="path of app.yaml (default: $FATCONTROLLER_CONFIG or ./app.yaml)")
    check.set_defaults(handler=cmd_check_config)

    doctor = sub.add_parser("doctor", help="check every credential and permission the train needs")
    doctor.add_argument("--config", help="path of app.yaml (default: $FATCONTROLLER_CONFIG or ./app.yaml)")
    doctor.set_defaults(handler=cmd_doctor)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database in $DATABASE_URL to the latest schema")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
