"""The agent runs as a service: systemd units, the Windows service file, the service entry.

``systemd-analyze verify`` checks the units where it is installed (Linux with systemd;
the units' /opt/fedpeer/bin is pointed at this environment's commands, the only change),
and ``systemd-analyze security`` rates their hardening. The Windows service file is
checked as XML and its arguments are parsed by the service's own parser, as are the
units' command lines.
"""

from __future__ import annotations

import logging.handlers
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer.main

from agent import service
from coordinator.cli import app as coordinator_app
from fedpeer import __version__

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
WINSW = ROOT / "deploy" / "windows" / "fedpeer-agent.xml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize(
    ("unit", "nofile"),
    [("fedpeer-agent.service", "1024"), ("fedpeer-coordinator.service", "65536")],
)
def test_units_run_unprivileged_and_hardened(unit: str, nofile: str) -> None:
    d = _directives(UNITS / unit)
    assert d["User"] == ["fedpeer"] and d["StateDirectory"]
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
        "LimitNOFILE": nofile,
        "Restart": "on-failure",
        "StandardError": "journal",
    }
    assert {k: d.get(k, [None])[-1] for k in expected} == expected
    assert "@system-service" in d["SystemCallFilter"]


def test_the_units_command_lines_parse() -> None:
    agent = shlex.split(_directives(UNITS / "fedpeer-agent.service")["ExecStart"][0])
    assert agent[0] == "/opt/fedpeer/bin/fedpeer-agent-service"
    args = service.parse_args(agent[1:])
    assert args.home == Path("/var/lib/fedpeer-agent")  # the StateDirectory
    assert args.extract == "/srv/practice-extract"
    assert args.log_file is None  # the journal keeps and rotates the log
    coordinator = shlex.split(_directives(UNITS / "fedpeer-coordinator.service")["ExecStart"][0])
    assert coordinator[:2] == ["/opt/fedpeer/bin/fedpeer-coordinator", "serve"]
    group = typer.main.get_command(coordinator_app)
    with group.make_context("fedpeer-coordinator", coordinator[1:]) as ctx:
        serve = group.get_command(ctx, "serve")  # type: ignore[attr-defined]
        assert serve is not None
        serve.make_context("serve", coordinator[2:])


@pytest.fixture
def units_here(tmp_path: Path) -> Path:
    """The units with /opt/fedpeer/bin/ pointed at stand-ins that exist here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("fedpeer-agent-service", "fedpeer-coordinator"):
        stand_in = bin_dir / name
        stand_in.write_text(f'#!/bin/sh\nexec {sys.executable} -m agent.service "$@"\n')
        stand_in.chmod(0o755)
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/fedpeer/bin/", f"{bin_dir}/")
        (tmp_path / unit.name).write_text(text)
    return tmp_path


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_verifies_the_units_and_rates_them_well_hardened(units_here: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    units = [str(u) for u in sorted(units_here.glob("*.service"))]
    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *units],
        capture_output=True,
        text=True,
        cwd=units_here,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    mentions = [line for line in verified.stderr.splitlines() if "fedpeer" in line]
    assert not mentions, mentions
    for unit in units:
        rated = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", unit],
            capture_output=True,
            text=True,
            cwd=units_here,
            timeout=120,
        )
        match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", rated.stdout)
        assert match, rated.stdout + rated.stderr
        # 0 is fully confined, 10 unprotected; systemd calls below 2.0 "OK".
        assert float(match.group(1)) < 2.0, rated.stdout


def test_the_windows_service_file_runs_the_agent_service() -> None:
    root = ET.parse(WINSW).getroot()
    assert root.tag == "service"
    assert root.findtext("id") == "fedpeer-agent"
    assert root.findtext("executable", "").endswith("\\Scripts\\fedpeer-agent-service.exe")
    args = service.parse_args(shlex.split(root.findtext("arguments", "")))
    assert str(args.home) == r"C:\ProgramData\fedpeer\agent"
    assert args.extract == r"D:\PracticeExtract"
    assert root.findtext("workingdirectory") == str(args.home)
    assert root.findtext("startmode") == "Automatic"
    account = root.find("serviceaccount")
    assert account is not None
    assert (account.findtext("domain"), account.findtext("user")) == (
        "NT AUTHORITY",
        "LocalService",
    )
    assert [e.get("action") for e in root.findall("onfailure")] == ["restart", "restart"]
    log = root.find("log")
    assert log is not None and log.get("mode") == "roll-by-size"
    assert int(log.findtext("sizeThreshold", "0")) == 10240  # KB
    assert int(log.findtext("keepFiles", "0")) == 8


def test_service_options() -> None:
    args = service.parse_args(["--home", "h", "--extract", "sqlite:///x.db"])
    assert (args.home, args.extract, args.log_file) == (Path("h"), "sqlite:///x.db", None)
    assert (args.log_max_mb, args.log_backups) == (10.0, 5)
    for wrong in (
        ["--extract", "e"],
        ["--home", "h"],
        ["--home", "h", "--extract", "e", "--log-max-mb", "0"],
        ["--home", "h", "--extract", "e", "--log-backups", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            service.parse_args(wrong)
        assert exited.value.code == 2
    shown = subprocess.run(
        [sys.executable, "-m", "agent.service", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert shown.stdout.strip() == f"fedpeer {__version__}"


def test_the_log_file_rotates_by_size(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "agent.log"
    args = service.parse_args(
        [
            "--home",
            "h",
            "--extract",
            "e",
            "--log-file",
            str(log_file),
            "--log-max-mb",
            "0.001",
            "--log-backups",
            "2",
        ]
    )
    handler = service.log_handler(args)
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert (handler.maxBytes, handler.backupCount) == (1048, 2)
    log = logging.getLogger("fedpeer.test.rotation")
    log.addHandler(handler)
    log.propagate = False
    try:
        for n in range(200):
            log.warning("event=test round=R%d", n)
    finally:
        log.removeHandler(handler)
        handler.close()
    kept = sorted(p.name for p in log_file.parent.iterdir())
    assert kept == ["agent.log", "agent.log.1", "agent.log.2"]
    assert all(p.stat().st_size <= 1048 + 100 for p in log_file.parent.iterdir())
    # Rotated files too are the owner's only, whatever the umask (the test's is usual).
    assert {p.stat().st_mode & 0o777 for p in log_file.parent.iterdir()} == {0o600}
    assert service.log_handler(service.parse_args(["--home", "h", "--extract", "e"])).stream is (
        sys.stderr
    )


def test_a_user_error_stops_the_service_in_one_line(tmp_path: Path) -> None:
    stopped = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.service",
            "--home",
            str(tmp_path / "nowhere"),
            "--extract",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert stopped.returncode == 1
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and "event=service_stopped reason=" in lines[0], stopped.stderr
