"""CreateCertificateFromCsr as AWS answers it: a certificate for the key in the request.

moto signs a certificate for a key of its own and drops the one in the CSR, so a device holding
its private key could never use the certificate for TLS. In the sandbox the certificate is made
for the CSR's public key, with the CSR's subject, issued (like AWS's) by a CA name of the
sandbox's own; the broker trusts each ACTIVE certificate as itself, so the issuer's key only has
to sign. cryptography is imported when the sandbox starts.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

ISSUER = "iotbutton sandbox device CA"
VALID_UNTIL = datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)

_issuer_key: Any = None
_issuer_lock = threading.Lock()


def install() -> None:
    """Make moto's IoT backends sign the CSR's own key (idempotent)."""
    from moto.iot.models import IoTBackend

    if getattr(IoTBackend.create_certificate_from_csr, "honours_csr_key", False):
        return

    def create_certificate_from_csr(self: Any, csr: str, set_as_active: bool) -> Any:
        pem = certificate_for(csr)
        return self.register_certificate(
            pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE"
        )

    create_certificate_from_csr.honours_csr_key = True  # type: ignore[attr-defined]
    IoTBackend.create_certificate_from_csr = create_certificate_from_csr  # type: ignore[method-assign]


def certificate_for(csr_pem: str) -> str:
    """A PEM certificate for the CSR's subject and public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    try:
        request = x509.load_pem_x509_csr(csr_pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise _invalid_request(f"the certificate signing request cannot be read: {exc}") from None
    if not request.is_signature_valid:
        raise _invalid_request("the certificate signing request is not signed by its key")
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)]))
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(_issuer(), hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _issuer() -> Any:
    global _issuer_key
    with _issuer_lock:
        if _issuer_key is None:
            from cryptography.hazmat.primitives.asymmetric import ec

            _issuer_key = ec.generate_private_key(ec.SECP256R1())
        return _issuer_key


def _invalid_request(message: str) -> Exception:
    from moto.iot.exceptions import InvalidRequestException

    return InvalidRequestException(message)
