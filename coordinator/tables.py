"""The coordinator store's tables (SQLAlchemy Core), for SQLite and PostgreSQL alike.

The Alembic revisions in ``coordinator/migrations`` must build exactly these; a test
compares them. Change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)

practices = sa.Table(
    "practices",
    metadata,
    sa.Column("practice_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("locality", sa.String(200), nullable=False),
    sa.Column("cert_fingerprint", sa.String(64)),
    sa.Column("enrolled_at", _TS),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)
enrolment_tokens = sa.Table(
    "enrolment_tokens",
    metadata,
    # Only the SHA-256 of a token is kept: a copy of the store cannot enrol anyone.
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("used_at", _TS),
)
rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("round_id", sa.String(64), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("policy_json", sa.Text, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("created_at_text", sa.String(40), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("closed_at", _TS),
)
round_definitions = sa.Table(
    "round_definitions",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("indicator_id", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)
submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), nullable=False),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("received_at_text", sa.String(40), nullable=False),
    sa.Column("received_at", _TS, nullable=False),
    sa.Column("receipt_signature", sa.LargeBinary, nullable=False),
    # The practice's release document, byte for byte as signed, and its signature.
    sa.Column("document", sa.LargeBinary, nullable=False, server_default=""),
    sa.Column("signature", sa.LargeBinary, nullable=False, server_default=""),
    sa.UniqueConstraint("round_id", "practice_id", name="uq_submission_round_practice"),
)
released_rows = sa.Table(
    "released_rows",
    metadata,
    sa.Column("submission_id", sa.ForeignKey("submissions.submission_id"), primary_key=True),
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
refusals = sa.Table(
    "refusals",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("received_at", _TS, nullable=False),
)

__all__ = [
    "enrolment_tokens",
    "metadata",
    "practices",
    "refusals",
    "released_rows",
    "round_definitions",
    "rounds",
    "submissions",
]
