"""An escalation's state in the alarm table: where it is, each call it made, who acknowledged.

On the alarm's own item (``sk = "alarm"``)::

    esc          ringing | acknowledged | exhausted
    escRound     which time through the list (from 0)
    escStep      which step of it (from 0)
    escStepAt    when that step began (ms)
    ackBy ackAt ackVia   who acknowledged, when (ms), and how: "call" or "terminal"
    exhaustedAt  when the last step ended with nobody acknowledging (ms)

One item per call, ``sk = "esc#<round>.<step>#<number>"``: claimed ``sending`` before the request
to Twilio, then ``sent`` (with the sid) or ``failed``, as deliveries are (:mod:`.alarms`); its
status callbacks add ``twilioStatus`` and ``answeredBy``, its key press ``digits``.

Every change is one conditional write, so a callback Twilio delivers twice, two callbacks at once,
or a retry after a crash changes the state once: the escalation moves on only from the step it is
at (``esc = ringing`` and the round and step as read), is acknowledged only while ringing, and a
call is claimed only where there is no item for it yet.
"""

from __future__ import annotations

from typing import Any

from .alarms import (
    ALARM_SK,
    CONDITION_FAILED,
    IN_PROGRESS_SECONDS,
    Claimed,
    LedgerUnavailable,
    TableLedger,
    _code,
    _n,
    _s,
    _text,
)

RINGING = "ringing"
ACKNOWLEDGED = "acknowledged"
EXHAUSTED = "exhausted"
CALL_PREFIX = "esc#"
# The button's escalating alarm of one click type: pk "escalating#<serial>#<click>".
LEAD_PREFIX = "escalating#"
LEAD_SK = "escalating"
RETRYABLE = "yes"  # a call Twilio refused with an error a retry may cure
# A call status that ends the call (Twilio's final statuses).
CALL_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

# What a call not over yet is doing, by Twilio's latest word about it.
LIVE_OUTCOMES = {
    "queued": "calling",
    "initiated": "calling",
    "ringing": "ringing",
    "in-progress": "answered",
}

Position = tuple[int, int]


def position_text(position: Position) -> str:
    """``(round, step)`` as it appears in keys and callback URLs: ``"0.1"``."""
    return f"{position[0]}.{position[1]}"


def parse_position(text: str) -> Position | None:
    round_, _, step = text.partition(".")
    if not (round_.isdigit() and step.isdigit()) or len(text) > 9:
        return None
    return int(round_), int(step)


def channel_of(position: Position) -> str:
    """The delivery channel of a call of this step: its items' ``sk`` is ``<channel>#<to>``."""
    return f"{CALL_PREFIX}{position_text(position)}"


def call_ended(call: dict[str, str]) -> bool:
    """Twilio refused it, or reported its end."""
    return call.get("status") == "failed" or call.get("twilioStatus") in CALL_ENDED


def call_outcome(call: dict[str, str]) -> str:
    """What became of one call, in a person's words."""
    if call.get("digits") == "1":
        return "acknowledged"
    status = call.get("twilioStatus", "")
    if call.get("status") == "failed":
        return "failed"
    if status == "completed":
        answered_by = call.get("answeredBy", "")
        if answered_by.startswith("machine") or answered_by == "fax":
            return "voicemail"
        return "answered, no key" if not call.get("digits") else f"pressed {call['digits']}"
    if call.get("status") == "sending":
        return "being placed"
    return LIVE_OUTCOMES.get(status, status or "calling")


class EscalationLedger:
    """The escalation's reads and conditional writes, on the alarm table ``table`` uses."""

    def __init__(self, table: TableLedger) -> None:
        self.table = table

    def start(self, alarm_id: str) -> bool:
        """Begin at the first step; False if it has begun already (a retried click)."""
        return self._alarm_update(
            alarm_id,
            "SET esc = :ringing, escRound = :zero, escStep = :zero, escStepAt = :now",
            "attribute_exists(pk) AND attribute_not_exists(esc)",
            {":ringing": _s(RINGING), ":zero": _n(0)},
        )

    def lead(self, serial: str, click: str, alarm_id: str) -> str | None:
        """Make this alarm the one escalating for the button's click type, unless another one
        still rings: then that one's id (a press made because nobody came yet joins it rather
        than ringing everyone twice)."""
        pk = f"{LEAD_PREFIX}{serial}#{click}"
        expected: str | None = None  # None: no other alarm leads, or this one does
        for _ in range(3):  # each pass loses only to another press taking it first
            if self._take_lead(pk, alarm_id, expected):
                return None
            leading = _text((self.table._get(pk, LEAD_SK) or {}).get("alarmId")) or ""
            if leading and self._still_calling(self.alarm(leading) or {}):
                return leading
            expected = leading  # it has ended: take its place, unless another press does
        return None

    def _still_calling(self, alarm: dict[str, str]) -> bool:
        """Ringing, or (no escalation state yet) a press handled this very moment."""
        if alarm.get("esc"):
            return alarm["esc"] == RINGING
        seen = int(alarm.get("firstSeenAt") or "0")
        return bool(seen) and self._now() - seen < IN_PROGRESS_SECONDS * 1000

    def _take_lead(self, pk: str, alarm_id: str, expected: str | None) -> bool:
        condition = (
            "attribute_not_exists(pk) OR alarmId = :me" if expected is None else "alarmId = :other"
        )
        values = {":me": _s(alarm_id), ":expires": _n(self.table._alarm_expiry(alarm_id))}
        if expected is not None:
            values[":other"] = _s(expected)
        try:
            self.table.client.update_item(
                TableName=self.table.table,
                Key={"pk": _s(pk), "sk": _s(LEAD_SK)},
                UpdateExpression="SET alarmId = :me, expiresAt = :expires",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _code(exc) == CONDITION_FAILED:
                return False
            raise LedgerUnavailable(str(exc)) from exc
        return True

    def joined(self, alarm_id: str, leading: str) -> None:
        """Record on a press that it joined the escalation ``leading`` (history shows it)."""
        self._alarm_update(
            alarm_id,
            "SET escJoined = :leading, escJoinedAt = :now",
            "attribute_exists(pk)",
            {":leading": _s(leading)},
        )

    def advance(self, alarm_id: str, at: Position, to: Position | None) -> bool:
        """Move from step ``at`` to ``to`` (None: exhausted), if it is still at ``at``."""
        condition = "esc = :ringing AND escRound = :round AND escStep = :step"
        values = {":ringing": _s(RINGING), ":round": _n(at[0]), ":step": _n(at[1])}
        if to is None:
            update = "SET esc = :exhausted, exhaustedAt = :now"
            values[":exhausted"] = _s(EXHAUSTED)
        else:
            update = "SET escRound = :newRound, escStep = :newStep, escStepAt = :now"
            values.update({":newRound": _n(to[0]), ":newStep": _n(to[1])})
        return self._alarm_update(alarm_id, update, condition, values)

    def acknowledge(self, alarm_id: str, by: str, via: str) -> bool:
        """Acknowledged by ``by``, if nobody did first: while it calls, or after it ran out of
        people (a 1 whose callback came after the last call's end, or someone going anyway:
        the others are told then too)."""
        return self._alarm_update(
            alarm_id,
            "SET esc = :acknowledged, ackBy = :by, ackAt = :now, ackVia = :via",
            "esc IN (:ringing, :exhausted)",
            {
                ":ringing": _s(RINGING),
                ":exhausted": _s(EXHAUSTED),
                ":acknowledged": _s(ACKNOWLEDGED),
                ":by": _s(by[:100]),
                ":via": _s(via),
            },
        )

    def claim_call(self, alarm_id: str, position: Position, to: str) -> Claimed | None:
        """Claim the call to ``to`` at this step; None if one was claimed already."""
        return self.table._claim_update(
            alarm_id,
            channel_of(position),
            to,
            "SET #status = :sending, channel = :channel, recipient = :to, startedAt = :now, "
            "attempts = if_not_exists(attempts, :zero) + :one, "
            "expiresAt = if_not_exists(expiresAt, :expires) "
            "REMOVE retryable, errorCode, errorMessage",
            # Not claimed yet, or refused by Twilio with an error a retry may cure.
            "attribute_not_exists(pk) OR (#status = :failed AND retryable = :yes)",
            {
                ":channel": _s(channel_of(position)),
                ":to": _s(to),
                ":expires": _n(self.table._alarm_expiry(alarm_id)),
                ":yes": _s(RETRYABLE),
            },
        )

    def retryable(self, alarm_id: str, position: Position, to: str) -> None:
        """Twilio refused the call with an error a retry may cure (down, throttling)."""
        self.table._update(
            alarm_id,
            f"{channel_of(position)}#{to}",
            "SET retryable = :yes",
            {},
            {":yes": _s(RETRYABLE)},
        )

    def take_over(
        self, alarm_id: str, position: Position, to: str, started_at: str
    ) -> Claimed | None:
        """Claim again a call whose attempt began at ``started_at`` and never learnt whether
        Twilio made it (and Twilio says it did not); None if anyone else changed it since."""
        return self.table._claim_update(
            alarm_id,
            channel_of(position),
            to,
            "SET startedAt = :now, attempts = attempts + :one",
            "#status = :sending AND startedAt = :started AND attribute_not_exists(sid)",
            {":started": _n(int(started_at or "0"))},
        )

    def adopt(self, alarm_id: str, position: Position, to: str, sid: str) -> None:
        """Twilio made the call an attempt claimed and never heard back about: record its sid."""
        self.table._update(
            alarm_id,
            f"{channel_of(position)}#{to}",
            "SET #status = :sent, sid = :sid",
            {"#status": "status"},
            {":sent": _s("sent"), ":sid": _s(sid)},
        )

    def pressed(self, alarm_id: str, position: Position, to: str, sid: str, digits: str) -> None:
        """The callee pressed ``digits`` on the call ``sid``."""
        try:
            self.table.client.update_item(
                TableName=self.table.table,
                Key={"pk": _s(alarm_id), "sk": _s(f"{channel_of(position)}#{to}")},
                UpdateExpression="SET digits = :digits, pressedAt = :now",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(sid) "
                "OR sid = :sid)",
                ExpressionAttributeValues={
                    ":digits": _s(digits[:8] or "none"),
                    ":now": _n(self._now()),
                    ":sid": _s(sid),
                },
            )
        except Exception as exc:
            if _code(exc) != CONDITION_FAILED:
                raise LedgerUnavailable(str(exc)) from exc

    def calls(self, alarm_id: str, position: Position | None = None) -> list[dict[str, str]]:
        """The alarm's calls (of one step, if given), their attributes as text."""
        prefix = CALL_PREFIX if position is None else channel_of(position) + "#"
        return [
            {key: _text(value) or "" for key, value in item.items()}
            for item in self.table._items(alarm_id)
            if (_text(item.get("sk")) or "").startswith(prefix)
        ]

    def alarm(self, alarm_id: str) -> dict[str, str] | None:
        return self.table.alarm(alarm_id)

    def _now(self) -> int:
        return int(self.table.clock() * 1000)

    def _alarm_update(
        self, alarm_id: str, update: str, condition: str, values: dict[str, Any]
    ) -> bool:
        try:
            self.table.client.update_item(
                TableName=self.table.table,
                Key={"pk": _s(alarm_id), "sk": _s(ALARM_SK)},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={":now": _n(self._now()), **values},
            )
        except Exception as exc:
            if _code(exc) == CONDITION_FAILED:
                return False
            raise LedgerUnavailable(str(exc)) from exc
        return True


def position_of(alarm: dict[str, str]) -> Position:
    return int(alarm.get("escRound") or 0), int(alarm.get("escStep") or 0)
