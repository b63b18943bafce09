"""Shared fixtures: each outside system's emulator, the database, a fast retry policy."""

import os
from datetime import timedelta

import pytest

from flows.leased import Backoff

# Tests talk to emulators on 127.0.0.1: a proxy from the environment would swallow that traffic.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

pytest_plugins = [
    "tests.fixtures.github",
    "tests.fixtures.jenkins",
    "tests.fixtures.aws",
    "tests.fixtures.storage",
    "tests.fixtures.slack",
    "tests.fixtures.world",
    "tests.fixtures.bot",
    "tests.fixtures.peas",
    "tests.fixtures.bot_process",
    "tests.fixtures.browser",
    "tests.fixtures.trains",
]


@pytest.fixture
def quick_give_up() -> Backoff:
    """Steps tried again within milliseconds and given up on after a second, so exhausted paths are quick to test."""
    return Backoff(deadline=timedelta(seconds=1), base=timedelta(milliseconds=10), cap=timedelta(milliseconds=50))
