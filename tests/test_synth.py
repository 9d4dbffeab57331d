"""Synthetic practices: valid extracts, reproducible, and really different from each other."""

from __future__ import annotations

import csv
import hashlib
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from agent.cli_synth import register
from agent.extract import open_extract
from agent.extract.schema import APPOINTMENT_STATUSES
from agent.synth import (
    AGE_PROFILES,
    MANIFEST_COLUMNS,
    PracticeTraits,
    generate_practice,
    generate_practices,
    random_traits,
)
from agent.synth import codes as synth_codes

AS_OF = date(2026, 9, 30)
PERIOD = "DATE '2025-10-01'"


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_practice(
            tmp_path / name, practice_seed=seed, list_size=300, as_of=AS_OF, fmt="csv"
        )
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["patients.csv"] != digest(tmp_path / "c")["patients.csv"]


def practice_figures(location: Path) -> dict[str, float]:
    """A few indicator-like figures, straight from the typed tables."""
    registered = "FROM patients WHERE registered_to IS NULL AND date_of_death IS NULL"
    sql = {
        "over_65": "SELECT avg(CASE WHEN date_of_birth <= DATE '1961-09-30' THEN 1.0 ELSE 0 END)"
        f" {registered}",
        "aged_18_24": "SELECT avg(CASE WHEN date_of_birth BETWEEN DATE '2001-10-01'"
        f" AND DATE '2008-09-30' THEN 1.0 ELSE 0 END) {registered}",
        "mean_imd": "SELECT avg(imd_decile) FROM patients WHERE imd_decile BETWEEN 1 AND 10",
        "dna": "SELECT avg(CASE WHEN status = 'did_not_attend' THEN 1.0 ELSE 0 END)"
        " FROM appointments WHERE status IN ('attended', 'did_not_attend')"
        f" AND CAST(starts_at AS DATE) >= {PERIOD}",
        "hba1c": "SELECT avg(numeric_value) FROM clinical_events"
        f" WHERE snomed_code = '999791000000106' AND date >= {PERIOD}",
        "gp_minutes": "SELECT avg(duration_minutes) FROM appointments WHERE clinician_role = 'gp'"
        " AND mode = 'face_to_face' AND status = 'attended'",
        "abx": "SELECT count(*) * 1.0 / (SELECT count(*) FROM patients) FROM medications"
        f" WHERE bnf_code LIKE '0501%' AND date >= {PERIOD}",
    }
    with open_extract(location, AS_OF) as extract, extract.connect() as conn:
        return {k: float(conn.exec_driver_sql(q).scalar()) for k, q in sql.items()}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PracticeTraits]]:
    out = tmp_path_factory.mktemp("federation")
    return out, generate_practices(out, practices=6, list_size=1500, seed=3, fmt="parquet")


def test_federation_manifest_and_localities(federation: tuple[Path, list[PracticeTraits]]) -> None:
    out, made = federation
    with (out / "practices.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert (
        [r["practice_id"] for r in rows]
        == [t.practice_id for t in made]
        == [f"P00{i}" for i in range(1, 7)]
    )
    assert {r["format"] for r in rows} == {"parquet"}
    assert len({r["list_size"] for r in rows}) > 1
    # About one locality per six practices: six practices share a single locality.
    assert len({r["locality"] for r in rows}) == 1
    for t in made:
        assert (out / t.practice_id / "appointments.parquet").is_file()


def test_practices_really_differ(federation: tuple[Path, list[PracticeTraits]]) -> None:
    out, made = federation
    figures = [practice_figures(out / t.practice_id) for t in made]
    for key in figures[0]:
        values = [f[key] for f in figures]
        assert max(values) - min(values) > 0.1 * abs(max(values)), (key, values)
    # The traits drive what the data shows.
    worst = max(range(len(made)), key=lambda i: made[i].dna_rate)
    best = min(range(len(made)), key=lambda i: made[i].dna_rate)
    assert figures[worst]["dna"] > figures[best]["dna"]


def test_profiles_shape_the_list(tmp_path: Path) -> None:
    base = random_traits(1, list_size=3000)
    figures = {}
    for profile in ("student", "elderly_rural"):
        traits = PracticeTraits(**{**base.__dict__, "age_profile": profile})
        generate_practice(
            tmp_path / profile,
            practice_seed=9,
            list_size=3000,
            as_of=AS_OF,
            fmt="parquet",
            profile=traits,
        )
        figures[profile] = practice_figures(tmp_path / profile)
    assert figures["student"]["aged_18_24"] > 2 * figures["elderly_rural"]["aged_18_24"]
    assert figures["elderly_rural"]["over_65"] > 2 * figures["student"]["over_65"]


def test_extract_is_valid_and_uses_every_category(tmp_path: Path) -> None:
    generate_practice(tmp_path, practice_seed=2, list_size=2000, as_of=AS_OF, fmt="parquet")
    listed = {c for c in vars(synth_codes).values() if isinstance(c, str) and c.isdigit()} | {
        c
        for v in vars(synth_codes).values()
        if isinstance(v, tuple)
        for c in v
        if isinstance(c, str)
    }
    with open_extract(
        tmp_path, AS_OF, known_codes=listed - set(synth_codes.PLAIN_NOISE)
    ) as extract:
        q = extract.quality
        with extract.connect() as conn:

            def distinct(sql: str) -> set:
                return {r[0] for r in conn.exec_driver_sql(sql)}

            statuses = distinct("SELECT DISTINCT status FROM appointments")
            assert statuses == set(APPOINTMENT_STATUSES)
            assert len(distinct("SELECT DISTINCT clinician_role FROM appointments")) == 5
            assert len(distinct("SELECT DISTINCT mode FROM appointments")) == 5
            assert len(distinct("SELECT DISTINCT sex FROM patients")) == 3
            codes = distinct("SELECT DISTINCT snomed_code FROM clinical_events")
            assert {
                "999791000000106",
                "822851000000102",
                "171149006",
                "195967001",
                "394700004",
            } <= codes
            assert distinct(
                "SELECT count(*) > 0 FROM patients WHERE date_of_death IS NOT NULL"
            ) == {True}
            assert distinct(
                "SELECT count(*) > 0 FROM patients WHERE registered_to IS NOT NULL"
            ) == {True}
            prefixes = distinct("SELECT DISTINCT substr(bnf_code, 1, 4) FROM medications")
            assert {"0501", "0301", "0302"} <= prefixes
            ids = conn.execute(
                sa.text("SELECT min(patient_id), max(patient_id) FROM patients")
            ).one()
            assert ids[0].startswith("p") and len(ids[0]) == 7
    assert (
        q.snomed_code_in_no_codelist and q.snomed_code_in_no_codelist > q.clinical_events_rows / 2
    )
    assert q.booked_after_start > 0 and q.appointments_rows > 10 * 2000 * 0.5


def test_traits_validate_themselves() -> None:
    with pytest.raises(ValueError, match="age_profile"):
        PracticeTraits(practice_id="P1", name="x", locality="y", list_size=10, age_profile="lunar")
    with pytest.raises(ValueError, match="skill_mix"):
        PracticeTraits(
            practice_id="P1", name="x", locality="y", list_size=10, skill_mix=(1, 1, 0, 0, 0)
        )
    assert {random_traits(4, index=i).age_profile for i in range(30)} == set(AGE_PROFILES)


def test_cli_synth(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so typer keeps "synth" as a subcommand
        """Unused."""

    result = CliRunner().invoke(
        app,
        ["synth", "--out", str(tmp_path), "--practices", "2", "--list-size", "100", "--seed", "4",
         "--as-of", "2026-06-30", "--format", "csv"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Wrote 2 practices" in result.output
    assert (tmp_path / "P002" / "patients.csv").is_file() and (tmp_path / "practices.csv").is_file()
    with open_extract(tmp_path / "P001", date(2026, 6, 30)) as extract:
        assert extract.quality.patients_rows > 50
    bad = CliRunner().invoke(
        app,
        [
            "synth",
            "--out",
            str(tmp_path),
            "--practices",
            "1",
            "--list-size",
            "5",
            "--as-of",
            "June",
        ],
    )
    assert bad.exit_code != 0
