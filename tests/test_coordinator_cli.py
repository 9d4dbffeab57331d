"""The two command-line tools together: a served coordinator, an enrolled agent, a round."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent import cli_network
from agent.synth import generate_practice
from coordinator.cli import app

runner = CliRunner()


def test_cli_round_trip(served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(served)
    assert (served / "ca.key").stat().st_mode & 0o777 == 0o600
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
    no_study = ["round", "start", "--as-of", "2026-09-30", "--standardise-with", "study-x"]
    bad = runner.invoke(app, [*no_study, "--home", home])
    assert bad.exit_code != 0 and "there is no study" in str(bad.exception)
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
    result = runner.invoke(app, ["comparisons", round_id, "--home", home], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"Peer comparison, {round_id}" in result.output and "HbA1c" in result.output
    result = runner.invoke(app, ["practice", "revoke", "--id", "A81001", "--home", home])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        agent_app, ["run", "--home", str(agent_home), "--extract", str(extract), "--once"]
    )
    assert result.exit_code != 0 and "revoked" in str(result.exception)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "FEDPEER_COORDINATOR_HOME": str(tmp_path)}  # a home, nothing served
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


def test_cli_study_from_definition_files_to_pooled_results(served: Path, tmp_path: Path) -> None:
    """A study from a definition file with its codelists: created, shown to practices who
    read it in plain words and approve it, closed, aggregated, and exported."""
    import shutil

    from agent import cli_airlock, cli_studies
    from fedpeer.definitions import standard

    home = str(served)
    main_address, enrol_address = (served / "address").read_text().split()
    agent_app = typer.Typer()
    cli_network.register(agent_app)
    cli_studies.register(agent_app)
    airlock_app = typer.Typer()

    @airlock_app.callback()
    def _root() -> None:
        """Airlock commands."""

    cli_airlock.register(airlock_app)
    agents = []
    for k in range(3):
        added = runner.invoke(
            app,
            [
                "practice",
                "add",
                "--id",
                f"B{k}",
                "--name",
                f"B {k}",
                "--locality",
                "East",
                "--home",
                home,
            ],
        )
        token = added.output.strip().splitlines()[-1]
        agent_home = tmp_path / f"agent{k}"
        enrolled = runner.invoke(
            agent_app,
            [
                "enrol",
                "--coordinator",
                main_address,
                "--enrol-port",
                enrol_address.rsplit(":", 1)[1],
                "--token",
                token,
                "--home",
                str(agent_home),
            ],
        )
        assert enrolled.exit_code == 0, enrolled.output
        extract = tmp_path / f"extract{k}"
        generate_practice(
            extract, practice_seed=20 + k, list_size=300, as_of=dt.date(2026, 9, 30), fmt="csv"
        )
        agents.append((agent_home, extract))

    source = Path(standard.__file__).parent
    study_dir = tmp_path / "study"
    shutil.copytree(source / "codelists", study_dir / "codelists")
    shutil.copy(source / "flu_vacc_65.toml", study_dir / "flu_vacc_65.toml")
    missing = runner.invoke(
        app,
        [
            "study",
            "create",
            str(study_dir / "nope.toml"),
            "--owner",
            "Dr A",
            "--title",
            "T",
            "--purpose",
            "P",
            "--as-of",
            "2026-09-30",
            "--home",
            home,
        ],
    )
    assert missing.exit_code != 0 and "no such definition file" in missing.output
    created = runner.invoke(
        app,
        [
            "study",
            "create",
            str(study_dir / "flu_vacc_65.toml"),
            "--owner",
            "Dr A",
            "--title",
            "Flu vaccination among the over-65s",
            "--purpose",
            "Compare uptake.",
            "--as-of",
            "2026-09-30",
            "--min-practices",
            "3",
            "--home",
            home,
        ],
    )
    assert created.exit_code == 0, created.output
    study_id = created.output.split()[1].rstrip(":")
    assert "draft" in created.output
    assert runner.invoke(app, ["study", "open", study_id, "--home", home]).exit_code == 0

    def run_all() -> None:
        for agent_home, extract in agents:
            result = runner.invoke(
                agent_app, ["run", "--home", str(agent_home), "--extract", str(extract), "--once"]
            )
            assert result.exit_code == 0, result.output

    run_all()
    agent_home = str(agents[0][0])
    shown = runner.invoke(agent_app, ["study", "show", study_id, "--home", agent_home])
    assert shown.exit_code == 0, shown.output
    assert "Asked by Dr A" in shown.output and "Decision: held" in shown.output
    previewed = runner.invoke(airlock_app, ["preview", study_id, "--home", agent_home])
    assert previewed.exit_code == 0 and "Asked by Dr A" in previewed.output
    assert "aged 65 or over" in shown.output or "65" in shown.output
    for agent_home_path, _ in agents:
        approved = runner.invoke(
            agent_app, ["study", "approve", study_id, "--home", str(agent_home_path)]
        )
        assert approved.exit_code == 0, approved.output
    run_all()
    shown = runner.invoke(app, ["study", "show", study_id, "--home", home])
    assert "3 joined" in shown.output
    closed = runner.invoke(app, ["study", "close", study_id, "--home", home])
    assert closed.exit_code == 0 and "aggregating" in closed.output
    for _ in range(6):
        run_all()
    shown = runner.invoke(app, ["study", "show", study_id, "--home", home])
    assert "state: published" in shown.output, shown.output
    listed = runner.invoke(app, ["study", "list", "--home", home], terminal_width=250)
    assert listed.exit_code == 0 and "published" in listed.output
    out = tmp_path / "results.csv"
    exported = runner.invoke(app, ["study", "results", study_id, "--out", str(out), "--home", home])
    assert exported.exit_code == 0, exported.output
    assert out.read_text().splitlines()[1].startswith("flu_vacc_65,")
    shown = runner.invoke(app, ["study", "results", study_id, "--home", home])
    assert "pooled over 3 practices" in shown.output
    analyst = runner.invoke(
        app, ["analyst", "add", "Dr A", "--out", str(tmp_path / "dr-a"), "--home", home]
    )
    assert analyst.exit_code == 0, analyst.output
    assert (tmp_path / "dr-a" / "analyst.key").stat().st_mode & 0o777 == 0o600
    from coordinator.study_client import fetch_results

    frame = fetch_results(tmp_path / "dr-a", main_address, study_id)
    assert list(frame["indicator"]) == ["flu_vacc_65"]
