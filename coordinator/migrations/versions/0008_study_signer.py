"""The signer's certificate with each study (issue 10).

Studies are signed by the coordinator's signing key, as rounds are (0007), so study
creation no longer needs the CA key online. Each stored study keeps the DER certificate
of the key that signed it, so one signed before a rotation still verifies when it is
listed again. Rows from before have none: they were signed by the CA key itself.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the signer's certificate to studies."""
    with op.batch_alter_table("studies") as batch:
        batch.add_column(
            sa.Column("signer_certificate", sa.LargeBinary, nullable=False, server_default="")
        )


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("signer_certificate")
