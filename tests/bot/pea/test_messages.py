"""A pea's DMs and line say which commit it runs: the PR head, or what Jenkins built of it merged with the base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.pea.cards import pea_line
from bot.pea.messages import headline
from flows.notices import PeaStarting, PeaUp, decode, encode
from flows.views import PeaView
from storage.models import Pea

HEAD, MERGE = "ab12" * 10, "cd34" * 10
URL = "https://sweet-pea.dev.acme.com"


def view(**fields: Any) -> PeaView:
    values: dict[str, Any] = {
        "name": "sweet-pea", "state": "up", "holder": "U0ALICE", "pr_number": 110, "pr_title": "Purple buttons",
        "pr_url": "https://github.com/acme/app/pull/110", "pr_base": "master", "head_sha": HEAD, "built_sha": HEAD,
        "url": URL, "claimed_at": datetime(2024, 6, 28, 12), "claim_expires_at": datetime(2024, 6, 28, 20),
    }
    return PeaView.of(Pea(**(values | fields)), "app")


def test_a_pea_on_the_head_jenkins_built_says_the_head() -> None:
    starting = PeaStarting("sweet-pea", "app", "U0ALICE", HEAD, pr=110, built=HEAD, base="master")
    up = PeaUp("sweet-pea", "app", "U0ALICE", URL, 110, HEAD, built=HEAD, base="master")

    assert headline(starting, view()) == f"Starting `sweet-pea` on the head {HEAD[:12]}"
    assert headline(up, view()).startswith(f"`sweet-pea` is up at {URL}: #110 Purple buttons, running the head "
                                           f"{HEAD[:12]}\n")
    assert "merged" not in pea_line(view())


def test_a_pea_on_the_merge_jenkins_built_says_it_is_the_pr_merged_with_its_base_and_names_both() -> None:
    starting = PeaStarting("sweet-pea", "app", "U0ALICE", HEAD, pr=110, built=MERGE, base="release/<2>")
    up = PeaUp("sweet-pea", "app", "U0ALICE", URL, 110, HEAD, built=MERGE, base="master")
    merged = view(built_sha=MERGE)

    assert headline(starting, merged) == (f"Starting `sweet-pea` on #110 merged with release/&lt;2&gt;: {MERGE[:12]} "
                                          f"(head {HEAD[:12]})")
    assert headline(up, merged).startswith(f"`sweet-pea` is up at {URL}: #110 Purple buttons, running #110 merged "
                                           f"with master: {MERGE[:12]} (head {HEAD[:12]})\n")
    # the head links to GitHub; Jenkins' merge was made in its workspace, so it is named without a link
    assert f"|{HEAD[:8]}> merged with master as {MERGE[:8]} ·" in pea_line(merged)


def test_a_notice_stored_before_it_said_what_was_built_still_reads_as_the_head() -> None:
    kind, payload = encode(PeaUp("sweet-pea", "app", "U0ALICE", URL, 110, HEAD))
    old = {name: value for name, value in payload.items() if name not in ("built", "base")}

    notice = decode(kind, old)

    assert isinstance(notice, PeaUp) and (notice.built, notice.base) == (None, None)
    assert f"running the head {HEAD[:12]}" in (headline(notice, view()) or "")
