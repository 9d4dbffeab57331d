"""Identities and signatures: the CA decides who a certificate names."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fedpeer.collection import DefinitionDocument, Receipt, Round
from fedpeer.dates import reference_date_problem
from fedpeer.errors import DefinitionError, EnrolmentError, IdentityError
from fedpeer.identity import (
    CertificateAuthority,
    fingerprint,
    generate_key,
    key_to_pem,
    make_csr,
    new_token,
    parse_token,
    subject_of,
    verify_issued_by,
)
from fedpeer.policy import DisclosurePolicy
from fedpeer.signing import sign, verify


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


def test_ca_is_a_p256_root(ca: CertificateAuthority) -> None:
    basic = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and ca.cert.issuer == ca.cert.subject
    assert ca.key.curve.name == "secp256r1"
    again = CertificateAuthority.from_pem(key_to_pem(ca.key), ca.cert_pem)
    assert again.cert == ca.cert


def test_server_cert_names_loopback_and_extra_hosts(ca: CertificateAuthority) -> None:
    _, cert = ca.issue_server(["coordinator.example.nhs.uk", "10.0.0.5"])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "coordinator.example.nhs.uk",
    }
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.5"),
    }
    assert subject_of(cert).role == "coordinator"
    verify_issued_by(cert, ca.cert)


def test_practice_subject_is_set_by_the_ca_not_the_csr(ca: CertificateAuthority) -> None:
    key = generate_key()
    cert = ca.issue_practice(make_csr(key, requested_name="admin"), "A81001")
    assert subject_of(cert).common_name == "A81001"
    assert subject_of(cert).role == "practice"
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=365)


def test_bad_csrs_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(EnrolmentError, match="not a PEM CSR"):
        ca.issue_practice("-----BEGIN CERTIFICATE REQUEST-----\nxx\n", "A1")
    weak = make_csr(ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    with pytest.raises(EnrolmentError, match="P-256"):
        ca.issue_practice(weak, "A1")


def test_another_cas_certificate_does_not_verify(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create()
    cert = other.issue_practice(make_csr(generate_key()), "A81001")
    with pytest.raises(IdentityError, match="not issued by"):
        verify_issued_by(cert, ca.cert)


def test_round_signature_covers_the_manifest(ca: CertificateAuthority) -> None:
    doc = DefinitionDocument.of("dna_rate", b'{"id": "dna_rate"}')
    unsigned = Round("r1", dt.date(2026, 9, 30), DisclosurePolicy(), (doc,), created_at="t")
    signature = sign(ca.key, unsigned.manifest())
    verify(ca.cert, unsigned.manifest(), signature)
    looser = Round("r1", dt.date(2026, 9, 30), DisclosurePolicy(rounding_base=10), (doc,))
    with pytest.raises(IdentityError):
        verify(ca.cert, looser.manifest(), signature)
    with pytest.raises(IdentityError):
        verify(CertificateAuthority.create().cert, unsigned.manifest(), signature)


def test_receipt_signature(ca: CertificateAuthority) -> None:
    receipt = Receipt("s1", "r1", "A1", "2026-10-01T00:00:00.000000Z", "ab" * 32)
    signature = sign(ca.key, receipt.document())
    verify(ca.cert, receipt.document(), signature)
    forged = Receipt("s1", "r1", "A2", receipt.received_at, receipt.content_sha256)
    with pytest.raises(IdentityError):
        verify(ca.cert, forged.document(), signature)


def test_documents_check_themselves() -> None:
    with pytest.raises(DefinitionError, match="hash"):
        DefinitionDocument("x", "0" * 64, b"body")
    today = dt.date(2026, 10, 15)
    assert "month end" in (reference_date_problem(dt.date(2026, 9, 29), today) or "")
    future = reference_date_problem(dt.date(2026, 10, 31), today) or ""
    assert "before the current month" in future
    assert reference_date_problem(dt.date(2026, 9, 30), today) is None


def test_tokens_pin_the_ca(ca: CertificateAuthority) -> None:
    fp, secret = parse_token(new_token(ca.cert))
    assert fp == fingerprint(ca.cert) and len(secret) >= 32
    with pytest.raises(EnrolmentError):
        parse_token("fp1.short.secret")
