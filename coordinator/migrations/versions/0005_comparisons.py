"""Stored comparisons: each closed round's results per indicator, practice and locality.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _round_id() -> sa.Column:
    return sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True)


def upgrade() -> None:
    """Add the three comparison tables."""
    op.create_table(
        "comparison_indicators",
        _round_id(),
        sa.Column("indicator", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("overall", sa.Float),
        sa.Column("contributing", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("phi", sa.Float, nullable=False),
        sa.Column("deciles", sa.Text, nullable=False),
    )
    op.create_table(
        "comparison_values",
        _round_id(),
        sa.Column("indicator", sa.String(200), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        *(
            sa.Column(name, sa.Float)
            for name in ("numerator", "denominator", "value", "percentile")
        ),
        sa.Column("status", sa.String(16), nullable=False),
        *(
            sa.Column(name, sa.Float)
            for name in ("lower_95", "upper_95", "lower_998", "upper_998", "peer_median")
        ),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "comparison_groups",
        _round_id(),
        sa.Column("indicator", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("contributing", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("rank", sa.Integer),
    )


def downgrade() -> None:
    """Drop the comparison tables."""
    for table in ("comparison_groups", "comparison_values", "comparison_indicators"):
        op.drop_table(table)
