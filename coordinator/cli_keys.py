"""``fedpeer-coordinator signing-key ...``: the key that signs rounds, receipts and studies.

``rotate`` issues a new Ed25519 signing key and certificate; it needs the CA key, so it
asks for the CA key's passphrase (or reads ``FEDPEER_CA_PASSPHRASE``), and it is where an
operator who keeps the CA key offline brings it in. A coordinator serving from this home
signs with the new key from its next round or receipt, without a restart
(``ca.SignerInHome``); one serving from a copy of the home, once the two files are copied
there. ``show`` says which signer is in place and until when.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from coordinator.ca import CaKeyState, CoordinatorHome, rotate_signer
from fedpeer.cli_support import existing_home, make_console
from fedpeer.errors import IdentityError
from fedpeer.identity import SigningIdentity, fingerprint, signer_from_pem

console = make_console()


def _describe(signer: SigningIdentity) -> str:
    until = signer.cert.not_valid_after_utc
    return f"certificate {fingerprint(signer.cert)[:16]}, valid until {until:%Y-%m-%d %H:%M} UTC"


def register(app: typer.Typer, home_option: Any) -> None:
    """Add the ``signing-key`` commands to ``app``."""
    keys = typer.Typer(
        help="The key that signs rounds, receipts and studies (the CA key can stay offline).",
        no_args_is_help=True,
    )
    app.add_typer(keys, name="signing-key")

    @keys.command()
    def rotate(home: Path = home_option) -> None:
        """Issue a new signing key with the CA key; `serve` signs with it from the next round."""
        coord_home = CoordinatorHome(existing_home(home, "coordinator", "fedpeer-coordinator init"))
        signer = rotate_signer(coord_home, coord_home.load_ca())
        console.print(f"New signing key in {coord_home.signing_key}: {_describe(signer)}")
        console.print(
            "A coordinator serving from this home signs with it from its next round or "
            "receipt, with no restart; copy signing.key and signing.crt into the home of each "
            "other host. Receipts signed before keep verifying (each is stored with its "
            "signer's certificate)."
        )

    @keys.command()
    def show(home: Path = home_option) -> None:
        """The signing key in place, and whether the CA key is here and encrypted."""
        coord_home = CoordinatorHome(existing_home(home, "coordinator", "fedpeer-coordinator init"))
        if not coord_home.signing_key.exists():
            raise IdentityError(
                f"{coord_home.root} holds no signing key: run `fedpeer-coordinator signing-key "
                "rotate` (it needs the CA key)"
            )
        signer = signer_from_pem(
            coord_home.signing_key.read_bytes(), coord_home.signing_cert.read_bytes()
        )
        console.print(f"Signing key {coord_home.signing_key}: {_describe(signer)}")
        ca_state = {
            CaKeyState.OFFLINE: "not in the home (offline): enrolment is refused until it is "
            "brought in",
            CaKeyState.ENCRYPTED: "encrypted: `serve` enrols only when given its passphrase",
            CaKeyState.PLAIN: "not encrypted (see `init --encrypt-ca`)",
        }[coord_home.ca_key_state()]
        console.print(f"CA key {coord_home.ca_key}: {ca_state}")
