"""The sandbox's own certificate authority and the MQTT broker's server certificate.

Real devices trust Amazon Root CA 1 and AWS IoT's endpoint presents a certificate chaining to it.
In the sandbox, devices trust ``ca_cert`` instead, and the broker presents ``server_cert``, issued
by that CA for ``DNS:localhost`` and ``IP:127.0.0.1`` (clients connect by either name).

The files live in the folder the caller gives (the sandbox's state folder): private keys 0600 in a
0700 folder, both created with those modes. They are reused while valid, and replaced as a set
(under a file lock, so two processes never mix halves of two CAs) when anything is missing, broken
or close to expiry. ``cryptography`` is imported only when something has to be made or checked.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotbutton_cli.paths import ensure_private_dir, write_private_file

logger = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
LOCK_FILE = ".ca.lock"
CA_NAME = "iotbutton sandbox CA"
SERVER_NAME = "localhost"
SERVER_IP = "127.0.0.1"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class CaFiles:
    """The sandbox's TLS files: devices trust ``ca_cert``; the broker serves the other two."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_ca(folder: Path) -> CaFiles:
    """The CA and server certificate under ``folder``: reused if valid, otherwise made anew."""
    import filelock

    folder = ensure_private_dir(Path(folder))
    files = CaFiles(folder / CA_CERT, folder / SERVER_CERT, folder / SERVER_KEY)
    with filelock.FileLock(str(folder / LOCK_FILE), mode=0o600):
        problem = _problem(folder, files)
        if problem is None:
            return files
        logger.info("making a new sandbox CA in %s (%s)", folder, problem)
        _create(folder, files)
    return files


def _problem(folder: Path, files: CaFiles) -> str | None:
    """Why the existing files cannot be reused, or None if they can."""
    paths = [files.ca_cert, folder / CA_KEY, files.server_cert, files.server_key]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    try:
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        ca_key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
        server_key = serialization.load_pem_private_key(files.server_key.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        return f"unreadable: {exc}"
    if _public_der(ca_key.public_key()) != _public_der(ca.public_key()):
        return "CA key does not match CA certificate"
    if _public_der(server_key.public_key()) != _public_der(server.public_key()):
        return "server key does not match server certificate"
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        return f"server certificate not issued by this CA: {exc!r}"
    horizon = _now() + RENEW_BEFORE
    for name, cert in (("CA", ca), ("server", server)):
        if cert.not_valid_after_utc <= horizon or cert.not_valid_before_utc > _now():
            return f"{name} certificate expired or about to"
    try:
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "server certificate has no subjectAltName"
    if SERVER_NAME not in san.get_values_for_type(x509.DNSName) or ipaddress.ip_address(
        SERVER_IP
    ) not in san.get_values_for_type(x509.IPAddress):
        return "server certificate does not name localhost and 127.0.0.1"
    return None


def _create(folder: Path, files: CaFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _now() - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address(SERVER_IP))]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def key_pem(key: Any) -> str:
        return str(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
        )

    def cert_pem(cert: Any) -> str:
        return str(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))

    # Keys first: a certificate on disk without its key is never left behind by a crash.
    write_private_file(folder / CA_KEY, key_pem(ca_key))
    write_private_file(files.server_key, key_pem(server_key))
    write_private_file(files.server_cert, cert_pem(server), mode=0o644)
    write_private_file(files.ca_cert, cert_pem(ca), mode=0o644)


def _key_usage(cert_sign: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _public_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
