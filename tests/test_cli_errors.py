"""Each user mistake, in both tools, through the real entry points: one line, nothing made.

Each command runs in a subprocess, in a folder of its own that holds only ``folder/`` and
``file.txt``, and must leave that folder as it was. The commands run at once, since each
takes a second or more to start.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from agent.audit import AuditLog
from agent.synth import generate_practice
from coordinator.ca import init_home

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"agent": "agent.cli", "coordinator": "coordinator.cli"}
LONG_ROUND = "round-2026-09-30-" + "x" * 90  # longer than any terminal is wide

# (tool, command line, what its one line must say). {extract} is a practice extract,
# {coordinator} an initialised coordinator home, {audited} an agent home with an audit
# log, {busy} a port in use; every other path is in the case's own folder.
MISTAKES = [
    # fedpeer-agent
    ("agent", "bogus", "No such command 'bogus'"),
    ("agent", "compute --extract {extract} --as-off 2026-09-30 --out r.csv", "--as-off"),
    (
        "agent",
        "compute --extract {extract} --as-of 2026-09-30 --out nowhere/r.csv",
        "there is no folder nowhere",
    ),
    ("agent", "compute --extract {extract} --as-of 2026-09-30 --out folder", "folder is a folder"),
    (
        "agent",
        "compute --extract {extract} --as-of 2026-09-30 --out r.csv --engine bogus",
        "'bogus' is not one of 'sql', 'reference'",
    ),
    ("agent", "compute --extract {extract} --as-of 2026-09-31 --out r.csv", "'2026-09-31'"),
    (
        "agent",
        "compute --extract nowhere --as-of 2026-09-30 --out r.csv",
        "nowhere is neither a folder nor a database URL",
    ),
    (
        "agent",
        "enrol --coordinator nohost --enrol-port 50052 --token t --home nowhere",
        "'nohost' is not HOST:PORT",
    ),
    (
        "agent",
        "enrol --coordinator 127.0.0.1:{busy} --enrol-port port --token t --home nowhere",
        "'--enrol-port'",
    ),
    ("agent", "run --home nowhere --extract {extract} --once", "no agent home at nowhere"),
    ("agent", "run --home folder --extract nowhere", "nowhere is neither a folder nor a database"),
    ("agent", "synth --out s --practices 2 --list-size 50 --format xls", "'xls' is not one of"),
    ("agent", "synth --out file.txt --practices 2 --list-size 50", "file.txt is a file"),
    ("agent", "synth --out s --practices 0 --list-size 50", "'--practices'"),
    ("agent", "synth --out s --practices 2 --list-size 50 --as-of 2026-02-30", "'2026-02-30'"),
    ("agent", "explain dm_hba1c_le58 --as-of yesterday", "'yesterday' is not a date"),
    ("agent", "explain dm_hba1c_le85", "no standard definition with id 'dm_hba1c_le85'"),
    ("agent", "explain nowhere.toml", "nowhere.toml: cannot read"),
    ("agent", "definitions list --as-of 30/09/2026", "'30/09/2026' is not a date"),
    ("agent", "preview R1 --home nowhere", "no agent home at nowhere"),
    ("agent", "preview R1 --home folder", "folder holds no ledger yet"),
    ("agent", "approve R1 --home nowhere", "no agent home at nowhere"),
    ("agent", "reject R1 --why wrong --home nowhere", "no agent home at nowhere"),
    ("agent", "audit verify --home nowhere", "no agent home at nowhere"),
    ("agent", "audit show --home nowhere", "no agent home at nowhere"),
    ("agent", "audit shwo --home {audited}", "No such command 'shwo'"),
    ("agent", "study list --home nowhere", "no agent home at nowhere"),
    ("agent", "study show S1 --home nowhere", "no agent home at nowhere"),
    ("agent", "study approve S1 --home folder", "has not seen a study S1"),
    ("agent", "study decline S1 --home nowhere", "no agent home at nowhere"),
    ("agent", "study withdraw S1 --home folder", "has not seen a study S1"),
    # fedpeer-coordinator
    ("coordinator", "init --home file.txt/home", "file.txt/home: Not a directory"),
    ("coordinator", "serve --home nowhere", "no coordinator home at nowhere"),
    (
        "coordinator",
        "serve --home {coordinator} --port {busy}",
        "port {busy} on 127.0.0.1 is in use by another program",
    ),
    (
        "coordinator",
        "serve --home {coordinator} --port 0 --enrol-port {busy}",
        "'--enrol-port': port {busy}",
    ),
    ("coordinator", "serve --home {coordinator} --port fifty", "'--port'"),
    ("coordinator", "serve --home {coordinator} --db bogus://x", "cannot open the store"),
    (
        "coordinator",
        "practice add --id P1 --name N --locality L --home nowhere",
        "no coordinator home at nowhere",
    ),
    ("coordinator", "practice list --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "practice revoke --id P1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "round start --as-of 2026-9-30 --home {coordinator}", "'2026-9-30'"),
    ("coordinator", "round status R1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "round close R1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "comparisons R1 --home nowhere", "no coordinator home at nowhere"),
    (
        "coordinator",
        "study create nowhere.toml --owner A --title T --purpose P --as-of 2026-09-30",
        "nowhere.toml: no such definition file",
    ),
    ("coordinator", "study show S1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "study list --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "study open S1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "study close S1 --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "study results S1 --out r.txt --home {coordinator}", "a .csv or .parquet"),
    ("coordinator", "study results S1 --out nowhere/r.csv", "there is no folder nowhere"),
    ("coordinator", "analyst add A --out a --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "analyst add A --out file.txt --home {coordinator}", "file.txt is a file"),
    ("coordinator", "backup --out b.tar.gz --home nowhere", "no coordinator home at nowhere"),
    ("coordinator", "restore --from nothing.tar.gz --home {coordinator}", "no such backup file"),
    ("coordinator", "serve --home {coordinator} --config nothing.toml", "no such configuration"),
    ("agent", "doctor --home nowhere", "nowhere does not exist"),
    ("agent", "outbox --home nowhere", "no agent home at nowhere"),
    ("agent", "doctor --home folder --timeout abc", "'--timeout'"),
    ("agent", "init --home file.txt/home", "file.txt/home: Not a directory"),
]
# Commands that work, for what they print.
WORKS = [
    ("agent", "--version", "fedpeer-agent "),
    ("coordinator", "--version", "fedpeer-coordinator "),
    ("agent", "audit show --home {audited}", LONG_ROUND),
]


@dataclass(frozen=True)
class Ran:
    code: int
    output: str  # stdout, then stderr
    changed: set[str]  # what appeared in, or went from, the case's folder


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDPEER_")}
    return {**env, "PYTHONPATH": str(ROOT)}


def _run(folder: Path, tool: str, line: str) -> Ran:
    (folder / "folder").mkdir()
    (folder / "file.txt").write_text("not a folder\n")
    before = _tree(folder)
    done = subprocess.run(
        [sys.executable, "-m", MODULES[tool], *shlex.split(line)],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    return Ran(done.returncode, done.stdout + done.stderr, before ^ _tree(folder))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extract, a coordinator home and an audited agent home, which no case may change."""
    root = tmp_path_factory.mktemp("shared")
    generate_practice(
        root / "extract", practice_seed=1, list_size=60, as_of=date(2026, 9, 30), fmt="csv"
    )
    init_home(root / "coordinator")
    AuditLog.at_home(root / "audited").append(
        round_id=LONG_ROUND,
        definitions=["h1"],
        as_of="2026-09-30",
        release_sha256="a" * 64,
        to="127.0.0.1:50051",
        receipt="k1",
    )
    return root


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def values(shared: Path, busy_port: int) -> dict[str, object]:
    names = ("extract", "coordinator", "audited")
    return {"busy": busy_port, **{name: shared / name for name in names}}


@dataclass(frozen=True)
class Batch:
    ran: dict[tuple[str, str], Ran]
    shared_changed: set[str]  # what appeared in, or went from, the shared folders


@pytest.fixture(scope="module")
def batch(
    shared: Path, values: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Batch:
    """Every case, run at once."""
    before = _tree(shared)
    cases = [(tool, line) for tool, line, _ in MISTAKES + WORKS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        started = {
            (tool, line): pool.submit(
                _run, tmp_path_factory.mktemp("case"), tool, line.format(**values)
            )
            for tool, line in cases
        }
        ran = {case: future.result() for case, future in started.items()}
    return Batch(ran, before ^ _tree(shared))


@pytest.mark.parametrize(
    ("tool", "line", "says"), MISTAKES, ids=[f"{t} {c}" for t, c, _ in MISTAKES]
)
def test_a_mistake_is_one_plain_line_and_makes_nothing(
    batch: Batch, values: dict[str, object], tool: str, line: str, says: str
) -> None:
    ran = batch.ran[(tool, line)]
    assert ran.code != 0, ran.output
    assert len(ran.output.strip().splitlines()) == 1, ran.output
    assert "Traceback" not in ran.output
    assert says.format(**values) in ran.output
    assert not ran.changed


@pytest.mark.parametrize(("tool", "line", "says"), WORKS, ids=[f"{t} {c}" for t, c, _ in WORKS])
def test_what_works_prints_whole_lines(batch: Batch, tool: str, line: str, says: str) -> None:
    """--version on both tools; ids are never cut or wrapped when the output is piped."""
    ran = batch.ran[(tool, line)]
    assert ran.code == 0, ran.output
    assert says in ran.output
    assert not ran.changed


def test_no_mistake_changes_the_extract_or_the_homes_it_names(batch: Batch) -> None:
    assert not batch.shared_changed


def test_serve_shows_the_frameworks_logs_only_with_verbose(tmp_path: Path) -> None:
    servers = {}
    for verbose in (False, True):
        home = tmp_path / f"home-{verbose}"
        init_home(home)
        options = ["--verbose"] if verbose else []
        command = [sys.executable, "-m", "coordinator.cli", *options, "serve", "--home", str(home)]
        servers[verbose] = (
            home,
            subprocess.Popen(
                [*command, "--port", "0", "--enrol-port", "0"],
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    outputs = {}
    deadline = time.monotonic() + 60
    for verbose, (home, proc) in servers.items():
        while not (home / "address").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        # Its logs up to "event=started" are written before the address; a stop this soon
        # may come before serve handles SIGTERM, so how it exits is not asked here.
        proc.send_signal(signal.SIGTERM)
        outputs[verbose], _ = proc.communicate(timeout=30)
    assert "alembic" not in outputs[False] and "event=started" in outputs[False]
    assert "alembic.runtime.migration" in outputs[True]
