"""The initial schema: trains, deploys and their undo records, the audit log, peas.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trains",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("frozen_reason", sa.Text(), nullable=True),
        sa.Column("frozen_by", sa.String(length=64), nullable=True),
        sa.Column("frozen_at", sa.DateTime(), nullable=True),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("in_flight_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trains")),
    )

    op.create_table(
        "deploys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("train_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("needs_attention", sa.Boolean(), nullable=False),
        sa.Column("attention", sa.Text(), nullable=True),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("pr_title", sa.Text(), nullable=True),
        sa.Column("pr_url", sa.Text(), nullable=True),
        sa.Column("pr_author", sa.String(length=255), nullable=True),
        sa.Column("pr_head_sha", sa.String(length=40), nullable=True),
        sa.Column("pr_created_at", sa.DateTime(), nullable=True),
        sa.Column("processes", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("jump_queue", sa.Boolean(), nullable=False),
        sa.Column("skip_build", sa.Boolean(), nullable=False),
        sa.Column("emergency_reason", sa.Text(), nullable=True),
        sa.Column("queue_seq", sa.Double(), nullable=False),
        sa.Column("build_job", sa.String(length=255), nullable=True),
        sa.Column("build_number", sa.Integer(), nullable=True),
        sa.Column("build_url", sa.Text(), nullable=True),
        sa.Column("build_queue_id", sa.Integer(), nullable=True),
        sa.Column("build_attempts", sa.Integer(), nullable=False),
        sa.Column("build_previous", sa.Integer(), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("merge_sha", sa.String(length=40), nullable=True),
        sa.Column("revert_sha", sa.String(length=40), nullable=True),
        sa.Column("revert_status", sa.String(length=32), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("rollback_from", sa.String(length=32), nullable=True),
        sa.Column("slack_channel", sa.String(length=64), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("dm_channel", sa.String(length=64), nullable=True),
        sa.Column("dm_ts", sa.String(length=64), nullable=True),
        sa.Column("canary_reminded_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("state_entered_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("state_times", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["train_id"], ["trains.id"], name=op.f("fk_deploys_train_id_trains")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploys")),
    )
    op.create_index(op.f("ix_deploys_state"), "deploys", ["state"])
    op.create_index(op.f("ix_deploys_train_id_state_queue_seq"), "deploys", ["train_id", "state", "queue_seq"])
    op.create_index(op.f("ix_deploys_finished_at"), "deploys", ["finished_at"])
    op.create_index(op.f("ix_deploys_requester_created_at"), "deploys", ["requester", "created_at"])
    op.create_index(op.f("ix_deploys_due_at"), "deploys", ["due_at"])

    op.create_table(
        "undo_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deploy_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["deploy_id"], ["deploys.id"], name=op.f("fk_undo_records_deploy_id_deploys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_undo_records")),
        sa.UniqueConstraint("deploy_id", "seq", name=op.f("uq_undo_records_deploy_id_seq")),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("deploy_id", sa.Integer(), nullable=True),
        sa.Column("pea", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("outside_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["deploy_id"], ["deploys.id"], name=op.f("fk_audit_events_deploy_id_deploys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_deploy_id"), "audit_events", ["deploy_id"])
    op.create_index(op.f("ix_audit_events_pea"), "audit_events", ["pea"])

    op.create_table(
        "peas",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("pr_title", sa.Text(), nullable=True),
        sa.Column("pr_url", sa.Text(), nullable=True),
        sa.Column("head_sha", sa.String(length=40), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("build_url", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("reminded_at", sa.DateTime(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("task_definitions", sa.JSON(), nullable=False),
        sa.Column("state_entered_at", sa.DateTime(), nullable=True),
        sa.Column("build_number", sa.Integer(), nullable=True),
        sa.Column("build_queue_id", sa.Integer(), nullable=True),
        sa.Column("rollout_started_at", sa.DateTime(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("stale_reason", sa.String(length=16), nullable=True),
        sa.Column("newer_sha", sa.String(length=40), nullable=True),
        sa.Column("slack_channel", sa.String(length=64), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("dm_channel", sa.String(length=64), nullable=True),
        sa.Column("dm_ts", sa.String(length=64), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("work_owner", sa.String(length=128), nullable=True),
        sa.Column("work_expires_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_peas")),
    )
    op.create_index(op.f("ix_peas_due_at"), "peas", ["due_at"])
    op.create_index(op.f("ix_peas_lease_expires_at"), "peas", ["lease_expires_at"])


def downgrade() -> None:
    op.drop_table("peas")
    op.drop_table("audit_events")
    op.drop_table("undo_records")
    op.drop_table("deploys")
    op.drop_table("trains")
