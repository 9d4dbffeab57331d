"""Each closed round's whole comparison, stored as one document (issue 9).

The rows of 0005 serve trends; reports and the ``comparisons`` table need the whole
comparison (funnels, intervals, q-values, peers, skill mix), which is now stored when the
round closes and read back, never recomputed. Rounds closed before get theirs the first
time they are read.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the comparison documents table."""
    op.create_table(
        "comparison_documents",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column("document", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("comparison_documents")
