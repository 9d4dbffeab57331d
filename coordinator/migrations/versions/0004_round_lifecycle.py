"""Rounds as a coordinator runs them: deadline, quorum, schedule, approvals awaited.

A round gets a signed deadline and a quorum, and the time of its last state change
(states are ``coordinator.round_states.RoundState``, now including closing, published
and cancelled). ``round_schedules`` holds the month-end round the coordinator starts by
itself; ``round_waits`` the practices whose release awaits their own approval.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the round's deadline, quorum and state time, and the two new tables."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(
            sa.Column("deadline_text", sa.String(40), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("deadline", _TS))
        batch.add_column(sa.Column("quorum", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("state_changed_at", _TS))
    op.create_table(
        "round_schedules",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("deadline_days", sa.Integer, nullable=False),
        sa.Column("quorum", sa.Integer, nullable=False),
        sa.Column("last_as_of", sa.Date),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "round_waits",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        sa.Column("since", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop the two tables and the round's new columns."""
    op.drop_table("round_waits")
    op.drop_table("round_schedules")
    with op.batch_alter_table("rounds") as batch:
        for name in ("state_changed_at", "quorum", "deadline", "deadline_text"):
            batch.drop_column(name)
