"""What the domain says no with: refusals for people (a reason code and its facts), and a row that moved
underneath a worker.

A refusal never carries wording: the surface that shows it (Slack, the web) words it, with the
commands of that surface, from `why` and `facts`. A refused request changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Why(StrEnum):
    # who may
    NOT_A_DEPLOYER = "not_a_deployer"
    NOT_ON_EMERGENCY_LIST = "not_on_emergency_list"
    NOT_YOURS = "not_yours"  # deploy_id, requester
    ADMINS_ONLY = "admins_only"  # what
    # what was asked
    NOT_A_PR_NUMBER = "not_a_pr_number"  # pr, [pea]
    UNKNOWN_PROCESS = "unknown_process"  # process, choices
    REASON_REQUIRED = "reason_required"  # emergency options without a reason
    FREEZE_REASON_REQUIRED = "freeze_reason_required"
    TOO_LONG = "too_long"  # what (reason, notes), length, limit
    # the pull request
    NO_SUCH_PR = "no_such_pr"  # pr, repo, [pea]
    PR_MERGED = "pr_merged"  # pr, [pea]
    PR_CLOSED = "pr_closed"  # pr, [pea]
    PR_WRONG_BASE = "pr_wrong_base"  # pr, base, expected
    PR_FROM_FORK = "pr_from_fork"  # pr, repo, [pea]
    PR_CONFLICTS = "pr_conflicts"  # pr, base
    ALREADY_QUEUED = "already_queued"  # pr, deploy_id
    # the deploy and the train
    NO_SUCH_DEPLOY = "no_such_deploy"  # deploy_id
    STALE_BUTTON = "stale_button"  # deploy_id, pr, state
    NOT_POSSIBLE_NOW = "not_possible_now"  # deploy_id, state, event
    NOTHING_QUEUED = "nothing_queued"
    ONLY_QUEUED_CANCEL = "only_queued_cancel"  # deploy_id, state
    ALREADY_FROZEN = "already_frozen"
    NOT_FROZEN = "not_frozen"
    # peas
    PEAS_NOT_SET_UP = "peas_not_set_up"
    NO_SUCH_PEA = "no_such_pea"  # pea, choices
    PEA_HELD = "pea_held"  # pea, holder, until, action
    PEA_BUSY = "pea_busy"  # pea
    PEA_NOT_POSSIBLE_NOW = "pea_not_possible_now"  # pea, state
    PEA_NOT_CLAIMED = "pea_not_claimed"  # pea, action
    PEA_BUILD_RED = "pea_build_red"  # pea, pr, sha, build, result, url
    UNKNOWN_BUTTON = "unknown_button"  # button
    STALE_PEA_BUTTON = "stale_pea_button"  # pea, state, holder
    # outside systems
    UNREACHABLE = "unreachable"  # system, message


class Refused(Exception):
    """A person's request or click cannot be done: `why` and `facts` say what was wrong.

    `field` names the part of the request at fault (`pr`, `pea`, `processes`, `emergency`, `reason`,
    `notes`), so a form can show the answer beside it.
    """

    def __init__(self, why: Why, *, field: str | None = None, **facts: Any) -> None:
        super().__init__(f"{why.value} {facts}" if facts else why.value)
        self.why = why
        self.field = field
        self.facts = facts


class Superseded(Exception):
    """The row changed since it was read (another worker or a click): stop and look again."""
