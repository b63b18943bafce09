"""The audit log carries the train: a deploy's events and a freeze name the train they are about.

Existing events of a deploy take its train; a freeze or unfreeze (no deploy) of a single-train database
takes that train's id, which `adopt_legacy_train` renames with the rest at the next start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("train_id", sa.String(64), nullable=True))
    op.create_index(op.f("ix_audit_events_train_id"), "audit_events", ["train_id"])
    events = sa.table("audit_events", sa.column("deploy_id", sa.Integer()), sa.column("action", sa.String()),
                      sa.column("train_id", sa.String()))
    deploys = sa.table("deploys", sa.column("id", sa.Integer()), sa.column("train_id", sa.String()))
    trains = sa.table("trains", sa.column("id", sa.String()))
    op.execute(events.update().where(events.c.deploy_id.is_not(None)).values(
        train_id=sa.select(deploys.c.train_id).where(deploys.c.id == events.c.deploy_id).scalar_subquery()))
    only = sa.select(sa.func.min(trains.c.id)).having(sa.func.count() == 1).scalar_subquery()
    op.execute(events.update().where(events.c.action.in_(("freeze", "unfreeze"))).values(train_id=only))


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_train_id"), table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("train_id")
