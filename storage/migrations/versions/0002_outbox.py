"""The outbox of notices, the Slack surface's own tables (its messages, App Home viewers), one meaning of "lease".

Deploys and peas no longer carry where their Slack messages are: those references belong to the
Slack surface (`slack_messages`), which finds a card again by the deploy's id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SLACK_COLUMNS = ("slack_channel", "slack_ts", "dm_channel", "dm_ts")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_stream_id_id"), "outbox", ["stream_id", "id"], unique=False)
    op.create_table(
        "outbox_streams",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=160), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("work_owner", sa.String(length=128), nullable=True),
        sa.Column("work_expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_streams")),
    )
    op.create_index(op.f("ix_outbox_streams_due_at"), "outbox_streams", ["due_at"], unique=False)
    op.create_table(
        "slack_messages",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_messages")),
    )
    op.create_table(
        "home_viewers",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_home_viewers")),
    )
    # A card already posted is found again after the upgrade: its reference moves to the surface's table.
    op.execute(sa.text(
        # `\:` is a colon, not a bind parameter
        "INSERT INTO slack_messages (key, channel, ts, data, updated_at) "
        "SELECT 'deploy\\:' || id || '\\:card', slack_channel, slack_ts, '{}', updated_at FROM deploys "
        "WHERE slack_channel IS NOT NULL AND slack_ts IS NOT NULL"
    ))
    # "lease" now means one thing per table: the engine's work lease is `work_*` everywhere, and a
    # person's hold on a pea is its claim.
    with op.batch_alter_table("deploys") as batch:
        for column in _SLACK_COLUMNS:
            batch.drop_column(column)
        batch.alter_column("lease_owner", new_column_name="work_owner")
        batch.alter_column("lease_expires_at", new_column_name="work_expires_at")
    op.drop_index(op.f("ix_peas_lease_expires_at"), table_name="peas")
    with op.batch_alter_table("peas") as batch:
        for column in _SLACK_COLUMNS:
            batch.drop_column(column)
        batch.alter_column("lease_expires_at", new_column_name="claim_expires_at")
    op.create_index(op.f("ix_peas_claim_expires_at"), "peas", ["claim_expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_peas_claim_expires_at"), table_name="peas")
    with op.batch_alter_table("peas") as batch:
        batch.alter_column("claim_expires_at", new_column_name="lease_expires_at")
        for column in _SLACK_COLUMNS:
            batch.add_column(sa.Column(column, sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_peas_lease_expires_at"), "peas", ["lease_expires_at"])
    with op.batch_alter_table("deploys") as batch:
        batch.alter_column("work_owner", new_column_name="lease_owner")
        batch.alter_column("work_expires_at", new_column_name="lease_expires_at")
        for column in _SLACK_COLUMNS:
            batch.add_column(sa.Column(column, sa.String(length=64), nullable=True))
    op.drop_table("home_viewers")
    op.drop_table("slack_messages")
    op.drop_index(op.f("ix_outbox_streams_due_at"), table_name="outbox_streams")
    op.drop_table("outbox_streams")
    op.drop_index(op.f("ix_outbox_stream_id_id"), table_name="outbox")
    op.drop_table("outbox")
