"""Shared fixtures: each outside system's emulator, the database, a fast retry policy."""

import os

import pytest

from integrations.outside import RetryPolicy

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
]


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Retries that give up within a couple of seconds, so exhausted-retry paths are quick to test."""
    return RetryPolicy(deadline=2.0, base_delay=0.01, max_delay=0.05, call_timeout=10.0)
