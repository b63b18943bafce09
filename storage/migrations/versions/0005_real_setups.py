"""Real set-ups: the pull request head a branch update was asked for, and a revert's pull request; what
Jenkins built for a pea (the head, or its merge with the pull request's base).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("branch_updated_from", sa.String(40), nullable=True))
        batch.add_column(sa.Column("revert_pull_request", sa.Text(), nullable=True))
    with op.batch_alter_table("peas") as batch:
        batch.add_column(sa.Column("pr_base", sa.String(255), nullable=True))
        batch.add_column(sa.Column("built_sha", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("peas") as batch:
        batch.drop_column("built_sha")
        batch.drop_column("pr_base")
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("revert_pull_request")
        batch.drop_column("branch_updated_from")
