"""Identities: the coordinator CA, server, admin and practice certificates.

The coordinator is a certificate authority (an EC P-256 self-signed root). Each agent
makes its own key and sends only a CSR; the key never leaves the practice. When the CA
issues a practice certificate it sets the subject itself (CN = practice id,
OU = ``practice``) and ignores whatever subject the CSR asked for, so a practice cannot
name itself another practice.

Rounds and receipts are signed not by the CA key but by a *signing key* (Ed25519) with a
short certificate from the CA marked only for that (``SIGNER_USAGE``, key usage
digitalSignature), so the CA key can stay encrypted or offline while the coordinator
runs; an agent checks a signer's certificate with ``verify_signer``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedpeer.errors import EnrolmentError, IdentityError

ROLE_PRACTICE = "practice"
ROLE_ADMIN = "admin"
ROLE_ANALYST = "analyst"  # reads the pooled results of the studies it owns, nothing else
ROLE_COORDINATOR = "coordinator"
ROLE_SIGNER = "signer"  # signs rounds and receipts; never a TLS identity
ORGANISATION = "fedpeer"
TOKEN_PREFIX = "fp1"
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=825)
SIGNER_VALIDITY = dt.timedelta(days=180)  # short: rotated with the CA key at hand
# The extended key usage that marks a fedpeer round-and-receipt signer: an OID under
# 2.25 (a UUID, ITU-T X.667), so it needs no registration and clashes with nothing.
SIGNER_USAGE = x509.ObjectIdentifier("2.25.268514056781564832735574442271988026391")
_CLOCK_SKEW = dt.timedelta(minutes=5)  # tolerate agents whose clocks run a little behind


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, passphrase: bytes | None = None
) -> bytes:
    """The PKCS#8 PEM of a private key; encrypted under ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def key_is_encrypted(pem: bytes) -> bool:
    """True when a PEM private key is encrypted (it needs a passphrase to load)."""
    return b"ENCRYPTED" in pem.split(b"\n", 1)[0]


def key_from_pem(pem: bytes, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load an EC private key from PEM, with its passphrase when it is encrypted."""
    if key_is_encrypted(pem) and not passphrase:
        raise IdentityError("the private key is encrypted and no passphrase was given")
    try:
        key = serialization.load_pem_private_key(
            pem, password=passphrase if key_is_encrypted(pem) else None
        )
    except ValueError:
        # cryptography says only "Bad decrypt. Incorrect password?": no detail is lost.
        raise IdentityError("the passphrase does not open the private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError("the private key is not an EC key")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """The PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(pem: bytes | str) -> x509.Certificate:
    """Load one certificate from PEM."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError("not a PEM certificate") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of a certificate, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Subject:
    """Who a certificate names: a common name and a role (OU)."""

    common_name: str
    role: str


def subject_of(cert: x509.Certificate) -> Subject:
    """The common name and role (OU) a certificate names."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise IdentityError("the certificate does not name exactly one CN and one OU")
    return Subject(str(cns[0].value), str(ous[0].value))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class SigningIdentity:
    """The coordinator's round-and-receipt signer: an Ed25519 key and its CA certificate."""

    key: ed25519.Ed25519PrivateKey
    cert: x509.Certificate

    @cached_property  # made once: every receipt carries it
    def certificate_der(self) -> bytes:
        """The certificate, DER, as rounds and receipts carry it."""
        return self.cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class CertificateAuthority:
    """The coordinator's CA: its key and self-signed root certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "fedpeer coordinator CA") -> CertificateAuthority:
        """A new self-signed EC P-256 root."""
        key = generate_key()
        subject = _name(name, "ca")
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> CertificateAuthority:
        """Load a CA from its key and certificate PEM."""
        return cls(key_from_pem(key_pem), cert_from_pem(cert_pem))

    @property
    def cert_pem(self) -> bytes:
        """The root certificate, PEM."""
        return cert_to_pem(self.cert)

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        hosts: Iterable[str] = (),
        validity: dt.timedelta = LEAF_VALIDITY,
        key_usage: x509.KeyUsage | None = None,
    ) -> x509.Certificate:
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=key_usage is not None)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if key_usage is not None:
            # A certificate restricted to one purpose says so critically: whatever does not
            # understand the restriction must refuse it rather than ignore it.
            builder = builder.add_extension(key_usage, critical=True)
        names = [_general_name(h) for h in hosts]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server(
        self, hosts: Iterable[str] = ()
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and server certificate for the coordinator (loopback names plus ``hosts``)."""
        key = generate_key()
        all_hosts = list(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
        cert = self._issue(
            key.public_key(),
            _name(all_hosts[-1] if hosts else "localhost", ROLE_COORDINATOR),
            ExtendedKeyUsageOID.SERVER_AUTH,
            all_hosts,
        )
        return key, cert

    def issue_admin(
        self, name: str = "admin"
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and client certificate for the coordinator's administrator."""
        key = generate_key()
        cert = self._issue(
            key.public_key(), _name(name, ROLE_ADMIN), ExtendedKeyUsageOID.CLIENT_AUTH
        )
        return key, cert

    def issue_analyst(self, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and client certificate for an analyst, named as studies name their owner."""
        key = generate_key()
        cert = self._issue(
            key.public_key(), _name(name, ROLE_ANALYST), ExtendedKeyUsageOID.CLIENT_AUTH
        )
        return key, cert

    def issue_signer(self, validity: dt.timedelta = SIGNER_VALIDITY) -> SigningIdentity:
        """A new Ed25519 signing key and its certificate: rounds and receipts, nothing else."""
        key = ed25519.Ed25519PrivateKey.generate()
        only_signing = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        cert = self._issue(
            key.public_key(),
            _name("fedpeer round and receipt signer", ROLE_SIGNER),
            SIGNER_USAGE,
            validity=validity,
            key_usage=only_signing,
        )
        return SigningIdentity(key, cert)

    def issue_practice(self, csr_pem: bytes | str, practice_id: str) -> x509.Certificate:
        """A practice certificate for the key in ``csr_pem``; the CA sets the subject."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise EnrolmentError("the certificate signing request is not a PEM CSR") from exc
        if not csr.is_signature_valid:
            raise EnrolmentError("the certificate signing request's signature is invalid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise EnrolmentError("the certificate signing request must hold an EC P-256 key")
        return self._issue(
            public_key, _name(practice_id, ROLE_PRACTICE), ExtendedKeyUsageOID.CLIENT_AUTH
        )

    def verify_issued(self, cert: x509.Certificate) -> None:
        """Raise IdentityError unless this CA issued ``cert`` and it is in date."""
        verify_issued_by(cert, self.cert)


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Raise IdentityError unless ``ca_cert`` signed ``cert`` and it is in date."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise IdentityError("the certificate was not issued by this coordinator's CA") from exc
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise IdentityError("the certificate has expired or is not yet valid")


def verify_signer(cert: x509.Certificate, ca_cert: x509.Certificate) -> ed25519.Ed25519PublicKey:
    """The signer's key, once ``cert`` is shown to be ``ca_cert``'s round-and-receipt signer.

    IdentityError, in words, when it is not: issued by another CA or by nobody, out of
    date, a CA, not marked as the signer (a TLS certificate, say), or not an Ed25519 key.
    """
    try:
        verify_issued_by(cert, ca_cert)
    except IdentityError as exc:
        raise IdentityError(f"the coordinator's signing certificate is refused: {exc}") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        constraints, usages = None, None
    if constraints is None or constraints.ca or usages is None or SIGNER_USAGE not in usages:
        raise IdentityError(
            "the coordinator's signing certificate is refused: it is not marked as the "
            "fedpeer round-and-receipt signer (a TLS or other certificate cannot sign rounds)"
        )
    key = cert.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise IdentityError("the coordinator's signing certificate does not hold an Ed25519 key")
    return key


def signer_from_pem(key_pem: bytes, cert_pem: bytes) -> SigningIdentity:
    """A signing identity from its (unencrypted) PKCS#8 key and certificate PEM."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise IdentityError("the signing key is not a readable unencrypted PEM key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise IdentityError("the signing key is not an Ed25519 key")
    return SigningIdentity(key, cert_from_pem(cert_pem))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_csr(key: ec.EllipticCurvePrivateKey, requested_name: str = "fedpeer agent") -> bytes:
    """A PEM CSR for ``key``; the CA replaces the subject, so the name is only a hint."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, requested_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def new_token(ca_cert: x509.Certificate) -> str:
    """A one-time enrolment token ``fp1.<CA fingerprint>.<secret>``.

    The fingerprint lets an agent check the CA in the enrolment handshake before it
    trusts the server; the secret proves the practice was invited.
    """
    return f"{TOKEN_PREFIX}.{fingerprint(ca_cert)}.{secrets.token_urlsafe(24)}"


def parse_token(token: str) -> tuple[str, str]:
    """The CA fingerprint and secret in a token; EnrolmentError when it is malformed."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 64 or not parts[2]:
        raise EnrolmentError("this is not a fedpeer enrolment token (expected fp1.<hash>.<secret>)")
    return parts[1], parts[2]
