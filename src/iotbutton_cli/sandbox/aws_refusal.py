"""A refused request answered in AWS's own error shape, so each client parses the right code.

AWS services speak four protocols, and each puts the error code somewhere else: JSON services
(SSM, CloudWatch Logs) in ``__type``, REST-JSON ones (IoT, IoT data, Lambda) in the
``x-amzn-ErrorType`` header, query services (IAM, STS) in an ``<ErrorResponse>`` document, and S3
in an ``<Error>`` document with codes of its own. The protocol comes from the service the client
signed for; an unsigned request is judged by its shape (``X-Amz-Target``, ``Action=``, the
REST-JSON services' paths), and anything else is answered as S3 would.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from iotbutton_cli.sandbox import sigv4

StartResponse = Callable[..., Any]

JSON, REST_JSON, QUERY, S3 = "json", "rest-json", "query", "s3"
PROTOCOL_OF_SERVICE = {
    "iot": REST_JSON,
    "iotdata": REST_JSON,
    "lambda": REST_JSON,
    "ssm": JSON,
    "logs": JSON,
    "iam": QUERY,
    "sts": QUERY,
    "s3": S3,
}
# The services whose REST paths an unsigned request is recognised by (botocore's signing names).
REST_JSON_SERVICES = ("iot", "iot-data", "lambda")

# reason -> (JSON and REST-JSON code, query code, S3 code, S3 HTTP status)
CODES = {
    sigv4.MISSING: (
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "AccessDenied",
        403,
    ),
    sigv4.MALFORMED: (
        "IncompleteSignatureException",
        "IncompleteSignature",
        "AuthorizationHeaderMalformed",
        403,
    ),
    sigv4.UNKNOWN_KEY: (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        403,
    ),
    sigv4.SIGNATURE: (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "SignatureDoesNotMatch",
        403,
    ),
    sigv4.EXPIRED: (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        403,
    ),
    sigv4.CONTENT_SHA256: (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "XAmzContentSHA256Mismatch",
        400,
    ),
}
S3_MESSAGES = {
    sigv4.MISSING: "Access Denied",
    sigv4.UNKNOWN_KEY: "The AWS Access Key Id you provided does not exist in our records.",
}
STATUS_TEXT = {400: "400 Bad Request", 403: "403 Forbidden"}


def protocol_of(environ: dict[str, Any], body: bytes, service: str | None) -> str:
    if service in PROTOCOL_OF_SERVICE:
        return PROTOCOL_OF_SERVICE[service]
    if environ.get("HTTP_X_AMZ_TARGET"):
        return JSON
    if _has_action(environ, body):
        return QUERY
    if service is not None:
        return S3 if service.startswith("s3") else REST_JSON
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return REST_JSON if first and first in _rest_json_path_starts() else S3


def respond(
    refusal: sigv4.Refusal, environ: dict[str, Any], body: bytes, start_response: StartResponse
) -> Iterable[bytes]:
    protocol = protocol_of(environ, body, refusal.service)
    json_code, query_code, s3_code, s3_status = CODES[refusal.reason]
    request_id = secrets.token_hex(16)
    if protocol == S3:
        status = s3_status
        message = S3_MESSAGES.get(refusal.reason, refusal.message)
        key = (
            f"<AWSAccessKeyId>{escape(refusal.access_key_id)}</AWSAccessKeyId>"
            if refusal.access_key_id and refusal.reason == sigv4.UNKNOWN_KEY
            else ""
        )
        data = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{s3_code}</Code><Message>{escape(message)}</Message>{key}"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    elif protocol == QUERY:
        status = 403
        data = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{query_code}</Code><Message>{escape(refusal.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    else:
        status = 403
        data = json.dumps({"__type": json_code, "message": refusal.message}).encode()
        content_type = "application/x-amz-json-1.1" if protocol == JSON else "application/json"
        headers = [
            ("Content-Type", content_type),
            ("x-amzn-ErrorType", json_code),
            ("x-amzn-RequestId", request_id),
        ]
    if environ.get("REQUEST_METHOD") == "HEAD":
        data = b""  # as S3 answers HEAD: the status says it all
    headers.append(("Content-Length", str(len(data))))
    start_response(STATUS_TEXT[status], headers)
    return [data]


def not_found(start_response: StartResponse) -> Iterable[bytes]:
    data = b"Not Found"
    start_response(
        "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _has_action(environ: dict[str, Any], body: bytes) -> bool:
    if "Action" in parse_qs(environ.get("QUERY_STRING", "")):
        return True
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if content_type.startswith("application/x-www-form-urlencoded"):
        return "Action" in parse_qs(body.decode("utf-8", "replace"))
    return False


@functools.lru_cache(maxsize=1)
def _rest_json_path_starts() -> frozenset[str]:
    """The first path segment of every operation of the REST-JSON services the tool uses."""
    import botocore.session

    session = botocore.session.get_session()
    starts = set()
    for service in REST_JSON_SERVICES:
        model = session.get_service_model(service)
        for name in model.operation_names:
            uri = model.operation_model(name).http.get("requestUri", "")
            first = uri.split("?", 1)[0].lstrip("/").split("/", 1)[0]
            if first and not first.startswith("{"):
                starts.add(first)
    return frozenset(starts)
