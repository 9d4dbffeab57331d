"""The agent's ``explain`` and ``definitions list`` commands."""

from __future__ import annotations

from datetime import date

import typer
from typer.testing import CliRunner

from agent.cli_indicators import register
from fedpeer.definitions import content_hash, explain, find_standard, load_standard_set


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_show_locals=False)

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_explain_standard_indicator():
    result = CliRunner().invoke(_app(), ["explain", "dm_hba1c_le58", "--as-of", "2026-09-30"])
    assert result.exit_code == 0, result.output
    assert (
        "Of patients registered on 30 September 2026, aged 17 or over, with diabetes"
        in result.output
    )
    assert "latest HbA1c in the 12 months to 30 September 2026" in result.output
    assert "was 58 mmol/mol or less" in result.output
    assert content_hash(find_standard("dm_hba1c_le58")) in result.output


def test_explain_unknown_id_is_a_plain_error():
    result = CliRunner().invoke(_app(), ["explain", "nope", "--as-of", "2026-09-30"])
    assert result.exit_code == 2
    assert "DefinitionError: no standard definition with id 'nope'" in result.output
    assert "Traceback" not in result.output


def test_definitions_list():
    result = CliRunner().invoke(_app(), ["definitions", "list", "--as-of", "2026-09-30"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ids = [line.split()[0] for line in lines if line.startswith("  ")]
    assert ids[:12] == [d.id for d in load_standard_set()]
    assert ids[12:] == ["profile.list_size", "profile.age_sex", "profile.imd"]


def test_explain_every_definition_reads_as_sentences():
    as_of = date(2024, 2, 29)
    for defn in load_standard_set():
        text = explain(defn, as_of)
        assert defn.id in text and text.rstrip().endswith(".")
        if defn.unit.value != "appointments":
            assert "29 February 2024" in text
    cervical = explain(find_standard("cervical_screen_25_49"), date(2026, 8, 31))
    assert "female, aged 25 to 49" in cervical
    assert "(1 March 2023 to 31 August 2026)" in cervical
    upc = explain(find_standard("continuity_upc_gp"), date(2026, 9, 30))
    assert "3 or more appointments" in upc and "with a GP" in upc
