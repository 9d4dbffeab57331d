"""Signatures over canonical bytes: the coordinator's (rounds, receipts, studies), a practice's.

A practice signs with the ECDSA P-256 key behind its certificate, so the coordinator
checks a release against the certificate of the channel it arrived on and nobody can
pass one practice's answer off as another's. The coordinator signs rounds, receipts and
studies with its Ed25519 *signing key* and sends the signer's certificate with each; an
agent checks that certificate against the CA it pinned at enrolment (``verify_signed``),
so the CA key itself can stay encrypted or offline. Coordinators before signing keys
signed with the CA key and sent no certificate; that is accepted too (the CA key can
certify any signer, so accepting its own signature gives nothing away). Documents are
canonical JSON (``fedpeer.canonical``).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fedpeer.canonical import canonical_json
from fedpeer.collection import Receipt, Round
from fedpeer.errors import IdentityError
from fedpeer.identity import verify_signer

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def sign_bytes(key: SigningKey, data: bytes) -> bytes:
    """A signature over ``data``: Ed25519, or ECDSA SHA-256 for an EC key."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _check(public_key: Any, data: bytes, signature: bytes, whose: str) -> None:
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise IdentityError(f"{whose}'s key is neither an EC nor an Ed25519 key")
    except InvalidSignature as exc:
        raise IdentityError(f"{whose}'s signature does not verify") from exc


def verify_bytes(cert: x509.Certificate, data: bytes, signature: bytes, whose: str) -> None:
    """Raise IdentityError unless ``signature`` is by ``cert``'s key over ``data``."""
    _check(cert.public_key(), data, signature, whose)


def sign(key: SigningKey, document: Any) -> bytes:
    """A signature over the canonical form of ``document``."""
    return sign_bytes(key, canonical_json(document))


def verify_signed(
    ca_cert: x509.Certificate, data: bytes, signature: bytes, signer_certificate: bytes = b""
) -> None:
    """Raise IdentityError unless ``signature`` is the coordinator's over the bytes ``data``.

    The one check of whatever the coordinator signs (a round, a receipt, a study): by
    the signing key whose DER certificate ``signer_certificate`` is, once that is shown
    to be ``ca_cert``'s signer (``identity.verify_signer``); by the CA key itself when no
    certificate came.
    """
    if not signer_certificate:
        verify_bytes(ca_cert, data, signature, "the coordinator")
        return
    try:
        signer = x509.load_der_x509_certificate(signer_certificate)
    except ValueError:
        raise IdentityError("the coordinator's signing certificate is not a certificate") from None
    _check(verify_signer(signer, ca_cert), data, signature, "the coordinator's signing key")


def verify(
    ca_cert: x509.Certificate, document: Any, signature: bytes, signer_certificate: bytes = b""
) -> None:
    """Raise IdentityError unless ``signature`` is the coordinator's over ``document``'s
    canonical form (``verify_signed``)."""
    verify_signed(ca_cert, canonical_json(document), signature, signer_certificate)


def verify_round(ca_cert: x509.Certificate, round_: Round) -> None:
    """Raise IdentityError unless a round's manifest is signed by ``ca_cert``'s coordinator."""
    verify(ca_cert, round_.manifest(), round_.signature, round_.signer_certificate)


def verify_receipt(ca_cert: x509.Certificate, receipt: Receipt) -> None:
    """Raise IdentityError unless a receipt is signed by ``ca_cert``'s coordinator."""
    verify(ca_cert, receipt.document(), receipt.signature, receipt.signer_certificate)
