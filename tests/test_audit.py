"""The audit log: a chain that names the first entry that was edited, removed, added or moved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.audit import AuditLog


def _log(tmp_path: Path, n: int = 4) -> AuditLog:
    log = AuditLog.at_home(tmp_path)
    for i in range(1, n + 1):
        log.append(
            round_id=f"r{i}",
            definitions=["h2", "h1"],
            as_of="2026-09-30",
            release_sha256="s" * 64,
            to="coordinator.example",
            receipt=f"rcpt-{i}",
        )
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_an_intact_log_verifies_and_shows_what_left(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() is None
    shown = log.show()
    assert [e["round"] for e in shown] == ["r1", "r2", "r3", "r4"]
    assert shown[0]["definitions"] == ["h1", "h2"] and shown[0]["to"] == "coordinator.example"


def test_an_edit_is_found_at_its_entry(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = lines[2].replace("coordinator.example", "elsewhere.example")
    _write(log, lines)
    problem = log.verify()
    assert problem is not None and problem.line == 3 and "edited" in problem.problem


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    from agent.audit import _entry_hash

    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["receipt"] = "forged"
    entry["entry_hash"] = _entry_hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write(log, lines)
    problem = log.verify()
    assert problem is not None and problem.line == 3 and "chain broken" in problem.problem


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (lambda ls: ls[:1] + ls[2:], 2),  # deletion
        (lambda ls: [ls[0], ls[2], ls[1], ls[3]], 2),  # reordering
        (lambda ls: [ls[0], ls[0], *ls[1:]], 2),  # insertion of a copy
        (lambda ls: ls[1:], 1),  # first entry removed
        (lambda ls: [*ls[:2], "not json", *ls[2:]], 3),  # garbage inserted
    ],
)
def test_deletion_insertion_reordering_are_found(tmp_path: Path, change: object, line: int) -> None:
    log = _log(tmp_path)
    _write(log, change(_lines(log)))  # type: ignore[operator]
    problem = log.verify()
    assert problem is not None and problem.line == line


def test_appending_to_a_damaged_log_is_refused(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _write(log, _lines(log)[1:])
    with pytest.raises(ValueError, match="damaged"):
        _log(tmp_path, 1)
