"""The two command-line tools together: a served coordinator, an enrolled agent, a round."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent import cli_network
from agent.synth import generate_practice
from coordinator.cli import app

runner = CliRunner()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "coord"
    result = runner.invoke(app, ["init", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert (home / "ca.key").stat().st_mode & 0o777 == 0o600
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "serve",
            "--home",
            str(home),
            "--port",
            "0",
            "--enrol-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (home / "address").exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the coordinator did not start"
            time.sleep(0.05)
        yield home
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        assert "event=stopped" in output


def test_cli_round_trip(served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(served)
    main_address, enrol_address = (served / "address").read_text().split()
    result = runner.invoke(
        app,
        [
            "practice",
            "add",
            "--id",
            "A81001",
            "--name",
            "Church St",
            "--locality",
            "North",
            "--home",
            home,
        ],
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("fp1.")

    agent_app = typer.Typer()
    cli_network.register(agent_app)
    agent_home = tmp_path / "agent"
    enrol_args = ["enrol", "--coordinator", main_address, "--enrol-port"]
    enrol_args += [enrol_address.rsplit(":", 1)[1], "--token", token, "--home", str(agent_home)]
    result = runner.invoke(agent_app, enrol_args)
    assert result.exit_code == 0, result.output
    assert "Enrolled as practice A81001" in result.output
    again = runner.invoke(agent_app, [*enrol_args[:-1], str(tmp_path / "agent2")])
    assert again.exit_code != 0 and "already been used" in str(again.exception)

    result = runner.invoke(app, ["practice", "list", "--home", home])
    assert "A81001" in result.output and "Church St" in result.output

    bad = runner.invoke(app, ["round", "start", "--as-of", "2026-09-15", "--home", home])
    assert bad.exit_code != 0 and "month end" in str(bad.exception)
    result = runner.invoke(app, ["round", "start", "--as-of", "2026-09-30", "--home", home])
    assert result.exit_code == 0, result.output
    round_id = result.output.split()[2]

    extract = tmp_path / "extract"
    generate_practice(
        extract, practice_seed=3, list_size=400, as_of=dt.date(2026, 9, 30), fmt="csv"
    )
    result = runner.invoke(
        agent_app, ["run", "--home", str(agent_home), "--extract", str(extract), "--once"]
    )
    assert result.exit_code == 0, result.output
    assert f"round {round_id}: submitted" in result.output

    result = runner.invoke(app, ["round", "status", round_id, "--home", home])
    assert "A81001" in result.output and "submitted" in result.output
    assert "1 of 1 practices have answered" in result.output
    result = runner.invoke(app, ["round", "close", round_id, "--home", home])
    assert "closed" in result.output
    result = runner.invoke(app, ["comparisons", round_id, "--home", home])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["practice", "revoke", "--id", "A81001", "--home", home])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        agent_app, ["run", "--home", str(agent_home), "--extract", str(extract), "--once"]
    )
    assert result.exit_code != 0 and "revoked" in str(result.exception)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "FEDPEER_COORDINATOR_HOME": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "practice", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("CoordinatorUnreachable: no running coordinator")
    assert "Traceback" not in result.stderr
