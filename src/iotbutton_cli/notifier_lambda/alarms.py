"""The alarm ledger: one click is one alarm, and each (alarm, channel, recipient) is sent once.

Lambda delivers an asynchronous event at least once: it retries a failed invocation (twice, by
default, over minutes), may deliver one event twice, and a retry can land in a new container. A
button, or flaky Wi-Fi, can also publish one press twice. So what was sent is kept in a DynamoDB
table, written with conditional requests, not in a container's memory:

``pk = <alarm id>, sk = "alarm"``
    The alarm. Its id is ``<serial>-<click>-<clickedAt>`` (the rule's ``timestamp()``, the same
    on every delivery of one event); for an event without ``clickedAt``, ``-req-<request id>``
    (Lambda keeps the request id across its retries). ``state`` is ``new`` until the debounce
    check decides, then ``alarm`` or ``repeat`` (with ``repeatOf``).
``pk = recent#<serial>#<click>, sk = "recent"``
    The button's last alarm of that click type: a click within ``debounce_seconds`` of it is a
    repeat, one alarm with it.
``pk = "held", sk = <alarm id>``
    A click held by quiet hours (``then: hold``): its alarm's ``state`` is ``held`` (with
    ``heldUntil``) until the release event, when the quiet hours end, sends it; then the item
    goes and the alarm's state is ``alarm`` again, with ``releasedAt``.
``pk = <alarm id>, sk = "<channel>#<recipient>"``
    One delivery: claimed as ``sending`` before the request to Twilio, then ``sent`` (with the
    sid) or ``failed`` (with Twilio's code). A claim succeeds only if there is none yet or the
    earlier attempt failed, so a delivery is sent at most once unless it is known to have failed.
    A claim whose attempt never finished (the container died mid-request) is not sent again: its
    outcome is unknown, and the result says so.

Every item expires (``expiresAt``, the table's TTL attribute) 30 days after its click. When the
table cannot be reached, the alarm still goes out: a help button that stays silent because its
bookkeeping failed is worse than a message sent twice, so the ledger then falls back to this
container's memory and logs an ERROR.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .text import log

ALARM_SK = "alarm"
RECENT_SK = "recent"
HELD_PK = "held"
HELD = "held"  # an alarm's state while quiet hours hold it
RETENTION_SECONDS = 30 * 86400
# A claim older than this never finished (the function's timeout is 30 s): `notify retry` may
# take it over; a younger one may be a send in progress.
STALE_SENDING_SECONDS = 120
# An alarm opened this recently that has sent nothing yet is still starting.
IN_PROGRESS_SECONDS = 45
MEMORY_LIMIT = 10_000
CONDITION_FAILED = "ConditionalCheckFailedException"

# Delivery states in the ledger.
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
# Twilio's final statuses that mean the person was not reached (receipts.NOT_REACHED).
NOT_REACHED_STATUSES = frozenset({"undelivered", "failed", "canceled", "busy", "no-answer"})


@dataclass(frozen=True)
class Click:
    """What identifies a click to the ledger."""

    serial: str
    click: str
    clicked_ms: int | None  # the rule's clickedAt; None for an event without it
    request_id: str | None
    battery: str = ""  # as the message shows it: kept so a retry can say it again

    @property
    def alarm_id(self) -> str:
        if self.clicked_ms is not None:
            return f"{self.serial}-{self.click}-{self.clicked_ms}"
        return f"{self.serial}-{self.click}-req-{self.request_id or 'none'}"


@dataclass(frozen=True)
class Opened:
    alarm_id: str
    repeat_of: str | None = None  # the alarm this click repeats, within the debounce window


@dataclass(frozen=True)
class Earlier:
    """A delivery an earlier attempt claimed: ``sent``, or ``sending`` (outcome unknown)."""

    status: str
    sid: str | None = None


@dataclass(frozen=True)
class Claimed:
    """This attempt may send. ``attempt`` numbers it (None without the table): its receipts
    name it, so a late receipt of an earlier attempt cannot speak for this one."""

    attempt: int | None = None


class MemoryLedger:
    """The fallback: deliveries Twilio accepted, remembered in this container only (a retry in
    another container sends again). No debounce: that needs what other containers saw."""

    def __init__(self) -> None:
        self._sent: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, click: Click, debounce_seconds: int) -> Opened:
        return Opened(click.alarm_id)

    def claim(self, alarm_id: str, channel: str, to: str) -> Earlier | Claimed:
        with self._lock:
            sid = self._sent.get((alarm_id, channel, to))
        return Claimed() if sid is None else Earlier(SENT, sid or None)

    def receipt(self, alarm_id: str, **receipt: Any) -> bool:
        """Receipts need the table: without it there is nothing to record them on."""
        return False

    def mark_failed(self, alarm_id: str) -> None:
        """Nothing to mark without the table."""

    def record(self, alarm_id: str, channel: str, to: str, outcome: Any) -> None:
        if not outcome.ok:
            return
        with self._lock:
            self._sent[(alarm_id, channel, to)] = outcome.sid or ""
            while len(self._sent) > MEMORY_LIMIT:
                self._sent.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()


class LedgerUnavailable(RuntimeError):
    """The table could not be read or written (not a failed condition)."""


class TableLedger:
    """The ledger in DynamoDB (see the module docstring); ``client`` is a boto3 DynamoDB client."""

    def __init__(self, table: str, client: Any, clock: Any = time.time) -> None:
        self.table = table
        self.client = client
        self.clock = clock
        self._expiries: dict[str, int] = {}  # alarm id -> when its items expire

    # -- alarms ------------------------------------------------------------------------------

    def open(self, click: Click, debounce_seconds: int) -> Opened:
        alarm_id = click.alarm_id
        clicked_ms = click.clicked_ms or int(self.clock() * 1000)
        self._expiries[alarm_id] = self._expiry(clicked_ms)
        item = {
            "pk": _s(alarm_id),
            "sk": _s(ALARM_SK),
            "serial": _s(click.serial),
            "click": _s(click.click),
            "clickedAt": _n(clicked_ms),
            "clickTimeKnown": {"BOOL": click.clicked_ms is not None},
            "firstSeenAt": _n(int(self.clock() * 1000)),
            "state": _s("new"),
            "battery": _s(click.battery or "unknown"),
            "expiresAt": _n(self._expiry(clicked_ms)),
        }
        if click.request_id:
            item["requestId"] = _s(click.request_id)
        if not self._put_if(item, "attribute_not_exists(pk)"):
            existing = self._get(alarm_id, ALARM_SK) or {}
            state = _text(existing.get("state"))
            if state == "repeat":
                return Opened(alarm_id, _text(existing.get("repeatOf")) or "an earlier alarm")
            if state in ("alarm", FAILED, HELD):  # a retry: on with it
                return Opened(alarm_id)
        if debounce_seconds > 0:
            earlier = self._claim_recent(click, alarm_id, clicked_ms, debounce_seconds)
            if earlier is not None and self._went_out(earlier):
                self._set_state(alarm_id, "repeat", repeatOf=_s(earlier))
                return Opened(alarm_id, earlier)
            if earlier is not None:  # it never went out: this press is an alarm of its own
                self._take_recent(click, alarm_id, clicked_ms, earlier)
        self._set_state(alarm_id, "alarm")
        return Opened(alarm_id)

    def _claim_recent(
        self, click: Click, alarm_id: str, clicked_ms: int, debounce_seconds: int
    ) -> str | None:
        """Make this alarm the button's latest of its click type, unless one within the window
        is; returns that one's id (a repeat), or None."""
        window = debounce_seconds * 1000
        key = recent_key(click.serial, click.click)
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET alarmId = :id, clickedAt = :t, expiresAt = :e",
                ConditionExpression=(
                    "attribute_not_exists(pk) OR alarmId = :id OR clickedAt <= :low "
                    "OR clickedAt >= :high"
                ),
                ExpressionAttributeValues={
                    ":id": _s(alarm_id),
                    ":t": _n(clicked_ms),
                    ":e": _n(self._expiry(clicked_ms)),
                    ":low": _n(clicked_ms - window),
                    ":high": _n(clicked_ms + window),
                },
            )
        except Exception as exc:
            if _code(exc) != CONDITION_FAILED:
                raise LedgerUnavailable(str(exc)) from exc
            recent = self._get(key["pk"]["S"], RECENT_SK) or {}
            return _text(recent.get("alarmId")) or "an earlier alarm"
        return None

    def _went_out(self, alarm_id: str) -> bool:
        """The earlier alarm reached Twilio, or is being sent: only then is a press within its
        window a repeat. One whose every attempt failed before sending (no secret, Twilio
        down) must not swallow the press made because nothing happened."""
        now = int(self.clock() * 1000)
        items = self._items(alarm_id)
        deliveries = [item for item in items if _text(item.get("sk")) != ALARM_SK]
        for item in deliveries:
            status = _text(item.get("status"))
            started = int(_text(item.get("startedAt")) or "0")
            if status == SENT or (
                status == SENDING and started > now - STALE_SENDING_SECONDS * 1000
            ):
                return True
        if deliveries:  # every one was tried and failed
            return False
        alarm: dict[str, Any] = next(
            (item for item in items if _text(item.get("sk")) == ALARM_SK), {}
        )
        if _text(alarm.get("state")) == FAILED:  # it failed before it could send
            return False
        if _text(alarm.get("state")) == HELD:  # it goes out when the quiet hours end
            return True
        # Not sent yet, not failed: still starting (two presses handled at once), unless old.
        return int(_text(alarm.get("firstSeenAt")) or "0") > now - IN_PROGRESS_SECONDS * 1000

    def mark_failed(self, alarm_id: str) -> None:
        """The invocation failed before it could send: a press after it is not its repeat."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(alarm_id), "sk": _s(ALARM_SK)},
                UpdateExpression="SET #state = :failed",
                ConditionExpression="#state = :alarm",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":failed": _s(FAILED), ":alarm": _s("alarm")},
            )
        except Exception as exc:
            if _code(exc) != CONDITION_FAILED:
                raise LedgerUnavailable(str(exc)) from exc

    def hold(self, alarm_id: str, until: str) -> None:
        """Quiet hours hold the alarm: listed under ``held`` for the release to find."""
        self._set_state(alarm_id, HELD, heldUntil=_s(until))
        item = {
            "pk": _s(HELD_PK),
            "sk": _s(alarm_id),
            "expiresAt": _n(self._alarm_expiry(alarm_id)),
        }
        try:
            self.client.put_item(TableName=self.table, Item=item)
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc

    def held(self) -> list[str]:
        """The ids of the alarms quiet hours hold, oldest click first."""
        ids: list[str] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :held",
            "ExpressionAttributeValues": {":held": _s(HELD_PK)},
        }
        try:
            while True:
                page = self.client.query(**request)
                ids += [_text(item.get("sk")) or "" for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc
        return sorted((i for i in ids if i), key=_click_order)

    def release(self, alarm_id: str) -> None:
        """The held alarm went out (or can no longer): an alarm again, off the held list."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(alarm_id), "sk": _s(ALARM_SK)},
                UpdateExpression="SET #state = :alarm, releasedAt = :now",
                ConditionExpression="#state = :held",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":alarm": _s("alarm"),
                    ":held": _s(HELD),
                    ":now": _n(int(self.clock() * 1000)),
                },
            )
        except Exception as exc:
            if _code(exc) != CONDITION_FAILED:  # released already, or gone
                raise LedgerUnavailable(str(exc)) from exc
        try:
            self.client.delete_item(
                TableName=self.table, Key={"pk": _s(HELD_PK), "sk": _s(alarm_id)}
            )
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc

    def mark_dropped(self, click: Click, condition: str, error: str, invoke_count: int) -> None:
        """Lambda gave up on the click (its retries exhausted, or too old to try): say so on the
        alarm, making it if the function never got as far as opening it, so that history shows
        it and ``notify retry`` can send it."""
        clicked_ms = click.clicked_ms or int(self.clock() * 1000)
        fields = {
            "serial": _s(click.serial),
            "click": _s(click.click),
            "clickedAt": _n(clicked_ms),
            "clickTimeKnown": {"BOOL": click.clicked_ms is not None},
            "firstSeenAt": _n(int(self.clock() * 1000)),
            "battery": _s(click.battery or "unknown"),
            "expiresAt": _n(self._expiry(clicked_ms)),
            "state": _s(FAILED),
        }
        dropped = {
            "dropped": _s(condition),
            "droppedAt": _n(int(self.clock() * 1000)),
            "dropError": _s(error or "unknown"),
            "invokeCount": _n(invoke_count),
        }
        names = {f"#{name}": name for name in (*fields, *dropped)}
        values = {f":{name}": value for name, value in (*fields.items(), *dropped.items())}
        assignments = [f"#{name} = if_not_exists(#{name}, :{name})" for name in fields]
        assignments += [f"#{name} = :{name}" for name in dropped]
        self._update(click.alarm_id, ALARM_SK, "SET " + ", ".join(assignments), names, values)

    def mark_owner_told(self, alarm_id: str, message_id: str) -> None:
        """The owner's topic took the message about this dropped alarm."""
        self._update(
            alarm_id,
            ALARM_SK,
            "SET #toldAt = :t, #messageId = :m",
            {"#toldAt": "ownerToldAt", "#messageId": "ownerMessageId"},
            {":t": _n(int(self.clock() * 1000)), ":m": _s(message_id or "unknown")},
        )

    def deliveries(self, alarm_id: str) -> list[dict[str, str]]:
        """The alarm's deliveries as the ledger has them: channel, recipient, status, and
        Twilio's latest word (``twilioStatus``, from its receipts)."""
        return [
            {
                key: _text(item.get(key)) or ""
                for key in ("channel", "recipient", "status", "twilioStatus")
            }
            for item in self._items(alarm_id)
            if _text(item.get("sk")) not in (ALARM_SK, None)
        ]

    def _items(self, alarm_id: str) -> list[dict[str, Any]]:
        """Every item of one alarm: its own and its deliveries'."""
        try:
            found = self.client.query(
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :alarm",
                ExpressionAttributeValues={":alarm": _s(alarm_id)},
            )
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc
        return list(found.get("Items", []))

    def _take_recent(self, click: Click, alarm_id: str, clicked_ms: int, earlier: str) -> None:
        """Make this alarm the button's latest, in place of one that never went out."""
        key = recent_key(click.serial, click.click)
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET alarmId = :id, clickedAt = :t, expiresAt = :e",
                ConditionExpression="alarmId = :earlier",
                ExpressionAttributeValues={
                    ":id": _s(alarm_id),
                    ":t": _n(clicked_ms),
                    ":e": _n(self._expiry(clicked_ms)),
                    ":earlier": _s(earlier),
                },
            )
        except Exception as exc:
            if _code(exc) != CONDITION_FAILED:  # another press took it first: fine too
                raise LedgerUnavailable(str(exc)) from exc

    def _set_state(self, alarm_id: str, state: str, **more: dict[str, str]) -> None:
        names = {"#state": "state", **{f"#{name}": name for name in more}}
        values = {":state": _s(state), **{f":{name}": value for name, value in more.items()}}
        assignments = ["#state = :state", *(f"#{name} = :{name}" for name in more)]
        self._update(alarm_id, ALARM_SK, "SET " + ", ".join(assignments), names, values)

    # -- deliveries --------------------------------------------------------------------------

    def claim(self, alarm_id: str, channel: str, to: str) -> Earlier | Claimed:
        """Claim a delivery for this attempt: one not tried yet, or one whose earlier attempt is
        known to have failed (refused by Twilio, and no receipt saying it arrived after all).
        Else what an earlier attempt left."""
        not_reached = _values("nr", NOT_REACHED_STATUSES)
        claimed = self._claim_update(
            alarm_id,
            channel,
            to,
            "SET #status = :sending, channel = :channel, recipient = :to, "
            "startedAt = :now, attempts = if_not_exists(attempts, :zero) + :one, "
            "expiresAt = if_not_exists(expiresAt, :expires)",
            "attribute_not_exists(pk) OR (#status = :failed AND "
            "(attribute_not_exists(twilioStatus) OR "
            f"twilioStatus IN ({', '.join(not_reached)})))",
            {
                ":channel": _s(channel),
                ":to": _s(to),
                ":expires": _n(self._alarm_expiry(alarm_id)),
                **not_reached,
            },
        )
        if claimed is not None:
            return claimed
        try:
            earlier = self._get(alarm_id, f"{channel}#{to}") or {}
        except LedgerUnavailable:
            # Someone holds the claim and it cannot be read: sending too could double it.
            return Earlier(SENDING)
        return Earlier(_text(earlier.get("status")) or SENDING, _text(earlier.get("sid")))

    def claim_again(self, alarm_id: str, channel: str, to: str) -> Claimed | None:
        """Claim a delivery that did not get through, for ``notify retry``: refused by Twilio,
        reported not reached (or answered by a machine), or an attempt that began over
        ``STALE_SENDING_SECONDS`` ago and never finished; its earlier receipts and error are
        cleared. None when it got through, is being sent right now, or was never tried."""
        not_reached = _values("nr", NOT_REACHED_STATUSES)
        stale = int(self.clock() * 1000) - STALE_SENDING_SECONDS * 1000
        return self._claim_update(
            alarm_id,
            channel,
            to,
            "SET #status = :sending, startedAt = :now, "
            "attempts = if_not_exists(attempts, :zero) + :one "
            "REMOVE twilioStatus, statusRank, receiptErrorCode, answeredBy, sid, "
            "errorCode, errorMessage",
            "attribute_exists(pk) AND (#status = :failed OR "
            "(#status = :sending AND startedAt < :stale) OR "
            f"twilioStatus IN ({', '.join(not_reached)}) OR "
            "begins_with(answeredBy, :machine))",
            {":stale": _n(stale), ":machine": _s("machine"), **not_reached},
        )

    def _claim_update(
        self,
        alarm_id: str,
        channel: str,
        to: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> Claimed | None:
        """Mark a delivery ``sending`` for a new attempt if ``condition`` holds; None if not."""
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(alarm_id), "sk": _s(f"{channel}#{to}")},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_used(
                    f"{update} {condition}",
                    {
                        ":sending": _s(SENDING),
                        ":failed": _s(FAILED),
                        ":now": _n(int(self.clock() * 1000)),
                        ":zero": _n(0),
                        ":one": _n(1),
                        **values,
                    },
                ),
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            if _code(exc) == CONDITION_FAILED:
                return None
            raise LedgerUnavailable(str(exc)) from exc
        return Claimed(_attempt(answer))

    def alarm(self, alarm_id: str) -> dict[str, str] | None:
        """The alarm's own item, its attributes as text (for a retry); None if there is none."""
        item = self._get(alarm_id, ALARM_SK)
        return None if item is None else {k: _text(v) or "" for k, v in item.items()}

    def record(self, alarm_id: str, channel: str, to: str, outcome: Any) -> None:
        values: dict[str, Any] = {
            ":status": _s(SENT if outcome.ok else FAILED),
            ":now": _n(int(self.clock() * 1000)),
        }
        assignments = ["#status = :status", "finishedAt = :now"]
        optional = {
            "sid": outcome.sid,
            "errorMessage": None if outcome.ok else outcome.message,
        }
        for name, value in optional.items():
            if value:
                values[f":{name}"] = _s(str(value)[:1000])
                assignments.append(f"{name} = :{name}")
        if getattr(outcome, "status", None):
            # A receipt may have come first (Twilio is quick): its status is the later one.
            values[":twilioStatus"] = _s(str(outcome.status))
            assignments.append("twilioStatus = if_not_exists(twilioStatus, :twilioStatus)")
        if not outcome.ok and outcome.code:
            values[":code"] = _n(int(outcome.code))
            assignments.append("errorCode = :code")
        key = f"{channel}#{to}"
        self._update(alarm_id, key, "SET " + ", ".join(assignments), {"#status": "status"}, values)

    # -- receipts ----------------------------------------------------------------------------

    def receipt(
        self,
        alarm_id: str,
        *,
        channel: str,
        to: str,
        sid: str,
        status: str,
        rank: int,
        error_code: int | None = None,
        answered_by: str | None = None,
        attempt: int | None = None,
    ) -> bool:
        """Record a status callback on its delivery: only a delivery that exists, of this sid
        (or not yet told its sid: the callback beat the create's answer), of this attempt (its
        URL names it), and only forward. False when it changed nothing (a replay, a receipt of
        an earlier attempt, or older than what is known)."""
        values: dict[str, Any] = {
            ":sid": _s(sid),
            ":status": _s(status),
            ":rank": _n(rank),
            ":now": _n(int(self.clock() * 1000)),
        }
        assignments = [
            "sid = :sid",
            "twilioStatus = :status",
            "statusRank = :rank",
            "receiptAt = :now",
        ]
        if error_code is not None:
            values[":code"] = _n(error_code)
            assignments.append("receiptErrorCode = :code")
        if answered_by:
            values[":answeredBy"] = _s(answered_by[:64])
            assignments.append("answeredBy = :answeredBy")
        if attempt is not None:
            values[":attempt"] = _n(attempt)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(alarm_id), "sk": _s(f"{channel}#{to}")},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(sid) OR sid = :sid) "
                    "AND (attribute_not_exists(statusRank) OR statusRank < :rank)"
                    + (" AND attempts = :attempt" if attempt is not None else "")
                ),
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _code(exc) == CONDITION_FAILED:
                return False
            raise LedgerUnavailable(str(exc)) from exc
        return True

    # -- DynamoDB ----------------------------------------------------------------------------

    def _expiry(self, clicked_ms: int) -> int:
        return clicked_ms // 1000 + RETENTION_SECONDS

    def _alarm_expiry(self, alarm_id: str) -> int:
        """Deliveries expire with their alarm."""
        return self._expiries.get(alarm_id) or self._expiry(int(self.clock() * 1000))

    def _put_if(self, item: dict[str, Any], condition: str) -> bool:
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition)
        except Exception as exc:
            if _code(exc) == CONDITION_FAILED:
                return False
            raise LedgerUnavailable(str(exc)) from exc
        return True

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        try:
            found = self.client.get_item(
                TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
            )
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc
        item = found.get("Item")
        return dict(item) if item else None

    def _update(
        self, pk: str, sk: str, expression: str, names: dict[str, str], values: dict[str, Any]
    ) -> None:
        names_if_any = {"ExpressionAttributeNames": names} if names else {}
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(pk), "sk": _s(sk)},
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                **names_if_any,  # DynamoDB refuses an empty map
            )
        except Exception as exc:
            raise LedgerUnavailable(str(exc)) from exc


class FallingBackLedger:
    """The table, until it fails; then this container's memory, with an ERROR saying so."""

    def __init__(self, table: TableLedger, memory: MemoryLedger) -> None:
        self.table: TableLedger | None = table
        self.memory = memory

    def _fall_back(self, exc: Exception) -> None:
        if self.table is not None:
            log(
                logging.ERROR,
                "alarm ledger %s unavailable (%s): sending without its duplicate protection",
                self.table.table,
                exc,
            )
        self.table = None

    def open(self, click: Click, debounce_seconds: int) -> Opened:
        if self.table is not None:
            try:
                return self.table.open(click, debounce_seconds)
            except LedgerUnavailable as exc:
                self._fall_back(exc)
        return self.memory.open(click, debounce_seconds)

    def claim(self, alarm_id: str, channel: str, to: str) -> Earlier | Claimed:
        if self.table is not None:
            try:
                return self.table.claim(alarm_id, channel, to)
            except LedgerUnavailable as exc:
                self._fall_back(exc)
        return self.memory.claim(alarm_id, channel, to)

    def mark_failed(self, alarm_id: str) -> None:
        if self.table is not None:
            try:
                self.table.mark_failed(alarm_id)
            except LedgerUnavailable as exc:
                self._fall_back(exc)

    def receipt(self, alarm_id: str, **receipt: Any) -> bool:
        if self.table is None:
            return False
        return self.table.receipt(alarm_id, **receipt)  # unavailable: Lambda answers 5xx

    def record(self, alarm_id: str, channel: str, to: str, outcome: Any) -> None:
        self.memory.record(alarm_id, channel, to, outcome)
        if self.table is not None:
            try:
                self.table.record(alarm_id, channel, to, outcome)
            except LedgerUnavailable as exc:
                self._fall_back(exc)


def _click_order(alarm_id: str) -> tuple[int, str]:
    """``<serial>-<click>-<clickedAt>`` sorts by its click time; anything else last."""
    stamp = alarm_id.rpartition("-")[2]
    return (int(stamp) if stamp.isdigit() else 1 << 62, alarm_id)


def recent_key(serial: str, click: str) -> dict[str, dict[str, str]]:
    """The key of a button's last alarm of a click type (see the module docstring)."""
    return {"pk": _s(f"recent#{serial}#{click}"), "sk": _s(RECENT_SK)}


def _values(prefix: str, texts: frozenset[str]) -> dict[str, dict[str, str]]:
    """Expression values ``:<prefix>0``, ``:<prefix>1``... for ``texts``, in a stable order."""
    return {f":{prefix}{index}": _s(text) for index, text in enumerate(sorted(texts))}


def _used(expressions: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values the expressions name: DynamoDB refuses a request that gives one it does not."""
    named = set(re.findall(r":[A-Za-z0-9_]+", expressions))
    return {name: value for name, value in values.items() if name in named}


def _attempt(answer: Any) -> int | None:
    value = _text((answer or {}).get("Attributes", {}).get("attempts"))
    return int(value) if value and value.isdigit() else None


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _text(attribute: Any) -> str | None:
    if isinstance(attribute, dict):
        value = attribute.get("S", attribute.get("N"))
        return None if value is None else str(value)
    return None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
