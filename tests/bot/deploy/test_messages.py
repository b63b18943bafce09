"""The words of a deploy's notices: what the requester's direct messages claim is true of the deploy."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.deploy.messages import direct_message, gate_status
from flows.config import load_config
from flows.deploy.machine import Event, State
from flows.notices import CandidateBuildFailed, Moved, YoureNext
from flows.views import DeployView
from storage.models import Deploy

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_config(ROOT / "app.yaml").trains["app"]
UP = Moved(7, "app", Event.CANARIES_UP, State.CANARYING, State.CANARY_CHECK)


def at_the_gate(targets: dict[str, dict[str, Any]]) -> DeployView:
    return DeployView.of(Deploy(
        id=7, train_id="app", state=State.CANARY_CHECK.value, requester="U0ALICE", pr_number=12,
        pr_title="Add a banner", processes=list(targets), needs_attention=False, jump_queue=False, skip_build=False,
        build_attempts=0, created_at=datetime(2024, 6, 28, 12), state_entered_at=datetime(2024, 6, 28, 12),
        state_times={}, targets=targets))


def test_canaries_reached_like_their_services_are_said_to_take_real_traffic() -> None:
    deploy = at_the_gate({"web": {"service": "app-web", "canary": "app-web-canary", "canary_client_only": False},
                          "worker": {"service": "app-worker", "canary": "app-worker-canary"}})

    dm = direct_message(UP, deploy, CONFIG)

    assert dm is not None and dm.offered is State.CANARY_CHECK
    assert "`app-web-canary`, `app-worker-canary`, taking real traffic." in dm.text


def test_a_canary_only_a_service_connect_client_is_not_said_to_take_real_traffic() -> None:
    deploy = at_the_gate({"api": {"service": "app-api", "canary": "app-api-canary", "canary_client_only": True},
                          "web": {"service": "app-web", "canary": "app-web-canary", "canary_client_only": False}})

    dm = direct_message(UP, deploy, CONFIG)

    assert dm is not None
    assert "`app-web-canary`, taking real traffic; `app-api-canary`, taking no Service Connect traffic " \
           "(only `app-api` may publish its endpoints there: the canary is a client only)." in dm.text
    only_clients = direct_message(UP, at_the_gate({"api": {"service": "app-api", "canary": "app-api-canary",
                                                           "canary_client_only": True}}), CONFIG)
    assert only_clients is not None and "real traffic" not in only_clients.text


def test_a_red_build_ahead_tells_the_requester_before_their_turn_and_offers_to_leave_the_queue() -> None:
    queued = DeployView.of(Deploy(
        id=7, train_id="app", state=State.QUEUED.value, requester="U0ALICE", pr_number=12, pr_title="Add a banner",
        processes=["web"], needs_attention=False, jump_queue=False, skip_build=False, build_attempts=0,
        created_at=datetime(2024, 6, 28, 12), state_entered_at=datetime(2024, 6, 28, 12), state_times={},
        targets={}, candidate_base="b" * 40, candidate_sha="c" * 40, candidate_result="FAILURE", candidate_retries=0))
    message = direct_message(CandidateBuildFailed(7, "app", 34, "https://jenkins.acme.com/job/app-master/34/",
                                                  "FAILURE"), queued, CONFIG)
    assert message is not None and message.offered is State.QUEUED
    assert "Your build failed while waiting" in message.text and "leave the queue" in message.text
    assert "<https://jenkins.acme.com/job/app-master/34/|#34> ended FAILURE" in message.text


def test_the_next_in_line_hears_when_it_starts() -> None:
    message = direct_message(YoureNext(7, "app", timedelta(minutes=6)), at_the_gate({}), CONFIG)
    assert message is not None and "You're next" in message.text and "in about 6 min" in message.text


def test_the_canary_dm_shows_each_canary_s_health_and_each_watched_alarm_and_its_state() -> None:
    deploy = DeployView.of(Deploy(
        id=7, train_id="app", state=State.CANARY_CHECK.value, requester="U0ALICE", pr_number=12, pr_title="Banner",
        processes=["web"], needs_attention=False, jump_queue=False, skip_build=False, build_attempts=0,
        created_at=datetime(2024, 6, 28, 12), state_entered_at=datetime(2024, 6, 28, 12), state_times={},
        targets={"web": {"service": "app-web", "canary": "app-web-canary", "canary_health": [1, 1, 1]}},
        alarm_states={"app-5xx-rate": "OK", "app-p99": "INSUFFICIENT_DATA"}))
    message = direct_message(UP, deploy, CONFIG)
    assert message is not None and "Canaries are up" in message.text
    status = gate_status(deploy, CONFIG)  # beside the words, kept current while the requester decides
    assert status is not None
    region = CONFIG.region
    console = f"https://{region}.console.aws.amazon.com"
    assert (f"<{console}/ecs/v2/clusters/{CONFIG.ecs.cluster}/services/app-web-canary/health?region={region}|web "
            "canary> 1/1 running, 1 healthy target") in status
    assert (f":large_green_circle: <{console}/cloudwatch/home?region={region}#alarmsV2:alarm/app-5xx-rate|"
            f"app-5xx-rate> OK · :white_circle: <{console}/cloudwatch/home?region={region}#alarmsV2:alarm/app-p99|"
            "app-p99> INSUFFICIENT_DATA") in status
    assert gate_status(at_the_gate({}), CONFIG) is None  # nothing to show: no canary read, no alarm watched
