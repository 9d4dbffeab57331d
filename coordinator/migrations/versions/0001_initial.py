"""The first schema: practices, tokens, rounds, submissions, released rows, refusals.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "practices",
        sa.Column("practice_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("locality", sa.String(200), nullable=False),
        sa.Column("cert_fingerprint", sa.String(64)),
        sa.Column("enrolled_at", TS),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "enrolment_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column(
            "practice_id", sa.String(64), sa.ForeignKey("practices.practice_id"), nullable=False
        ),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
    )
    op.create_table(
        "rounds",
        sa.Column("round_id", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("standard", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("policy_json", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("created_at_text", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS),
    )
    op.create_table(
        "round_definitions",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("indicator_id", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "submissions",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), nullable=False),
        sa.Column(
            "practice_id", sa.String(64), sa.ForeignKey("practices.practice_id"), nullable=False
        ),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("policy_digest", sa.String(64), nullable=False),
        sa.Column("definition_hashes", sa.Text, nullable=False),
        sa.Column("received_at_text", sa.String(40), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("receipt_signature", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("round_id", "practice_id", name="uq_submission_round_practice"),
    )
    op.create_table(
        "released_rows",
        sa.Column(
            "submission_id",
            sa.String(64),
            sa.ForeignKey("submissions.submission_id"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("indicator", sa.String(200), nullable=False),
        sa.Column("category", sa.String(200), nullable=False),
        sa.Column("numerator", sa.BigInteger),
        sa.Column("denominator", sa.BigInteger),
        sa.Column("count", sa.BigInteger),
        sa.Column("mean", sa.Float),
        sa.Column("value", sa.Float),
        sa.Column("suppressed", sa.Boolean, nullable=False),
    )
    op.create_table(
        "refusals",
        sa.Column("round_id", sa.String(64), sa.ForeignKey("rounds.round_id"), primary_key=True),
        sa.Column(
            "practice_id",
            sa.String(64),
            sa.ForeignKey("practices.practice_id"),
            primary_key=True,
        ),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )


def downgrade() -> None:
    """Drop every table."""
    for table in (
        "refusals",
        "released_rows",
        "submissions",
        "round_definitions",
        "rounds",
        "enrolment_tokens",
        "practices",
    ):
        op.drop_table(table)
