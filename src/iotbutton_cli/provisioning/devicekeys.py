"""A button's key pair and certificate signing request, made on this machine.

iotbutton makes each key itself and asks AWS to sign it (CreateCertificateFromCsr), rather than
letting AWS make the key (CreateKeysAndCertificate): the private key never crosses the network,
and a certificate can be proven to be iotbutton's. A certificate whose CreateCertificateFromCsr
answer was lost carries either the public key this machine made (AWS signs the key it was sent)
or the subject iotbutton wrote into the request: organization ``iotbutton-cli`` and, as its
``serialNumber`` attribute, the id of the certificate request (see provisioning/certs.py). Another
tool's certificate carries neither, so it is never mistaken for one of ours.

cryptography is imported inside the functions, so the CLI's start-up never pays for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

SUBJECT_ORGANIZATION = "iotbutton-cli"
RSA_KEY_BITS = 2048  # what AWS IoT itself makes, and what every button firmware can use
COMMON_NAME_MAX = 64  # X.520's upper bound for a common name


@dataclass(frozen=True)
class KeyRequest:
    """A new private key and the CSR that asks AWS to certify it."""

    private_key_pem: str = field(repr=False)
    public_key_pem: str
    public_key_sha256: str
    csr_pem: str


@dataclass(frozen=True)
class CertificateMarks:
    """What a certificate says about where it came from."""

    public_key_sha256: str
    organization: str | None
    request_id: str | None

    @property
    def made_by_iotbutton(self) -> bool:
        return self.organization == SUBJECT_ORGANIZATION


def new_key_request(common_name: str, request_id: str) -> KeyRequest:
    """An RSA key and a CSR whose subject marks it as this request's (see the module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SUBJECT_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:COMMON_NAME_MAX]),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, request_id),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    public = key.public_key()
    return KeyRequest(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode("ascii"),
        public_key_pem=public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
        public_key_sha256=_spki_sha256(public),
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )


def certificate_marks(certificate_pem: str) -> CertificateMarks | None:
    """The public key fingerprint and iotbutton's subject marks of a certificate (None: not a
    certificate that can be read)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii", "replace"))
    except ValueError:
        return None

    def attribute(oid: Any) -> str | None:
        values = certificate.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return CertificateMarks(
        public_key_sha256=_spki_sha256(certificate.public_key()),
        organization=attribute(NameOID.ORGANIZATION_NAME),
        request_id=attribute(NameOID.SERIAL_NUMBER),
    )


def _spki_sha256(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()
