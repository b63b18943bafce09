"""A queued deploy's candidate (DESIGN §8, speculative builds): its commit, base, head and build's queue item.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        for name in ("candidate_sha", "candidate_base", "candidate_head"):
            batch.add_column(sa.Column(name, sa.String(40), nullable=True))
        batch.add_column(sa.Column("candidate_queue_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        for name in ("candidate_queue_id", "candidate_head", "candidate_base", "candidate_sha"):
            batch.drop_column(name)
