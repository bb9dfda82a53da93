"""Delivery receipts: Twilio's status callbacks, posted to the notifier's function URL.

A 201 from Twilio means only that it queued the message or call; carrier failures, blocked
senders, unanswered calls and voicemail come after. Each request the notifier makes names a
``StatusCallback``: ``<function URL>?alarm=<alarm id>``. Twilio posts there (form-encoded) as the
status moves on, and each callback is recorded on its delivery in the alarm ledger.

The URL is public (auth type ``NONE``: Twilio cannot sign AWS requests), so every request is
checked the way Twilio's own libraries check it: ``X-Twilio-Signature`` must be the base64
HMAC-SHA1, keyed with the account's auth token, of the exact URL Twilio was given followed by
each POST parameter's name and value, sorted by name. Anything else is answered 403 and changes
nothing. A callback updates only the delivery whose sid it names, and only moves its status
forward (Twilio may post out of order, or again), so a replayed or late callback is harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from .alarms import NOT_REACHED_STATUSES
from .text import log, printable

SIGNATURE_HEADER = "x-twilio-signature"
ESCALATION_PARAMETER = "esc"  # an escalation's callback: see escalation.py
CHANNEL_PARAMETER = "channel"  # a receipt of an escalation's notice names its channel
# The SMS an escalation sends when it ends: "who is coming", and "nobody came".
ACK_CHANNEL = "ack-sms"
EXHAUSTED_CHANNEL = "exhausted-sms"
NOTICE_CHANNELS = frozenset({ACK_CHANNEL, EXHAUSTED_CHANNEL})
MAX_BODY_BYTES = 64 * 1024

# How far along each status is: a callback never moves a delivery back.
MESSAGE_RANKS = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
CALL_RANKS = {
    "queued": 1,
    "initiated": 2,
    "ringing": 3,
    "in-progress": 4,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "failed": 5,
    "canceled": 5,
}
# Final statuses that mean the person was not reached.
NOT_REACHED = NOT_REACHED_STATUSES


def is_function_url_event(event: object) -> bool:
    """A function URL's payload-format 2.0 event (an IoT click never looks like this)."""
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature for a POST to ``url`` with ``params``."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def request_params(event: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """The POST's form parameters, or None if the body is not a form Twilio would send."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        return None
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        raw = body.encode("utf-8")
    if len(raw) > MAX_BODY_BYTES:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return urllib.parse.parse_qsl(text, keep_blank_values=True)


def verified(event: Mapping[str, Any], callback_url: str, auth_token: str) -> bool:
    """The request is Twilio's: signed with the auth token over the URL it was given."""
    headers = event.get("headers") or {}
    given = headers.get(SIGNATURE_HEADER) if isinstance(headers, dict) else None
    if not isinstance(given, str) or not given:
        return False
    params = request_params(event)
    if params is None:
        return False
    query = event.get("rawQueryString") or ""
    url = callback_url + (f"?{query}" if query else "")
    expected = signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode(), given.encode())


def handle(
    event: Mapping[str, Any],
    callback_url: str | None,
    auth_token: str | None,
    ledger: Any,
    on_escalation: Callable[[dict[str, str], dict[str, str]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Answer one request to the function URL (as Lambda turns it back into HTTP): a receipt
    is recorded here; an escalation's callback (its URL says ``esc=``) goes to
    ``on_escalation`` with the query and the form, once its signature is checked."""
    method = event.get("requestContext", {}).get("http", {}).get("method")
    if method != "POST" or not callback_url or not auth_token:
        log(logging.WARNING, "function URL: refused a %s request", printable(str(method), 10))
        return answer(403)
    if not verified(event, callback_url, auth_token):
        log(logging.WARNING, "function URL: refused a request without Twilio's valid signature")
        return answer(403)
    params = dict(request_params(event) or [])
    query = dict(urllib.parse.parse_qsl(str(event.get("rawQueryString") or "")))
    if on_escalation is not None and query.get(ESCALATION_PARAMETER):
        return on_escalation(query, params)
    alarm_id = query.get("alarm", "")
    attempt = query.get("attempt", "")
    receipt = receipt_of(params)
    notice = query.get(CHANNEL_PARAMETER)
    if receipt is not None and receipt["channel"] == "sms" and notice in NOTICE_CHANNELS:
        receipt["channel"] = notice  # an escalation's notice: recorded on its own item
    if not alarm_id or receipt is None:
        log(logging.WARNING, "function URL: a signed request that is no status callback")
        return answer(400)
    recorded = ledger.receipt(
        alarm_id, attempt=int(attempt) if attempt.isdigit() else None, **receipt
    )
    log(
        logging.INFO if receipt["status"] not in NOT_REACHED else logging.ERROR,
        "receipt for alarm %s: %s to %s %s%s%s",
        printable(alarm_id, 200),
        receipt["channel"],
        printable(receipt["to"], 32),
        printable(receipt["status"], 32),
        f" (Twilio error {receipt['error_code']})" if receipt.get("error_code") else "",
        "" if recorded else " (already known or out of order: unchanged)",
    )
    return answer(204)


def receipt_of(params: Mapping[str, str]) -> dict[str, Any] | None:
    """What a message or call status callback says, in the ledger's terms."""
    if params.get("MessageSid") and params.get("MessageStatus"):
        channel, sid, status, ranks = (
            "sms",
            params["MessageSid"],
            params["MessageStatus"],
            MESSAGE_RANKS,
        )
    elif params.get("CallSid") and params.get("CallStatus"):
        channel, sid, status, ranks = "call", params["CallSid"], params["CallStatus"], CALL_RANKS
    else:
        return None
    if status not in ranks or not params.get("To"):
        return None
    code = params.get("ErrorCode", "")
    answered_by = params.get("AnsweredBy") or None
    return {
        "channel": channel,
        "to": params["To"],
        "sid": sid,
        "status": status,
        "rank": ranks[status],
        "error_code": int(code) if code.isdigit() else None,
        "answered_by": answered_by,
    }


def answer(status: int) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": ""}


def twiml_answer(document: str) -> dict[str, Any]:
    """TwiML for Twilio to play next (the answer to a ``<Gather>``'s action)."""
    return {"statusCode": 200, "headers": {"Content-Type": "text/xml"}, "body": document}
