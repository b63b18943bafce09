"""Canary analysis (DESIGN §9): the watched alarms' states as a deploy last read them, and since when they have
all been OK (for `deploy.canary_bake`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("alarm_states", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("healthy_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("healthy_since")
        batch.drop_column("alarm_states")
