"""Indirect age-sex standardisation (STATS.md S17): a round's reference rates, and the
standardised ratios stored with its comparison.

A round started with a reference-rates study keeps the rates document exactly as signed
(its SHA-256 is in the round's manifest); rounds from before have none. Each closed,
standardised round stores, per indicator and practice, the observed and expected counts,
their ratio and its 95% interval, and the study the rates came from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the rates to rounds, and the standardised comparison table."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(
            sa.Column("reference_rates", sa.LargeBinary, nullable=False, server_default="")
        )
    op.create_table(
        "comparison_standardised",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column("indicator", sa.String(200), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        *(
            sa.Column(name, sa.Float, nullable=False)
            for name in ("observed", "expected", "ratio", "low_95", "high_95")
        ),
        sa.Column("study_id", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    """Drop the table and the column."""
    op.drop_table("comparison_standardised")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("reference_rates")
