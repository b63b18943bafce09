"""What a queued deploy's candidate build came to (DESIGN §8): its number, link and result, how often it was
started again (`jenkins.build_retries`) and when it was last asked for, and the pull request of the deploy it
was built on.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("candidate_on", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("candidate_build_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("candidate_build_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("candidate_result", sa.String(32), nullable=True))
        batch.add_column(sa.Column("candidate_retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("candidate_build_previous", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("candidate_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        for name in ("candidate_at", "candidate_build_previous", "candidate_retries", "candidate_result",
                     "candidate_build_url", "candidate_build_number", "candidate_on"):
            batch.drop_column(name)
