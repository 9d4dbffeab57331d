"""The data-quality summary: problems real extracts always have, counted, never fatal.

Counts only, never values, so the summary can be shown to the practice (and logged)
without exposing any patient.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Above this a numeric result is not a plausible measurement in any unit a GP record uses.
ABSURD_NUMERIC_VALUE = 100_000.0
# No single appointment plausibly lasts longer than a working day.
ABSURD_DURATION_MINUTES = 480.0


@dataclass(frozen=True)
class DataQualitySummary:
    """Named counts of non-fatal findings in one extract (0 when clean)."""

    patients_rows: int = 0
    clinical_events_rows: int = 0
    medications_rows: int = 0
    appointments_rows: int = 0
    # patients
    imd_decile_out_of_range: int = 0
    death_before_birth: int = 0
    registered_to_before_registered_from: int = 0
    # clinical_events
    clinical_events_after_as_of: int = 0
    numeric_value_negative: int = 0
    numeric_value_absurd: int = 0
    snomed_code_not_digits: int = 0
    # None when no codelists were given, so "0 unknown codes" is never claimed untested.
    snomed_code_in_no_codelist: int | None = None
    # medications
    medications_after_as_of: int = 0
    # appointments
    duration_not_positive: int = 0
    duration_absurd: int = 0
    booked_after_start: int = 0
    outcome_recorded_after_as_of: int = 0
    still_booked_before_as_of: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every count by name, in a fixed order (counts not measured are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def rows(self) -> list[tuple[str, int]]:
        """The counts as ``(name, count)`` rows, for CSV output or a table."""
        return list(self.as_dict().items())

    def findings(self) -> dict[str, int]:
        """Only the non-zero problem counts (row totals excluded)."""
        return {k: v for k, v in self.as_dict().items() if v and not k.endswith("_rows")}

    def describe(self) -> str:
        """A plain-text summary for the practice."""
        lines = [
            "Rows read: "
            + ", ".join(
                f"{name} {getattr(self, name + '_rows'):,}"
                for name in ("patients", "clinical_events", "medications", "appointments")
            )
        ]
        found = self.findings()
        if not found:
            lines.append("No data-quality findings.")
        else:
            lines.append("Data-quality findings (rows affected):")
            lines.extend(f"  {_LABELS[k]}: {v:,}" for k, v in found.items())
        if self.snomed_code_in_no_codelist is None:
            lines.append("Codes were not checked against codelists.")
        return "\n".join(lines)


_LABELS = {
    "imd_decile_out_of_range": "patients with an IMD decile outside 1..10",
    "death_before_birth": "patients whose date of death is before their date of birth",
    "registered_to_before_registered_from": "registrations that end before they start",
    "clinical_events_after_as_of": "clinical events dated after the reference date",
    "numeric_value_negative": "clinical events with a negative numeric value",
    "numeric_value_absurd": (
        f"clinical events with a numeric value above {ABSURD_NUMERIC_VALUE:,.0f}"
    ),
    "snomed_code_not_digits": "clinical events whose SNOMED code is not all digits (or starts 0)",
    "snomed_code_in_no_codelist": "clinical events whose code is in no codelist",
    "medications_after_as_of": "medication items dated after the reference date",
    "duration_not_positive": "appointments with a duration of zero or less",
    "duration_absurd": f"appointments longer than {ABSURD_DURATION_MINUTES:.0f} minutes",
    "booked_after_start": "appointments booked after they started (negative lead time)",
    "outcome_recorded_after_as_of": (
        "appointments after the reference date already attended or missed"
    ),
    "still_booked_before_as_of": "appointments before the reference date still marked booked",
}
assert set(_LABELS) == {f.name for f in fields(DataQualitySummary)} - {
    f"{t}_rows" for t in ("patients", "clinical_events", "medications", "appointments")
}
