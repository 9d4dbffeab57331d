"""The coordinator's home (CA, server and admin certificates) and enrolment by token.

A token is ``fp1.<CA fingerprint>.<secret>``. The secret proves the practice was invited;
the CA fingerprint lets the agent check, before it sends anything, that the server it
reached holds this coordinator's CA (as kubeadm's discovery hash does). The store keeps
only the SHA-256 of a token, and a token works once, before it expires.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import logging
import os
import sys
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from coordinator.store import Store
from fedpeer.errors import EnrolmentError, IdentityError, PolicyError, StoreError
from fedpeer.identity import (
    CertificateAuthority,
    SigningIdentity,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    key_from_pem,
    key_is_encrypted,
    key_to_pem,
    new_token,
    parse_token,
    signer_from_pem,
    verify_signer,
)
from fedpeer.policy import DisclosurePolicy, policy_from_table
from fedpeer.private_files import create_private, private_dir, refuse_link, write_private

log = logging.getLogger("fedpeer.coordinator")
DEFAULT_TOKEN_VALIDITY = dt.timedelta(days=7)
CA_PASSPHRASE_ENV = "FEDPEER_CA_PASSPHRASE"  # opens an encrypted CA key without a prompt
SIGNER_RENEWAL = dt.timedelta(days=30)  # `serve` renews a signer this close to expiry
CA_KEY_OFFLINE = (
    "{what} needs the CA key: start the coordinator with the CA key's passphrase"
    f" ({CA_PASSPHRASE_ENV}) or bring the CA key online"
)
PRACTICE_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


class CaKeyState(StrEnum):
    """Where a home's CA key is: enrolment and signing-key rotation need it, serving not."""

    PLAIN = "plain"  # in the home, unencrypted
    ENCRYPTED = "encrypted"  # in the home, encrypted under a passphrase (`init --encrypt-ca`)
    OFFLINE = "offline"  # not in the home: kept elsewhere


@dataclass(frozen=True)
class CoordinatorHome:
    """Where a coordinator keeps its keys, certificates and default SQLite store."""

    root: Path

    @property
    def ca_key(self) -> Path:
        """The CA private key (0600)."""
        return self.root / "ca.key"

    def ca_key_state(self) -> CaKeyState:
        """Whether ``ca.key`` is here, and encrypted."""
        if not self.ca_key.exists():
            return CaKeyState.OFFLINE
        if key_is_encrypted(self.ca_key.read_bytes()):
            return CaKeyState.ENCRYPTED
        return CaKeyState.PLAIN

    @property
    def ca_cert(self) -> Path:
        """The CA certificate."""
        return self.root / "ca.crt"

    @property
    def server_key(self) -> Path:
        """The TLS server key (0600)."""
        return self.root / "server.key"

    @property
    def server_cert(self) -> Path:
        """The TLS server certificate."""
        return self.root / "server.crt"

    @property
    def signing_key(self) -> Path:
        """The Ed25519 key that signs rounds and receipts (0600)."""
        return self.root / "signing.key"

    @property
    def signing_cert(self) -> Path:
        """The signing key's certificate, issued by the CA, marked as the signer."""
        return self.root / "signing.crt"

    @property
    def admin_key(self) -> Path:
        """The administrator's client key (0600)."""
        return self.root / "admin.key"

    @property
    def admin_cert(self) -> Path:
        """The administrator's client certificate."""
        return self.root / "admin.crt"

    @property
    def database(self) -> Path:
        """The default SQLite store."""
        return self.root / "coordinator.sqlite"

    @property
    def address_file(self) -> Path:
        """Where ``serve`` records the address it listens on, for the admin CLI."""
        return self.root / "address"

    @property
    def network_file(self) -> Path:
        """The network's settings: its ``[disclosure]`` policy, pinned by agents at enrolment."""
        return self.root / "network.toml"

    def network_policy(self) -> DisclosurePolicy:
        """The network's disclosure policy: the defaults unless ``network.toml`` is stricter."""
        if not self.network_file.exists():
            return DisclosurePolicy()
        try:
            data = tomllib.loads(self.network_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{self.network_file}: not valid TOML ({exc})") from None
        return policy_from_table(data.get("disclosure", {}), str(self.network_file))

    def load_ca(self, passphrase: bytes | None = None) -> CertificateAuthority:
        """The CA; its key opened with ``passphrase``, else ``FEDPEER_CA_PASSPHRASE``, else asked.

        IdentityError when the home was not initialised or the passphrase is wrong.
        """
        if not self.ca_cert.exists():
            raise IdentityError(
                f"{self.root} holds no coordinator CA: run `fedpeer-coordinator init` first"
            )
        if not self.ca_key.exists():
            raise IdentityError(f"{self.ca_key} is not here: bring the CA key back from offline")
        key_pem = self.ca_key.read_bytes()
        if key_is_encrypted(key_pem) and not passphrase:
            passphrase = ca_passphrase(f"the passphrase of {self.ca_key}")
            if not passphrase:
                raise IdentityError(
                    f"{self.ca_key} is encrypted: set {CA_PASSPHRASE_ENV} to its passphrase"
                    " or start the coordinator in a terminal to be asked for it"
                )
        try:
            key = key_from_pem(key_pem, passphrase)
        except IdentityError as exc:
            raise IdentityError(f"{self.ca_key}: {exc}") from None
        return CertificateAuthority(key, cert_from_pem(self.ca_cert.read_bytes()))


def ca_passphrase(prompt: str) -> bytes | None:
    """The CA key's passphrase: ``FEDPEER_CA_PASSPHRASE`` if set, else asked in a terminal."""
    given = os.environ.get(CA_PASSPHRASE_ENV)
    if given:
        return given.encode("utf-8")
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"{prompt}: ").encode("utf-8") or None
    return None


def init_home(
    root: Path, hosts: Iterable[str] = (), passphrase: bytes | None = None
) -> CoordinatorHome:
    """Create a CA, a server certificate for ``hosts`` and an admin certificate in ``root``.

    With ``passphrase`` the CA key is stored encrypted under it (the best encryption
    ``cryptography`` offers); the coordinator then needs it to start.
    """
    home = CoordinatorHome(root)
    refuse_link(home.ca_key)
    if home.ca_key.exists():
        raise IdentityError(f"{root} already holds a coordinator CA; not overwriting it")
    private_dir(root)
    ca = CertificateAuthority.create()
    create_private(home.ca_key, key_to_pem(ca.key, passphrase))
    home.ca_cert.write_bytes(ca.cert_pem)
    server_key, server_cert = ca.issue_server(hosts)
    create_private(home.server_key, key_to_pem(server_key))
    home.server_cert.write_bytes(cert_to_pem(server_cert))
    admin_key, admin_cert = ca.issue_admin()
    create_private(home.admin_key, key_to_pem(admin_key))
    home.admin_cert.write_bytes(cert_to_pem(admin_cert))
    rotate_signer(home, ca)
    return home


def token_sha256(token: str) -> str:
    """The hash under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    store: Store,
    ca_cert: x509.Certificate,
    practice_id: str,
    name: str,
    locality: str,
    validity: dt.timedelta = DEFAULT_TOKEN_VALIDITY,
    now: dt.datetime | None = None,
    replace: bool = False,
) -> tuple[str, dt.datetime]:
    """Invite a practice: a one-time token and when it expires.

    For a practice enrolled now, only with ``replace``: its agent keeps working until the
    token is used, and the certificate enrolled with it then takes the old one's place.
    """
    if not practice_id or not set(practice_id) <= PRACTICE_ID_CHARS or len(practice_id) > 64:
        raise EnrolmentError(
            "a practice id is 1-64 letters, digits, '-', '_' or '.' (an ODS code such as A81001)"
        )
    record = store.practice(practice_id)
    if record is not None and record.cert_fingerprint and not record.revoked and not replace:
        raise StoreError(
            f"practice {practice_id} is already enrolled (certificate "
            f"{record.cert_fingerprint[:16]}) and its agent keeps working; to move it to a "
            "new machine, issue a token with --replace (the old certificate stops when it is "
            "used), or revoke the practice first"
        )
    now = now or dt.datetime.now(dt.UTC)
    token = new_token(ca_cert)
    expires = now + validity
    store.add_enrolment_token(practice_id, name, locality, token_sha256(token), expires, now)
    return token, expires


def enrol(
    store: Store, ca: CertificateAuthority, token: str, csr_pem: str, now: dt.datetime | None = None
) -> tuple[str, x509.Certificate]:
    """Redeem a token for a practice certificate: the practice id and the certificate."""
    now = now or dt.datetime.now(dt.UTC)
    ca_fp, _ = parse_token(token)
    if ca_fp != fingerprint(ca.cert):
        raise EnrolmentError("this token was issued by another coordinator")
    hashed = token_sha256(token)
    # Check the token before signing anything, then redeem it atomically with the cert.
    practice_id = store.token_practice(hashed, now)
    cert = ca.issue_practice(csr_pem, practice_id)
    store.redeem_token(hashed, fingerprint(cert), now)
    return practice_id, cert


def load_cert(path: Path) -> x509.Certificate:
    """A certificate from a PEM file."""
    return cert_from_pem(path.read_bytes())


# The signing key: rounds and receipts are signed with it, so the CA key can stay offline.


class CaKeyOffline(StoreError):
    """The running coordinator holds no CA key (encrypted and not unlocked, or offline)."""


class SignerInHome:
    """The signing key in a home's files as they are now: taken again when they change.

    ``signing-key rotate`` replaces ``signing.key`` and ``signing.crt`` (each atomically,
    one after the other); an operator copies the pair into each host's home the same way.
    Before each signature the coordinator looks at both files (two ``stat`` calls, no
    read): when either changed, it reads them again and signs with the new key from that
    signature on, once the CA certifies it and the certificate matches the key. A pair
    caught half-copied is not taken (the old key keeps signing: agents accept any signer
    the CA certified) and is looked at again at its next change.
    """

    def __init__(self, home: CoordinatorHome, ca_cert: x509.Certificate, signer: SigningIdentity):
        self._home, self._ca_cert = home, ca_cert
        self._paths = (str(home.signing_key), str(home.signing_cert))  # stat is faster on str
        self._signer = signer
        self._seen = self._stamp()
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths:
            try:
                found = os.stat(path)
            except FileNotFoundError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((found.st_ino, found.st_mtime_ns, found.st_size))
        return tuple(stamps)

    def current(self) -> SigningIdentity:
        """The signer to sign with now."""
        stamp = self._stamp()
        if stamp == self._seen:
            return self._signer
        with self._lock:  # one reader; a thread that finds it done signs with its result
            if stamp != self._seen:
                self._seen = stamp
                self._take()
        return self._signer

    def _take(self) -> None:
        try:
            signer = _certified_signer(self._home, self._ca_cert)
        except IdentityError as exc:
            log.warning("event=signing_key_not_taken reason=%s", exc)
            return
        if signer.certificate_der != self._signer.certificate_der:
            self._signer = signer
            log.info("event=signing_key_taken certificate=%s", fingerprint(signer.cert)[:16])


@dataclass(frozen=True)
class CoordinatorKeys:
    """What a running coordinator serves with: the CA certificate, the signer, maybe the CA."""

    cert: x509.Certificate
    signer_in_home: SignerInHome
    authority: CertificateAuthority | None = None  # None: the CA key was not unlocked

    @property
    def signer(self) -> SigningIdentity:
        """The signing key and certificate to sign with now (``SignerInHome``)."""
        return self.signer_in_home.current()

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return cert_to_pem(self.cert)

    def issuer(self, what: str = "enrolment") -> CertificateAuthority:
        """The CA, for ``what``; CaKeyOffline, naming it, when the coordinator runs without it."""
        if self.authority is None:
            raise CaKeyOffline(CA_KEY_OFFLINE.format(what=what))
        return self.authority


def rotate_signer(home: CoordinatorHome, ca: CertificateAuthority) -> SigningIdentity:
    """Issue a new signing key and certificate and put them in place of the old ones.

    Receipts already signed keep verifying: each is stored with its signer's certificate.
    A coordinator serving from ``home`` signs with the new key from its next signature
    (``SignerInHome``).
    """
    signer = ca.issue_signer()
    for path, data in (
        (home.signing_key, key_to_pem(signer.key)),
        (home.signing_cert, cert_to_pem(signer.cert)),
    ):
        fresh = path.with_name(path.name + ".new")
        write_private(fresh, data)
        os.replace(fresh, path)  # never a half-written key in place
    return signer


def _certified_signer(home: CoordinatorHome, ca_cert: x509.Certificate) -> SigningIdentity:
    """The home's signer, each file read once, when ``ca_cert`` certified it; else IdentityError."""
    try:
        key_pem, cert_pem = home.signing_key.read_bytes(), home.signing_cert.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"{home.root} holds no signing key") from None
    try:
        signer = signer_from_pem(key_pem, cert_pem)
        certified = verify_signer(signer.cert, ca_cert)
    except IdentityError as exc:
        raise IdentityError(f"{home.signing_cert}: {exc}") from None
    if certified.public_bytes_raw() != signer.key.public_key().public_bytes_raw():
        raise IdentityError(f"{home.signing_cert} does not certify {home.signing_key}")
    return signer


def _expires_soon(signer: SigningIdentity) -> bool:
    return signer.cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < SIGNER_RENEWAL


def load_keys(home: CoordinatorHome, passphrase: bytes | None = None) -> CoordinatorKeys:
    """The running coordinator's keys: the signer always, the CA key when it can be opened.

    An encrypted CA key is opened with ``passphrase``, else ``FEDPEER_CA_PASSPHRASE``, else
    a prompt; with none of them (or no ``ca.key`` at all) the coordinator runs without
    it and cannot enrol. A wrong passphrase stops it. A signer that is missing, not this
    CA's or near its expiry is renewed when the CA key is at hand, else IdentityError.
    """
    if not home.ca_cert.exists():
        raise IdentityError(
            f"{home.root} holds no coordinator CA: run `fedpeer-coordinator init` first"
        )
    ca_cert = cert_from_pem(home.ca_cert.read_bytes())
    authority = None
    if home.ca_key.exists():
        if key_is_encrypted(home.ca_key.read_bytes()) and not passphrase:
            passphrase = ca_passphrase(
                f"the passphrase of {home.ca_key} (empty: serve without enrolment)"
            )
        if passphrase or not key_is_encrypted(home.ca_key.read_bytes()):
            authority = home.load_ca(passphrase)
    if authority is None:
        log.warning("event=ca_key_offline enrolment=refused signing=%s", home.signing_key.name)
    try:
        signer = _certified_signer(home, ca_cert)
    except IdentityError as exc:
        if authority is None:
            raise IdentityError(
                f"{exc}: run `fedpeer-coordinator signing-key rotate` (it needs the CA key)"
            ) from None
    else:
        if not _expires_soon(signer):
            return CoordinatorKeys(ca_cert, SignerInHome(home, ca_cert, signer), authority)
        if authority is None:
            log.warning(
                "event=signing_key_expiring until=%s: run `fedpeer-coordinator signing-key rotate`",
                f"{signer.cert.not_valid_after_utc:%Y-%m-%d}",
            )
            return CoordinatorKeys(ca_cert, SignerInHome(home, ca_cert, signer), authority)
    signer = rotate_signer(home, authority)
    return CoordinatorKeys(ca_cert, SignerInHome(home, ca_cert, signer), authority)
