"""The month-end schedule can standardise its rounds with a reference-rates study.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the study the schedule standardises with ("" for none)."""
    with op.batch_alter_table("round_schedules") as batch:
        batch.add_column(
            sa.Column("standardise_with", sa.String(200), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("round_schedules") as batch:
        batch.drop_column("standardise_with")
