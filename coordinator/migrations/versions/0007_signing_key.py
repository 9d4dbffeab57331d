"""The signer's certificate with each round and each receipt (issue 10).

Rounds and receipts are signed by the coordinator's signing key, not its CA key, and the
signing key is rotated; each stored round and receipt keeps the DER certificate of the
key that signed it, so one signed before a rotation still verifies when it is sent again.
Rows from before have none: they were signed by the CA key itself.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the signer's certificate to rounds and to submissions' receipts."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(
            sa.Column("signer_certificate", sa.LargeBinary, nullable=False, server_default="")
        )
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column(
                "receipt_signer_certificate", sa.LargeBinary, nullable=False, server_default=""
            )
        )


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("receipt_signer_certificate")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("signer_certificate")
