"""When a deploy reached production and began rolling back, as columns, for `/deploy stats` in SQL.

`in_production_at` (entered awaiting_confirmation) and `rolling_back_at` (entered rolling_back)
repeat two entries of `state_times`, whose JSON the medians would otherwise have to pick apart
row by row in dialect-specific SQL. Existing deploys get them from their `state_times`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = {"in_production_at": "awaiting_confirmation", "rolling_back_at": "rolling_back"}
_INDEX_COLUMNS = ["train_id", "finished_at", "state", "created_at", "started_at", "pr_created_at",
                  "in_production_at", "rolling_back_at"]
_BATCH = 1000


def _naive_utc(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def upgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        for column in _COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(), nullable=True))
    # Every column `/deploy stats` reads, after the window's: its figures come from the index alone.
    op.create_index("ix_deploys_train_id_finished_at_covering", "deploys", _INDEX_COLUMNS)

    # In Python rather than SQL: JSON extraction differs between the dialects, and the ISO text in
    # `state_times` is not the text SQLite keeps timestamps as.
    deploys = sa.table("deploys", sa.column("id", sa.Integer()), sa.column("state_times", sa.JSON()),
                       *(sa.column(column, sa.DateTime()) for column in _COLUMNS))
    connection = op.get_bind()
    rows: list[tuple[int, dict[str, str] | None]] = [
        (row.id, row.state_times) for row in connection.execute(sa.select(deploys.c.id, deploys.c.state_times))]
    values = []
    for deploy_id, times in rows:
        known = times or {}
        moments = {column: _naive_utc(known.get(state)) for column, state in _COLUMNS.items()}
        if any(moments.values()):
            values.append({"deploy_id": deploy_id, **moments})
    update = (sa.update(deploys).where(deploys.c.id == sa.bindparam("deploy_id"))
              .values({column: sa.bindparam(column) for column in _COLUMNS}))
    for start in range(0, len(values), _BATCH):
        connection.execute(update, values[start:start + _BATCH])


def downgrade() -> None:
    op.drop_index("ix_deploys_train_id_finished_at_covering", table_name="deploys")
    with op.batch_alter_table("deploys") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
