"""The airlock commands, run through Typer against a real ledger and audit log."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from typer.testing import CliRunner

from agent.audit import AuditLog
from agent.cli_airlock import register
from agent.identity_store import AgentHome, AgentIdentity
from agent.ledger import Ledger, NewRelease, Question, State
from fedpeer.identity import generate_key, key_to_pem
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow

ROWS = [
    ResultRow("flu_vacc_65", numerator=60, denominator=100, value=0.6),
    ResultRow("dm_hba1c_le58", numerator=None, denominator=20, suppressed=True),
]


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_show_locals=False)

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    return app


QUESTIONS = [Question("m1", "h1", "flu_vacc_65"), Question("m2", "h2", "dm_hba1c_le58")]


def _home(tmp_path: Path) -> Path:
    pem = key_to_pem(generate_key())
    AgentHome(tmp_path).save(AgentIdentity("P1", "127.0.0.1:1", pem, b"cert", b"ca"))
    ledger = Ledger.at_home(tmp_path)
    ledger.record_round(
        "r1",
        date(2026, 9, 30),
        QUESTIONS,
        [
            NewRelease(q, (row,), DisclosurePolicy(), {})
            for q, row in zip(QUESTIONS, ROWS, strict=True)
        ],
        month="2026-10",
        manual_approval=True,
    )
    ledger.close()
    return tmp_path


def test_preview_shows_the_table_and_the_exact_bytes(tmp_path: Path) -> None:
    home = _home(tmp_path)
    result = CliRunner().invoke(_app(), ["preview", "r1", "--home", str(home)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "flu_vacc_65" in result.output and "awaiting_approval" in result.output
    document = Ledger.at_home(home).round_document("r1", "P1")
    assert document.to_bytes().decode() in result.output.replace("\n", "")
    assert document.digest in result.output


def test_approve_then_reject_with_a_reason(tmp_path: Path) -> None:
    home = _home(tmp_path)
    runner = CliRunner()
    assert runner.invoke(_app(), ["approve", "r1", "--home", str(home)]).exit_code == 0
    assert Ledger.at_home(home).round_states("r1") == {State.APPROVED}
    result = runner.invoke(_app(), ["reject", "r1", "--why", "wrong extract", "--home", str(home)])
    assert result.exit_code == 0
    recorded = Ledger.at_home(home).get("m1", date(2026, 9, 30))
    assert recorded is not None and recorded.why == "wrong extract"


def test_audit_verify_and_show(tmp_path: Path) -> None:
    log = AuditLog.at_home(tmp_path)
    for i in (1, 2):
        log.append(
            round_id=f"r{i}",
            definitions=["h1"],
            as_of="2026-09-30",
            release_sha256="a" * 64,
            to="coord",
            receipt=f"k{i}",
        )
    runner = CliRunner()
    ok = runner.invoke(_app(), ["audit", "verify", "--home", str(tmp_path)])
    assert ok.exit_code == 0 and "intact: 2 entries" in ok.output
    shown = runner.invoke(_app(), ["audit", "show", "--home", str(tmp_path)], terminal_width=200)
    assert "r1" in shown.output and "k2" in shown.output
    lines = log.path.read_text().splitlines()
    log.path.write_text(lines[1] + "\n")
    bad = runner.invoke(_app(), ["audit", "verify", "--home", str(tmp_path)])
    assert bad.exit_code == 1 and "line 1" in bad.output


def test_audit_verify_finds_entries_cut_from_the_end(tmp_path: Path) -> None:
    """Deleting the last entries keeps the chain valid; the ledger's receipts expose it."""
    home = _home(tmp_path)
    ledger = Ledger.at_home(home)
    ledger.approve("r1")
    ledger.mark_sent("r1", "rcpt-r1")
    log = AuditLog.at_home(home)
    log.append(
        round_id="r1",
        definitions=["h1"],
        as_of="2026-09-30",
        release_sha256="a" * 64,
        to="coord",
        receipt="rcpt-r1",
    )
    runner = CliRunner()
    assert runner.invoke(_app(), ["audit", "verify", "--home", str(home)]).exit_code == 0
    log.path.write_text("")
    cut = runner.invoke(_app(), ["audit", "verify", "--home", str(home)])
    assert cut.exit_code == 1 and "rcpt-r1" in cut.output
