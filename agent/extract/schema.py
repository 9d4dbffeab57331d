"""The practice extract, version 1 (../shared/EXTRACT.md), as typed tables.

Every extract source (CSV directory, Parquet directory, SQL database) is presented to
the engines as these four tables with these types, whatever it was read from. Engines
build their queries against these ``Table`` objects and nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa

EXTRACT_VERSION = 1

SEXES = ("female", "male", "unknown")
APPOINTMENT_STATUSES = (
    "attended",
    "did_not_attend",
    "cancelled_by_patient",
    "cancelled_by_practice",
    "booked",
)
CLINICIAN_ROLES = ("gp", "nurse", "pharmacist", "hca", "other")
APPOINTMENT_MODES = ("face_to_face", "telephone", "video", "home_visit", "online")

metadata = sa.MetaData()

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("patient_id", sa.String, nullable=False),
    sa.Column("sex", sa.String, nullable=False),
    sa.Column("date_of_birth", sa.Date, nullable=False),
    sa.Column("date_of_death", sa.Date),
    sa.Column("registered_from", sa.Date, nullable=False),
    sa.Column("registered_to", sa.Date),
    sa.Column("imd_decile", sa.Integer),
)

clinical_events = sa.Table(
    "clinical_events",
    metadata,
    sa.Column("patient_id", sa.String, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("snomed_code", sa.String, nullable=False),
    sa.Column("numeric_value", sa.Double),  # 64-bit: sa.Float is 32-bit REAL on DuckDB
)

medications = sa.Table(
    "medications",
    metadata,
    sa.Column("patient_id", sa.String, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("dmd_code", sa.String, nullable=False),
    sa.Column("bnf_code", sa.String),
)

appointments = sa.Table(
    "appointments",
    metadata,
    sa.Column("appointment_id", sa.String, nullable=False),
    sa.Column("patient_id", sa.String, nullable=False),
    sa.Column("booked_on", sa.Date, nullable=False),
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("clinician_id", sa.String, nullable=False),
    sa.Column("clinician_role", sa.String, nullable=False),
    sa.Column("mode", sa.String, nullable=False),
    sa.Column("duration_minutes", sa.Double),
)

TABLES: dict[str, sa.Table] = {
    t.name: t for t in (patients, clinical_events, medications, appointments)
}
