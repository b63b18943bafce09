"""The `fatcontroller` command line: run, demo, check-config, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from flows.config import AppConfig, ConfigError, Settings, load_config

EXIT_BAD_CONFIG = 2


def _summary(config: AppConfig) -> str:
    lines = [
        f"train: {config.github.repo} ({config.github.base_branch}) → ECS cluster {config.ecs.cluster}",
        f"builds: Jenkins {config.jenkins.job} (PRs: {config.jenkins.pr_job}), trigger {config.jenkins.trigger}",
        f"image: {config.image}",
        "processes:",
        *(f"  {name} → {p.service} (container {p.container})" for name, p in config.processes.items()),
    ]
    if config.peas and config.peas.names:
        lines.append(f"peas on {config.peas.cluster}: {', '.join(config.peas.names)} (lease {config.peas.lease})")
    lines.append(f"slack channel: {config.slack.channel}")
    return "\n".join(lines)


def _load(path: str | None) -> AppConfig:
    return load_config(path or Settings().config_path)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"{exc.path}: {len(exc.errors)} problem(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(_summary(config))
    print("config ok")
    return 0


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

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database in $DATABASE_URL to the latest schema")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler logs every tick at INFO: the job loop's own log says what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
