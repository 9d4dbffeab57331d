"""A waiting agent is small and still, and a round's memory is not kept by it (issue 11).

The real thing: a coordinator served by ``python -m coordinator.cli serve``, a practice
enrolled with a one-time token, and the agent as the service runs it
(``python -m agent.service``, i.e. ``fedpeer-agent-service``), measured from /proc.
``bench/agent_idle.py`` prints the same figures, and those of ``fedpeer-agent run``.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent import cli_network
from agent.synth import generate_practice
from coordinator.cli import app as coordinator_app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
# What reads an extract, or belongs to the coordinator: never in the waiting agent.
HEAVY = ("duckdb", "duckdb_engine", "sqlalchemy", "numpy", "pyarrow", "pandas", "opendp")
# Issue 11's bound; measured 54.8 MiB waiting, in a used and in a freshly made environment.
IDLE_LIMIT_KIB = 60 * 1024


def _last_month_end() -> dt.date:
    return dt.date.today().replace(day=1) - dt.timedelta(days=1)


def test_the_agent_commands_load_nothing_that_reads_an_extract() -> None:
    probe = (
        "import sys, typer.main, agent.cli, agent.service\n"
        "agent.cli._register_commands()\n"
        "typer.main.get_command(agent.cli.app)\n"
        "agent.service.parse_args(['--home', 'h', '--extract', 'e'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "agent.client" in loaded and "agent.pipeline" in loaded
    heavy = {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not heavy, sorted(heavy)
    assert not {"agent.engine", "agent.extract", "agent.synth"} & loaded


def _status(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settled_rss(pid: int) -> int:
    last, since, deadline = _status(pid, "VmRSS"), time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - since < 2:
        time.sleep(0.2)
        now = _status(pid, "VmRSS")
        if abs(now - last) > 256:
            last, since = now, time.monotonic()
    return _status(pid, "VmRSS")


def _mapped_heavy_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY if f"/{name}/" in maps or f"/{name}." in maps}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    "entry", [["agent.service"], ["agent.cli", "run"]], ids=["service", "fedpeer-agent-run"]
)
def test_a_waiting_agent_is_small_and_still_and_a_round_leaves_it_so(
    served: Path, tmp_path: Path, entry: list[str]
) -> None:
    home = str(served)
    main_address, enrol_address = (served / "address").read_text().split()
    added = runner.invoke(
        coordinator_app,
        ["practice", "add", "--id", "Q1", "--name", "Quay St", "--locality", "N", "--home", home],
    )
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    agent_app = typer.Typer()
    cli_network.register(agent_app)
    agent_home = tmp_path / "agent"
    enrolled = runner.invoke(
        agent_app,
        [
            "enrol",
            "--coordinator",
            main_address,
            "--enrol-port",
            enrol_address.rsplit(":")[1],
            "--token",
            token,
            "--home",
            str(agent_home),
        ],
    )
    assert enrolled.exit_code == 0, enrolled.output
    as_of = _last_month_end()
    extract = tmp_path / "extract"
    generate_practice(extract, practice_seed=5, list_size=600, as_of=as_of, fmt="csv")

    log_path = tmp_path / "agent.log"
    service = [sys.executable, "-m", *entry, "--home", str(agent_home)]
    service += ["--extract", str(extract), "--log-file", str(log_path)]
    agent = subprocess.Popen(service, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while "event=service_started" not in (log_path.read_text() if log_path.exists() else ""):
            assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.1)
        idle = _settled_rss(agent.pid)
        cpu = _cpu_seconds(agent.pid)
        time.sleep(3)
        # Waiting costs nothing: keepalive pings every 30 s, a study poll every 30 s.
        assert _cpu_seconds(agent.pid) - cpu <= 0.1
        assert idle <= IDLE_LIMIT_KIB, f"idle agent {idle / 1024:.1f} MiB"
        assert not _mapped_heavy_libraries(agent.pid)

        started = runner.invoke(
            coordinator_app, ["round", "start", "--as-of", str(as_of), "--home", home]
        )
        assert started.exit_code == 0, started.output
        round_id = started.output.split()[2]
        deadline = time.monotonic() + 120
        while f"event=acknowledged round={round_id}" not in log_path.read_text():
            assert agent.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        # The extract was read in a child process; the agent itself never loaded DuckDB,
        # SQLAlchemy or NumPy, and holds little more than it did waiting.
        assert not _mapped_heavy_libraries(agent.pid)
        assert _status(agent.pid, "VmRSS") <= idle + 8 * 1024
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
    log = log_path.read_text()
    assert "event=service_stopped reason=asked" in log
    assert "Traceback" not in log + stderr
    # The log names rounds and events, never a patient.
    with (extract / "patients.csv").open(newline="") as f:
        patients = {row["patient_id"] for row in csv.DictReader(f)}
    assert patients and not {p for p in patients if p in log}
