"""Signed release documents: a submission stores the practice's bytes and signature.

A round no longer carries a "standard" flag (agents decide that from content hashes),
and a submission no longer keeps the unsigned digest fields of the first agents: the
release document holds its definitions and policies, and its SHA-256 is content_sha256.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the flag and the unsigned fields; add the document and its signature."""
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("standard")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("policy_digest")
        batch.drop_column("definition_hashes")
        batch.add_column(sa.Column("document", sa.LargeBinary, nullable=False, server_default=""))
        batch.add_column(sa.Column("signature", sa.LargeBinary, nullable=False, server_default=""))


def downgrade() -> None:
    """Put the flag and the unsigned fields back (empty); drop the document."""
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("signature")
        batch.drop_column("document")
        batch.add_column(
            sa.Column("definition_hashes", sa.Text, nullable=False, server_default="[]")
        )
        batch.add_column(
            sa.Column("policy_digest", sa.String(64), nullable=False, server_default="")
        )
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(
            sa.Column("standard", sa.Boolean, nullable=False, server_default=sa.false())
        )
