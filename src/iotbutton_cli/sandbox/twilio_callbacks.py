"""Status callbacks: the requests the Twilio stand-in makes to a Message's or Call's StatusCallback.

What Twilio does, as far as its docs say, and so what this does:

* a Message's callback is a POST (form-encoded) for each status change after the create -- not for
  "queued", which the create answered -- with ``MessageSid``/``SmsSid``, ``MessageStatus``/
  ``SmsStatus``, ``AccountSid``, ``From``, ``To``, ``ApiVersion`` (and ``MessagingServiceSid`` if
  one was used), plus ``ErrorCode`` when it is undelivered or failed;
* a Call's is a POST, or a GET with the parameters in the query when ``StatusCallbackMethod`` is
  GET, for each event ``StatusCallbackEvent`` asks for -- ``initiated``, ``ringing``,
  ``answered``, ``completed``; only ``completed`` when it asks for none -- with ``CallSid``,
  ``CallStatus`` (initiated, ringing, in-progress, then completed / busy / no-answer / failed /
  canceled), ``AccountSid``, ``From``, ``To``, ``Caller``, ``Called``, ``Direction``,
  ``ApiVersion``, ``Timestamp`` (RFC 2822), ``CallbackSource`` ("call-progress-events") and
  ``SequenceNumber`` (0, 1, ... per call); ``CallDuration`` (seconds) and ``Duration`` (minutes,
  rounded up) on ``completed``; ``AnsweredBy`` from the answer on when ``MachineDetection`` was
  asked for;
* each is signed in ``X-Twilio-Signature``: base64 of the HMAC-SHA1, keyed with the account's auth
  token, of the URL followed by every POST parameter's name and value, sorted by name (for a GET,
  of the URL with its query alone);
* a failed attempt is retried by the URL's connection overrides (``#rc=`` retries, 1 unless
  given, up to 5; ``#rp=`` which failures: ``ct`` connection, ``rt`` no answer in time, ``4xx``,
  ``5xx``, ``all``; ``ct``/``rt`` timeouts in ms); without ``#rp`` only a failed connection is
  retried. The fragment is never sent.

A played call (``twilio_phones.call_course``) whose callee keys in digits at a ``<Gather>`` makes
one more request: to the Gather's ``action`` (``method``, POST unless given), signed and retried
the same way, with ``AccountSid``, ``ApiVersion``, ``CallSid``, ``CallStatus`` (in-progress),
``Called``, ``Caller``, ``Direction``, ``From``, ``To``, ``Digits``, ``FinishedOnKey`` (and
``AnsweredBy`` with MachineDetection). Its answer is TwiML that the call goes on with, so the
sender hands it back (``Attempted.body``); the call's ``completed`` callback comes after it.

Differences: one sender thread sends them all, in order per message or call; timeouts are short
(``timeout`` seconds unless the URL's overrides say otherwise: a dead receiver must not hold up the
others), ``#tt`` and ``#e`` are ignored, and the signature covers the URL without its fragment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from iotbutton_cli.sandbox.twilio_phones import Gathered, Timeline, billed_minutes

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
DEFAULT_CALL_EVENTS = frozenset({"completed"})
# The event a call status starts; any other (final) status is "completed".
EVENT_OF_STATUS = {"queued": "initiated", "ringing": "ringing", "in-progress": "answered"}
RETRY_POLICIES = frozenset({"4xx", "5xx", "ct", "rt", "all"})
DEFAULT_TIMEOUT_SECONDS = 2.0
MAX_RETRIES = 5
RETRY_PAUSE_SECONDS = 0.1
POLL_SECONDS = 0.02  # how often the sender looks for statuses the clock has reached
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "TwilioProxy/1.1"


@dataclass(frozen=True)
class Overrides:
    """How hard to try one URL: Twilio's connection overrides (its fragment), with the
    stand-in's shorter timeouts where it names none."""

    connect_timeout: float = DEFAULT_TIMEOUT_SECONDS
    read_timeout: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = 1
    policy: frozenset[str] = frozenset({"ct"})

    @classmethod
    def of(cls, fragment: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Overrides:
        """The overrides a fragment such as ``rc=3&rp=5xx,ct&ct=1000`` sets; invalid values are
        logged and left at their defaults."""
        given = dict(parse_qsl(fragment, keep_blank_values=True))
        values: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": timeout}
        try:
            if "rc" in given:
                values["retries"] = min(max(int(given["rc"]), 0), MAX_RETRIES)
            if "ct" in given:
                values["connect_timeout"] = min(max(int(given["ct"]), 100), 10000) / 1000
            if "rt" in given:
                values["read_timeout"] = min(max(int(given["rt"]), 100), 15000) / 1000
        except ValueError:
            logger.warning("twilio stand-in: ignoring malformed connection overrides %r", fragment)
        if "rp" in given:
            policy = frozenset(part.strip() for part in given["rp"].split(",") if part.strip())
            if policy and policy <= RETRY_POLICIES:
                values["policy"] = policy
            else:
                logger.warning("twilio stand-in: ignoring retry policy %r", given["rp"][:100])
        return cls(**values)

    def retries_on(self, failure: str) -> bool:
        return "all" in self.policy or failure in self.policy


@dataclass(frozen=True)
class Subscription:
    """Where and how to send one resource's callbacks: ``url`` without its fragment, ``method``,
    which call ``events`` (messages: every status), the ``secret`` to sign with."""

    url: str
    method: str
    events: frozenset[str]
    secret: str = field(repr=False)
    overrides: Overrides = Overrides()


def requested_events(value: Any) -> tuple[frozenset[str], list[str]]:
    """The events a ``StatusCallbackEvent`` field asks for (repeated fields, or one field with
    names separated by spaces, as Twilio's SDKs send either), and any it does not know."""
    values = value if isinstance(value, list) else [value] if value else []
    names = [name for each in values for name in str(each).split()]
    unknown = [name for name in names if name not in CALL_EVENTS]
    return frozenset(names) & CALL_EVENTS or DEFAULT_CALL_EVENTS, unknown


def subscription_for(
    resource: str,
    fields: Mapping[str, Any],
    secret: str | None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[Subscription | None, str]:
    """The callbacks a create asks for, or None and why not ("" when it asks for none)."""
    url = fields.get("StatusCallback")
    if not url or not isinstance(url, str):
        return None, ""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        return None, "the StatusCallback is not an http(s) URL"
    if not secret:
        return None, "the auth token to sign them with is not known (the create used an API key)"
    method = "POST"
    events = frozenset({"sent"})  # messages: every status, the set is not used
    if resource == "Calls":
        method = str(fields.get("StatusCallbackMethod") or "POST").upper()
        events = requested_events(fields.get("StatusCallbackEvent"))[0]
    target = urlunsplit(split._replace(fragment=""))
    return Subscription(target, method, events, secret, Overrides.of(split.fragment, timeout)), ""


def gather_target(
    action: str, method: str, secret: str | None, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> tuple[Subscription | None, str]:
    """Where a Gather's digits go (its ``action``, retried by its fragment's overrides), or None
    and why they cannot be sent."""
    split = urlsplit(action)
    if split.scheme not in ("http", "https") or not split.hostname:
        return None, "the Gather's action is not an absolute http(s) URL"
    if method not in ("GET", "POST"):
        return None, f"the Gather's method {method[:20]!r} is neither GET nor POST"
    if not secret:
        return None, "the auth token to sign it with is not known (the create used an API key)"
    target = urlunsplit(split._replace(fragment=""))
    overrides = Overrides.of(split.fragment, timeout)
    return Subscription(target, method, frozenset(), secret, overrides), ""


@dataclass(frozen=True)
class CallbackEvent:
    """One callback due: the ``event`` (a call's event, a message's status, or "gather"), the
    resource's ``status`` then, when it happened (``delay`` seconds after creation), what it
    carries; ``target`` is where it goes when that is not the resource's StatusCallback (a
    Gather's action)."""

    event: str
    status: str
    delay: float
    params: dict[str, str]
    target: Subscription | None = None


def gather_event(
    answer: Mapping[str, Any], gathered: Gathered, answered_by: str | None, target: Subscription
) -> CallbackEvent:
    """The request a Gather's digits make to its action."""
    params = {
        "AccountSid": answer["account_sid"],
        "AnsweredBy": answered_by,
        "ApiVersion": API_VERSION,
        "CallSid": answer["sid"],
        "CallStatus": "in-progress",
        "Called": answer.get("to"),
        "Caller": answer.get("from"),
        "Digits": gathered.digits,
        "Direction": answer.get("direction", "outbound-api"),
        "FinishedOnKey": gathered.finished_on_key,
        "From": answer.get("from"),
        "To": answer.get("to"),
    }
    return CallbackEvent("gather", "in-progress", gathered.delay, _present(params), target)


def _present(params: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in params.items() if value is not None}


def message_events(
    answer: Mapping[str, Any], timeline: Timeline, elapsed: float
) -> tuple[list[CallbackEvent], bool]:
    """The callbacks of a message ``elapsed`` seconds after its creation, and whether it has
    reached its final status (no more will come)."""
    sid = str(answer["sid"])
    base = {
        "AccountSid": answer["account_sid"],
        "ApiVersion": API_VERSION,
        "From": answer.get("from"),
        "MessageSid": sid,
        "MessagingServiceSid": answer.get("messaging_service_sid"),
        "SmsSid": sid,
        "To": answer.get("to"),
    }
    events = []
    for delay, status in timeline.steps[1:]:
        if delay > elapsed:
            break
        params = dict(base, MessageStatus=status, SmsStatus=status)
        if (delay, status) == timeline.final:
            params["ErrorCode"] = timeline.error_code
        events.append(CallbackEvent(status, status, delay, _present(params)))
    return events, elapsed >= timeline.final[0]


def call_events(
    answer: Mapping[str, Any],
    timeline: Timeline,
    ended: tuple[str, float] | None,
    elapsed: float,
    wanted: Iterable[str],
    at: Callable[[float], str],
) -> tuple[list[CallbackEvent], bool]:
    """The callbacks of a call ``elapsed`` seconds after its creation (``ended``: the status
    and time, in seconds after creation, an update ended it with), and whether it has ended.
    ``at`` writes a time ``seconds`` after creation as Twilio does."""
    end_status, end_after = ended or (timeline.final[1], timeline.final[0])
    steps = [step for step in timeline.steps[:-1] if step[0] <= end_after]
    steps.append((end_after, end_status))
    answered_at = next((delay for delay, status in steps if status == "in-progress"), None)
    base = {
        "AccountSid": answer["account_sid"],
        "ApiVersion": API_VERSION,
        "CallSid": answer["sid"],
        "CallbackSource": "call-progress-events",
        "Called": answer.get("to"),
        "Caller": answer.get("from"),
        "Direction": answer.get("direction", "outbound-api"),
        "From": answer.get("from"),
        "To": answer.get("to"),
    }
    wanted = frozenset(wanted)
    events: list[CallbackEvent] = []
    for index, (delay, status) in enumerate(steps):
        if delay > elapsed:
            break
        final = index == len(steps) - 1
        event = "completed" if final else EVENT_OF_STATUS[status]
        if event not in wanted:
            continue
        params: dict[str, Any] = dict(
            base,
            CallStatus="initiated" if event == "initiated" else status,
            SequenceNumber=len(events),
            Timestamp=at(delay),
        )
        if timeline.answered_by and answered_at is not None and delay >= answered_at:
            params["AnsweredBy"] = timeline.answered_by
        if final:
            seconds = 0
            if end_status == "completed" and answered_at is not None:
                seconds = timeline.seconds(end_after - answered_at)
            params.update(CallDuration=seconds, Duration=billed_minutes(seconds))
        events.append(CallbackEvent(event, status, delay, _present(params)))
    return events, elapsed >= end_after


def signature(secret: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` with these POST parameters."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_request(
    subscription: Subscription, params: Mapping[str, str]
) -> tuple[str, bytes | None, dict[str, str]]:
    """(URL, body, headers) of one callback: a form POST, or a GET with the query."""
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    if subscription.method == "GET":
        joiner = "&" if urlsplit(subscription.url).query else "?"
        url = subscription.url + joiner + urlencode(params)
        headers["X-Twilio-Signature"] = signature(subscription.secret, url, {})
        return url, None, headers
    headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    headers["X-Twilio-Signature"] = signature(subscription.secret, subscription.url, params)
    return subscription.url, urlencode(params).encode("utf-8"), headers


@dataclass(frozen=True)
class Attempted:
    """How a callback went: the receiver's HTTP status (None if none came), the last failure,
    how many attempts it took, and the answer's body (what a Gather's action says to do)."""

    http_status: int | None
    error: str | None
    attempts: int
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


def deliver(
    subscription: Subscription, params: Mapping[str, str], stop: threading.Event | None = None
) -> Attempted:
    """Send one callback, retried as the subscription's overrides say."""
    url, body, headers = signed_request(subscription, params)
    split = urlsplit(url)
    overrides = subscription.overrides
    status: int | None = None
    error: str | None = None
    answer = b""
    attempt = 0
    for attempt in range(1, overrides.retries + 2):
        status, error, failure, answer = _attempt(
            split, subscription.method, body, headers, overrides
        )
        if failure is None or not overrides.retries_on(failure):
            break
        if attempt <= overrides.retries and stop is not None and stop.wait(RETRY_PAUSE_SECONDS):
            break  # stopping
    return Attempted(status, error, attempt, answer)


def _attempt(
    split: Any, method: str, body: bytes | None, headers: Mapping[str, str], overrides: Overrides
) -> tuple[int | None, str | None, str | None, bytes]:
    """(status, error, failure kind: ct, rt, 4xx, 5xx or None, answer body) of one request."""
    connection: http.client.HTTPConnection
    if split.scheme == "https":
        context = ssl.create_default_context()  # Twilio wants a certificate it can verify
        connection = http.client.HTTPSConnection(
            split.hostname, split.port, timeout=overrides.connect_timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(
            split.hostname, split.port, timeout=overrides.connect_timeout
        )
    target = urlunsplit(("", "", split.path or "/", split.query, ""))
    try:
        try:
            connection.connect()
        except OSError as exc:
            return None, f"connection failed: {exc}", "ct", b""
        assert connection.sock is not None
        connection.sock.settimeout(overrides.read_timeout)
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            response = connection.getresponse()
            answer = response.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            return None, f"no answer: {exc or type(exc).__name__}", "rt", b""
    finally:
        connection.close()
    if response.status >= 500:
        return response.status, f"HTTP {response.status}", "5xx", answer
    if response.status >= 400:
        return response.status, f"HTTP {response.status}", "4xx", answer
    return response.status, None, None, answer


def where(url: str) -> str:
    """A URL as logged and recorded: scheme, host and path, not its query (it may hold tokens)."""
    split = urlsplit(url)
    return urlunsplit((split.scheme, split.netloc.rpartition("@")[2], split.path, "", ""))


@dataclass(eq=False)
class Tracked:
    """A resource whose callbacks are being sent: ``sent`` of its events so far. A played call
    without a StatusCallback is tracked too (``subscription`` None), for its Gathers."""

    resource: str
    sid: str
    subscription: Subscription | None
    sent: int = 0


class CallbackSender:
    """Sends due callbacks from one background thread, in order per resource.

    ``events_of(tracked)`` gives a resource's callbacks so far and whether it is done (its
    final status reached); ``record(tracked, event, attempted)`` is told of each one sent.
    """

    def __init__(
        self,
        events_of: Callable[[Tracked], tuple[list[CallbackEvent], bool]],
        record: Callable[[Tracked, CallbackEvent, Attempted], None],
        poll: float = POLL_SECONDS,
    ) -> None:
        self._events_of = events_of
        self._record = record
        self._poll = poll
        self._lock = threading.Lock()
        self._tracked: list[Tracked] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, tracked: Tracked) -> None:
        with self._lock:
            self._tracked.append(tracked)
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="twilio-stand-in-callbacks", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop sending; callbacks not yet due are dropped."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                work = list(self._tracked)
            for tracked in work:
                if self._stop.is_set():
                    return
                try:
                    self._send_due(tracked)
                except Exception:  # one resource's bug must not end everyone's callbacks
                    logger.exception("twilio stand-in: status callbacks for %s failed", tracked.sid)
                    self._forget(tracked)
            self._wake.wait(self._poll if work else None)
            self._wake.clear()

    def _send_due(self, tracked: Tracked) -> None:
        events, done = self._events_of(tracked)
        for event in events[tracked.sent :]:
            if self._stop.is_set():
                return
            target = event.target or tracked.subscription
            assert target is not None  # status events come only with a subscription
            attempted = deliver(target, event.params, self._stop)
            tracked.sent += 1
            self._record(tracked, event, attempted)
        if done:
            self._forget(tracked)

    def _forget(self, tracked: Tracked) -> None:
        with self._lock:
            if tracked in self._tracked:
                self._tracked.remove(tracked)
