"""Writing a synthetic practice's four tables as Arrow tables to CSV or Parquet.

Identifiers and codes are dictionary-encoded while in memory (ten million events name
about a hundred thousand patients), and written as plain strings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from agent.extract.schema import APPOINTMENT_MODES, APPOINTMENT_STATUSES, CLINICIAN_ROLES, SEXES
from agent.synth.population import NO_DATE, Population
from agent.synth.records import Appointments, Coded


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype(np.int32), type=pa.int32(), mask=missing).cast(pa.date32())


def _labels(indices: np.ndarray, labels: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32)), pa.array(list(labels))
    )


def _numbers(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def patients_table(pop: Population) -> pa.Table:
    """The patients table."""
    return pa.table(
        {
            "patient_id": pa.array(pop.ids),
            "sex": _labels(pop.sex, SEXES),
            "date_of_birth": _dates(pop.dob),
            "date_of_death": _dates(np.where(pop.dod == NO_DATE, 0, pop.dod), pop.dod == NO_DATE),
            "registered_from": _dates(pop.reg_from),
            "registered_to": _dates(
                np.where(pop.reg_to == NO_DATE, 0, pop.reg_to), pop.reg_to == NO_DATE
            ),
            "imd_decile": pa.array(pop.imd, type=pa.int32(), mask=pop.imd == 0),
        }
    )


def events_table(pop: Population, events: Coded) -> pa.Table:
    """The clinical_events table."""
    who, day, code, value = events.arrays()
    return pa.table(
        {
            "patient_id": _labels(who, list(pop.ids)),
            "date": _dates(day),
            "snomed_code": _labels(code, events.vocabulary),
            "numeric_value": _numbers(value),
        }
    )


def medications_table(
    rng: np.random.Generator, pop: Population, meds: Coded, bnf: list[str | None], odd: float
) -> pa.Table:
    """The medications table (a few items without a BNF code, as in real extracts)."""
    who, day, code, _ = meds.arrays()
    no_bnf = rng.random(len(code)) < 10 * odd
    return pa.table(
        {
            "patient_id": _labels(who, list(pop.ids)),
            "date": _dates(day),
            "dmd_code": _labels(code, meds.vocabulary),
            "bnf_code": pa.DictionaryArray.from_arrays(
                pa.array(code.astype(np.int32), mask=no_bnf), pa.array(bnf)
            ),
        }
    )


def appointments_table(pop: Population, a: Appointments) -> pa.Table:
    """The appointments table, ids in order of start."""
    ids = np.char.add("a", np.char.zfill(np.arange(1, len(a.who) + 1).astype(str), 7))
    return pa.table(
        {
            "appointment_id": pa.array(ids),
            "patient_id": _labels(a.who, list(pop.ids)),
            "booked_on": _dates(a.booked_on),
            "starts_at": pa.array(a.starts_at.astype(np.int64), type=pa.int64()).cast(
                pa.timestamp("s")
            ),
            "status": _labels(a.status, APPOINTMENT_STATUSES),
            "clinician_id": _labels(a.clinician, a.clinicians),
            "clinician_role": _labels(a.role, CLINICIAN_ROLES),
            "mode": _labels(a.mode, APPOINTMENT_MODES),
            "duration_minutes": _numbers(a.duration),
        }
    )


def write_table(table: pa.Table, path_stem: Path, fmt: str) -> Path:
    """Write one table as ``<stem>.csv`` or ``<stem>.parquet``; return the path."""
    if fmt == "parquet":
        path = path_stem.with_suffix(".parquet")
        pq.write_table(table, path, compression="snappy", row_group_size=1_000_000)
        return path
    if fmt != "csv":
        raise ValueError("format must be csv or parquet")
    path = path_stem.with_suffix(".csv")
    plain = pa.table(
        {
            name: col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )
    pacsv.write_csv(plain, path, pacsv.WriteOptions(quoting_style="needed"))
    return path
