"""A low battery, told once per period per button: a button about to die must be replaced before
it is needed, and a message on every click would teach people to ignore it.

The alarm table holds one item per button, ``pk = battery#<serial>``, ``sk = "battery"``, with
when it was last told (``notifiedAt``) and by which alarm. Telling is claimed with a conditional
write: only if it was never told, or longer ago than the period, or by this same alarm (a Lambda
retry of the click finishing what it began); each SMS is then claimed per alarm like any other.
"""

from __future__ import annotations

from typing import Any

from .alarms import CONDITION_FAILED, LedgerUnavailable, TableLedger, _code, _n, _s

BATTERY_SK = "battery"
CHANNEL = "battery-sms"


def due(table: TableLedger, serial: str, alarm_id: str, mv: int, every_seconds: int) -> bool:
    """Claim telling this button's low battery now; False if it was told within the period."""
    now = int(table.clock() * 1000)
    try:
        table.client.update_item(
            TableName=table.table,
            Key={"pk": _s(f"battery#{serial}"), "sk": _s(BATTERY_SK)},
            UpdateExpression="SET notifiedAt = :now, alarmId = :alarm, mv = :mv, "
            "expiresAt = :expires",
            ConditionExpression="attribute_not_exists(pk) OR notifiedAt < :cutoff "
            "OR alarmId = :alarm",
            ExpressionAttributeValues={
                ":now": _n(now),
                ":alarm": _s(alarm_id),
                ":mv": _n(mv),
                ":cutoff": _n(now - every_seconds * 1000),
                ":expires": _n(now // 1000 + max(every_seconds, 86400) * 2),
            },
        )
    except Exception as exc:
        if _code(exc) == CONDITION_FAILED:
            return False
        raise LedgerUnavailable(str(exc)) from exc
    return True


def release(table: TableLedger, serial: str, alarm_id: str) -> None:
    """Nobody could be told: let the next low click of this button try again."""
    try:
        table.client.update_item(
            TableName=table.table,
            Key={"pk": _s(f"battery#{serial}"), "sk": _s(BATTERY_SK)},
            UpdateExpression="SET notifiedAt = :never",
            ConditionExpression="alarmId = :alarm",
            ExpressionAttributeValues={":never": _n(0), ":alarm": _s(alarm_id)},
        )
    except Exception as exc:
        if _code(exc) != CONDITION_FAILED:
            raise LedgerUnavailable(str(exc)) from exc


def warning(person: str, serial: str, mv: int, below: int) -> str:
    return (
        f"The battery of {person}'s button {serial} is low ({mv} mV, below {below} mV). "
        "Replace it soon, so that it works when it is needed."
    )


def result(mv: int, told: list[str], note: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"low": True, "mv": mv, "told": told}
    if note:
        found["note"] = note
    return found
