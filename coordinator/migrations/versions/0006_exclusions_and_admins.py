"""Excluded submissions (with their audit trail) and admin certificates (issue 10).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the exclusion and admin certificate tables."""
    op.create_table(
        "submission_exclusions",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        sa.Column("excluded_by", sa.String(200), nullable=False),
        sa.Column("excluded_at", _TS, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_table(
        "exclusion_events",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), nullable=False),
        sa.Column(
            "practice_id", sa.String(64), sa.ForeignKey("practices.practice_id"), nullable=False
        ),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_table(
        "admin_certificates",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
        sa.Column("revoked_by", sa.String(200)),
    )


def downgrade() -> None:
    """Drop the exclusion and admin certificate tables."""
    for table in ("admin_certificates", "exclusion_events", "submission_exclusions"):
        op.drop_table(table)
