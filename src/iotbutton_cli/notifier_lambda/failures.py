"""The owner alert: what Lambda gave up on reaches a person, not only a log.

Lambda sends the record of an asynchronous click it could not process (its retries exhausted,
or the event too old to try) to the notifier's on-failure destination, the function
``iotbutton-notifier-failures``: this code, in the same bundle, with this handler. It marks the
alarm ``dropped`` in the ledger (so ``notify history`` shows it and ``notify retry`` can send
it) and publishes one message to the owner's SNS topic, which reaches the owner's phone or
e-mail through AWS rather than through Twilio, the likeliest thing to be down.

The record, as Lambda sends it::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId", "functionArn", "condition": "RetriesExhausted" |
                        "EventAgeExceeded", "approximateInvokeCount": 3},
     "requestPayload": <the click event>, "responseContext": {...},
     "responsePayload": {"errorMessage", "errorType", ...}}

Entry point: ``notifier_lambda.failures.failure_handler(event, context)``. A failure here
raises, so Lambda retries it twice; this function has no destination of its own (no loop), and
the CloudWatch alarm on the notifier's errors is the last word.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from . import alarms
from .contract import format_time
from .handler import (
    LambdaSettings,
    alarm_table,
    finish,
    is_retry_event,
    load_config,
    parse_event,
    tell_owner,
)
from .receipts import is_function_url_event
from .release import is_release_event
from .text import log, printable

SUBJECT = "iotbutton: an alarm could not be delivered"
ERROR_MAX_CHARS = 200
# What the owner can do about it, in the message itself.
RETRY_COMMAND = "iotbutton notify retry {alarm}"
RELEASE_COMMAND = "iotbutton notify release"
CONDITIONS = {
    "RetriesExhausted": "after {count} attempt(s)",
    "EventAgeExceeded": "in time (it waited too long to be tried)",
}


def is_failure_record(event: object) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and "requestPayload" in event
    )


def failure_handler(event: object, context: object) -> dict[str, Any]:
    if not is_failure_record(event):
        log(logging.ERROR, "not an invocation record from Lambda; nothing to report")
        return finish({"ignored": "not an invocation record"}, level=logging.ERROR)
    assert isinstance(event, dict)
    request = event["requestContext"]
    payload = event.get("requestPayload")
    if is_retry_event(payload) or is_function_url_event(payload):
        # Synchronous calls have no destination; a record of one is not a click.
        return finish({"ignored": "not a click"}, level=logging.ERROR)
    if is_release_event(payload):
        return _release_failed(event, request)
    click = parse_event(payload)
    request_id = str(request.get("requestId") or "") or None
    condition = str(request.get("condition") or "unknown")
    count = _count(request.get("approximateInvokeCount"))
    error = _error_text(event.get("responsePayload"))
    ledger_click = alarms.Click(
        click.serial, click.click, click.clicked_ms, request_id, click.battery
    )
    alarm_id = ledger_click.alarm_id
    settings = LambdaSettings.from_environment()
    person = _person(settings, click.serial)
    table = alarm_table(settings)
    missing = _marked(table, ledger_click, condition, error, count)
    message = owner_message(
        person, click.serial, click.click, click.clicked_at, alarm_id, condition, count, missing
    )
    result: dict[str, Any] = {
        "alarm": alarm_id,
        "serial": click.serial,
        "click": click.click,
        "condition": condition,
        "error": error,
    }
    if settings.owner_topic is None:
        result["owner"] = "not told: no owner topic"
        return finish(result, level=logging.ERROR)
    message_id = tell_owner(settings.owner_topic, SUBJECT, message)
    result["owner"] = "told"
    result["messageId"] = message_id
    _told(table, alarm_id, message_id or "")
    return finish(result, level=logging.ERROR)


def _release_failed(event: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The release at the end of quiet hours failed for good: what it held is still held."""
    condition = str(request.get("condition") or "unknown")
    how = CONDITIONS.get(condition, "({condition})").format(
        count=_count(request.get("approximateInvokeCount")), condition=condition
    )
    error = _error_text(event.get("responsePayload"))
    message = (
        f"Messages held by quiet hours could not all be sent when the hours ended {how}: "
        f"{error}. They are still held. Send them: {RELEASE_COMMAND}"
    )
    result: dict[str, Any] = {"release": True, "condition": condition, "error": error}
    settings = LambdaSettings.from_environment()
    if settings.owner_topic is None:
        result["owner"] = "not told: no owner topic"
        return finish(result, level=logging.ERROR)
    result["messageId"] = tell_owner(settings.owner_topic, SUBJECT, message)
    result["owner"] = "told"
    return finish(result, level=logging.ERROR)


def _told(table: alarms.TableLedger | None, alarm_id: str, message_id: str) -> None:
    """Record on the alarm that the owner's topic took the message (history says so)."""
    if table is None:
        return
    try:
        table.mark_owner_told(alarm_id, message_id)
    except alarms.LedgerUnavailable as exc:
        log(logging.ERROR, "alarm ledger unavailable (%s): the owner was told all the same", exc)


def owner_message(
    person: str | None,
    serial: str,
    click: str,
    clicked_at: datetime | None,
    alarm_id: str,
    condition: str,
    count: int,
    missing: list[str] | None,
) -> str:
    """One message, short enough for an SMS: whose button, when, and what to run."""
    whose = f"{person}'s button {serial}" if person else f"button {serial}"
    when = format_time(clicked_at or datetime.now(timezone.utc))
    how = CONDITIONS.get(condition, "({condition})").format(count=count, condition=condition)
    lines = [f"An alarm from {whose} ({click}, {when}) could not be delivered {how}."]
    if missing:
        lines.append("Not reached: " + ", ".join(missing) + ".")
    lines.append("Resend it: " + RETRY_COMMAND.format(alarm=alarm_id))
    return " ".join(lines)


def _marked(
    table: alarms.TableLedger | None, click: alarms.Click, condition: str, error: str, count: int
) -> list[str] | None:
    """Mark the alarm dropped; the recipients it did not reach (None: unknown)."""
    if table is None:
        return None
    try:
        table.mark_dropped(click, condition, error, count)
        deliveries = table.deliveries(click.alarm_id)
    except alarms.LedgerUnavailable as exc:
        log(logging.ERROR, "alarm ledger unavailable (%s): the owner is told all the same", exc)
        return None
    return [
        item["recipient"]
        for item in deliveries
        if item["status"] != alarms.SENT or item["twilioStatus"] in alarms.NOT_REACHED_STATUSES
    ]


def _person(settings: LambdaSettings, serial: str) -> str | None:
    """Whose button it is: its own section's person, else the config's."""
    try:
        config = load_config(settings)
        return (config.for_button(serial) or config).person
    except Exception as exc:  # the owner must hear of it even with the config unreadable
        log(logging.ERROR, "config unreadable (%s): the message names no person", exc)
        return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _error_text(payload: object) -> str:
    if isinstance(payload, dict):
        text = payload.get("errorMessage") or payload.get("errorType") or json.dumps(payload)
    else:
        text = "" if payload is None else str(payload)
    return printable(str(text), ERROR_MAX_CHARS)
