"""The composition root's choices: which train takes over a database a single-train release made."""

from __future__ import annotations

from pathlib import Path

from bot.wiring import legacy_heir
from flows.config import load_config
from tests.fixtures.trains import two_trains


def test_a_single_train_database_goes_to_the_train_on_its_repository(tmp_path: Path) -> None:
    trains = list(load_config(two_trains(tmp_path)).trains.values())
    assert legacy_heir(trains, "acme/billing").name == "billing"
    assert legacy_heir(trains, "ACME/Billing").name == "billing"  # GitHub's names ignore case
    assert legacy_heir(trains, "acme/elsewhere").name == "app"  # none on it: the file's first train
    assert legacy_heir(trains, None).name == "app"
    assert legacy_heir(trains[1:], "acme/app").name == "billing"  # a file of one train always takes it
