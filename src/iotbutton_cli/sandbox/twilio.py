"""A local stand-in for api.twilio.com that checks requests the way Twilio would.

The sandbox and the tests point the notifier at this server instead of Twilio. It serves what the
notifier uses -- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json``
-- and what other clients read back: fetch a Message or Call (``GET .../Messages/{Sid}.json``,
``.../Calls/{Sid}.json``), list them (``GET .../Messages.json``, ``.../Calls.json``, paged with
``PageSize``/``Page``/``PageToken`` in Twilio's list envelope), update a Call (``POST
.../Calls/{Sid}.json`` with ``Status`` or new ``Twiml``/``Url``) and fetch the Account (``GET
/2010-04-01/Accounts/{Sid}.json``). For each request it:

* checks HTTP Basic auth as Twilio does. In the sandbox the stand-in plays the account the notifier
  was deployed for (``deployed_account``: the SID its config names, and the user that authenticates
  for it, the API key if the config names one, else the account SID) with the secret it was
  deployed with (the SSM parameter's current value, ``deployed_secret``); in unit tests an
  ``account`` and a ``credentials`` mapping (user -> secret) say the same. A wrong secret, another
  user, or a path naming another account is answered 401 / Twilio error 20003, and so is
  everything while no account or secret is deployed;
* validates the request against Twilio's own OpenAPI description (a trimmed copy shipped in
  ``iotbutton_cli/data``) with openapi-core;
* applies the rules the description does not state: which fields are required together, E.164
  phone numbers, a ``From`` the account owns (its configured number, and ``+15005550006``, the one
  Twilio's test credentials accept), a 4000-character ``Twiml`` that is well-formed XML, a
  1600-character ``Body``, the "magic" numbers of Twilio's test credentials (``To +15005550001`` is
  invalid, ...), and which calls can still be updated;
* answers like Twilio: 201 "queued" for a new Message or Call, 200 with the resource or a list
  page for the rest, or the error shape ``{"code", "message", "more_info", "status"}`` (20404 for
  an unknown SID);
* moves what it created on by the clock (``progress``): a message from queued to sent to
  delivered, a call from queued to ringing to in-progress to completed, so a fetch after the last
  delay shows the final status (the create's answer is queued, as Twilio's is). How the recipient
  behaves (``phones``, ``twilio_phones.PhoneBehaviour``; in the sandbox ``phones.json`` in its
  state folder) can make an SMS undelivered or failed, with its error code, and a call busy,
  no-answer, failed or answered by a machine; fetch and list show the same outcome. A number in
  an ``outage`` gets 503 (error 20503) for every authenticated create (an unauthenticated one
  is still 401), recorded in the outbox like any answer; nothing is created;
* plays a call whose TwiML gathers digits, or whose create says how long to ring (``Timeout``),
  as its callee would (``twilio_phones.call_course``): it rings, is picked up or rings out,
  speaks its ``<Say>``s at a speaking rate, and a callee who presses keys at a ``<Gather>`` has
  them posted to its ``action`` (signed and retried as status callbacks are); the TwiML answered
  is played on. Every such duration is multiplied by ``time_scale`` (0.05 unless given), so a
  whole escalation takes seconds. Plain calls keep the fixed ``Progress`` delays;
* holds a create to a number whose behaviour says ``hold`` for that many (real) seconds before
  answering it, and drops it, creating nothing, if its client has gone meanwhile;
* makes the status callbacks a create asks for (``StatusCallback``, and for calls
  ``StatusCallbackEvent``/``StatusCallbackMethod``) as those statuses are reached, signed with
  ``X-Twilio-Signature`` as Twilio signs them, from a background thread (``twilio_callbacks``);
  each one made is logged and recorded in the outbox;
* records each POST in an outbox -- form fields and the answer, never the Authorization header --
  if it was authenticated; reads (GET) are not recorded. Refused requests are logged (and kept in
  memory, ``refused()``), never written to the outbox, so no one without the secret can put
  entries there;
* closes connections idle for ``idle_timeout`` seconds, so idle clients cannot keep threads.

Differences from Twilio worth knowing: SIP and ``client:`` call endpoints are refused; nothing is
ever delivered (statuses move by the clock and the recipient table alone, and prices stay null);
status callbacks need the account's auth token to be signed, so a create authenticated with an
API key gets them only if ``callback_signing_secret`` knows that token; list filters are ``To``,
``From`` and (Calls) ``Status``, date filters are ignored; the Account resource never carries the
auth token; a Message cannot be updated or deleted, a Call not deleted (405). A played call's
timings are the speaking rate's and the callee's, not a carrier's; a Gather without an ``action``
posts nothing and ends the call after the keys (Twilio would post to the current document's URL,
which a ``Twiml`` call does not have); a failed Gather request ends the call there (Twilio says
"an application error has occurred" first); a Call updated with new TwiML is not replayed.
Without any account (unit tests that give only ``credentials``), any account in the path is
accepted for an ``SK…`` user. ``fail_plan`` scripts failures (429, 5xx, 401, ...) for retry
tests. openapi-core is imported only when a server starts, because the CLI's start-up time
matters.

Error codes: the OpenAPI description lists none, so the codes here are Twilio's well-known ones
from its error dictionary (https://www.twilio.com/docs/api/errors/<code>), with that page's title
as the message where the live API's wording is not known to be different.

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
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from iotbutton_cli.sandbox import twilio_callbacks as callbacks
from iotbutton_cli.sandbox.twilio_phones import (
    PHONES_FILE,
    Gathered,
    PhoneBehaviour,
    PhoneBook,
    Phones,
    Played,
    Timeline,
    behaviour_of,
    call_course,
    call_timeline,
    ended_at,
    is_played,
    message_timeline,
    play,
)

logger = logging.getLogger(__name__)

SPEC_FILE = "data/twilio_api_v2010_messaging.json"
SPEC_SERVER = "https://api.twilio.com"
API_VERSION = "2010-04-01"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TWIML_MAX_CHARS = 4000
BODY_MAX_CHARS = 1600
MAX_REQUEST_BYTES = 1024 * 1024
ROUTE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>Messages|Calls)\.json$")
INSTANCE_ROUTE = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>Messages|Calls)/(?P<sid>[^/]+)\.json$"
)
ACCOUNT_ROUTE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)\.json$")
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
AUTH_USER = re.compile(r"^(AC|SK)[0-9a-fA-F]{32}$")
REDACTED_FIELDS = frozenset({"SipAuthPassword"})
SID_PREFIX = {"Messages": "SM", "Calls": "CA"}
LIST_KEY = {"Messages": "messages", "Calls": "calls"}
# The code for a request that breaks the API description in no more specific way: the error
# dictionary's catch-all for the resource (21200 "Calls Resource", 21100 "Accounts Resource");
# for Messages, the bare HTTP status, as Twilio answers some malformed message requests.
GENERIC_CODE = {"Messages": 400, "Calls": 21200, "Accounts": 21100}
# List pages: Twilio's default and largest PageSize.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# The From number Twilio's test credentials accept for Messages and Calls; every account the
# stand-in plays owns it too, besides its own numbers.
TEST_FROM_NUMBER = "+15005550006"
# Well-known Twilio error codes (their error dictionary; the OpenAPI description has none). The
# messages are the dictionary's titles.
FROM_NOT_OWNED = (  # Messages: a From the account does not own
    21606,
    "The 'From' phone number provided is not a valid message-capable Twilio phone number for "
    "this destination/account",
)
FROM_NOT_VERIFIED = (21210, "'From' phone number not verified")  # Calls: the same for a call
# Updating a call that has ended (the API's own wording for it).
CALL_NOT_IN_PROGRESS = (21220, "Call is not in-progress. Cannot redirect.")

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
    "+15005550007": FROM_NOT_OWNED,
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
ACCOUNT_IN_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+?)(?:/|\.json$)")

# Real durations of a played call are multiplied by this (``time_scale``): a 30 s ring is 1.5 s.
DEFAULT_TIME_SCALE = 0.05
HOLD_POLL_SECONDS = 0.05

MESSAGE_STATUSES = ("queued", "sent", "delivered")
CALL_STATUSES = ("queued", "ringing", "in-progress", "completed")
CALL_LIVE = frozenset({"queued", "ringing", "in-progress"})


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


@dataclass(frozen=True)
class TwilioAccount:
    """The Twilio account the stand-in plays.

    ``users`` are the Basic-auth users its secret belongs to: the account SID (the secret is then
    its auth token) and/or API key SIDs (the secret is the key's). ``numbers`` are the phone
    numbers it owns, which it may send from and call from, besides ``TEST_FROM_NUMBER``.
    """

    sid: str
    users: frozenset[str]
    numbers: frozenset[str] = frozenset()
    friendly_name: str = "iotbutton sandbox"

    @classmethod
    def of(
        cls, sid: str, api_key_sid: str | None = None, numbers: Iterable[str] = ()
    ) -> TwilioAccount:
        """The account a notifier is configured for: the API key authenticates if there is one
        (its secret is the one deployed), else the account SID with its auth token."""
        return cls(sid, frozenset({api_key_sid or sid}), frozenset(numbers))

    def owns(self, number: str) -> bool:
        return number == TEST_FROM_NUMBER or number in self.numbers


@dataclass(frozen=True)
class Progress:
    """Seconds after its creation at which a message or call reaches each later status.

    Twilio answers a create with "queued" and moves on as the carriers report; the stand-in moves
    on by the clock: a message is sent, then delivered; a call rings, is answered, then ends
    ("completed", lasting ``call_completed - call_answered`` seconds). All zero: at once.
    """

    message_sent: float = 0.5
    message_delivered: float = 1.0
    call_ringing: float = 0.5
    call_answered: float = 1.0
    call_completed: float = 3.0

    def __post_init__(self) -> None:
        for steps in (
            (self.message_sent, self.message_delivered),
            (self.call_ringing, self.call_answered, self.call_completed),
        ):
            if steps[0] < 0 or list(steps) != sorted(steps):
                raise ValueError(f"status delays must be >= 0 and in order, got {steps}")

    @property
    def message_steps(self) -> tuple[tuple[float, str], ...]:
        delays = (0.0, self.message_sent, self.message_delivered)
        return tuple(zip(delays, MESSAGE_STATUSES, strict=True))

    @property
    def call_steps(self) -> tuple[tuple[float, str], ...]:
        delays = (0.0, self.call_ringing, self.call_answered, self.call_completed)
        return tuple(zip(delays, CALL_STATUSES, strict=True))

    def message_timeline(self, behaviour: PhoneBehaviour | None = None) -> Timeline:
        """What becomes of a message to a phone that behaves so (delivered by default)."""
        behaviour = behaviour or PhoneBehaviour()
        return message_timeline(behaviour, self.message_sent, self.message_delivered)

    def call_timeline(
        self, behaviour: PhoneBehaviour | None = None, machine_detection: str | None = None
    ) -> Timeline:
        """What becomes of a call to a phone that behaves so (answered by default)."""
        behaviour = behaviour or PhoneBehaviour()
        return call_timeline(
            behaviour,
            self.call_ringing,
            self.call_answered,
            self.call_completed,
            machine_detection,
        )


def reached(steps: Sequence[tuple[float, str]], elapsed: float) -> tuple[float, str]:
    """The last (delay, status) of ``steps`` that ``elapsed`` seconds have reached."""
    return [step for step in steps if elapsed >= step[0]][-1]


@dataclass(frozen=True)
class Route:
    """What a path names: a list of Messages or Calls (``sid`` None), one of them, or the
    Account (``resource`` "Accounts")."""

    resource: str
    account: str
    sid: str | None = None

    @classmethod
    def of(cls, path: str) -> Route | None:
        if match := ROUTE.match(path):
            return cls(match["resource"], match["account"])
        if match := INSTANCE_ROUTE.match(path):
            return cls(match["resource"], match["account"], match["sid"])
        if match := ACCOUNT_ROUTE.match(path):
            return cls("Accounts", match["account"])
        return None

    def operation(self, method: str) -> str | None:
        """create, list, fetch or update; None for a method Twilio's description does not
        give the path (or that the stand-in does not serve)."""
        if self.resource == "Accounts":
            return "fetch" if method == "GET" else None
        if self.sid is None:
            return {"POST": "create", "GET": "list"}.get(method)
        if method == "GET":
            return "fetch"
        return "update" if method == "POST" and self.resource == "Calls" else None


@dataclass
class PlannedFailure:
    """Answer the next ``times`` matching requests with this error instead of handling them.

    ``method`` ("POST" unless set; None for any), ``resource`` ("Messages" or "Calls") and ``to``
    narrow which requests match; ``None`` matches any. ``code`` defaults to Twilio's code for the
    status (429 -> 20429, 500 -> 20500, 401 -> 20003).
    """

    status: int = 500
    code: int | None = None
    message: str | None = None
    times: int = 1
    resource: str | None = None
    to: str | None = None
    method: str | None = "POST"

    def matches(self, method: str, resource: str, fields: Mapping[str, Any]) -> bool:
        if self.times <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.resource is not None and self.resource != resource:
            return False
        return self.to is None or fields.get("To") == self.to

    def as_error(self) -> TwilioError:
        code = self.code if self.code is not None else DEFAULT_FAILURE_CODES.get(self.status, 0)
        message = self.message or DEFAULT_FAILURE_MESSAGES.get(code, "Planned failure")
        return TwilioError(self.status, code, message)


def outage_error() -> TwilioError:
    """What Twilio answers while it is down (``PhoneBehaviour.outage``): 503, error 20503."""
    return PlannedFailure(status=503).as_error()


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
    # A new resource's status callbacks, started once the create is in the outbox.
    tracked: callbacks.Tracked | None = None

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
        if self.http_status in (200, 201):
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


class ClientGone(Exception):
    """A held create whose client closed its connection meanwhile: dropped, nothing created."""


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


def not_found(path: str) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


def message_rule_errors(
    fields: Mapping[str, Any], owns: Callable[[str], bool] = TEST_FROM_NUMBER.__eq__
) -> list[TwilioError]:
    """What Twilio checks on a new Message beyond its API description (``owns``: whether the
    account owns a number)."""
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
    elif sender and E164.match(str(sender)) and not owns(str(sender)):
        errors.append(bad_request(*FROM_NOT_OWNED))
    body = fields.get("Body")
    if not body and not fields.get("MediaUrl") and not fields.get("ContentSid"):
        errors.append(bad_request(21602, "Message body is required."))
    elif isinstance(body, str) and len(body) > BODY_MAX_CHARS:
        errors.append(
            bad_request(21617, "The concatenated message body exceeds the 1600 character limit.")
        )
    return errors


def call_rule_errors(
    fields: Mapping[str, Any], owns: Callable[[str], bool] = TEST_FROM_NUMBER.__eq__
) -> list[TwilioError]:
    """What Twilio checks on a new Call beyond its API description (``owns``: whether the
    account owns a number, which is then a verified caller ID)."""
    errors = []
    for name, missing_code in (("To", 21201), ("From", 21213)):
        value = fields.get(name)
        invalid_code = 21211 if name == "To" else 21212
        if not value:
            errors.append(bad_request(missing_code, f"No '{name}' number is specified"))
        elif not E164.match(str(value)) or value in MAGIC_CALL_NUMBERS:
            message = f"The '{name}' number {value} is not a valid phone number."
            errors.append(bad_request(invalid_code, message))
        elif name == "From" and not owns(str(value)):
            errors.append(bad_request(*FROM_NOT_VERIFIED))
    if not any(fields.get(name) for name in ("Url", "Twiml", "ApplicationSid")):
        errors.append(bad_request(21200, "One of 'Url', 'Twiml' or 'ApplicationSid' is required."))
    twiml = fields.get("Twiml")
    if isinstance(twiml, str) and twiml:
        errors.extend(twiml_errors(twiml))
    if callbacks.requested_events(fields.get("StatusCallbackEvent"))[1]:
        errors.append(bad_request(21626, "Invalid 'StatusCallbackEvent'"))
    return errors


def call_update_errors(fields: Mapping[str, Any], status: str) -> list[TwilioError]:
    """What Twilio checks on a Call update beyond its API description: the call must not have
    ended (``status`` is its status now), and new TwiML must be TwiML."""
    if status not in CALL_LIVE:
        return [bad_request(*CALL_NOT_IN_PROGRESS)]
    twiml = fields.get("Twiml")
    return twiml_errors(twiml) if isinstance(twiml, str) and twiml else []


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


def rfc2822(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(timezone.utc).replace(microsecond=0))


def rfc2822_now() -> str:
    return rfc2822(datetime.now(timezone.utc))


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def message_resource(
    account: str, sid: str, fields: Mapping[str, Any], created: datetime | None = None
) -> dict[str, Any]:
    now = rfc2822(created or datetime.now(timezone.utc))
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


def call_resource(
    account: str, sid: str, fields: Mapping[str, Any], created: datetime | None = None
) -> dict[str, Any]:
    now = rfc2822(created or datetime.now(timezone.utc))
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


def account_resource(account: str, name: str, created: datetime) -> dict[str, Any]:
    """The Account as Twilio answers a fetch, without the auth token (which it would include)."""
    uri = f"/{API_VERSION}/Accounts/{account}"
    return {
        "auth_token": None,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "friendly_name": name,
        "owner_account_sid": account,
        "sid": account,
        "status": "active",
        "subresource_uris": {"calls": f"{uri}/Calls.json", "messages": f"{uri}/Messages.json"},
        "type": "Full",
        "uri": f"{uri}.json",
    }


@dataclass
class Created:
    """A Message or Call the stand-in accepted: its resource as answered (status queued), when it
    was created (``clock`` seconds and wall time), what will become of it (``timeline``: by its
    recipient's behaviour; None: delivered / answered), and, for a call ended by an update, the
    status it ended with and when (``clock`` seconds)."""

    resource: str
    account: str
    answer: dict[str, Any]
    clock: float
    wall: datetime
    ended: tuple[str, float] | None = None
    timeline: Timeline | None = None
    script: CallScript | None = None

    @property
    def sid(self) -> str:
        return str(self.answer["sid"])

    def at(self, seconds: float) -> str:
        """The wall time ``seconds`` after creation, as Twilio writes times."""
        return rfc2822(self.wall + timedelta(seconds=seconds))


@dataclass
class CallScript:
    """What is left to play of a played call (``twilio_phones.call_course``): its callee, the
    time scale, the secret its Gather requests are signed with, the one waiting to be sent
    (``pending``: the call waits on its answer) and those made (kept for the callback list)."""

    behaviour: PhoneBehaviour
    scale: float
    secret: str | None = dataclasses.field(repr=False)
    pending: callbacks.CallbackEvent | None = None
    gathers: list[callbacks.CallbackEvent] = dataclasses.field(default_factory=list)


def message_now(created: Created, progress: Progress, elapsed: float) -> dict[str, Any]:
    """A message ``elapsed`` seconds after its creation: queued, sent, then delivered (or
    undelivered, or queued then failed, as its timeline says, with the error code at the end)."""
    timeline = created.timeline or progress.message_timeline()
    since, status = reached(timeline.steps, elapsed)
    view = dict(created.answer, status=status, date_updated=created.at(since))
    sent_at = next((delay for delay, step in timeline.steps if step == "sent"), None)
    if sent_at is not None and elapsed >= sent_at:
        view["date_sent"] = created.at(sent_at)
    if (since, status) == timeline.final and timeline.error_code is not None:
        view.update(error_code=timeline.error_code, error_message=timeline.error_message)
    return view


def call_status(created: Created, progress: Progress, elapsed: float) -> str:
    if created.ended is not None and elapsed >= created.ended[1] - created.clock:
        return created.ended[0]
    return reached((created.timeline or progress.call_timeline()).steps, elapsed)[1]


def call_now(created: Created, progress: Progress, elapsed: float) -> dict[str, Any]:
    """A call ``elapsed`` seconds after its creation: queued, ringing, in-progress, completed
    (or what its timeline says instead: busy, no-answer, ...), unless an update ended it first
    (canceled before it was answered, else completed)."""
    timeline = created.timeline or progress.call_timeline()
    final_after, final_status = timeline.final
    end_status, ended_at = created.ended or (final_status, created.clock + final_after)
    ended_after = ended_at - created.clock
    until = min(elapsed, ended_after)
    since, status = reached(timeline.steps[:-1], until)
    view = dict(created.answer, status=status, date_updated=created.at(since))
    dialed = timeline.steps[1][0]
    if until >= dialed:  # dialed: Twilio's start_time
        view["start_time"] = created.at(dialed)
    answered_at = timeline.answered_at
    if timeline.answered_by and answered_at is not None and until >= answered_at:
        view["answered_by"] = timeline.answered_by
    if elapsed >= ended_after:
        view.update(status=end_status, end_time=created.at(ended_after))
        view["date_updated"] = view["end_time"]
        if end_status == "completed" and answered_at is not None:
            view["duration"] = str(timeline.seconds(ended_after - answered_at))
        elif end_status != "canceled":  # busy, no-answer, failed: never answered
            view["duration"] = "0"
    return view


def list_query(query: Sequence[tuple[str, str]], names: Iterable[str]) -> list[tuple[str, str]]:
    """The filters of a list request that a page's URIs carry on, in the order they came."""
    wanted = set(names)
    return [(name, value) for name, value in query if name in wanted]


def page_uri(path: str, filters: list[tuple[str, str]], size: int, page: int, token: str) -> str:
    params = [*filters, ("PageSize", str(size)), ("Page", str(page))]
    if token:
        params.append(("PageToken", token))
    return f"{path}?{urlencode(params)}"


def list_page(
    resource: str, path: str, query: Sequence[tuple[str, str]], items: list[dict[str, Any]]
) -> dict[str, Any]:
    """One page of ``items`` (newest first) in Twilio's list envelope.

    ``PageSize`` (default 50) and ``Page`` (default 0) place the page; ``PageToken``, as Twilio
    writes it into ``next_page_uri`` (``PA`` + the SID before the page) or ``previous_page_uri``
    (``PB`` + the SID after it), anchors it to those items, so new ones arriving between two pages
    do not shift them. A token naming no item listed is ignored.
    """
    given = dict(query)
    size = min(max(_int(given.get("PageSize"), DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE)
    page = max(_int(given.get("Page"), 0), 0)
    token = given.get("PageToken", "")
    sids = [str(item["sid"]) for item in items]
    first = page * size
    if token[:2] == "PA" and token[2:] in sids:
        first = sids.index(token[2:]) + 1
    elif token[:2] == "PB" and token[2:] in sids:
        first = max(sids.index(token[2:]) - size, 0)
    chunk = items[first : first + size]
    filters = list_query(query, ("To", "From", "Status"))
    start = page * size
    more = first + size < len(items) and bool(chunk)
    return {
        LIST_KEY[resource]: chunk,
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": page_uri(path, filters, size, 0, ""),
        "next_page_uri": (
            page_uri(path, filters, size, page + 1, "PA" + str(chunk[-1]["sid"])) if more else None
        ),
        "page": page,
        "page_size": size,
        "previous_page_uri": (
            page_uri(path, filters, size, page - 1, "PB" + str(chunk[0]["sid"]) if chunk else "")
            if page > 0
            else None
        ),
        "start": start,
        "uri": page_uri(path, filters, size, page, token),
    }


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


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
    ``https://api.twilio.com``) and ``stop()``. ``outbox()`` lists every POST received.

    Which account it plays: ``deployed_account`` (a function returning the account deployed now,
    or None while none is: then nothing is let in), else ``account``, else none in particular
    (an ``AC…`` user must match the path; an ``SK…`` user may use any account; only
    ``TEST_FROM_NUMBER`` is owned). Which secret it wants: with ``deployed_secret`` (a function
    returning the secret deployed now, or None if none is), that secret; with ``credentials``
    (user AC…/SK… -> secret), those; with neither, any non-empty secret.

    ``progress`` says how fast what it creates moves on (``clock``, in seconds, measures it;
    tests may pass their own). ``idle_timeout`` is how long a connection may wait, idle.

    ``phones`` says how each number behaves (``PhoneBehaviour``: delivered, undelivered, busy,
    ...): a mapping, or a function returning one, asked at each create; without it, the
    ``phones.json`` beside ``outbox_path`` (the sandbox's state folder) is read at each create,
    if there is one. Status callbacks are signed with the secret the create authenticated with
    when its user is the account SID (its auth token); for an API key Twilio signs with the
    account's auth token, which only ``callback_signing_secret`` (account SID -> auth token or
    None) can tell: without it such a create gets no callbacks, and a log line says why.
    ``callback_timeout`` is how long a callback may take to connect, and to be answered.
    ``time_scale`` (0 < it <= 1) multiplies every real duration of a played call (ringing,
    answering, speech, pauses, Gather timeouts, ``Timeout``); a phone's ``hold`` is not scaled.
    """

    def __init__(
        self,
        outbox_path: str | os.PathLike[str] | None = None,
        fail_plan: Iterable[PlannedFailure] | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
        deployed_secret: Callable[[], str | None] | None = None,
        account: TwilioAccount | None = None,
        deployed_account: Callable[[], TwilioAccount | None] | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        phones: Phones | None = None,
        callback_signing_secret: Callable[[str], str | None] | None = None,
        callback_timeout: float = callbacks.DEFAULT_TIMEOUT_SECONDS,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        if not 0 < time_scale <= 1:
            raise ValueError(f"time_scale must be > 0 and <= 1, got {time_scale!r}")
        self.time_scale = time_scale
        self._stopping = threading.Event()
        self._outbox_path = os.fspath(outbox_path) if outbox_path is not None else None
        self._plan = [dataclasses.replace(failure) for failure in fail_plan or ()]
        self._credentials = dict(credentials) if credentials is not None else None
        self._deployed_secret = deployed_secret
        self._account = account
        self._deployed_account = deployed_account
        self.progress = progress or Progress()
        self._clock = clock
        self._created_at = datetime.now(timezone.utc)
        self.idle_timeout = idle_timeout
        self._refused: list[dict[str, Any]] = []
        self._address = (host, port)
        self._lock = threading.Lock()
        self._outbox: list[dict[str, Any]] = []
        self._created: dict[str, Created] = {}  # by SID, in creation order
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._validator: SpecValidator | None = None
        if phones is None and self._outbox_path is not None:
            phones = PhoneBook(os.path.join(os.path.dirname(self._outbox_path), PHONES_FILE))
        self._phones = phones
        self._callback_signing_secret = callback_signing_secret
        self.callback_timeout = callback_timeout
        self._sender = callbacks.CallbackSender(self._callback_events, self._record_callback)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            self._stopping.clear()
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
            self._sender.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; status callbacks not yet due are not sent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._stopping.set()  # held creates give up
        self._sender.stop()
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
        """Every authenticated request but reads (GET) so far, oldest first, as also written to
        ``outbox_path`` (JSON lines).

        Keys: ``time`` (UTC ISO 8601), ``method``, ``path``, ``resource`` ("Messages", "Calls" or
        None), ``account_sid``, ``auth_user`` (the SID, never the secret), ``fields`` (the form
        as sent), ``http_status``; then ``sid`` and ``status`` for a 201 (a new Message or Call:
        "queued") or a 200 (a Call updated: its status then), or ``error`` (``code``,
        ``message``); and ``spec_errors`` when the API description was broken.

        Each status callback made is an entry too, ``kind`` "callback": ``time``, ``resource``,
        ``sid``, ``event`` (a call's event, a message's status), ``status`` (the resource's),
        ``method``, ``url`` (scheme, host and path), ``params`` (as sent), ``http_status`` (the
        receiver's answer, None if none came), ``attempts``, and ``error`` if it failed. So is
        each Gather's request to its action: ``event`` "gather", status "in-progress", and
        ``digits``, the keys it sent.
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
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        client_gone: Callable[[], bool] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Decide the answer to one request and record it. Safe to call from many threads.

        ``client_gone`` tells whether the client has closed its connection: a create held for
        its number (``PhoneBehaviour.hold``) whose client has gone raises ``ClientGone``, and
        nothing is created or recorded."""
        exchange = self._decide(method, target, headers, body, client_gone)
        self._record(exchange)
        if exchange.tracked is not None:
            self._sender.track(exchange.tracked)
        return exchange.http_status, exchange.answer

    def _decide(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        client_gone: Callable[[], bool] | None = None,
    ) -> Exchange:
        split = urlsplit(target)
        path = split.path
        route = Route.of(path)
        fields = parse_form(body, header_value(headers, "Content-Type") or "")
        credentials = basic_auth(header_value(headers, "Authorization"))
        in_path = ACCOUNT_IN_PATH.match(path)
        account = self._account_now()
        exchange = Exchange(
            method=method,
            path=path,
            resource=route.resource if route and route.resource in SID_PREFIX else None,
            account_sid=route.account if route else None,
            auth_user=credentials[0] if credentials else None,
            fields=recorded_fields(fields),
            authenticated=self._authenticated(
                credentials, in_path["account"] if in_path else "", account
            ),
        )
        error = self._request_error(exchange, route, fields)
        if error is None:
            assert route is not None
            operation = route.operation(method)
            if operation == "create":
                self._hold(route.resource, fields, client_gone)
            spec_errors = self._spec_errors(exchange, target, headers, body)
            if operation == "create":
                secret = credentials[1] if credentials else None
                error = self._create(exchange, route, fields, spec_errors, account, secret)
            elif operation == "update":
                error = self._update(exchange, route, fields, spec_errors)
            elif operation == "list" and not spec_errors:
                exchange.http_status = 200
                exchange.answer = self._list(route, path, parse_qsl(split.query))
            elif operation == "fetch":  # an unknown SID is 404 even if it is malformed
                error = self._fetch(exchange, route, account)
            if error is None and spec_errors and operation != "create":
                error = self._spec_error(route, spec_errors)
        if error is not None:
            exchange.http_status, exchange.answer = error.status, error.body()
        return exchange

    def _request_error(
        self, exchange: Exchange, route: Route | None, fields: Mapping[str, Any]
    ) -> TwilioError | None:
        """Routing, authentication, then scripted failures and outages (which only the
        authenticated reach)."""
        if route is None:
            return not_found(exchange.path)
        operation = route.operation(exchange.method)
        if operation is None:
            return TwilioError(405, 20004, "Method not allowed")
        if not exchange.authenticated:
            return TwilioError(401, 20003, "Authenticate")
        planned = self._take_planned_failure(exchange.method, route.resource, fields)
        if planned is not None:
            return planned
        if operation == "create" and self._behaviour(fields.get("To")).outage:
            logger.info(
                "twilio stand-in: outage for %s: %s answered 503",
                str(fields.get("To"))[:40],
                route.resource,
            )
            return outage_error()
        return None

    def _hold(
        self, resource: str, fields: Mapping[str, Any], client_gone: Callable[[], bool] | None
    ) -> None:
        """Take the number's ``hold`` seconds to answer (real ones, never scaled); ClientGone if
        the client has given up by then."""
        seconds = self._behaviour(fields.get("To")).hold
        if seconds <= 0:
            return
        to = str(fields.get("To"))[:40]
        logger.info("twilio stand-in: holding a create to %s for %g s", to, seconds)
        deadline = self._clock_real() + seconds
        while (left := deadline - self._clock_real()) > 0:
            if self._stopping.wait(min(left, HOLD_POLL_SECONDS)):
                break
        if client_gone is not None and client_gone():
            logger.info(
                "twilio stand-in: client gone after holding a create to %s: %s dropped, "
                "nothing created",
                to,
                resource,
            )
            raise ClientGone(to)

    @staticmethod
    def _clock_real() -> float:
        return time.monotonic()  # a hold is wall time, whatever clock statuses move by

    def _spec_errors(
        self, exchange: Exchange, target: str, headers: Mapping[str, str], body: bytes
    ) -> list[str]:
        if self._validator is None:
            # Built on the first request, not at start: openapi-core and Twilio's description
            # take about half a second of CPU, which a sandbox that sends nothing never needs.
            self._validator = shared_validator()
        exchange.spec_errors = self._validator.errors(exchange.method, target, headers, body)
        return exchange.spec_errors

    def _spec_error(self, route: Route, spec_errors: list[str]) -> TwilioError:
        return bad_request(
            GENERIC_CODE[route.resource], "Invalid request: " + " | ".join(spec_errors)
        )

    def _create(
        self,
        exchange: Exchange,
        route: Route,
        fields: Mapping[str, Any],
        spec_errors: list[str],
        account: TwilioAccount | None,
        secret: str | None = None,
    ) -> TwilioError | None:
        """A new Message or Call: Twilio's own rules first (they carry specific codes), then the
        API description; 201 "queued" if both pass. Its recipient's behaviour fixes what becomes
        of it; its status callbacks, if it asks for them, are signed with ``secret`` if that is
        the account's auth token (the user is the account SID)."""
        owns = account.owns if account is not None else TEST_FROM_NUMBER.__eq__
        rules = message_rule_errors if route.resource == "Messages" else call_rule_errors
        rule_errors = rules(fields, owns)
        if rule_errors:
            return rule_errors[0]
        if spec_errors:
            return self._spec_error(route, spec_errors)
        sid = SID_PREFIX[route.resource] + secrets.token_hex(16)
        wall = datetime.now(timezone.utc)
        build = message_resource if route.resource == "Messages" else call_resource
        exchange.http_status, exchange.answer = 201, build(route.account, sid, fields, wall)
        behaviour = self._behaviour(fields.get("To"))
        gathered: Gathered | None = None
        played = route.resource == "Calls" and is_played(fields)
        if route.resource == "Messages":
            timeline = self.progress.message_timeline(behaviour)
        elif played:
            timeline, gathered = call_course(
                behaviour,
                str(fields.get("Twiml")),
                fields.get("Timeout"),
                fields.get("MachineDetection"),
                self.time_scale,
            )
        else:
            timeline = self.progress.call_timeline(behaviour, fields.get("MachineDetection"))
        created = Created(
            route.resource, route.account, exchange.answer, self._clock(), wall, timeline=timeline
        )
        user = exchange.auth_user or ""
        if played:
            signing = self._signing_secret(created.account, user, secret)
            created.script = CallScript(behaviour, self.time_scale, signing)
            if gathered is not None:
                self._wait_on(created, Played(timeline.final[0], gathered))
        with self._lock:
            self._created[sid] = created
        exchange.tracked = self._subscription(created, fields, user, secret)
        if exchange.tracked is None and played:  # its Gathers are sent all the same
            exchange.tracked = callbacks.Tracked(created.resource, created.sid, None)
        return None

    def _wait_on(self, created: Created, played: Played) -> None:
        """Go on with what a document played to the call does: wait on the digits it gathered
        (if they can be sent), or end. Under the lock, or before the call is shared."""
        assert created.script is not None and created.timeline is not None
        gathered = played.gathered
        if gathered is None:
            created.timeline = ended_at(created.timeline, played.end)
            return
        script = created.script
        target, why_not = callbacks.gather_target(
            gathered.action, gathered.method, script.secret, self.callback_timeout
        )
        if target is None:
            logger.warning("twilio stand-in: no Gather request for %s: %s", created.sid, why_not)
            created.timeline = ended_at(created.timeline, gathered.delay)
            return
        script.pending = callbacks.gather_event(
            created.answer, gathered, created.timeline.answered_by, target
        )

    def _behaviour(self, number: Any) -> PhoneBehaviour:
        try:
            return behaviour_of(self._phones, str(number) if number else None)
        except Exception:  # a caller's table must not break a create
            logger.exception("twilio stand-in: the phone behaviours could not be read")
            return PhoneBehaviour()

    def _subscription(
        self, created: Created, fields: Mapping[str, Any], user: str, secret: str | None
    ) -> callbacks.Tracked | None:
        """A new resource's status callbacks to send, if it asks for them and they can be
        signed; log why not if they cannot."""
        secret = self._signing_secret(created.account, user, secret)
        subscription, why_not = callbacks.subscription_for(
            created.resource, fields, secret, self.callback_timeout
        )
        if subscription is None:
            if why_not:
                logger.warning(
                    "twilio stand-in: no status callbacks for %s: %s", created.sid, why_not
                )
            return None
        return callbacks.Tracked(created.resource, created.sid, subscription)

    def _signing_secret(self, account: str, user: str, secret: str | None) -> str | None:
        """What the callbacks of a create are signed with: the auth token it authenticated with,
        or for an API key the one ``callback_signing_secret`` knows."""
        if user.startswith("AC"):
            return secret
        # An API key's secret is not what Twilio signs with.
        if self._callback_signing_secret is not None:
            return self._callback_signing_secret(account)
        return None

    def _callback_events(
        self, tracked: callbacks.Tracked
    ) -> tuple[list[callbacks.CallbackEvent], bool]:
        """A tracked resource's callbacks by now (by the stand-in's clock), and whether it is
        over; a played call's Gather requests among them, in time order."""
        with self._lock:
            created = self._created[tracked.sid]
            ended = created.ended
            timeline = created.timeline
            script = created.script
            gathers = [*script.gathers] if script is not None else []
            pending = script.pending if script is not None else None
        elapsed = self._clock() - created.clock
        if created.resource == "Messages":
            return callbacks.message_events(
                created.answer, timeline or self.progress.message_timeline(), elapsed
            )
        timeline = timeline or self.progress.call_timeline()
        relative = (ended[0], ended[1] - created.clock) if ended is not None else None
        events: list[callbacks.CallbackEvent] = []
        done = relative is not None and elapsed >= relative[1]
        if tracked.subscription is not None:
            events, done = callbacks.call_events(
                created.answer,
                timeline,
                relative,
                elapsed,
                tracked.subscription.events,
                created.at,
            )
        elif relative is None:
            done = elapsed >= timeline.final[0]
        # A call hung up before its digits were in gathers nothing.
        if (
            pending is not None
            and pending.delay <= elapsed
            and (relative is None or pending.delay < relative[1])
        ):
            gathers.append(pending)
        if not gathers:
            return events, done
        # A Gather comes after the statuses before it, and before the call's end.
        final = events[-1] if done and events and events[-1].event == "completed" else None
        ordered = [event for event in events if event is not final] + gathers
        ordered.sort(key=lambda event: (event.delay, event.event == "gather"))
        return [*ordered, *([final] if final else [])], done

    def _record_callback(
        self,
        tracked: callbacks.Tracked,
        event: callbacks.CallbackEvent,
        attempted: callbacks.Attempted,
    ) -> None:
        """Log a callback made (never its signature) and add it to the outbox; a Gather's
        answer is what its call goes on with."""
        target = event.target or tracked.subscription
        assert target is not None
        where = callbacks.where(target.url)
        logger.info(
            "twilio stand-in: %s %s %s for %s %s -> %s%s",
            "Gather request" if event.event == "gather" else "status callback",
            target.method,
            where[:200],
            tracked.sid,
            event.event,
            attempted.http_status if attempted.http_status is not None else "no answer",
            f" ({attempted.error}, {attempted.attempts} attempts)" if attempted.error else "",
        )
        entry: dict[str, Any] = {
            "time": iso_now(),
            "kind": "callback",
            "resource": tracked.resource,
            "sid": tracked.sid,
            "event": event.event,
            "status": event.status,
            "method": target.method,
            "url": where,
            "params": event.params,
            "http_status": attempted.http_status,
            "attempts": attempted.attempts,
        }
        if event.event == "gather":
            entry["digits"] = event.params.get("Digits", "")
        if attempted.error:
            entry["error"] = attempted.error
        with self._lock:
            self._outbox.append(entry)
            if self._outbox_path is not None:
                self._append_line(json.dumps(entry, ensure_ascii=False, sort_keys=True))
            if event.event == "gather":
                self._gathered(tracked.sid, event, attempted)

    def _gathered(
        self, sid: str, event: callbacks.CallbackEvent, attempted: callbacks.Attempted
    ) -> None:
        """The call goes on with the TwiML its Gather's action answered (from now, or from the
        digits if the clock has not moved); a failed or unreadable answer ends it there, as
        Twilio's application error does. Under the lock."""
        created = self._created[sid]
        script = created.script
        if script is None or script.pending is not event:
            return
        script.gathers.append(event)
        script.pending = None
        if created.ended is not None:
            return  # hung up meanwhile
        start = max(self._clock() - created.clock, event.delay)
        document = attempted.body.decode("utf-8", "replace") if attempted.ok else ""
        self._wait_on(created, play(document, script.behaviour, start, script.scale))

    def _find(self, route: Route) -> Created | None:
        with self._lock:
            created = self._created.get(route.sid or "")
        if created is None or (created.resource, created.account) != (
            route.resource,
            route.account,
        ):
            return None
        return created

    def _now(self, created: Created) -> dict[str, Any]:
        """A Message or Call as it is now."""
        elapsed = self._clock() - created.clock
        if created.resource == "Messages":
            return message_now(created, self.progress, elapsed)
        return call_now(created, self.progress, elapsed)

    def _fetch(
        self, exchange: Exchange, route: Route, account: TwilioAccount | None
    ) -> TwilioError | None:
        if route.resource == "Accounts":
            name = account.friendly_name if account is not None else TwilioAccount.friendly_name
            exchange.http_status = 200
            exchange.answer = account_resource(route.account, name, self._created_at)
            return None
        created = self._find(route)
        if created is None:
            return not_found(exchange.path)
        exchange.http_status, exchange.answer = 200, self._now(created)
        return None

    def _list(self, route: Route, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        """The account's Messages or Calls, newest first, filtered by ``To``, ``From`` and (Calls)
        ``Status``, one page of them."""
        with self._lock:
            everything = list(self._created.values())
        wanted = dict(list_query(query, ("To", "From", "Status")))
        if route.resource == "Messages":
            wanted.pop("Status", None)
        items = []
        for created in reversed(everything):
            if (created.resource, created.account) != (route.resource, route.account):
                continue
            item = self._now(created)
            keys = {"To": item.get("to"), "From": item.get("from"), "Status": item.get("status")}
            if all(keys[name] == value for name, value in wanted.items()):
                items.append(item)
        return list_page(route.resource, path, query, items)

    def _update(
        self, exchange: Exchange, route: Route, fields: Mapping[str, Any], spec_errors: list[str]
    ) -> TwilioError | None:
        """A Call updated: ``Status`` completed hangs it up (canceled if it was not answered yet),
        canceled cancels it if it was not answered yet (and does nothing to one in progress); new
        ``Twiml`` or ``Url`` are taken and change nothing visible. An ended call cannot be
        updated (21220)."""
        created = self._find(route)
        if created is None:
            return not_found(exchange.path)
        with self._lock:
            now = self._clock()
            status = call_status(created, self.progress, now - created.clock)
            rule_errors = call_update_errors(fields, status)
            if rule_errors:
                return rule_errors[0]
            if spec_errors:
                return self._spec_error(route, spec_errors)
            wanted = fields.get("Status")
            if wanted == "completed" or (wanted == "canceled" and status != "in-progress"):
                created.ended = ("completed" if status == "in-progress" else "canceled", now)
        exchange.http_status, exchange.answer = 200, self._now(created)
        return None

    def _take_planned_failure(
        self, method: str, resource: str, fields: Mapping[str, Any]
    ) -> TwilioError | None:
        with self._lock:
            for failure in self._plan:
                if failure.matches(method, resource, fields):
                    failure.times -= 1
                    return failure.as_error()
        return None

    def _account_now(self) -> TwilioAccount | None:
        if self._deployed_account is not None:
            return self._deployed_account()
        return self._account

    def _authenticated(
        self, credentials: tuple[str, str] | None, in_path: str, account: TwilioAccount | None
    ) -> bool:
        if credentials is None:
            return False
        user, secret = credentials
        if not AUTH_USER.match(user) or not secret:
            return False
        if account is not None:
            # Twilio: the user must authenticate for the account the path names.
            if in_path != account.sid or user not in account.users:
                return False
        elif self._deployed_account is not None:
            return False  # nothing deployed: no account to authenticate for
        elif user.startswith("AC") and user != in_path:
            return False
        if self._deployed_secret is not None:
            expected = self._deployed_secret()
        elif self._credentials is not None:
            expected = self._credentials.get(user)
        else:
            return True
        return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())

    def _record(self, exchange: Exchange) -> None:
        """Refused requests are logged and listed in ``refused()``; the others, but reads, go to
        the outbox."""
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
        if exchange.method == "GET":
            return
        entry = exchange.outbox_entry(iso_now())
        with self._lock:
            self._outbox.append(entry)
            if self._outbox_path is not None:
                self._append_line(json.dumps(entry, ensure_ascii=False, sort_keys=True))

    def add_to_outbox(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Add entries that are not this stand-in's (the SNS messages people would receive) to
        its outbox, under its lock, so their lines never interleave with its own."""
        with self._lock:
            for entry in entries:
                self._outbox.append(dict(entry))
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
            status, payload = stand_in.answer(
                self.command, self.path, headers, body, client_gone=self._client_gone
            )
        except ClientGone:
            self.close_connection = True  # no answer: the client is not there to read it
            return
        except Exception:
            logger.exception("Twilio stand-in failed on %s %s", self.command, self.path)
            status, payload = 500, TwilioError(500, 20500, "Internal Server Error").body()
        self._send(status, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _client_gone(self) -> bool:
        """Whether the client has closed its end: the socket reads as ended (or reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

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
