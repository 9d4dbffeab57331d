"""``fedpeer-agent doctor`` against a real coordinator, real certificates and a real extract.

The command runs through Typer in a worker thread (it starts its own event loop) while the
coordinator serves from the test's loop.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import re
import shlex
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from _coordinator_helpers import DEFINITIONS, admin, start
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner, Result

from agent.cli_setup import register
from agent.client import enrol
from agent.doctor import (
    CLOCK_TOLERANCE,
    CoordinatorProbe,
    Finding,
    Status,
    check_clock,
    check_disk,
    diagnose,
)
from agent.identity_store import AgentHome, AgentIdentity
from agent.ledger import Ledger
from agent.policy_file import PracticeSettings, agent_toml_template, load_settings
from agent.synth import generate_practice
from coordinator.server import RunningCoordinator
from fedpeer.dates import last_complete_month_end
from fedpeer.identity import (
    CertificateAuthority,
    cert_from_pem,
    cert_to_pem,
    generate_key,
    key_to_pem,
    make_csr,
)

PRACTICE = "P20001"
CHECKS = ["configuration", "identity", "certificate", "extract", "coordinator", "clock", "disk"]
LINE = re.compile(r"^(ok|warning|problem) +([a-z]+): (.+)$")


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_show_locals=False)

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    return app


def run(*args: str) -> Result:
    return CliRunner().invoke(_app(), list(args), terminal_width=400)


async def doctor(*args: str) -> Result:
    # The command runs its own event loop: give it a thread, the coordinator keeps this one.
    return await asyncio.to_thread(run, "doctor", *args)


def lines(result: Result) -> dict[str, tuple[str, str]]:
    """The check lines of a doctor run, by check: (status, message)."""
    found = {}
    for line in result.stdout.splitlines():
        if m := LINE.match(line):
            found[m.group(2)] = (m.group(1), m.group(3))
    return found


@dataclass
class Site:
    home: Path
    extract: Path
    running: RunningCoordinator


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    running = await start(tmp_path / "coordinator")
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite(PRACTICE, "Mill Lane Surgery", "South")
        home = tmp_path / "agent"
        await enrol(running.address, running.enrol_port, token, home)
        extract = tmp_path / "extract"
        today = dt.datetime.now(dt.UTC).date()
        as_of = last_complete_month_end(today)
        generate_practice(extract, practice_seed=5, list_size=200, as_of=as_of, fmt="csv")
        yield Site(home, extract, running)
    finally:
        await running.stop(0)


def _patient_values(extract: Path) -> set[str]:
    with (extract / "patients.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["patient_id"] for r in rows} | {r["date_of_birth"] for r in rows}


def _reissue(site: Site, not_before: dt.datetime, not_after: dt.datetime) -> None:
    """Replace the agent's certificate with one for its own key, from its CA, other dates."""
    ca: CertificateAuthority = site.running.ca.issuer("reissuing a practice certificate")
    path = site.home / "agent.crt"
    old = cert_from_pem(path.read_bytes())
    cert = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.cert.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    path.write_bytes(cert_to_pem(cert))


# -- the whole path ------------------------------------------------------------------------


async def test_a_ready_agent_is_all_ok(site: Site) -> None:
    assert run("init", "--home", str(site.home)).exit_code == 0
    async with admin(site.running) as adm:
        opened = await adm.start_round(last_complete_month_end(dt.date.today()), DEFINITIONS)
    result = await doctor("--home", str(site.home), "--extract", str(site.extract))
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert list(found) == [*CHECKS, "files"]
    assert {status for status, _ in found.values()} == {"ok"}, result.output
    assert "is valid" in found["configuration"][1]
    assert f"enrolled as practice {PRACTICE}" in found["identity"][1]
    assert "list size 200; rows patients " in found["extract"][1]
    assert f"as practice {PRACTICE}; 1 round open" in found["coordinator"][1]
    assert f"round {opened.round_id}'s signed creation" in found["clock"][1]
    assert "cannot be seen from here" in found["clock"][1]
    assert result.stdout.splitlines()[-1] == "All 8 checks ok."
    # Counts only: no patient identifier or date of birth is ever printed.
    printed = result.output
    assert not any(value in printed for value in _patient_values(site.extract))


async def test_an_unreachable_coordinator_is_a_problem(site: Site) -> None:
    await site.running.stop(0)
    result = await doctor("--home", str(site.home), "--timeout", "2")
    assert result.exit_code == 1
    found = lines(result)
    status, message = found["coordinator"]
    assert status == "problem"
    assert f"cannot reach the coordinator at {site.running.address}" in message
    assert "firewall" in message
    # The clock is still compared with what the certificates certify, and says so.
    assert found["clock"][0] == "ok"
    assert "coordinator was not reached" in found["clock"][1]


async def test_an_expired_certificate_is_a_problem_and_tls_refuses_it(site: Site) -> None:
    now = dt.datetime.now(dt.UTC)
    _reissue(site, now - dt.timedelta(days=400), now - dt.timedelta(days=2))
    result = await doctor("--home", str(site.home))
    assert result.exit_code == 1
    found = lines(result)
    assert found["certificate"][0] == "problem"
    assert "expired on" in found["certificate"][1]
    assert "new enrolment token" in found["certificate"][1]
    assert found["coordinator"][0] == "problem"
    assert "TLS handshake" in found["coordinator"][1]


async def test_a_certificate_near_expiry_is_a_warning(site: Site) -> None:
    now = dt.datetime.now(dt.UTC)
    _reissue(site, now - dt.timedelta(days=1), now + dt.timedelta(days=10, hours=1))
    result = await doctor("--home", str(site.home))
    found = lines(result)
    assert found["certificate"][0] == "warning"
    assert "in 10 days" in found["certificate"][1]
    # The coordinator enrolled another certificate: TLS passes, the agent is refused.
    assert found["coordinator"][0] == "problem"
    assert "refused this agent" in found["coordinator"][1]


async def test_a_world_readable_ledger_is_a_warning_with_the_chmod_to_run(site: Site) -> None:
    Ledger.at_home(site.home).close()
    ledger = site.home / "ledger.sqlite"
    ledger.chmod(0o644)
    result = await doctor("--home", str(site.home))
    assert result.exit_code == 0, result.output  # a warning is not a problem
    status, message = lines(result)["files"]
    assert status == "warning"
    assert "ledger.sqlite can be read by other users" in message
    assert "agent.key" not in message  # 0600 since enrolment
    command = re.search(r"run `(.+)`", message)
    assert command is not None and command.group(1) == f"chmod 600 {shlex.quote(str(ledger))}"
    subprocess.run(shlex.split(command.group(1)), check=True)
    assert lines(await doctor("--home", str(site.home)))["files"][0] == "ok"


async def test_a_revoked_practice_is_told_apart_from_a_network_fault(site: Site) -> None:
    async with admin(site.running) as adm:
        await adm.revoke(PRACTICE)
    found = lines(await doctor("--home", str(site.home)))
    assert found["coordinator"][0] == "problem"
    assert "reached" in found["coordinator"][1]
    assert f"practice {PRACTICE} has been revoked" in found["coordinator"][1]
    assert f"whether practice {PRACTICE} is still enrolled" in found["coordinator"][1]
    # The coordinator answered the TLS handshake: the clock check knows it was reached.
    assert "no round is open" in found["clock"][1]


# -- without a coordinator -------------------------------------------------------------------


def test_a_missing_home_is_one_line_and_nothing_is_created(tmp_path: Path) -> None:
    home = tmp_path / "nowhere" / "agent"
    result = run("doctor", "--home", str(home), "--extract", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"problem home: {home} does not exist: give the agent's home folder, or create it "
        f"with `fedpeer-agent init --home {home}` and enrol"
    ]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[disclosure]\nthreshold = 3\n", "threshold 3 is below the floor of 7"),
        ("[disclosure]\nrounding_base = 7\n", "disclosure.rounding_base is looser"),
        ("[disclosure\nthreshold = 10\n", "not valid TOML"),
        ('[studies]\nowners = ["Dr A"]\n', 'studies.owners needs mode = "accept"'),
    ],
)
def test_a_broken_agent_toml_is_a_problem_in_one_line(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "agent.toml").write_text(text, encoding="utf-8")
    result = run("doctor", "--home", str(tmp_path))
    assert result.exit_code == 1
    status, message = lines(result)["configuration"]
    assert status == "problem"
    assert said in message
    assert message.startswith(f"{tmp_path / 'agent.toml'}: ")
    assert message.endswith(f"(`fedpeer-agent init --home {tmp_path} --force` writes a fresh one)")
    assert sum("configuration" in line for line in result.stdout.splitlines()) == 1


def test_a_table_the_agent_does_not_read_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("[disclousre]\nthreshold = 10\n", encoding="utf-8")
    status, message = lines(run("doctor", "--home", str(tmp_path)))["configuration"]
    assert status == "warning"
    assert "[disclousre] the agent does not read" in message


def test_an_unenrolled_home_says_how_to_enrol(tmp_path: Path) -> None:
    result = run("doctor", "--home", str(tmp_path))
    assert result.exit_code == 1
    found = lines(result)
    assert found["identity"][0] == "problem"
    assert "fedpeer-agent enrol --coordinator HOST:PORT" in found["identity"][1]
    # Without an identity there is nothing to call the coordinator with.
    assert "coordinator" not in found and "clock" not in found


def test_a_bad_extract_path_is_a_problem(tmp_path: Path) -> None:
    result = run("doctor", "--home", str(tmp_path), "--extract", str(tmp_path / "no-such"))
    status, message = lines(result)["extract"]
    assert result.exit_code == 1
    assert status == "problem"
    assert "neither a folder nor a database URL" in message


def test_a_malformed_extract_names_the_place_never_the_value(tmp_path: Path) -> None:
    extract = tmp_path / "extract"
    generate_practice(
        extract, practice_seed=2, list_size=200, as_of=dt.date(2026, 9, 30), fmt="csv"
    )
    rows = (extract / "patients.csv").read_text().splitlines()
    secret = "1901-13-45"
    fields_ = rows[3].split(",")
    fields_[2] = secret
    rows[3] = ",".join(fields_)
    (extract / "patients.csv").write_text("\n".join(rows) + "\n")
    result = run("doctor", "--home", str(tmp_path), "--extract", str(extract))
    status, message = lines(result)["extract"]
    assert status == "problem"
    assert "table patients, line 4, column date_of_birth" in message
    assert secret not in result.output
    assert fields_[0].strip('"') not in result.output


def test_a_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://fedpeer:s3cret@127.0.0.1:1/extract"
    result = run("doctor", "--home", str(tmp_path), "--extract", url)
    status, message = lines(result)["extract"]
    assert status == "problem"
    assert "s3cret" not in result.output
    assert "cannot connect" in message


def test_disk_space_thresholds(tmp_path: Path) -> None:
    mb = 1024 * 1024

    def free(n: int):
        return lambda _path: SimpleNamespace(free=n)

    assert check_disk(tmp_path, free(50 * mb)).status == Status.PROBLEM
    assert check_disk(tmp_path, free(500 * mb)).status == Status.WARNING
    assert check_disk(tmp_path, free(5 * 1024 * mb)).status == Status.OK
    assert "50 MB free" in check_disk(tmp_path, free(50 * mb)).message


def test_the_clock_is_compared_with_what_the_coordinator_certified(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    key = generate_key()
    cert = ca.issue_practice(make_csr(key), "P1")
    identity = AgentIdentity("P1", "127.0.0.1:1", key_to_pem(key), cert_to_pem(cert), ca.cert_pem)
    issued = cert.not_valid_before_utc
    round_at = issued + dt.timedelta(days=40)
    probe = CoordinatorProbe(Finding("coordinator", Status.OK, ""), True, "R1", round_at)

    behind_cert = check_clock(identity, probe, issued - dt.timedelta(hours=3))
    assert behind_cert.status == Status.PROBLEM
    assert "3 hours behind" in behind_cert.message and "NTP" in behind_cert.message

    behind_round = check_clock(identity, probe, round_at - dt.timedelta(days=2))
    assert behind_round.status == Status.WARNING
    assert "2 days behind the coordinator's" in behind_round.message, behind_round.message
    assert "round R1" in behind_round.message

    a_moment = check_clock(identity, probe, round_at - CLOCK_TOLERANCE / 2)
    assert a_moment.status == Status.OK

    unreached = CoordinatorProbe(Finding("coordinator", Status.PROBLEM, ""))
    assert "not reached" in check_clock(identity, unreached, issued).message
    assert (
        "no round is open"
        in check_clock(identity, CoordinatorProbe(probe.finding, True), issued).message
    )


async def test_diagnose_writes_nothing_into_the_home(tmp_path: Path) -> None:
    AgentHome(tmp_path)  # an empty home
    before = sorted(tmp_path.iterdir())
    await diagnose(tmp_path, str(tmp_path / "missing"), timeout=0.5)
    assert sorted(tmp_path.iterdir()) == before


# -- init ------------------------------------------------------------------------------------


def test_init_writes_a_template_that_parses_to_the_defaults(tmp_path: Path) -> None:
    home = tmp_path / "new" / "agent"
    result = run("init", "--home", str(home))
    assert result.exit_code == 0, result.output
    path = home / "agent.toml"
    assert path.read_text(encoding="utf-8") == agent_toml_template()
    assert load_settings(home) == PracticeSettings()
    assert home.stat().st_mode & 0o777 == 0o700
    assert f"fedpeer-agent doctor --home {home}" in result.stdout


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[disclosure]\nthreshold = 10\n", encoding="utf-8")
    refused = run("init", "--home", str(tmp_path))
    assert refused.exit_code == 1
    assert refused.output.splitlines() == [
        f"{path} already exists and was left as it is (--force replaces it)"
    ]
    assert path.read_text(encoding="utf-8") == "[disclosure]\nthreshold = 10\n"
    forced = run("init", "--home", str(tmp_path), "--force")
    assert forced.exit_code == 0
    assert "threshold = 10" not in path.read_text(encoding="utf-8")


def test_init_checks_the_extract_it_is_given(tmp_path: Path) -> None:
    extract = tmp_path / "extract"
    as_of = last_complete_month_end(dt.datetime.now(dt.UTC).date())
    generate_practice(extract, practice_seed=4, list_size=200, as_of=as_of, fmt="csv")
    good = run("init", "--home", str(tmp_path / "a"), "--extract", str(extract))
    assert good.exit_code == 0, good.output
    assert "ok      extract:" in good.stdout
    assert f"--extract {extract}" in good.stdout
    bad = run("init", "--home", str(tmp_path / "b"), "--extract", str(tmp_path / "none"))
    assert bad.exit_code == 1
    assert "problem extract:" in bad.stdout
    assert (tmp_path / "b" / "agent.toml").exists()  # written, then the extract checked


def test_the_guide_documents_every_check() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs" / "agent.md").read_text()
    documented = re.findall(r"^\| `([a-z]+)` \| ", guide, flags=re.MULTILINE)
    assert documented == ["home", *CHECKS, "files"]
