"""Signatures over canonical bytes: the coordinator's (rounds, receipts), a practice's (releases).

Both sides sign with the ECDSA P-256 key behind their certificate: the coordinator with
its CA key, so an agent checks rounds and receipts against the CA certificate it pinned
at enrolment; a practice with its own key, so the coordinator checks a release against
the certificate of the channel it arrived on and nobody can pass one practice's
answer off as another's. Documents are canonical JSON (``fedpeer.canonical``).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fedpeer.canonical import canonical_json
from fedpeer.errors import IdentityError


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """An ECDSA SHA-256 signature over ``data``."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(cert: x509.Certificate, data: bytes, signature: bytes, whose: str) -> None:
    """Raise IdentityError unless ``signature`` is by ``cert``'s key over ``data``."""
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise IdentityError(f"{whose}'s key is not an EC key")
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise IdentityError(f"{whose}'s signature does not verify") from exc


def sign(key: ec.EllipticCurvePrivateKey, document: Any) -> bytes:
    """An ECDSA SHA-256 signature over the canonical form of ``document``."""
    return sign_bytes(key, canonical_json(document))


def verify(ca_cert: x509.Certificate, document: Any, signature: bytes) -> None:
    """Raise IdentityError unless ``signature`` is the CA's over ``document``."""
    verify_bytes(ca_cert, canonical_json(document), signature, "the coordinator")
