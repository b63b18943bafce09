"""The persisted state of Fat Controller: trains, deploys and their undo steps, peas, the audit log, the
outbox of what people must be told, and where the Slack surface keeps its messages.

Deploy and Pea rows carry a *work lease* (`storage.leases`) so that exactly one worker, in one
replica, advances a row at a time, and a `version` that the ORM checks and bumps on every
flush, so two writers cannot silently overwrite each other (`sqlalchemy.orm.exc.StaleDataError`).
JSON columns track in-place changes (`deploy.state_times[state] = ...` is saved).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.clock import as_naive_utc, utcnow

# Stable constraint names: migrations can refer to them and SQLite batch migrations need them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp without time zone that stores naive UTC, converting aware values on the way in."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else as_naive_utc(value)


JSONDict = MutableDict.as_mutable(sa.JSON())
JSONList = MutableList.as_mutable(sa.JSON())


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Train(Base):
    """One deploy train; `next_seq` hands out queue positions."""

    __tablename__ = "trains"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    frozen: Mapped[bool] = mapped_column(default=False)
    frozen_reason: Mapped[str | None] = mapped_column(sa.Text)
    frozen_by: Mapped[str | None] = mapped_column(sa.String(64))
    frozen_at: Mapped[datetime | None]
    next_seq: Mapped[int] = mapped_column(default=1)
    # The deploy past the queue, if any: taking this slot is how one deploy at a time is enforced.
    in_flight_id: Mapped[int | None]


class Deploy(Base):
    """One deploy of one pull request, walking the flowchart; the train's order is `queue_seq`."""

    __tablename__ = "deploys"
    # Which columns hold the work lease (see storage.leases).
    work_lease: ClassVar[tuple[str, str]] = ("work_owner", "work_expires_at")

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    train_id: Mapped[str] = mapped_column(sa.ForeignKey("trains.id"))
    # One of the flowchart's states (`flows.deploy.machine.State`): queued, merging, ..., completed, cancelled.
    state: Mapped[str] = mapped_column(sa.String(32), index=True, default="queued")
    needs_attention: Mapped[bool] = mapped_column(default=False)
    attention: Mapped[str | None] = mapped_column(sa.Text)  # which system failed, and how

    requester: Mapped[str] = mapped_column(sa.String(64))
    pr_number: Mapped[int]
    pr_title: Mapped[str | None] = mapped_column(sa.Text)
    pr_url: Mapped[str | None] = mapped_column(sa.Text)
    pr_author: Mapped[str | None] = mapped_column(sa.String(255))
    pr_head_sha: Mapped[str | None] = mapped_column(sa.String(40))
    pr_created_at: Mapped[datetime | None]
    processes: Mapped[list[str]] = mapped_column(JSONList, default=list)
    notes: Mapped[str | None] = mapped_column(sa.Text)

    jump_queue: Mapped[bool] = mapped_column(default=False)
    skip_build: Mapped[bool] = mapped_column(default=False)
    emergency_reason: Mapped[str | None] = mapped_column(sa.Text)
    # A float so that a queue jump can take a key between the deploy in flight and the first queued.
    queue_seq: Mapped[float] = mapped_column(sa.Double)

    build_job: Mapped[str | None] = mapped_column(sa.String(255))
    build_number: Mapped[int | None]
    build_url: Mapped[str | None] = mapped_column(sa.Text)
    build_queue_id: Mapped[int | None]
    build_attempts: Mapped[int] = mapped_column(default=0)
    build_previous: Mapped[int | None]  # the failed build a `Retry build` replaces
    image: Mapped[str | None] = mapped_column(sa.Text)
    merge_sha: Mapped[str | None] = mapped_column(sa.String(40))
    revert_sha: Mapped[str | None] = mapped_column(sa.String(40))
    revert_status: Mapped[str | None] = mapped_column(sa.String(32))
    revert_pull_request: Mapped[str | None] = mapped_column(sa.Text)  # the revert's pull request, when it needed one
    # The head a branch update was asked for (the base requires pull requests up to date), so it is asked once.
    branch_updated_from: Mapped[str | None] = mapped_column(sa.String(40))
    outcome_reason: Mapped[str | None] = mapped_column(sa.Text)  # why it failed or was rolled back
    rollback_from: Mapped[str | None] = mapped_column(sa.String(32))  # the state it was rolled back from

    # Built ahead (DESIGN §8): the candidate commit (the PR head merged on `candidate_base`, on the branch
    # `fatcontroller/<train>/<id>`), the head it merged, its build's queue item, number and result. A base and
    # head with no commit: they conflict.
    candidate_sha: Mapped[str | None] = mapped_column(sa.String(40))
    candidate_base: Mapped[str | None] = mapped_column(sa.String(40))
    candidate_head: Mapped[str | None] = mapped_column(sa.String(40))
    candidate_queue_id: Mapped[int | None]
    candidate_on: Mapped[int | None]  # the PR of the deploy whose merge (or candidate) it was built on
    candidate_build_number: Mapped[int | None]
    candidate_build_url: Mapped[str | None] = mapped_column(sa.Text)
    candidate_result: Mapped[str | None] = mapped_column(sa.String(32))  # Jenkins' result once it ended
    candidate_retries: Mapped[int] = mapped_column(default=0)  # started again by itself (`jenkins.build_retries`)
    candidate_build_previous: Mapped[int | None]  # the red build a retry replaces
    candidate_at: Mapped[datetime | None]  # when the candidate's build (its latest attempt) was asked for

    canary_reminded_at: Mapped[datetime | None]
    # Canary analysis (DESIGN §9): each watched alarm's state (OK, ALARM, INSUFFICIENT_DATA) as last read, and
    # since when they have all been OK (the bake counts from there).
    alarm_states: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    healthy_since: Mapped[datetime | None]
    # A step whose outside system fails transiently is tried again through the schedule: since when, how often.
    retry_since: Mapped[datetime | None]
    retry_attempts: Mapped[int] = mapped_column(default=0)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    state_entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]  # when it left the queue
    finished_at: Mapped[datetime | None]
    state_times: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # state -> ISO time
    # Two of `state_times` again as columns, so that `/deploy stats` computes its medians in SQL: when the
    # deploy last entered awaiting_confirmation (its change reached production) and rolling_back.
    in_production_at: Mapped[datetime | None]
    rolling_back_at: Mapped[datetime | None]
    # Once finished, its durations in microseconds (None where one does not apply), so that `/deploy stats`
    # only counts and sorts: kept in step with the times above by `flows.deploy.figures`.
    lead_time_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    queue_wait_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    deploy_duration_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    time_to_roll_back_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Per process: service, canary, old and new task definition ARNs, rollout progress.
    targets: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)

    # When the engine should next look at it; NULL once finished, so ticks never scan history.
    due_at: Mapped[datetime | None]
    work_owner: Mapped[str | None] = mapped_column(sa.String(128))
    work_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.Index(None, "train_id", "state", "queue_seq"),
        sa.Index(None, "finished_at"),
        # A train's deploys that finished in a window (`/deploy stats`, `/deploy history`), with every column
        # the stats read: they come from the index alone, not from the wide rows.
        sa.Index("ix_deploys_train_id_finished_at_figures", "train_id", "finished_at", "state", "lead_time_us",
                 "queue_wait_us", "deploy_duration_us", "time_to_roll_back_us"),
        # Each of the four medians of `/deploy stats` read in its duration's order, with no sort (SQLite).
        *(sa.Index(None, "train_id", f"{duration}_us", "finished_at")
          for duration in ("lead_time", "queue_wait", "deploy_duration", "time_to_roll_back")),
        sa.Index(None, "requester", "created_at"),
        sa.Index(None, "due_at"),
    )


class UndoRecord(Base):
    """What undoing one forward step needs, written before the step acts; undone newest first."""

    __tablename__ = "undo_records"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    deploy_id: Mapped[int] = mapped_column(sa.ForeignKey("deploys.id"))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(32))  # "merge", "task_definition", "canary", "service_update"
    data: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(sa.Text)

    # The unique constraint also serves as the index on deploy_id.
    __table_args__ = (sa.UniqueConstraint("deploy_id", "seq"),)


class AuditEvent(Base):
    """Who did what, when, with the outside ids (merge SHA, build URL, task definition ARNs)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(64))  # a Slack user id, or "fatcontroller"
    action: Mapped[str] = mapped_column(sa.String(64))
    deploy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deploys.id"), index=True)
    pea: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    train_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # a deploy's or a freeze's train
    detail: Mapped[str | None] = mapped_column(sa.Text)
    outside_ids: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class Pea(Base):
    """A named preview environment; `claim_expires_at` ends the holder's claim, `work_*` is the engine's lease."""

    __tablename__ = "peas"
    work_lease: ClassVar[tuple[str, str]] = ("work_owner", "work_expires_at")

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # free, deploying, up, failed or releasing
    state: Mapped[str] = mapped_column(sa.String(16), default="free")
    holder: Mapped[str | None] = mapped_column(sa.String(64))
    pr_number: Mapped[int | None]
    pr_title: Mapped[str | None] = mapped_column(sa.Text)
    pr_url: Mapped[str | None] = mapped_column(sa.Text)
    pr_base: Mapped[str | None] = mapped_column(sa.String(255))  # the branch the pull request would merge into
    head_sha: Mapped[str | None] = mapped_column(sa.String(40))
    # What the green build built for head_sha: the head, or (GitHub Branch Source's default) its merge with pr_base
    built_sha: Mapped[str | None] = mapped_column(sa.String(40))
    image: Mapped[str | None] = mapped_column(sa.Text)  # of built_sha
    build_url: Mapped[str | None] = mapped_column(sa.Text)
    url: Mapped[str | None] = mapped_column(sa.Text)
    claimed_at: Mapped[datetime | None]
    claim_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    reminded_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    task_definitions: Mapped[dict[str, str]] = mapped_column(JSONDict, default=dict)  # process -> ARN
    state_entered_at: Mapped[datetime | None]  # the build timeout runs from here
    build_number: Mapped[int | None]  # the PR job's build of head_sha
    build_queue_id: Mapped[int | None]  # a build Fat Controller asked for (trigger: api), until it starts
    rollout_started_at: Mapped[datetime | None]  # services pointed at the new image; the rollout timeout runs
    checked_at: Mapped[datetime | None]  # last look at the PR for newer builds, closing or merging
    stale_reason: Mapped[str | None] = mapped_column(sa.String(16))  # "newer build", "closed" or "merged"
    newer_sha: Mapped[str | None] = mapped_column(sa.String(40))  # the newer green head, with "newer build"
    retry_since: Mapped[datetime | None]  # a step failing transiently is tried again: since when, how often
    retry_attempts: Mapped[int] = mapped_column(default=0)

    due_at: Mapped[datetime | None] = mapped_column(index=True)
    work_owner: Mapped[str | None] = mapped_column(sa.String(128))
    work_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}


class OutboxNotice(Base):
    """One notice waiting for one sink (a surface that tells people: Slack, GitHub); deleted once delivered.

    Written in the same transaction as the change it reports; delivered in `id` order within its stream.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(sa.String(200))  # the OutboxStream it belongs to
    kind: Mapped[str] = mapped_column(sa.String(64))  # the notice's class
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON(), default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index(None, "stream_id", "id"),)


class OutboxStream(Base):
    """The notices of one deploy, pea or train for one sink: delivered in order by one copy at a time.

    `due_at` is when the stream wants delivering (NULL: nothing to do); `seq` grows with every notice
    written, so a delivery that finishes can tell whether more came meanwhile.
    """

    __tablename__ = "outbox_streams"
    work_lease: ClassVar[tuple[str, str]] = ("work_owner", "work_expires_at")

    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)  # "<sink>|<stream>"
    sink: Mapped[str] = mapped_column(sa.String(32))
    stream: Mapped[str] = mapped_column(sa.String(160))
    seq: Mapped[int] = mapped_column(default=1)
    attempts: Mapped[int] = mapped_column(default=0)  # failed deliveries in a row
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    work_owner: Mapped[str | None] = mapped_column(sa.String(128))
    work_expires_at: Mapped[datetime | None]


class SlackMessage(Base):
    """A message the Slack surface posted and edits later (a deploy's card, the latest DM with buttons)."""

    __tablename__ = "slack_messages"

    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)  # e.g. "deploy:12:card"
    channel: Mapped[str] = mapped_column(sa.String(64))
    ts: Mapped[str] = mapped_column(sa.String(64))
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON(), default=dict)  # what editing it again needs
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HomeViewer(Base):
    """Someone who opened the App Home: every copy republishes it for them when the train changes."""

    __tablename__ = "home_viewers"

    user_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
