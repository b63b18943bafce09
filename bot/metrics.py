"""Prometheus metrics of the process (served on `/metrics` by `web.server`).

Each bot has its own registry (several can run in one test process). Deploy and queue gauges
are read from the database when scraped; the rest are counted as things happen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
_STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deploys = Gauge("fatcontroller_deploys", "Deploys in each state of the flowchart.", ["train", "state"],
                             registry=self.registry)
        self.queue_length = Gauge("fatcontroller_queue_length", "Deploys waiting in the queue.", ["train"],
                                  registry=self.registry)
        self.step_seconds = Histogram("fatcontroller_step_duration_seconds",
                                      "Time deploys spent in a state before moving on.", ["train", "state"],
                                      buckets=_STEP_BUCKETS, registry=self.registry)
        self.outside_errors = Counter("fatcontroller_outside_call_errors",
                                      "Failed calls to outside systems (each attempt, retried or not).",
                                      ["system", "kind"], registry=self.registry)
        self.ack_seconds = Histogram("fatcontroller_slack_ack_seconds",
                                     "From a Slack envelope's arrival to its acknowledgement.", ["type"],
                                     buckets=_ACK_BUCKETS, registry=self.registry)
        self.slack_errors = Counter("fatcontroller_slack_delivery_errors",
                                    "Slack Web API calls that failed (retried through the outbox if they may pass).",
                                    ["method"], registry=self.registry)
        self.outbox_failures = Counter("fatcontroller_outbox_delivery_failures",
                                       "Deliveries of the outbox that failed and wait to be tried again.", ["sink"],
                                       registry=self.registry)

    def outside_error(self, system: str, transient: bool) -> None:
        """Count a failed call to an outside system, by system and kind."""
        self.outside_errors.labels(system, "transient" if transient else "permanent").inc()

    def outbox_failed(self, sink: str, _error: str) -> None:
        self.outbox_failures.labels(sink).inc()

    def step_ended(self, train: str, state: str, entered: datetime, left: datetime) -> None:
        self.step_seconds.labels(train, state).observe(max(0.0, (left - entered).total_seconds()))

    def refresh(self, train: str, counts: dict[str, int]) -> None:
        for state, count in counts.items():
            self.deploys.labels(train, state).set(count)
        self.queue_length.labels(train).set(counts.get("queued", 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def exposition_of(metrics: Metrics, counts: Mapping[str, Callable[[], Awaitable[dict[str, int]]]]) -> bytes:
    """`/metrics`: the counters, and each train's deploy gauges (`counts`, by train) read from the domain now."""
    for train, count in counts.items():
        try:
            metrics.refresh(train, await count())
        except Exception:
            log.exception("metrics: cannot read the deploys of train %s", train)
    return metrics.exposition()
