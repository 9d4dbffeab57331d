"""The CA key kept encrypted with a passphrase: made, opened, refused in one line, served."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _coordinator_helpers import admin, start

from agent.client import enrol
from coordinator.ca import CA_PASSPHRASE_ENV, CoordinatorHome, init_home
from fedpeer.errors import IdentityError
from fedpeer.identity import cert_from_pem, fingerprint, verify_issued_by

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = b"correct horse battery staple"


def test_encrypted_ca_key_round_trip(tmp_path: Path) -> None:
    home = init_home(tmp_path / "coord", passphrase=PASSPHRASE)
    pem = home.ca_key.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(home.ca_key.stat().st_mode) == 0o600
    ca = home.load_ca(PASSPHRASE)
    assert ca.key.public_key() == ca.cert.public_key()
    # The key opened is the one that issued the home's certificates.
    verify_issued_by(CoordinatorHome(home.root).load_ca(PASSPHRASE).issue_admin()[1], ca.cert)
    assert fingerprint(ca.cert) == fingerprint(home.load_ca(PASSPHRASE).cert)


def test_a_wrong_or_missing_passphrase_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = init_home(tmp_path / "coord", passphrase=PASSPHRASE)
    with pytest.raises(IdentityError, match="the passphrase does not open") as wrong:
        home.load_ca(b"not it")
    assert "\n" not in str(wrong.value)
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    with pytest.raises(IdentityError, match=CA_PASSPHRASE_ENV):  # pytest's stdin is no tty
        home.load_ca()


def _cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args, "--home", str(home)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_init_encrypts_and_serve_refuses_a_wrong_passphrase(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    made = _cli(home, {CA_PASSPHRASE_ENV: PASSPHRASE.decode()}, "init", "--encrypt-ca")
    assert made.returncode == 0, made.stderr
    assert (home / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    served = _cli(home, {CA_PASSPHRASE_ENV: "wrong"}, "serve", "--port", "0", "--enrol-port", "0")
    out = (served.stdout + served.stderr).strip()
    assert served.returncode == 1
    assert "Traceback" not in out and len(out.splitlines()) == 1
    assert "the passphrase does not open the private key" in out


async def test_a_coordinator_serves_with_an_encrypted_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_home(tmp_path / "coord", passphrase=PASSPHRASE)
    monkeypatch.setenv(CA_PASSPHRASE_ENV, PASSPHRASE.decode())
    running = await start(tmp_path / "coord")
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite("A81001", "Practice A81001", "North")
        identity = await enrol(running.address, running.enrol_port, token, tmp_path / "agent")
        verify_issued_by(cert_from_pem(identity.cert_pem), running.ca.cert)
    finally:
        await running.stop(0)
