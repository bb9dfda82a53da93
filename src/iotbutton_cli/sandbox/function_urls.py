"""Lambda function URLs in the sandbox: ``http://<aws host>/lambda-url/<function>/...``.

On AWS a function URL is its own host (``https://<id>.lambda-url.<region>.on.aws/``) that anyone
can call when its auth type is ``NONE``; Lambda turns the HTTP request into a payload-format 2.0
event, runs the function, and turns its answer back into HTTP. moto stores the URL config but
serves nothing and makes up a host no one can reach, so the sandbox gives each function URL a
path on its own AWS port (:func:`install` makes moto hand that out) and answers it here, as
Lambda does: unsigned, and only if the function's resource policy lets ``*`` invoke its URL
(``lambda:InvokeFunctionUrl`` with ``FunctionUrlAuthType`` ``NONE``), else 403 as AWS answers.
Only ``NONE`` URLs are served; an ``AWS_IAM`` one answers 403, as AWS would to an unsigned call.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

PATH = re.compile(r"^/lambda-url/(?P<name>[A-Za-z0-9_-]{1,64})(?P<rest>/.*)?$")
MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's payload limit for a synchronous invocation

StartResponse = Callable[..., Any]


_base_url: list[Callable[[], str]] = []  # the server that serves them (the latest one started)


def install(base_url: Callable[[], str]) -> None:
    """Make moto hand out this server's URLs for new function URL configs."""
    from moto.awslambda import models

    _base_url[:] = [base_url]
    original = models.FunctionUrlConfig.__init__
    if getattr(original, "_iotbutton", False):
        return

    def init(self: Any, function: Any, config: dict[str, Any]) -> None:
        original(self, function, config)
        self.url = f"{_base_url[0]()}/lambda-url/{function.function_name}/"

    init._iotbutton = True  # type: ignore[attr-defined]
    models.FunctionUrlConfig.__init__ = init  # type: ignore[method-assign]


def url_auth_type(function: Any) -> str | None:
    config = getattr(function, "url_config", None)
    return None if config is None else str(config.config.get("AuthType"))


def public_url_allowed(policy: Mapping[str, Any]) -> bool:
    """The resource policy lets anyone call an auth-type-NONE URL: since October 2025 AWS wants
    both ``lambda:InvokeFunctionUrl`` (``FunctionUrlAuthType`` NONE) and ``lambda:InvokeFunction``
    (``InvokedViaFunctionUrl``) granted to ``*``. AddPermission stores them as conditions; moto
    keeps them as top-level keys: both are read."""
    url = invoke = False
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal")
        anyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
        if statement.get("Effect") != "Allow" or not anyone:
            continue
        condition = statement.get("Condition", {})
        auth_type = statement.get("FunctionUrlAuthType") or condition.get("StringEquals", {}).get(
            "lambda:FunctionUrlAuthType"
        )
        via_url = statement.get("InvokedViaFunctionUrl") or condition.get("Bool", {}).get(
            "lambda:InvokedViaFunctionUrl"
        )
        if statement.get("Action") == "lambda:InvokeFunctionUrl" and auth_type == "NONE":
            url = True
        if statement.get("Action") == "lambda:InvokeFunction" and str(via_url).lower() == "true":
            invoke = True
    return url and invoke


def event_for(environ: Mapping[str, Any], body: bytes, rest: str, account: str) -> dict[str, Any]:
    """The payload-format 2.0 event Lambda builds from an HTTP request to a function URL."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    text_types = ("application/x-www-form-urlencoded", "application/json", "text/")
    is_text = any(headers.get("content-type", "").startswith(kind) for kind in text_types)
    try:
        shown = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        shown = None
    method = str(environ.get("REQUEST_METHOD", "GET"))
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": rest or "/",
        "rawQueryString": str(environ.get("QUERY_STRING", "")),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": account,
            "domainName": headers.get("host", ""),
            "http": {
                "method": method,
                "path": rest or "/",
                "protocol": str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
                "sourceIp": str(environ.get("REMOTE_ADDR", "127.0.0.1")),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": shown if shown is not None else base64.b64encode(body).decode(),
        "isBase64Encoded": shown is None,
    }


def respond(
    payload: Any, error: dict[str, Any] | None, start_response: StartResponse
) -> Iterable[bytes]:
    """The function's answer as HTTP, as Lambda turns it: a dict with ``statusCode`` is a
    response; anything else is a 200 JSON body; a function error is a 502."""
    if error is not None:
        return _plain(start_response, "502 Bad Gateway", b"Internal Server Error")
    if isinstance(payload, dict) and "statusCode" in payload:
        status = int(payload.get("statusCode") or 200)
        body = payload.get("body") or ""
        data = (
            base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode("utf-8")
        )
        headers = [(str(k), str(v)) for k, v in (payload.get("headers") or {}).items()]
        headers.append(("Content-Length", str(len(data))))
        start_response(f"{status} {_reason(status)}", headers)
        return [data]
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def forbidden(start_response: StartResponse) -> Iterable[bytes]:
    data = b'{"Message":"Forbidden"}'
    start_response(
        "403 Forbidden",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def not_found(start_response: StartResponse) -> Iterable[bytes]:
    return _plain(start_response, "404 Not Found", b"Not Found")


def too_large(start_response: StartResponse) -> Iterable[bytes]:
    return _plain(start_response, "413 Request Entity Too Large", b"Request Entity Too Large")


def _plain(start_response: StartResponse, status: str, data: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
