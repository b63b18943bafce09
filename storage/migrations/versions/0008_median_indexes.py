"""`/deploy stats` reads each median in its duration's order from an index of its own, instead of sorting the
window's deploys four times.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DURATIONS = ("lead_time", "queue_wait", "deploy_duration", "time_to_roll_back")


def upgrade() -> None:
    for duration in DURATIONS:
        op.create_index(op.f(f"ix_deploys_train_id_{duration}_us_finished_at"), "deploys",
                        ["train_id", f"{duration}_us", "finished_at"])


def downgrade() -> None:
    for duration in DURATIONS:
        op.drop_index(op.f(f"ix_deploys_train_id_{duration}_us_finished_at"), table_name="deploys")
