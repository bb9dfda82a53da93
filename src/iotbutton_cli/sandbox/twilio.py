"""A local stand-in for api.twilio.com that checks requests the way Twilio would.

The sandbox and the tests point the notifier at this server instead of Twilio. It serves only what
the notifier uses -- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json``
-- and for each request it:

* checks HTTP Basic auth: an ``AC…`` user equal to the account in the path, or an ``SK…`` user,
  with the right secret -- in the sandbox, the secret the notifier was deployed with (the SSM
  parameter's current value, ``deployed_secret``); in unit tests, a ``credentials`` mapping --
  answering 401 / Twilio error 20003 otherwise, and to everything while no secret is deployed;
* validates the request against Twilio's own OpenAPI description (a trimmed copy shipped in
  ``iotbutton_cli/data``) with openapi-core;
* applies the rules the description does not state: which fields are required together, E.164
  phone numbers, a 4000-character ``Twiml`` that is well-formed XML, a 1600-character ``Body``,
  and the "magic" numbers of Twilio's test credentials (``To +15005550001`` is invalid, ...);
* answers like Twilio: 201 with a resource body (``sid``, ``status`` "queued", ...) or the error
  shape ``{"code", "message", "more_info", "status"}``;
* records the request in an outbox -- form fields and the answer, never the Authorization header
  -- if it was authenticated. Refused requests are logged (and kept in memory, ``refused()``), never
  written to the outbox, so no one without the secret can put entries there;
* closes connections idle for ``idle_timeout`` seconds, so idle clients cannot keep threads.

Differences from Twilio worth knowing: any well-formed E.164 ``From`` is accepted (real test
credentials accept only ``+15005550006``), SIP and ``client:`` call endpoints are refused, and
nothing is ever delivered. ``fail_plan`` scripts failures (429, 5xx, 401, ...) for retry tests.
openapi-core is imported only when a server starts, because the CLI's start-up time matters.

It is the oracle the notifier's tests check against, so it shares no code with the notifier: it
never imports ``iotbutton_cli.notifier_lambda`` (its limits, field names and TwiML rules are
written here again, from Twilio's description), so a mistake in the notifier's own rules cannot
make the stand-in agree with it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.utils
import functools
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

SPEC_FILE = "data/twilio_api_v2010_messaging.json"
SPEC_SERVER = "https://api.twilio.com"
API_VERSION = "2010-04-01"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TWIML_MAX_CHARS = 4000
BODY_MAX_CHARS = 1600
MAX_REQUEST_BYTES = 1024 * 1024
ROUTE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>Messages|Calls)\.json$")
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
AUTH_USER = re.compile(r"^(AC|SK)[0-9a-fA-F]{32}$")
REDACTED_FIELDS = frozenset({"SipAuthPassword"})
SID_PREFIX = {"Messages": "SM", "Calls": "CA"}
# The code Twilio uses for a request that breaks the API description in no more specific way.
GENERIC_CODE = {"Messages": 400, "Calls": 21200}

# Twilio's test credentials answer these numbers with fixed errors ("magic input").
MAGIC_TO = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
MAGIC_FROM = {
    "+15005550001": (21212, "The 'From' number +15005550001 is not a valid phone number."),
    "+15005550007": (21606, "The 'From' phone number provided is not a valid message-capable"),
    "+15005550008": (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
}
# Only "invalid number" makes sense for a call; the rest of the table is about SMS.
MAGIC_CALL_NUMBERS = frozenset({"+15005550001"})

DEFAULT_FAILURE_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
}
DEFAULT_FAILURE_CODES = {401: 20003, 429: 20429, 500: 20500, 503: 20503}
# Seconds a connection may sit without a complete request before it is closed.
IDLE_TIMEOUT_SECONDS = 15.0
ACCOUNT_IN_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/")


@dataclass(frozen=True)
class TwilioError:
    """An error answer in Twilio's shape."""

    status: int
    code: int
    message: str

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass
class PlannedFailure:
    """Answer the next ``times`` matching requests with this error instead of handling them.

    ``resource`` ("Messages" or "Calls") and ``to`` narrow which requests match; ``None`` matches
    any. ``code`` defaults to Twilio's code for the status (429 -> 20429, 500 -> 20500, 401 ->
    20003).
    """

    status: int = 500
    code: int | None = None
    message: str | None = None
    times: int = 1
    resource: str | None = None
    to: str | None = None

    def matches(self, resource: str, fields: Mapping[str, Any]) -> bool:
        if self.times <= 0:
            return False
        if self.resource is not None and self.resource != resource:
            return False
        return self.to is None or fields.get("To") == self.to

    def as_error(self) -> TwilioError:
        code = self.code if self.code is not None else DEFAULT_FAILURE_CODES.get(self.status, 0)
        message = self.message or DEFAULT_FAILURE_MESSAGES.get(code, "Planned failure")
        return TwilioError(self.status, code, message)


@dataclass
class Exchange:
    """One request as received and the answer it got; what the outbox records."""

    method: str
    path: str
    resource: str | None
    account_sid: str | None
    auth_user: str | None
    fields: dict[str, Any]
    http_status: int = 0
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)
    spec_errors: list[str] = dataclasses.field(default_factory=list)
    authenticated: bool = False

    def outbox_entry(self, time: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": time,
            "method": self.method,
            "path": self.path,
            "resource": self.resource,
            "account_sid": self.account_sid,
            "auth_user": self.auth_user,
            "fields": self.fields,
            "http_status": self.http_status,
        }
        if self.http_status == 201:
            entry["sid"] = self.answer["sid"]
            entry["status"] = self.answer["status"]
        else:
            entry["error"] = {key: self.answer.get(key) for key in ("code", "message")}
        if self.spec_errors:
            entry["spec_errors"] = self.spec_errors
        return entry


def load_spec() -> dict[str, Any]:
    """Twilio's trimmed API description, parsed with json (its \\ud83d escapes upset YAML)."""
    text = resources.files("iotbutton_cli").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


class _RawRequest:
    """The minimal request object openapi-core's validators read (its ``Request`` protocol).

    The host is the spec's own server: the stand-in plays api.twilio.com, whatever port it is on.
    It must not grow a ``name`` attribute, or openapi-core would take it for a webhook request.
    """

    def __init__(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        split = urlsplit(target)
        self.host_url = SPEC_SERVER
        self.path = split.path
        self.method = method.lower()
        self.body = body
        self.content_type = (header_value(headers, "Content-Type") or "").lower()
        self.parameters = RequestParameters(
            header=Headers(list(headers.items())),
            query=ImmutableMultiDict(parse_qsl(split.query, keep_blank_values=True)),
        )


class SpecValidator:
    """Checks raw HTTP requests against Twilio's OpenAPI description with openapi-core."""

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        from openapi_core import OpenAPI

        self._app = OpenAPI.from_dict(dict(spec) if spec is not None else load_spec())
        self._lock = threading.Lock()

    def errors(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> list[str]:
        request = _RawRequest(method, target, headers, body)
        with self._lock:
            return [describe_spec_error(error) for error in self._app.iter_request_errors(request)]


@functools.lru_cache(maxsize=1)
def shared_validator() -> SpecValidator:
    """One validator per process: building it costs tens of milliseconds, using it is cheap."""
    return SpecValidator()


def describe_spec_error(error: Exception) -> str:
    """Flatten openapi-core's nested errors into one readable line.

    openapi-core wraps the useful detail: ``InvalidRequestBody`` -> ``__cause__``
    ``InvalidSchemaValue`` -> ``schema_errors`` (jsonschema errors with a ``path``).
    """
    cause = error.__cause__
    schema_errors = list(getattr(cause, "schema_errors", None) or [])
    if not schema_errors:
        return str(cause or error)
    details = []
    for schema_error in schema_errors:
        where = "/".join(str(part) for part in getattr(schema_error, "path", ()))
        message = getattr(schema_error, "message", str(schema_error))
        details.append(f"{where}: {message}" if where else message)
    prefix = getattr(error, "name", None)
    joined = "; ".join(details)
    return f"{prefix}: {joined}" if prefix else joined


def parse_form(body: bytes, content_type: str) -> dict[str, Any]:
    """Form fields as sent: a string per field, a list when a field repeats (e.g. MediaUrl)."""
    if content_type.split(";")[0].strip().lower() != FORM_CONTENT_TYPE:
        return {}
    fields: dict[str, Any] = {}
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    for name, value in pairs:
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (urllib, for one, sends ``Content-type``)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def recorded_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: "***" if name in REDACTED_FIELDS else value for name, value in fields.items()}


def bad_request(code: int, message: str) -> TwilioError:
    return TwilioError(400, code, message)


def message_rule_errors(fields: Mapping[str, Any]) -> list[TwilioError]:
    """What Twilio checks on a new Message beyond its API description."""
    errors = []
    to, sender = fields.get("To"), fields.get("From")
    if not to:
        errors.append(bad_request(21604, "A 'To' phone number is required."))
    elif not E164.match(str(to)):
        errors.append(bad_request(21211, f"The 'To' number {to} is not a valid phone number."))
    elif to in MAGIC_TO:
        errors.append(bad_request(*MAGIC_TO[to]))
    if not sender and not fields.get("MessagingServiceSid"):
        errors.append(
            bad_request(21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        )
    elif sender and not (E164.match(str(sender)) or ALPHANUMERIC_SENDER.match(str(sender))):
        errors.append(bad_request(21212, f"The 'From' number {sender} is not a valid number."))
    elif sender in MAGIC_FROM:
        errors.append(bad_request(*MAGIC_FROM[sender]))
    body = fields.get("Body")
    if not body and not fields.get("MediaUrl") and not fields.get("ContentSid"):
        errors.append(bad_request(21602, "Message body is required."))
    elif isinstance(body, str) and len(body) > BODY_MAX_CHARS:
        errors.append(
            bad_request(21617, "The concatenated message body exceeds the 1600 character limit.")
        )
    return errors


def call_rule_errors(fields: Mapping[str, Any]) -> list[TwilioError]:
    """What Twilio checks on a new Call beyond its API description."""
    errors = []
    for name, missing_code in (("To", 21201), ("From", 21213)):
        value = fields.get(name)
        invalid_code = 21211 if name == "To" else 21212
        if not value:
            errors.append(bad_request(missing_code, f"No '{name}' number is specified"))
        elif not E164.match(str(value)) or value in MAGIC_CALL_NUMBERS:
            message = f"The '{name}' number {value} is not a valid phone number."
            errors.append(bad_request(invalid_code, message))
    if not any(fields.get(name) for name in ("Url", "Twiml", "ApplicationSid")):
        errors.append(bad_request(21200, "One of 'Url', 'Twiml' or 'ApplicationSid' is required."))
    twiml = fields.get("Twiml")
    if isinstance(twiml, str) and twiml:
        errors.extend(twiml_errors(twiml))
    return errors


def twiml_errors(twiml: str) -> list[TwilioError]:
    if len(twiml) > TWIML_MAX_CHARS:
        return [bad_request(32018, "Twiml size exceeded maximum allowed value of 4000 characters")]
    from xml.etree import ElementTree

    try:
        # Loopback-only test server; expat in supported Pythons refuses entity-expansion bombs.
        root = ElementTree.fromstring(twiml)  # noqa: S314
    except ElementTree.ParseError as exc:
        return [bad_request(12100, f"Document parse failure: {exc}")]
    if root.tag != "Response":
        return [bad_request(12100, f"Document parse failure: root element is <{root.tag}>")]
    return []


def rfc2822_now() -> str:
    return email.utils.format_datetime(datetime.now(timezone.utc).replace(microsecond=0))


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def message_resource(account: str, sid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    now = rfc2822_now()
    media = fields.get("MediaUrl") or []
    uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
    return {
        "account_sid": account,
        "api_version": API_VERSION,
        "body": fields.get("Body"),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": fields.get("From"),
        "messaging_service_sid": fields.get("MessagingServiceSid"),
        "num_media": str(len(media) if isinstance(media, list) else 1),
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": fields.get("To"),
        "uri": f"{uri}.json",
    }


def call_resource(account: str, sid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    now = rfc2822_now()
    uri = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}"
    return {
        "account_sid": account,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": fields.get("From"),
        "from_formatted": fields.get("From"),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            name: f"{uri}/{name.title().replace('_', '')}.json"
            for name in ("notifications", "recordings", "payments", "events")
        },
        "to": fields.get("To"),
        "to_formatted": fields.get("To"),
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


def basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, secret) from an HTTP Basic Authorization header, or None if it is not one."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, secret = decoded.partition(":")
    return (user, secret) if sep else None


class TwilioStandIn:
    """An in-process HTTP server on loopback that answers like Twilio's Messages and Calls API.

    Use as a context manager or call ``start()`` (returns the base URL to use in place of
    ``https://api.twilio.com``) and ``stop()``. ``outbox()`` lists every request received.
    Who is let in: with ``deployed_secret`` (a function returning the secret deployed now, or
    None if none is), that secret; with ``credentials`` (user AC…/SK… -> secret), those; with
    neither, any non-empty secret. ``idle_timeout`` is how long a connection may wait, idle.
    """

    def __init__(
        self,
        outbox_path: str | os.PathLike[str] | None = None,
        fail_plan: Iterable[PlannedFailure] | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
        deployed_secret: Callable[[], str | None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self._outbox_path = os.fspath(outbox_path) if outbox_path is not None else None
        self._plan = [dataclasses.replace(failure) for failure in fail_plan or ()]
        self._credentials = dict(credentials) if credentials is not None else None
        self._deployed_secret = deployed_secret
        self.idle_timeout = idle_timeout
        self._refused: list[dict[str, Any]] = []
        self._address = (host, port)
        self._lock = threading.Lock()
        self._outbox: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._validator: SpecValidator | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            self._validator = shared_validator()
            server = _Server(self._address, _RequestHandler)
            server.stand_in = self  # type: ignore[attr-defined]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # how quickly stop() is noticed
                name="twilio-stand-in",
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TwilioStandIn:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Twilio stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- inspection and scripting -------------------------------------------------------------

    def outbox(self) -> list[dict[str, Any]]:
        """Every request so far, oldest first, as also written to ``outbox_path`` (JSON lines).

        Keys: ``time`` (UTC ISO 8601), ``method``, ``path``, ``resource`` ("Messages", "Calls" or
        None), ``account_sid``, ``auth_user`` (the SID, never the secret), ``fields`` (the form
        as sent), ``http_status``; then ``sid`` and ``status`` for a 201, or ``error`` (``code``,
        ``message``); and ``spec_errors`` when the API description was broken.
        """
        with self._lock:
            return [dict(entry) for entry in self._outbox]

    def refused(self) -> list[dict[str, Any]]:
        """The requests refused as unauthenticated (``method``, ``path``, ``auth_user``,
        ``http_status``): logged and listed here, never in the outbox."""
        with self._lock:
            return [dict(entry) for entry in self._refused]

    def plan(self, failure: PlannedFailure) -> None:
        """Add a scripted failure while the server runs."""
        with self._lock:
            self._plan.append(dataclasses.replace(failure))

    # -- request handling ---------------------------------------------------------------------

    def answer(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Decide the answer to one request and record it. Safe to call from many threads."""
        exchange = self._decide(method, target, headers, body)
        self._record(exchange)
        return exchange.http_status, exchange.answer

    def _decide(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Exchange:
        path = urlsplit(target).path
        route = ROUTE.match(path)
        fields = parse_form(body, header_value(headers, "Content-Type") or "")
        credentials = basic_auth(header_value(headers, "Authorization"))
        account = ACCOUNT_IN_PATH.match(path)
        exchange = Exchange(
            method=method,
            path=path,
            resource=route["resource"] if route else None,
            account_sid=route["account"] if route else None,
            auth_user=credentials[0] if credentials else None,
            fields=recorded_fields(fields),
            authenticated=self._authenticated(credentials, account["account"] if account else ""),
        )
        error = self._request_error(exchange, route, credentials, fields)
        if error is None:
            error = self._content_error(exchange, target, headers, body, fields)
        if error is not None:
            exchange.http_status, exchange.answer = error.status, error.body()
            return exchange
        assert exchange.resource is not None and exchange.account_sid is not None
        sid = SID_PREFIX[exchange.resource] + secrets.token_hex(16)
        build = message_resource if exchange.resource == "Messages" else call_resource
        exchange.http_status, exchange.answer = 201, build(exchange.account_sid, sid, fields)
        return exchange

    def _request_error(
        self,
        exchange: Exchange,
        route: re.Match[str] | None,
        credentials: tuple[str, str] | None,
        fields: Mapping[str, Any],
    ) -> TwilioError | None:
        """Routing, authentication, then scripted failures (which only the authenticated reach)."""
        if route is None:
            return TwilioError(404, 20404, f"The requested resource {exchange.path} was not found")
        if exchange.method != "POST":
            return TwilioError(405, 20004, "Method not allowed")
        if not exchange.authenticated:
            return TwilioError(401, 20003, "Authenticate")
        return self._take_planned_failure(route["resource"], fields)

    def _content_error(
        self,
        exchange: Exchange,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        fields: Mapping[str, Any],
    ) -> TwilioError | None:
        """Twilio's own rules first (they carry specific codes), then the API description."""
        assert self._validator is not None and exchange.resource is not None
        exchange.spec_errors = self._validator.errors(exchange.method, target, headers, body)
        rules = message_rule_errors if exchange.resource == "Messages" else call_rule_errors
        rule_errors = rules(fields)
        if rule_errors:
            return rule_errors[0]
        if exchange.spec_errors:
            message = "Invalid request: " + " | ".join(exchange.spec_errors)
            return bad_request(GENERIC_CODE[exchange.resource], message)
        return None

    def _take_planned_failure(self, resource: str, fields: Mapping[str, Any]) -> TwilioError | None:
        with self._lock:
            for failure in self._plan:
                if failure.matches(resource, fields):
                    failure.times -= 1
                    return failure.as_error()
        return None

    def _authenticated(self, credentials: tuple[str, str] | None, account: str) -> bool:
        if credentials is None:
            return False
        user, secret = credentials
        if not AUTH_USER.match(user) or not secret:
            return False
        if user.startswith("AC") and user != account:
            return False
        if self._deployed_secret is not None:
            expected = self._deployed_secret()
        elif self._credentials is not None:
            expected = self._credentials.get(user)
        else:
            return True
        return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())

    def _record(self, exchange: Exchange) -> None:
        if not exchange.authenticated:
            refused = {
                "method": exchange.method,
                "path": exchange.path,
                "auth_user": exchange.auth_user,
                "http_status": exchange.http_status,
            }
            logger.warning(
                "twilio stand-in refused %s %r (user %r): %s, not recorded in the outbox",
                exchange.method,
                exchange.path[:200],
                (exchange.auth_user or "")[:40],
                exchange.http_status,
            )
            with self._lock:
                self._refused.append(refused)
            return
        entry = exchange.outbox_entry(iso_now())
        with self._lock:
            self._outbox.append(entry)
            if self._outbox_path is not None:
                self._append_line(json.dumps(entry, ensure_ascii=False, sort_keys=True))

    def _append_line(self, line: str) -> None:
        assert self._outbox_path is not None
        # The outbox holds phone numbers and message text: keep it private to the user.
        fd = os.open(self._outbox_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 makes a burst of clients wait for SYN retries


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TwilioStandIn/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS  # StreamRequestHandler: the socket's timeout

    def setup(self) -> None:
        super().setup()
        # Per stand-in (tests shorten it): an idle connection is closed, and its thread ends.
        self.connection.settimeout(self.server.stand_in.idle_timeout)  # type: ignore[attr-defined]

    def _dispatch(self) -> None:
        stand_in: TwilioStandIn = self.server.stand_in  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, TwilioError(413, 413, "Request entity too large").body())
            return
        body = self.rfile.read(length) if length else b""
        headers = {name: value for name, value in self.headers.items()}
        try:
            status, payload = stand_in.answer(self.command, self.path, headers, body)
        except Exception:
            logger.exception("Twilio stand-in failed on %s %s", self.command, self.path)
            status, payload = 500, TwilioError(500, 20500, "Internal Server Error").body()
        self._send(status, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("twilio stand-in: " + format, *args)
