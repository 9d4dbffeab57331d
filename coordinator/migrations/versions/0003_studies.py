"""Studies: the study, its members, each practice's signed steps and shares, the result.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the four study tables."""
    op.create_table(
        "studies",
        sa.Column("study_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False, server_default=""),
        sa.Column("stage_started_at", _TS),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "study_members",
        sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "study_steps",
        sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        sa.Column("message", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_table(
        "study_shares",
        sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), primary_key=True),
        sa.Column("receiver", sa.String(64), primary_key=True),
        sa.Column("sender", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
    )
    op.create_table(
        "study_results",
        sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), primary_key=True),
        sa.Column("rows", sa.LargeBinary, nullable=False),
        sa.Column("practices", sa.Integer, nullable=False),
        sa.Column("published_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop the study tables."""
    for table in ("study_results", "study_shares", "study_steps", "study_members", "studies"):
        op.drop_table(table)
