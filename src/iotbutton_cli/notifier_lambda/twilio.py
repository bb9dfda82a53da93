"""Twilio's REST API over urllib: create a Message or a Call, with retries, inside a deadline.

Standard library only. ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (To, From, Body)
and ``.../Calls.json`` (To, From, Twiml), HTTP Basic auth with an API key or the account SID. Any
2xx means Twilio accepted the request; errors come as ``{"code", "message", "more_info",
"status"}``. Each request is tried up to ``MAX_ATTEMPTS`` times with exponential backoff and
jitter on HTTP 429, 5xx, Twilio code 20429 and network errors/timeouts, within the deadline.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .contract import PLAIN_SAY, SMS_MAX_UNITS, SayOptions, fitted_twiml, twiml
from .text import ELLIPSIS, log, printable

DEFAULT_API_BASE = "https://api.twilio.com"
API_VERSION = "2010-04-01"
USER_AGENT = "iotbutton-notifier/1 (+https://github.com/iotbutton/iotbutton-cli) python-urllib"
TWILIO_TEXT_MAX_CHARS = 300  # of an error message or sid from Twilio, as reported
NO_BODY_NOTE = "Twilio answered 2xx but its answer could not be read; counted as sent"
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 4.0
MIN_ATTEMPT_SECONDS = 1.0
AUTH_FAILED_CODE = 20003
TOO_MANY_REQUESTS_CODE = 20429

TWILIO_ERROR_MEANINGS = {
    20003: "authentication failed: check the account/API key SID and the secret in SSM",
    20429: "too many requests: Twilio is rate limiting this account",
    21211: "invalid 'To' phone number",
    21212: "invalid 'From' phone number",
    21219: "unverified number: trial accounts may only call verified numbers",
    21408: "no permission to send to this region",
    21606: "the 'From' number cannot send SMS or is not owned by this account",
    21608: "unverified number: trial accounts may only send to verified numbers",
    21610: "recipient has unsubscribed (replied STOP)",
    21614: "'To' is not a mobile number and cannot receive SMS",
    32018: "Twiml longer than 4000 characters",
}

# Replaced by tests so retries run instantly; also the seam for any other clock.
sleep: Callable[[float], None] = time.sleep
monotonic: Callable[[], float] = time.monotonic


def call_twiml(text: str, say: SayOptions = PLAIN_SAY) -> str:
    """TwiML that speaks ``text``, cut short if needed to fit Twilio's 4000-character limit."""
    document, kept = fitted_twiml(text, lambda part: twiml(part, say))
    if kept < len(text):
        log(logging.WARNING, "message cut to %d of %d characters to fit in Twiml", kept, len(text))
    return document


def utf16_units(text: str) -> int:
    """Length as Twilio counts a Body: characters beyond U+FFFF take two code units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def sms_body(text: str) -> str:
    """``text`` cut, with an ellipsis, to Twilio's 1,600 UTF-16 code units."""
    if utf16_units(text) <= SMS_MAX_UNITS:
        return text
    units = 0
    for end, char in enumerate(text):  # noqa: B007 -- ``end`` is used after the loop
        units += 2 if ord(char) > 0xFFFF else 1
        if units > SMS_MAX_UNITS - 1:
            break
    log(logging.WARNING, "SMS cut to %d of %d characters to fit Twilio's limit", end, len(text))
    return text[:end] + ELLIPSIS


@dataclass
class TwilioOutcome:
    """The result of one Twilio request after retries."""

    ok: bool
    sid: str | None = None
    code: int | None = None
    message: str = ""
    retryable: bool = False
    attempts: int = 0
    http_status: int | None = None
    more_info: str | None = None
    note: str | None = None
    status: str | None = None  # Twilio's status in its answer: "queued", until it says more
    listed: list[Any] = field(default_factory=list)  # a list page's calls, for a GET


@dataclass
class TwilioClient:
    api_base: str
    account_sid: str
    auth_user: str
    secret: str = field(repr=False)
    timeout: float
    deadline: float | None = None

    def url(self, resource: str) -> str:
        account = urllib.parse.quote(self.account_sid, safe="")
        return f"{self.api_base}/{API_VERSION}/Accounts/{account}/{resource}.json"

    def send(
        self,
        channel: str,
        to: str,
        sender: str,
        text: str,
        status_callback: str | None = None,
        say: SayOptions = PLAIN_SAY,
    ) -> TwilioOutcome:
        """``status_callback``: where Twilio reports what became of it (a delivery receipt);
        ``say``: how a call speaks."""
        extra = {"StatusCallback": status_callback} if status_callback else {}
        if channel == "sms":
            form = {"To": to, "From": sender, "Body": sms_body(text), **extra}
            return self.create("Messages", form)
        document = call_twiml(text, say)
        return self.create("Calls", {"To": to, "From": sender, "Twiml": document, **extra})

    def create(
        self, resource: str, form: Mapping[str, str], resend_unanswered: bool = True
    ) -> TwilioOutcome:
        """POST with retries on throttling, server errors and network trouble; with
        ``resend_unanswered`` False, a request that got no answer (it may have reached Twilio)
        is not sent again: the caller finds out what became of it."""
        outcome = TwilioOutcome(ok=False)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            timeout = self._attempt_timeout()
            if timeout is None:
                outcome.message = outcome.message or "no time left in this invocation"
                outcome.retryable = True
                break
            outcome = self._request_once(resource, form, timeout)
            outcome.attempts = attempt
            if outcome.ok or not outcome.retryable or attempt == MAX_ATTEMPTS:
                break
            if outcome.http_status is None and not resend_unanswered:
                break
            delay = backoff_delay(attempt)
            if not self._time_left_for(delay):
                break
            sleep(delay)
        return outcome

    def _attempt_timeout(self) -> float | None:
        return attempt_timeout(self.timeout, self.deadline)

    def _time_left_for(self, delay: float) -> bool:
        if self.deadline is None:
            return True
        return self.deadline - monotonic() - delay >= MIN_ATTEMPT_SECONDS

    def place_call(
        self, to: str, sender: str, document: str, status_callback: str, ring_seconds: int
    ) -> TwilioOutcome:
        """An escalation's call: rings ``ring_seconds`` (Twilio's ``Timeout``), tells a person
        from voicemail (``MachineDetection``), and reports its end to ``status_callback``."""
        form = {
            "To": to,
            "From": sender,
            "Twiml": document,
            "Timeout": str(ring_seconds),
            "MachineDetection": "Enable",
            "StatusCallback": status_callback,
        }
        return self.create("Calls", form, resend_unanswered=False)

    def hang_up(self, sid: str) -> TwilioOutcome:
        """End a call whatever its state (``completed``: Twilio cancels one not yet answered)."""
        return self.create(f"Calls/{urllib.parse.quote(sid, safe='')}", {"Status": "completed"})

    def calls_to(self, to: str) -> list[dict[str, Any]]:
        """The account's latest calls to ``to`` (one page, newest first): how a claim whose
        request never got its answer learns whether Twilio made the call."""
        timeout = self._attempt_timeout() or self.timeout
        query = urllib.parse.urlencode({"To": to, "PageSize": "20"})
        outcome = self._request_once("Calls", None, timeout, query=query)
        if not outcome.ok:
            raise OSError(f"could not list calls: {outcome.message}")
        return [call for call in outcome.listed if isinstance(call, dict)]

    def _request_once(
        self,
        resource: str,
        form: Mapping[str, str] | None,
        timeout: float,
        query: str | None = None,
    ) -> TwilioOutcome:
        """One request: a POST of ``form``, or (``form`` None) a GET with ``query``."""
        url = self.url(resource) + (f"?{query}" if query else "")
        headers = {
            "Authorization": self._authorization(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urllib.parse.urlencode(form).encode("utf-8")
        # The scheme is checked in LambdaSettings: only http(s) URLs get here.
        request = urllib.request.Request(  # noqa: S310
            url, data=data, method="POST" if form is not None else "GET", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return accepted_outcome(response.status, read_body(response))
        except urllib.error.HTTPError as error:
            return twilio_error_outcome(error.code, json_object(read_body(error)))
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as exc:
            reason = getattr(exc, "reason", exc)
            return TwilioOutcome(ok=False, message=f"network error: {reason}", retryable=True)

    def _authorization(self) -> str:
        token = base64.b64encode(f"{self.auth_user}:{self.secret}".encode()).decode("ascii")
        return f"Basic {token}"


def attempt_timeout(timeout: float, deadline: float | None) -> float | None:
    """One attempt's timeout within ``deadline`` (``monotonic``); None when too little is left."""
    if deadline is None:
        return timeout
    left = deadline - monotonic()
    return min(timeout, left) if left >= MIN_ATTEMPT_SECONDS else None


def read_body(response: Any) -> bytes:
    """The answer's body, or b"" if it cannot be read to the end (the status stands anyway)."""
    try:
        return bytes(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return b""


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or {} if it is anything else (empty, not UTF-8, a list...)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def accepted_outcome(status: int, body: bytes) -> TwilioOutcome:
    """Any 2xx means Twilio took the request: sent, with its sid when the answer says one."""
    answer = json_object(body)
    if isinstance(answer.get("calls"), list):  # a list page
        return TwilioOutcome(ok=True, http_status=status, listed=answer["calls"])
    sid, state = answer.get("sid"), answer.get("status")
    shown_state = printable(state, 32) if isinstance(state, str) and state else None
    if isinstance(sid, str) and sid:
        sid = printable(sid, TWILIO_TEXT_MAX_CHARS)
        return TwilioOutcome(ok=True, sid=sid, http_status=status, status=shown_state)
    return TwilioOutcome(ok=True, http_status=status, note=NO_BODY_NOTE)


def twilio_error_outcome(status: int, body: Mapping[str, Any]) -> TwilioOutcome:
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    retryable = status == 429 or status >= 500 or code == TOO_MANY_REQUESTS_CODE
    message, more_info = body.get("message"), body.get("more_info")
    return TwilioOutcome(
        ok=False,
        code=code,
        message=printable(message, TWILIO_TEXT_MAX_CHARS)
        if isinstance(message, str) and message
        else f"HTTP {status}",
        retryable=retryable,
        http_status=status,
        more_info=printable(more_info, TWILIO_TEXT_MAX_CHARS)
        if isinstance(more_info, str)
        else None,
    )


def backoff_delay(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 -- jitter, not cryptography
