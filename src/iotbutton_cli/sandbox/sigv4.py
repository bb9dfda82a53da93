"""Who may call the sandbox's AWS API: its own key pair, checked by AWS Signature Version 4.

Loopback is reachable by every local user, so the sandbox makes up an access key id and secret
when it starts (kept 0600 in ``sandbox.json``) and refuses every request not signed with them.
The expected signature is computed by botocore's own signers (``SigV4Auth``, ``S3SigV4Auth`` for
S3, which does not normalize the path), over the canonical request rebuilt from what arrived: the
raw request target (waitress's ``REQUEST_URI``), exactly the headers the client says it signed,
the request's own ``X-Amz-Date`` and the body. A request more than 15 minutes off the clock is
refused as AWS does, so a captured request cannot be replayed for long. A session token, if a
client sends one, proves nothing here and is ignored (signed like any header when signed).

:func:`verify` answers with a :class:`Refusal` (why, and which service the client signed for) or
None; :mod:`iotbutton_cli.sandbox.aws_refusal` turns a refusal into the error each protocol's
clients parse.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = datetime.timedelta(minutes=15)
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
KEY_ID_PREFIX = "AKIA"
KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
AUTHORIZATION = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Headers WSGI keeps outside HTTP_*.
WSGI_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}

# Why a request is refused; aws_refusal.py maps each to every protocol's error code.
MISSING = "missing"  # no Authorization header at all
MALFORMED = "malformed"  # not a SigV4 Authorization header we can read
UNKNOWN_KEY = "unknown-key"  # signed, but not with this sandbox's access key id
SIGNATURE = "signature"  # the right key id, the wrong signature
EXPIRED = "expired"  # signed more than 15 minutes away from now
CONTENT_SHA256 = "content-sha256"  # x-amz-content-sha256 is not the body's hash


@dataclass(frozen=True)
class KeyPair:
    """An AWS-shaped long-term key: ``AKIA`` + 16 characters, and a 40-character secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> KeyPair:
        key_id = KEY_ID_PREFIX + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
        secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))
        return cls(key_id, secret)


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    service: str | None = None  # the signing name in the credential scope, when there is one
    access_key_id: str | None = None


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def verify(
    environ: dict[str, Any],
    body: bytes,
    keys: KeyPair,
    now: datetime.datetime | None = None,
) -> Refusal | None:
    """None if the request is signed with ``keys``; otherwise why not."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header:
        if "X-Amz-Signature=" in environ.get("QUERY_STRING", ""):
            return Refusal(MALFORMED, "The sandbox does not accept presigned (query) requests.")
        return Refusal(MISSING, "Missing Authentication Token")
    auth = _parse(header)
    if isinstance(auth, Refusal):
        return auth
    service = auth.service

    def refuse(reason: str, message: str) -> Refusal:
        return Refusal(reason, message, service, auth.access_key_id)

    if not hmac.compare_digest(auth.access_key_id.encode(), keys.access_key_id.encode()):
        return refuse(UNKNOWN_KEY, "The security token included in the request is invalid.")
    timestamp = _timestamp(environ)
    if timestamp is None:
        return refuse(MALFORMED, "The request must carry an X-Amz-Date (or Date) header.")
    if not timestamp.startswith(auth.date):
        return refuse(
            SIGNATURE,
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
            f"date from HTTP: '{auth.date}' != '{timestamp[:8]}'",
        )
    expired = _expired(timestamp, now or datetime.datetime.now(datetime.timezone.utc))
    if expired:
        return refuse(EXPIRED, expired)
    if "host" not in auth.signed_headers:
        return refuse(MALFORMED, "The host header must be signed.")
    headers = {}
    for name in auth.signed_headers:
        value = _header(environ, name)
        if value is None:
            return refuse(SIGNATURE, f"The signed header {name} is missing from the request.")
        headers[name] = value
    content_sha256 = _header(environ, "x-amz-content-sha256")
    if content_sha256 is not None:
        problem = _content_sha256_problem(content_sha256, body, service)
        if problem:
            return refuse(CONTENT_SHA256, problem)
        headers["x-amz-content-sha256"] = content_sha256
    expected = _signature(environ, body, keys, auth, headers, timestamp)
    if not hmac.compare_digest(expected.encode(), auth.signature.lower().encode()):
        return refuse(
            SIGNATURE,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return None


def raw_target(environ: dict[str, Any]) -> str:
    """The request target as it arrived (path and query, still percent-encoded)."""
    target = environ.get("REQUEST_URI")
    if target:
        return str(target)
    path = quote(
        environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/~!$&'()*+,;=:@%"
    )
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def _parse(header: str) -> _Authorization | Refusal:
    match = AUTHORIZATION.match(header.strip())
    if match is None or match["algorithm"] != ALGORITHM:
        algorithm = header.split(" ", 1)[0]
        if algorithm != ALGORITHM:
            return Refusal(MALFORMED, f"Unsupported authorization type: {algorithm[:40]}")
        return Refusal(
            MALFORMED,
            "Authorization header requires Credential, SignedHeaders and Signature parameters.",
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        return Refusal(
            MALFORMED, "Credential should be scoped to a valid region, service and date."
        )
    key_id, date, region, service, _ = parts
    return _Authorization(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=match["signed"].lower().split(";"),
        signature=match["signature"],
    )


def _header(environ: dict[str, Any], name: str) -> str | None:
    key = WSGI_HEADERS.get(name) or "HTTP_" + name.upper().replace("-", "_")
    value = environ.get(key)
    return None if value is None else str(value)


def _timestamp(environ: dict[str, Any]) -> str | None:
    """The signing time as SigV4 writes it (X-Amz-Date, or else the Date header)."""
    amz_date = environ.get("HTTP_X_AMZ_DATE")
    if amz_date:
        try:
            datetime.datetime.strptime(amz_date, SIGV4_TIMESTAMP)
        except ValueError:
            return None
        return str(amz_date)
    date = environ.get("HTTP_DATE")
    if not date:
        return None
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc).strftime(SIGV4_TIMESTAMP)


def _expired(timestamp: str, now: datetime.datetime) -> str:
    signed = datetime.datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(
        tzinfo=datetime.timezone.utc
    )
    if abs(now - signed) <= MAX_SKEW:
        return ""
    stamp = now.strftime(SIGV4_TIMESTAMP)
    if signed < now:
        earliest = (now - MAX_SKEW).strftime(SIGV4_TIMESTAMP)
        return f"Signature expired: {timestamp} is now earlier than {earliest} ({stamp} - 15 min.)"
    latest = (now + MAX_SKEW).strftime(SIGV4_TIMESTAMP)
    return (
        f"Signature not yet current: {timestamp} is still later than {latest} ({stamp} + 15 min.)"
    )


def _content_sha256_problem(value: str, body: bytes, service: str) -> str:
    if value == UNSIGNED_PAYLOAD and service == "s3":
        return ""  # S3 lets clients leave the body out of the signature, as over TLS
    if not SHA256_HEX.match(value):
        return f"x-amz-content-sha256 {value[:64]!r} is not supported by the sandbox."
    if not hmac.compare_digest(value, hashlib.sha256(body).hexdigest()):
        return "The provided 'x-amz-content-sha256' header does not match what was computed."
    return ""


def _signature(
    environ: dict[str, Any],
    body: bytes,
    keys: KeyPair,
    auth: _Authorization,
    headers: dict[str, str],
    timestamp: str,
) -> str:
    """What botocore would sign for this request with ``keys``."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = _signer_class(auth.service == "s3")(
        Credentials(keys.access_key_id, keys.secret_access_key), auth.service, auth.region
    )
    signer.signed = auth.signed_headers
    request = AWSRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        url="http://sandbox" + raw_target(environ),
        headers=headers,
        data=body,
    )
    request.context["timestamp"] = timestamp
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


@functools.lru_cache(maxsize=2)
def _signer_class(s3: bool) -> Any:
    """botocore's signer (S3's for S3), signing exactly the headers the client signed."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import HTTPHeaders

    class ExactHeaders(S3SigV4Auth if s3 else SigV4Auth):  # type: ignore[misc]
        signed: list[str] = []

        def headers_to_sign(self, request: Any) -> Any:
            chosen = HTTPHeaders()
            for name in self.signed:
                chosen[name] = request.headers[name]
            return chosen

    return ExactHeaders
