"""One train as the Slack surface sees it: its configuration and its public API (DESIGN §6: one app, many trains)."""

from __future__ import annotations

from dataclasses import dataclass

from flows.config import TrainConfig
from flows.deploy.flows import DeployFlows
from flows.pea.flows import PeaFlows


@dataclass(frozen=True)
class TrainFlows:
    """One train as the Slack surface sees it: its configuration and its public API."""

    config: TrainConfig
    deploys: DeployFlows
    peas: PeaFlows

    @property
    def name(self) -> str:
        return self.config.name
