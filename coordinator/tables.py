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
    # DER certificate of the signing key that made ``signature`` ("" : the CA key).
    sa.Column("signer_certificate", sa.LargeBinary, nullable=False, server_default=""),
    sa.Column("created_at_text", sa.String(40), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("closed_at", _TS),
    # The signed deadline, as text exactly as signed and as an instant to query by.
    sa.Column("deadline_text", sa.String(40), nullable=False, server_default=""),
    sa.Column("deadline", _TS),
    sa.Column("quorum", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state_changed_at", _TS),
    # The signed reference rates for age-sex standardisation, as signed ("": none).
    sa.Column("reference_rates", sa.LargeBinary, nullable=False, server_default=""),
)
# The standard month-end round the running coordinator starts by itself (issue 9).
round_schedules = sa.Table(
    "round_schedules",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("deadline_days", sa.Integer, nullable=False),
    sa.Column("quorum", sa.Integer, nullable=False),
    sa.Column("last_as_of", sa.Date),  # the month end of the last round it started
    # A published reference-rates study its rounds are standardised with ("" for none).
    sa.Column("standardise_with", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
)
# Practices whose release for a round waits for the practice's approval (never a value).
round_waits = sa.Table(
    "round_waits",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("since", _TS, nullable=False),
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
    # Kept with each receipt, so a receipt signed before a rotation still verifies.
    sa.Column("receipt_signer_certificate", sa.LargeBinary, nullable=False, server_default=""),
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
# Studies (issue 8): only the pooled result is ever stored in the clear. A practice's
# masked vector is uniformly random on its own; its shares are encrypted to other
# practices, or (unmasking) reveal only what removes the survivors' masks.
studies = sa.Table(
    "studies",
    metadata,
    sa.Column("study_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("document", sa.LargeBinary, nullable=False),  # fedpeer.studies.Study, canonical
    sa.Column("signature", sa.LargeBinary, nullable=False),  # by the coordinator's signing key
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False, server_default=""),
    sa.Column("stage_started_at", _TS),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    # DER certificate of the signing key that made ``signature`` ("": the CA key).
    sa.Column("signer_certificate", sa.LargeBinary, nullable=False, server_default=""),
)
study_members = sa.Table(
    "study_members",
    metadata,
    sa.Column("study_id", sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)
study_steps = sa.Table(
    "study_steps",
    metadata,
    # Each practice's signed step per stage, byte for byte (fedpeer.studies.Step).
    sa.Column("study_id", sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("message", sa.LargeBinary, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("received_at", _TS, nullable=False),
)
study_shares = sa.Table(
    "study_shares",
    metadata,
    # The round-1 ciphertexts of each SHARES step, by receiver (each encrypted to it alone).
    sa.Column("study_id", sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("receiver", sa.String(64), primary_key=True),
    sa.Column("sender", sa.String(64), primary_key=True),
    sa.Column("ciphertext", sa.Text, nullable=False),
)
study_results = sa.Table(
    "study_results",
    metadata,
    sa.Column("study_id", sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("rows", sa.LargeBinary, nullable=False),  # pooled rows, canonical JSON
    sa.Column("practices", sa.Integer, nullable=False),
    sa.Column("published_at", _TS, nullable=False),
)
# Issue 10: a coordinator may leave one practice's submission out of a round's
# comparisons (and put it back); each decision is kept, with who, when and why.
submission_exclusions = sa.Table(
    "submission_exclusions",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("excluded_by", sa.String(200), nullable=False),
    sa.Column("excluded_at", _TS, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
)
exclusion_events = sa.Table(
    "exclusion_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), nullable=False),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
)
# Admin certificates seen or revoked, by fingerprint: a revoked one is refused at once.
admin_certificates = sa.Table(
    "admin_certificates",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("first_seen", _TS, nullable=False),
    sa.Column("revoked_at", _TS),
    sa.Column("revoked_by", sa.String(200)),
)

# Comparisons (issue 9): each closed round's results, stored once so that trends across
# rounds read rows instead of recomputing every round (coordinator.comparison_store).
comparison_indicators = sa.Table(
    "comparison_indicators",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("indicator", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),  # of the round's definition
    sa.Column("overall", sa.Float),  # pooled all-practice value; None when withheld
    sa.Column("contributing", sa.Integer, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("phi", sa.Float, nullable=False),
    sa.Column("deciles", sa.Text, nullable=False),  # JSON: the 10th..90th percentiles, or []
)
comparison_values = sa.Table(
    "comparison_values",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("indicator", sa.String(200), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("numerator", sa.Float),
    sa.Column("denominator", sa.Float),
    sa.Column("value", sa.Float),
    sa.Column("percentile", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),  # coordinator.funnel.FunnelStatus
    sa.Column("lower_95", sa.Float),
    sa.Column("upper_95", sa.Float),
    sa.Column("lower_998", sa.Float),
    sa.Column("upper_998", sa.Float),
    sa.Column("peer_median", sa.Float),  # of its most alike peers' values; None when withheld
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)
comparison_groups = sa.Table(
    "comparison_groups",
    metadata,
    # Pooled locality values (the all-practice value is on comparison_indicators).
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("indicator", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Float),
    sa.Column("contributing", sa.Integer, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("rank", sa.Integer),
)
comparison_documents = sa.Table(
    "comparison_documents",
    metadata,
    # The whole comparison as it was built (``coordinator.comparison_document``): what the
    # round's reports and tables read, so a stored round is never recomputed.
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("document", sa.LargeBinary, nullable=False),
)
# Indirectly standardised ratios (STATS.md S17) of a standardised round, per practice.
comparison_standardised = sa.Table(
    "comparison_standardised",
    metadata,
    sa.Column("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    sa.Column("indicator", sa.String(200), primary_key=True),
    sa.Column("practice_id", sa.ForeignKey("practices.practice_id"), primary_key=True),
    sa.Column("observed", sa.Float, nullable=False),
    sa.Column("expected", sa.Float, nullable=False),
    sa.Column("ratio", sa.Float, nullable=False),
    sa.Column("low_95", sa.Float, nullable=False),
    sa.Column("high_95", sa.Float, nullable=False),
    sa.Column("study_id", sa.String(200), nullable=False),
)

__all__ = [
    "admin_certificates",
    "comparison_documents",
    "comparison_groups",
    "comparison_indicators",
    "comparison_standardised",
    "comparison_values",
    "enrolment_tokens",
    "exclusion_events",
    "metadata",
    "practices",
    "refusals",
    "released_rows",
    "round_definitions",
    "round_schedules",
    "round_waits",
    "rounds",
    "studies",
    "study_members",
    "study_results",
    "study_shares",
    "study_steps",
    "submission_exclusions",
    "submissions",
]
