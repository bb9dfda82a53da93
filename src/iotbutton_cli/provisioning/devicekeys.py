"""A button's key pair and certificate signing request, made on this machine.

iotbutton makes each key itself and asks AWS to sign it (CreateCertificateFromCsr), rather than
letting AWS make the key (CreateKeysAndCertificate): the private key never crosses the network,
and a certificate can be proven to be iotbutton's. A certificate whose CreateCertificateFromCsr
answer was lost carries either the public key this machine made (AWS signs the key it was sent)
or the subject iotbutton wrote into the request: organization ``iotbutton-cli`` and, as its
``serialNumber`` attribute, the id of the certificate request (see provisioning/certs.py). Another
tool's certificate carries neither, so it is never mistaken for one of ours.

A key is RSA-2048 (``rsa``, the default) or EC P-256 (``ec``: smaller, and faster to make and to
sign with on a microcontroller). A device that makes its key itself hands over only a CSR
(``things create --csr``): :func:`read_device_csr` checks it as AWS IoT would, and its public
key's fingerprint stands in for the subject marks (AWS signs the key it is sent).

cryptography is imported inside the functions, so the CLI's start-up never pays for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import usage_error

SUBJECT_ORGANIZATION = "iotbutton-cli"
RSA_KEY_BITS = 2048  # what AWS IoT itself makes, and what every button firmware can use
COMMON_NAME_MAX = 64  # X.520's upper bound for a common name
KEY_TYPES = ("rsa", "ec")  # RSA-2048, EC P-256
DEFAULT_KEY_TYPE = "rsa"
# What CreateCertificateFromCsr accepts: RSA of 2048 bits or more, or ECC on these NIST curves.
CSR_RSA_MIN_BITS = 2048
CSR_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MAX_CSR_BYTES = 64 * 1024  # a CSR is a few KB; anything far larger is not one


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


@dataclass(frozen=True)
class DeviceCsr:
    """A CSR a device made with its own key: only the public half is ever seen here."""

    source: str  # the file it was read from, for messages
    csr_pem: str
    public_key_pem: str
    public_key_sha256: str
    key_description: str  # "RSA-2048", "EC P-256"


def make_private_key(key_type: str = DEFAULT_KEY_TYPE) -> Any:
    """A new private key: ``rsa`` (RSA-2048) or ``ec`` (EC P-256)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise ValueError(f"unknown key type {key_type!r}")


def new_key_request(
    common_name: str, request_id: str, key_type: str = DEFAULT_KEY_TYPE, key: Any = None
) -> KeyRequest:
    """A key (``rsa``: RSA-2048, ``ec``: EC P-256; or ``key``, made ahead by
    provisioning/keysupply.py) and a CSR whose subject marks it as this request's (see the
    module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    if key is None:
        key = make_private_key(key_type)
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


def read_device_csr(path: Path) -> DeviceCsr:
    """The device's CSR in ``path``, checked as CreateCertificateFromCsr checks it: PEM, signed
    by the key it carries, and a key AWS IoT takes. Anything else is ``bad-csr`` (exit 2)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    source = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CSR_BYTES + 1)
    except OSError as exc:
        raise _bad_csr(source, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CSR_BYTES:
        raise _bad_csr(source, f"is larger than {MAX_CSR_BYTES // 1024} KB: not a CSR")
    try:
        request = x509.load_pem_x509_csr(data)
        public = request.public_key()
    except (ValueError, UnsupportedAlgorithm):
        what = "a DER file" if data[:1] == b"\x30" else "not a PEM certificate signing request"
        raise _bad_csr(
            source,
            f"is {what} (-----BEGIN CERTIFICATE REQUEST-----)",
            "Give the CSR in PEM; `openssl req -inform DER -in FILE -out FILE.pem` converts a "
            "DER one.",
        ) from None
    description = _acceptable_key(source, public)
    try:
        signed = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signed = False
    if not signed:
        raise _bad_csr(
            source,
            "has a signature that does not verify: it was not signed by the key it carries",
            "Make the CSR again on the device (its own key signs it).",
        )
    return DeviceCsr(
        source=source,
        csr_pem=request.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        public_key_pem=public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
        public_key_sha256=_spki_sha256(public),
        key_description=description,
    )


def _acceptable_key(source: str, public: Any) -> str:
    """``RSA-3072``, ``EC P-256``...: a key AWS IoT signs; ``bad-csr`` for any other."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    takes = "AWS IoT signs RSA keys of 2048 bits or more and EC keys on P-256, P-384 or P-521"
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < CSR_RSA_MIN_BITS:
            raise _bad_csr(source, f"carries an RSA key of {public.key_size} bits; {takes}")
        return f"RSA-{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = CSR_EC_CURVES.get(public.curve.name)
        if curve is None:
            raise _bad_csr(source, f"carries an EC key on {public.curve.name}; {takes}")
        return f"EC {curve}"
    kind = type(public).__name__.removeprefix("_").removesuffix("PublicKey")
    raise _bad_csr(source, f"carries an unsupported {kind} key; {takes}")


def _bad_csr(source: str, problem: str, hint: str | None = None) -> Exception:
    return usage_error(
        "bad-csr",
        f"The CSR {source} {problem}.",
        hint
        or "Make the device's CSR with an RSA-2048 or EC P-256 key "
        "(`openssl req -new -key device.key -subj /CN=SERIAL -out device.csr`).",
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
