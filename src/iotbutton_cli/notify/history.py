"""``notify history``: every alarm the notifier's ledger holds, with what became of each delivery.

Read from the alarm table the notifier writes (``notifier_lambda/alarms.py``): one ``alarm`` item
per click and one item per (channel, recipient). Every item carries ``expiresAt`` (its click's
time plus the 30 days the table keeps it), so one filtered scan finds the alarms of a period and
their deliveries together; the table holds at most 30 days of clicks, so a scan is the right size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.notifier_lambda.alarms import ALARM_SK, RECENT_SK, RETENTION_SECONDS
from iotbutton_cli.notifier_lambda.escalation_ledger import (
    CALL_PREFIX,
    call_ended,
    call_outcome,
    parse_position,
)
from iotbutton_cli.notify.ops import not_deployed
from iotbutton_cli.notify.resources import ALARM_TABLE, TABLE_KIND

QUEUED = "queued"
# What a click sends, in the order history shows it.
DELIVERY_CHANNELS = ("sms", "call", "webhook", "slack")


@dataclass
class Delivery:
    channel: str
    to: str
    # queued (Twilio accepted it; twilio_status says what became of it), failed (Twilio refused
    # it), or sending (an attempt that never finished)
    status: str
    sid: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    attempts: int = 0
    # What Twilio said since: "queued" from its answer, then its status callbacks' statuses
    # (delivered, undelivered, completed, no-answer, busy, ...).
    twilio_status: str | None = None
    answered_by: str | None = None  # human, machine_... (a call with answering-machine detection)

    @property
    def reached(self) -> bool | None:
        """True/False once Twilio's final status says; None while it is not known."""
        from iotbutton_cli.notifier_lambda.receipts import NOT_REACHED

        if self.status != QUEUED:
            return False
        if self.twilio_status in NOT_REACHED:
            return False
        if self.twilio_status in ("delivered", "read", "completed"):
            return not (self.answered_by or "").startswith("machine")
        return None


@dataclass
class EscalationCall:
    """One call an escalation placed: at which step, to whom, and what became of it."""

    round: int  # from 1
    step: int  # from 1
    to: str
    outcome: str  # acknowledged, no-answer, busy, voicemail, answered, no key, failed, ringing
    started_ms: int | None = None
    ended_ms: int | None = None
    sid: str | None = None


@dataclass
class Escalation:
    """What an alarm's escalation did: its state, who acknowledged, every call and notice."""

    state: str  # ringing, acknowledged, exhausted
    round: int  # the round and step it is at (or ended at), from 1
    step: int
    ack_by: str | None = None
    ack_ms: int | None = None
    ack_via: str | None = None  # call, terminal
    exhausted_ms: int | None = None
    calls: list[EscalationCall] = field(default_factory=list)
    # The texts that followed: "acknowledged" notices, "exhausted" texts (SMS), the owner (SNS).
    notices: list[Delivery] = field(default_factory=list)


@dataclass
class Alarm:
    alarm_id: str
    serial: str
    click: str
    clicked_ms: int
    click_time_known: bool  # False: the event had no clickedAt, this is when it ran
    # alarm, repeat (of ``repeat_of``), held (by quiet hours), or new (the notifier stopped
    # before deciding)
    state: str
    repeat_of: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    # Lambda gave up on it (RetriesExhausted, EventAgeExceeded): the failures function says so.
    dropped: str | None = None
    drop_error: str | None = None
    invoke_count: int | None = None
    owner_told_ms: int | None = None  # when the owner's SNS topic took the message about it
    escalation: Escalation | None = None
    # A press while the button's escalation of this click type still called: it joined that one.
    joined_escalation: str | None = None
    held_until: str | None = None  # quiet hours held it ("until 07:00 Europe/London")
    released_ms: int | None = None  # when their end (or `notify release`) sent it

    @property
    def failed(self) -> list[Delivery]:
        """What did not get through: refused by Twilio, or reported not reached."""
        return [d for d in self.deliveries if d.reached is False]


def alarm_history(ctx: AppContext, serial: str | None, since_seconds: int) -> list[Alarm]:
    """Alarms clicked in the last ``since_seconds`` (of ``serial`` only, if given), oldest first."""
    if ctx.namespace.get(TABLE_KIND, ALARM_TABLE) is None:
        raise not_deployed()
    cutoff_expiry = int(time.time()) - since_seconds + RETENTION_SECONDS
    kwargs: dict[str, Any] = {
        "TableName": ALARM_TABLE,
        "ConsistentRead": True,
        "FilterExpression": "expiresAt >= :cutoff AND sk <> :recent",
        "ExpressionAttributeValues": {
            ":cutoff": {"N": str(cutoff_expiry)},
            ":recent": {"S": RECENT_SK},
        },
    }
    if serial is not None:
        kwargs["FilterExpression"] += " AND begins_with(pk, :serial)"
        kwargs["ExpressionAttributeValues"][":serial"] = {"S": f"{serial}-"}
    items = [
        item
        for page in ctx.client("dynamodb").get_paginator("scan").paginate(**kwargs)
        for item in page.get("Items", [])
    ]
    found = [a for a in _alarms(items) if serial is None or a.serial == serial]
    return sorted(found, key=lambda a: (a.clicked_ms, a.alarm_id))


def alarm(ctx: AppContext, alarm_id: str) -> Alarm | None:
    """One alarm and its deliveries (one Query on its key), or None."""
    if ctx.namespace.get(TABLE_KIND, ALARM_TABLE) is None:
        raise not_deployed()
    pages = (
        ctx.client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=ALARM_TABLE,
            ConsistentRead=True,
            KeyConditionExpression="pk = :alarm",
            ExpressionAttributeValues={":alarm": {"S": alarm_id}},
        )
    )
    return next(iter(_alarms([item for page in pages for item in page.get("Items", [])])), None)


def _alarms(items: list[dict[str, Any]]) -> list[Alarm]:
    """The alarm items among ``items``, each with its delivery items (SMS first)."""
    alarms = {_s(item["pk"]): _alarm(item) for item in items if _s(item["sk"]) == ALARM_SK}
    for item in items:
        alarm = alarms.get(_s(item["pk"]))
        if alarm is None or _s(item["sk"]) == ALARM_SK:
            continue
        channel = _s(item.get("channel"))
        if channel in DELIVERY_CHANNELS:
            alarm.deliveries.append(_delivery(item))
        elif alarm.escalation is not None and channel.startswith(CALL_PREFIX):
            alarm.escalation.calls.append(_call(item))
        elif alarm.escalation is not None:
            alarm.escalation.notices.append(_delivery(item))
    for alarm in alarms.values():
        alarm.deliveries.sort(key=lambda d: (DELIVERY_CHANNELS.index(d.channel), d.to))
        if alarm.escalation is not None:
            alarm.escalation.calls.sort(key=lambda c: (c.round, c.step, c.started_ms or 0, c.to))
    return list(alarms.values())


def _escalation(item: dict[str, Any]) -> Escalation | None:
    if not _s(item.get("esc")):
        return None
    return Escalation(
        state=_s(item.get("esc")),
        round=(_n(item.get("escRound")) or 0) + 1,
        step=(_n(item.get("escStep")) or 0) + 1,
        ack_by=_s(item.get("ackBy")) or None,
        ack_ms=_n(item.get("ackAt")),
        ack_via=_s(item.get("ackVia")) or None,
        exhausted_ms=_n(item.get("exhaustedAt")),
    )


def _call(item: dict[str, Any]) -> EscalationCall:
    text = {key: _s(value) or str(_n(value) or "") for key, value in item.items()}
    position = parse_position(text.get("channel", "").removeprefix(CALL_PREFIX)) or (0, 0)
    return EscalationCall(
        round=position[0] + 1,
        step=position[1] + 1,
        to=text.get("recipient", ""),
        outcome=call_outcome(text),
        started_ms=_n(item.get("startedAt")),
        ended_ms=_n(item.get("receiptAt")) if call_ended(text) else None,
        sid=text.get("sid") or None,
    )


def _alarm(item: dict[str, Any]) -> Alarm:
    return Alarm(
        alarm_id=_s(item["pk"]),
        serial=_s(item.get("serial")),
        click=_s(item.get("click")),
        clicked_ms=_n(item.get("clickedAt")) or 0,
        click_time_known=bool(item.get("clickTimeKnown", {}).get("BOOL", True)),
        state=_s(item.get("state")) or "new",
        repeat_of=_s(item.get("repeatOf")) or None,
        dropped=_s(item.get("dropped")) or None,
        drop_error=_s(item.get("dropError")) or None,
        invoke_count=_n(item.get("invokeCount")),
        owner_told_ms=_n(item.get("ownerToldAt")),
        escalation=_escalation(item),
        joined_escalation=_s(item.get("escJoined")) or None,
        held_until=f"until {_s(item['heldUntil'])}" if _s(item.get("heldUntil")) else None,
        released_ms=_n(item.get("releasedAt")),
    )


def _shown_status(ledger_status: str) -> str:
    """The ledger's "sent" means only that Twilio accepted the request: Twilio calls that
    "queued", and so does every output until a receipt says more."""
    return QUEUED if ledger_status == "sent" else ledger_status


def _delivery(item: dict[str, Any]) -> Delivery:
    return Delivery(
        channel=_s(item.get("channel")),
        to=_s(item.get("recipient")),
        status=_shown_status(_s(item.get("status")) or "sending"),
        sid=_s(item.get("sid")) or None,
        error_code=_n(item.get("receiptErrorCode")) or _n(item.get("errorCode")),
        error_message=_s(item.get("errorMessage")) or None,
        attempts=_n(item.get("attempts")) or 0,
        twilio_status=_s(item.get("twilioStatus")) or None,
        answered_by=_s(item.get("answeredBy")) or None,
    )


def _s(attribute: Any) -> str:
    return str(attribute.get("S", "")) if isinstance(attribute, dict) else ""


def _n(attribute: Any) -> int | None:
    if isinstance(attribute, dict) and "N" in attribute:
        return int(attribute["N"])
    return None
