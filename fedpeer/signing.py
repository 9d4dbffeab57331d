"""Coordinator signatures over canonical documents (round manifests, receipts).

The coordinator signs with its CA key, so an agent checks a signature against the CA
certificate it received at enrolment and needs no other trust anchor. Documents are
canonical JSON: sorted keys, no spaces, UTF-8, so both sides hash the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fedpeer.errors import IdentityError


def canonical_json(document: Any) -> bytes:
    """The canonical bytes of a JSON-able document."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign(key: ec.EllipticCurvePrivateKey, document: Any) -> bytes:
    """An ECDSA SHA-256 signature over the canonical form of ``document``."""
    return key.sign(canonical_json(document), ec.ECDSA(hashes.SHA256()))


def verify(ca_cert: x509.Certificate, document: Any, signature: bytes) -> None:
    """Raise IdentityError unless ``signature`` is the CA's over ``document``."""
    public_key = ca_cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise IdentityError("the coordinator CA key is not an EC key")
    try:
        public_key.verify(signature, canonical_json(document), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise IdentityError("the coordinator's signature does not verify") from exc
