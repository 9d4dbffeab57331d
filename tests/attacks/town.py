"""A small practice written as an extract (four CSV files), every patient chosen by the test.

The attacks need a practice whose every patient is known: one patient aged 93, a
diabetic who can be moved in or out of a numerator, a twin practice that differs by one
patient. ``Town`` holds the people; ``write`` puts them in the extract format the agent
reads (EXTRACT.md), and the real agent reads them from there.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from fedpeer.dates import minus_years

DIABETES = "44054006"  # type 2 diabetes mellitus (SNOMED CT)
HBA1C = "999791000000106"  # HbA1c level, IFCC standardised


@dataclass(frozen=True)
class Person:
    """One patient: age on the reference date, sex, diabetes, latest HbA1c."""

    pid: str
    age: int
    sex: str = "female"
    diabetic: bool = False
    hba1c: float | None = None
    registered_from: date = date(2010, 1, 1)
    visits: tuple[float, ...] = ()  # lengths of attended face-to-face GP appointments


@dataclass
class Town:
    """A practice's patients, as the test wants them."""

    people: list[Person] = field(default_factory=list)

    def without(self, pid: str) -> Town:
        """The same practice less one patient."""
        return Town([p for p in self.people if p.pid != pid])

    def changed(self, pid: str, **what: object) -> Town:
        """The same practice with one patient's record changed (late coding)."""
        return Town([replace(p, **what) if p.pid == pid else p for p in self.people])  # type: ignore[arg-type]

    def write(self, folder: Path, as_of: date) -> Path:
        """Write the extract for ``as_of`` into ``folder`` (replacing what was there)."""
        folder.mkdir(parents=True, exist_ok=True)
        patients, events, appointments = [], [], []
        for p in self.people:
            born = minus_years(as_of, p.age)
            patients.append([p.pid, p.sex, born, "", p.registered_from, "", 5])
            if p.diabetic:
                events.append([p.pid, date(2015, 3, 1), DIABETES, ""])
            if p.hba1c is not None:
                events.append([p.pid, date(as_of.year, as_of.month, 1), HBA1C, p.hba1c])
            for k, minutes in enumerate(p.visits):
                day = date(as_of.year, as_of.month, 1 + k)
                appointments.append(
                    [
                        f"{p.pid}-a{k}",
                        p.pid,
                        day,
                        f"{day}T09:00:00",
                        "attended",
                        "c1",
                        "gp",
                        "face_to_face",
                        minutes,
                    ]
                )
        _csv(
            folder / "patients.csv",
            [
                "patient_id",
                "sex",
                "date_of_birth",
                "date_of_death",
                "registered_from",
                "registered_to",
                "imd_decile",
            ],
            patients,
        )
        _csv(
            folder / "clinical_events.csv",
            ["patient_id", "date", "snomed_code", "numeric_value"],
            events,
        )
        _csv(folder / "medications.csv", ["patient_id", "date", "dmd_code", "bnf_code"], [])
        _csv(
            folder / "appointments.csv",
            [
                "appointment_id",
                "patient_id",
                "booked_on",
                "starts_at",
                "status",
                "clinician_id",
                "clinician_role",
                "mode",
                "duration_minutes",
            ],
            appointments,
        )
        return folder


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


def town() -> Town:
    """60 adults aged 30..89 (18 diabetics, 10 with HbA1c <= 58), 40 children, and X:
    the only patient aged 93, a diabetic with HbA1c 50."""
    adults = [
        Person(
            f"a{i:02d}",
            30 + i,
            "female" if i % 2 else "male",
            diabetic=i % 10 < 3,
            hba1c=(50.0 if i % 10 < 2 else 70.0) if i % 10 < 3 else None,
        )
        for i in range(60)
    ]
    children = [Person(f"c{i:02d}", 5 + i % 12, "male" if i % 2 else "female") for i in range(40)]
    x = Person("x", 93, "male", diabetic=True, hba1c=50.0, visits=(10.0, 12.0, 14.0))
    return Town([*adults, *children, x])
